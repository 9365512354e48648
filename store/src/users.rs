//! Users, password history, sessions and refresh tokens.

use sqlx::Row;

use super::{Store, StoreError};

/// A user as stored (never the password itself); as the API shows it,
/// without the password hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserRecord {
    pub id: i64,
    /// E-mail, lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `ADMIN`, `ENGINEER` or `VIEWER`.
    pub role: String,
    pub company: Option<String>,
    pub phone: Option<String>,
    /// IANA time zone.
    pub timezone: String,
    /// argon2id PHC string.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub password_hash: String,
    /// Must set a new password before anything else.
    pub must_change_password: bool,
    /// TOTP enrolled.
    pub is_mfa_enabled: bool,
    /// Failed logins in a row.
    pub failed_login_attempts: i64,
    /// Locked until, ms.
    pub account_locked_until: Option<i64>,
    /// Last request, ms.
    pub last_activity: Option<i64>,
    /// Extensible profile attributes (JSON object).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: serde_json::Value,
    /// Created, ms.
    pub created_at: i64,
    /// The e-mail was confirmed through a link sent to it, ms.
    pub email_verified_at: Option<i64>,
    /// The equipment the user may see (none: all of it).
    pub equipment_scope: Option<Vec<String>>,
}

/// What a user may change about themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Display name.
    pub name: String,
    pub company: Option<String>,
    pub phone: Option<String>,
    /// IANA time zone.
    pub timezone: String,
    /// Extensible attributes (a JSON object).
    pub attributes: serde_json::Value,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUserRecord<'a> {
    /// E-mail (lower-cased by the caller).
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Role name.
    pub role: &'a str,
    /// IANA time zone.
    pub timezone: &'a str,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// Must change the password at first login.
    pub must_change_password: bool,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: i64,
    /// Started, ms.
    pub created_at: i64,
    /// Last request, ms.
    pub last_seen_at: i64,
    /// Ends at the latest, ms.
    pub expires_at: i64,
    /// Client address.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
    /// Ended, ms.
    pub revoked_at: Option<i64>,
    /// Why it ended.
    pub revoked_reason: Option<String>,
}

/// What using a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: now spent. Its session and expiry.
    Fresh {
        session_id: String,
        /// When the token expired or expires, ms.
        expires_at: i64,
    },
    /// It was used before: someone replays a rotated token.
    Reused {
        /// The session it belonged to.
        session_id: String,
    },
    /// Not a token we issued.
    Unknown,
}

const USER_COLUMNS: &str = "id, email, name, role, company, phone, timezone, password_hash, \
     must_change_password, is_mfa_enabled, failed_login_attempts, account_locked_until, \
     last_activity, attributes, created_at, email_verified_at, equipment_scope";

fn user_of<R: Row>(r: &R) -> Result<UserRecord, StoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    bool: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let attributes: String = r.try_get(13)?;
    let id: i64 = r.try_get(0)?;
    Ok(UserRecord {
        id,
        email: r.try_get(1)?,
        name: r.try_get(2)?,
        role: r.try_get(3)?,
        company: r.try_get(4)?,
        phone: r.try_get(5)?,
        timezone: r.try_get(6)?,
        password_hash: r.try_get(7)?,
        must_change_password: r.try_get(8)?,
        is_mfa_enabled: r.try_get(9)?,
        failed_login_attempts: r.try_get(10)?,
        account_locked_until: r.try_get(11)?,
        last_activity: r.try_get(12)?,
        attributes: serde_json::from_str(&attributes)
            .map_err(|e| StoreError::Corrupt(format!("user {id}: attributes: {e}")))?,
        created_at: r.try_get(14)?,
        email_verified_at: r.try_get(15)?,
        equipment_scope: scope_of(id, r.try_get(16)?)?,
    })
}

/// An equipment scope as stored: a JSON array of ids, or NULL for all.
fn scope_of(user_id: i64, stored: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    stored
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("user {user_id}: equipment_scope: {e}")))
        })
        .transpose()
}

/// A password kept for the history check.
const INSERT_HISTORY: &str =
    "INSERT INTO password_history (user_id, hash, created_at) VALUES ($1, $2, $3)";

/// A session's next refresh token (by its digest).
const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (hash, session_id, issued_at, expires_at) \
     VALUES ($1, $2, $3, $4)";

const SESSION_COLUMNS: &str =
    "id, user_id, created_at, last_seen_at, expires_at, ip, user_agent, revoked_at, revoked_reason";

fn session_of<R: Row>(r: &R) -> Result<SessionRecord, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SessionRecord {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        created_at: r.try_get(2)?,
        last_seen_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        ip: r.try_get(5)?,
        user_agent: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        revoked_reason: r.try_get(8)?,
    })
}

/// A session with what a request needs of its user.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUser {
    pub user_id: i64,
    /// Their e-mail.
    pub email: String,
    /// Their role now.
    pub role: String,
    /// They must set a new password first.
    pub must_change_password: bool,
    /// The session ends at the latest, ms.
    pub expires_at: i64,
    /// The session ended, ms.
    pub revoked_at: Option<i64>,
    /// The user is deleted.
    pub deleted: bool,
    /// Started, ms.
    pub created_at: i64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client software at login.
    pub user_agent: Option<String>,
    /// The equipment the user may see (none: all of it).
    pub equipment_scope: Option<Vec<String>>,
}

fn session_user_of<R: Row>(r: &R) -> Result<SessionUser, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    bool: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let deleted_at: Option<i64> = r.try_get(6)?;
    let user_id: i64 = r.try_get(0)?;
    Ok(SessionUser {
        user_id,
        email: r.try_get(1)?,
        role: r.try_get(2)?,
        must_change_password: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        revoked_at: r.try_get(5)?,
        deleted: deleted_at.is_some(),
        created_at: r.try_get(7)?,
        ip: r.try_get(8)?,
        user_agent: r.try_get(9)?,
        equipment_scope: scope_of(user_id, r.try_get(10)?)?,
    })
}

impl Store {
    /// Gives a user another role (`ADMIN`, `ENGINEER`, `VIEWER`); false
    /// when there is no such live user.
    pub async fn set_role(&self, id: i64, role: &str) -> Result<bool, StoreError> {
        let text = "UPDATE users SET role = $1 WHERE id = $2 AND deleted_at IS NULL".to_owned();
        run!(self, |q, exec| {
            let done = sqlx::query(q(text))
                .bind(role)
                .bind(id)
                .execute(exec)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// How many users exist (not deleted).
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        let text = "SELECT COUNT(*) FROM users WHERE deleted_at IS NULL".to_owned();
        run!(self, |q, exec| {
            let row = sqlx::query(q(text)).fetch_one(exec).await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    /// Creates a user with their first password in the history; `None`
    /// when a live user has that e-mail.
    pub async fn create_user(
        &self,
        user: &NewUserRecord<'_>,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let insert = "INSERT INTO users (email, name, role, timezone, password_hash, \
             password_changed_at, must_change_password, attributes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, '{}', $6) ON CONFLICT DO NOTHING RETURNING id"
            .to_owned();
        let history = INSERT_HISTORY.to_owned();
        run!(self, |q, exec| {
            let mut tx = exec.begin().await?;
            let id: Option<i64> = sqlx::query_scalar(q(insert))
                .bind(user.email)
                .bind(user.name)
                .bind(user.role)
                .bind(user.timezone)
                .bind(user.password_hash)
                .bind(now_ms)
                .bind(user.must_change_password)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(id) = id {
                sqlx::query(q(history))
                    .bind(id)
                    .bind(user.password_hash)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The live user with this e-mail (lower-cased).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let text =
            format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND deleted_at IS NULL");
        run!(self, |q, exec| {
            match sqlx::query(q(text))
                .bind(email)
                .fetch_optional(exec)
                .await?
            {
                Some(r) => user_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The live user with this id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let text = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
        run!(self, |q, exec| {
            match sqlx::query(q(text)).bind(id).fetch_optional(exec).await? {
                Some(r) => user_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Counts a failed login; locks the account until `lock_until` once
    /// `max_failures` are reached. Returns the failures so far and the lock.
    pub async fn record_login_failure(
        &self,
        id: i64,
        max_failures: i64,
        lock_until: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let text = "UPDATE users SET failed_login_attempts = failed_login_attempts + 1, \
             account_locked_until = CASE WHEN failed_login_attempts + 1 >= $2 THEN $3 \
             ELSE account_locked_until END WHERE id = $1 \
             RETURNING failed_login_attempts, account_locked_until"
            .to_owned();
        run!(self, |q, exec| {
            let row = sqlx::query(q(text))
                .bind(id)
                .bind(max_failures)
                .bind(lock_until)
                .fetch_one(exec)
                .await?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
    }

    /// A successful login: failures reset, activity noted.
    pub async fn record_login_success(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        let text = "UPDATE users SET failed_login_attempts = 0, account_locked_until = NULL, \
             last_activity = $2 WHERE id = $1"
            .to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(id)
                .bind(now_ms)
                .execute(exec)
                .await?;
            Ok(())
        })
    }

    /// Starts a session with its first refresh token.
    pub async fn create_session(
        &self,
        session: &SessionRecord,
        refresh_digest: &str,
        refresh_expires_at: i64,
    ) -> Result<(), StoreError> {
        let insert = format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
        );
        let token = INSERT_REFRESH.to_owned();
        run!(self, |q, exec| {
            let mut tx = exec.begin().await?;
            sqlx::query(q(insert))
                .bind(&session.id)
                .bind(session.user_id)
                .bind(session.created_at)
                .bind(session.last_seen_at)
                .bind(session.expires_at)
                .bind(&session.ip)
                .bind(&session.user_agent)
                .execute(&mut *tx)
                .await?;
            sqlx::query(q(token))
                .bind(refresh_digest)
                .bind(&session.id)
                .bind(session.created_at)
                .bind(refresh_expires_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The session with that id, ended or not; `None` when there is none.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let text = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        run!(self, |q, exec| {
            match sqlx::query(q(text)).bind(id).fetch_optional(exec).await? {
                Some(r) => session_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// A session and its user, in one lookup: what every authenticated
    /// request checks.
    pub async fn session_user(&self, id: &str) -> Result<Option<SessionUser>, StoreError> {
        let text = "SELECT s.user_id, u.email, u.role, u.must_change_password, s.expires_at, \
                    s.revoked_at, u.deleted_at, s.created_at, s.ip, s.user_agent, u.equipment_scope \
                    FROM sessions s JOIN users u ON u.id = s.user_id \
                    WHERE s.id = $1"
            .to_owned();
        run!(self, |q, exec| {
            match sqlx::query(q(text)).bind(id).fetch_optional(exec).await? {
                Some(r) => session_user_of(&r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// A user's sessions not ended, oldest first.
    pub async fn live_sessions(
        &self,
        user_id: i64,
        now_ms: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let text = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 ORDER BY created_at, id"
        );
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(user_id)
                .bind(now_ms)
                .fetch_all(exec)
                .await?
                .iter()
                .map(session_of)
                .collect()
        })
    }

    /// Ends a session (if not ended yet); `true` when it did.
    pub async fn revoke_session(
        &self,
        id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let text = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
             WHERE id = $1 AND revoked_at IS NULL"
            .to_owned();
        let done = run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(id)
                .bind(now_ms)
                .bind(reason)
                .execute(exec)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Spends a refresh token: the first use wins (atomically), a later one
    /// is reported as a reuse.
    pub async fn use_refresh_token(
        &self,
        digest: &str,
        now_ms: i64,
    ) -> Result<RefreshUse, StoreError> {
        let spend = "UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL \
             RETURNING session_id, expires_at"
            .to_owned();
        let find = "SELECT session_id FROM refresh_tokens WHERE hash = $1".to_owned();
        run!(self, |q, exec| {
            if let Some(r) = sqlx::query(q(spend))
                .bind(digest)
                .bind(now_ms)
                .fetch_optional(exec)
                .await?
            {
                return Ok(RefreshUse::Fresh {
                    session_id: r.try_get(0)?,
                    expires_at: r.try_get(1)?,
                });
            }
            let seen: Option<String> = sqlx::query_scalar(q(find))
                .bind(digest)
                .fetch_optional(exec)
                .await?;
            Ok(match seen {
                Some(session_id) => RefreshUse::Reused { session_id },
                None => RefreshUse::Unknown,
            })
        })
    }

    /// Adds the next refresh token of a session and notes its activity.
    pub async fn rotate_refresh_token(
        &self,
        session_id: &str,
        digest: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let token = INSERT_REFRESH.to_owned();
        let seen = "UPDATE sessions SET last_seen_at = $2 WHERE id = $1".to_owned();
        run!(self, |q, exec| {
            let mut tx = exec.begin().await?;
            sqlx::query(q(token))
                .bind(digest)
                .bind(session_id)
                .bind(now_ms)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(q(seen))
                .bind(session_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

impl Store {
    /// The hashes of a user's last `n` passwords, newest first (the current
    /// one included).
    pub async fn password_history(&self, user_id: i64, n: i64) -> Result<Vec<String>, StoreError> {
        let text = "SELECT hash FROM password_history WHERE user_id = $1 \
             ORDER BY created_at DESC LIMIT $2"
            .to_owned();
        run!(self, |q, exec| {
            Ok(sqlx::query_scalar(q(text))
                .bind(user_id)
                .bind(n)
                .fetch_all(exec)
                .await?)
        })
    }

    /// Sets a user's new password (and keeps it in the history); the
    /// forced change, if any, is done.
    pub async fn set_password(
        &self,
        user_id: i64,
        hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let update = "UPDATE users SET password_hash = $2, password_changed_at = $3, \
             must_change_password = FALSE WHERE id = $1"
            .to_owned();
        let history = INSERT_HISTORY.to_owned();
        run!(self, |q, exec| {
            let mut tx = exec.begin().await?;
            sqlx::query(q(update))
                .bind(user_id)
                .bind(hash)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(q(history))
                .bind(user_id)
                .bind(hash)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Ends every live session of a user but `keep`; how many ended.
    pub async fn revoke_other_sessions(
        &self,
        user_id: i64,
        keep: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let text = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id"
            .to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(user_id)
                .bind(keep)
                .bind(now_ms)
                .bind(reason)
                .fetch_all(exec)
                .await?
                .iter()
                .map(|r| Ok(r.try_get::<String, _>(0)?))
                .collect()
        })
    }

    /// Records a session's last request (and its user's).
    pub async fn touch_session(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        let sessions = "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2";
        let users = "UPDATE users SET last_activity = $2 WHERE id = \
                     (SELECT user_id FROM sessions WHERE id = $1) \
                     AND (last_activity IS NULL OR last_activity < $2)";
        for text in [sessions, users] {
            run!(self, |q, exec| {
                sqlx::query(q(text.to_owned()))
                    .bind(id)
                    .bind(at_ms)
                    .execute(exec)
                    .await?
                    .rows_affected()
            });
        }
        Ok(())
    }

    /// Every user not deleted, by id.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let text = format!("SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL ORDER BY id");
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .fetch_all(exec)
                .await?
                .iter()
                .map(user_of)
                .collect()
        })
    }

    /// Marks a user deleted (the row stays, so the audit log stays whole);
    /// false when there is no such live user.
    pub async fn delete_user(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        self.stamp_once("users", "deleted_at", id, now_ms).await
    }

    /// Sets `column` of row `id` of `table` to `at` unless it is set
    /// already (a deletion, a revocation): whether this call set it.
    pub(crate) async fn stamp_once(
        &self,
        table: &'static str,
        column: &'static str,
        id: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        let text = format!("UPDATE {table} SET {column} = $2 WHERE id = $1 AND {column} IS NULL");
        run!(self, |q, exec| {
            let done = sqlx::query(q(text)).bind(id).bind(at).execute(exec).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A user's TOTP secret (confirmed), pending secret (enrolled, not
    /// confirmed) and the last step used.
    pub async fn totp_state(
        &self,
        user_id: i64,
    ) -> Result<(Option<String>, Option<String>, Option<i64>), StoreError> {
        let text =
            "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE id = $1".to_owned();
        run!(self, |q, exec| {
            match sqlx::query(q(text))
                .bind(user_id)
                .fetch_optional(exec)
                .await?
            {
                Some(r) => Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
                None => Ok((None, None, None)),
            }
        })
    }

    /// Keeps a secret enrolled but not yet confirmed.
    pub async fn set_totp_pending(&self, user_id: i64, secret: &str) -> Result<(), StoreError> {
        let text = "UPDATE users SET totp_pending = $2 WHERE id = $1".to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(user_id)
                .bind(secret)
                .execute(exec)
                .await?;
            Ok(())
        })
    }

    /// Turns the second factor on with `secret` (its step `step` used to
    /// confirm it) and these backup codes (by hash), or off (`None`): the
    /// old backup codes go either way.
    pub async fn set_totp(
        &self,
        user_id: i64,
        enabled: Option<(&str, i64, &[String])>,
    ) -> Result<(), StoreError> {
        let user = "UPDATE users SET totp_secret = $2, totp_pending = NULL, totp_last_step = $3, \
                    is_mfa_enabled = $4 WHERE id = $1"
            .to_owned();
        let clear = "DELETE FROM mfa_backup_codes WHERE user_id = $1".to_owned();
        let insert = "INSERT INTO mfa_backup_codes (user_id, hash) VALUES ($1, $2)".to_owned();
        let (secret, step, codes) = match enabled {
            Some((secret, step, codes)) => (Some(secret), Some(step), codes),
            None => (None, None, &[][..]),
        };
        run!(self, |q, exec| {
            let mut tx = exec.begin().await?;
            sqlx::query(q(user.clone()))
                .bind(user_id)
                .bind(secret)
                .bind(step)
                .bind(secret.is_some())
                .execute(&mut *tx)
                .await?;
            sqlx::query(q(clear.clone()))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for hash in codes {
                sqlx::query(q(insert.clone()))
                    .bind(user_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Spends TOTP step `step` for the user: false when it, or a later
    /// one, was used already (a code works once).
    pub async fn use_totp_step(&self, user_id: i64, step: i64) -> Result<bool, StoreError> {
        let text = "UPDATE users SET totp_last_step = $2 WHERE id = $1 \
                    AND (totp_last_step IS NULL OR totp_last_step < $2)"
            .to_owned();
        run!(self, |q, exec| {
            let done = sqlx::query(q(text))
                .bind(user_id)
                .bind(step)
                .execute(exec)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Spends a backup code (by hash): false when it is unknown or used.
    pub async fn use_backup_code(
        &self,
        user_id: i64,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let text = "UPDATE mfa_backup_codes SET used_at = $3 WHERE user_id = $1 AND hash = $2 \
                    AND used_at IS NULL"
            .to_owned();
        run!(self, |q, exec| {
            let done = sqlx::query(q(text))
                .bind(user_id)
                .bind(hash)
                .bind(now_ms)
                .execute(exec)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Keeps a single-use token (by hash) for `purpose`.
    pub async fn create_user_token(
        &self,
        hash: &str,
        user_id: i64,
        purpose: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let text = "INSERT INTO user_tokens (hash, user_id, purpose, created_at, expires_at) \
                    VALUES ($1, $2, $3, $4, $5)"
            .to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(hash)
                .bind(user_id)
                .bind(purpose)
                .bind(now_ms)
                .bind(expires_at)
                .execute(exec)
                .await?;
            Ok(())
        })
    }

    /// The user of a token for `purpose` not used and not expired; with
    /// `spend`, it is used up (atomically: of two at once, one wins).
    pub async fn user_token(
        &self,
        hash: &str,
        purpose: &str,
        now_ms: i64,
        spend: bool,
    ) -> Result<Option<i64>, StoreError> {
        let text = if spend {
            "UPDATE user_tokens SET used_at = $3 WHERE hash = $1 AND purpose = $2 \
             AND used_at IS NULL AND expires_at > $3 RETURNING user_id"
        } else {
            "SELECT user_id FROM user_tokens WHERE hash = $1 AND purpose = $2 \
             AND used_at IS NULL AND expires_at > $3"
        }
        .to_owned();
        run!(self, |q, exec| {
            match sqlx::query(q(text))
                .bind(hash)
                .bind(purpose)
                .bind(now_ms)
                .fetch_optional(exec)
                .await?
            {
                Some(r) => Ok(Some(r.try_get::<i64, _>(0)?)),
                None => Ok(None),
            }
        })
    }

    /// Sets the equipment a user may see (`None`: all of it); false when
    /// there is no such live user.
    pub async fn set_equipment_scope(
        &self,
        user_id: i64,
        scope: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        let stored = scope
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("equipment: {e}")))?;
        let text =
            "UPDATE users SET equipment_scope = $2 WHERE id = $1 AND deleted_at IS NULL".to_owned();
        run!(self, |q, exec| {
            let done = sqlx::query(q(text))
                .bind(user_id)
                .bind(&stored)
                .execute(exec)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Replaces a user's profile: name, company, phone, time zone and
    /// attributes (JSON object); false when there is no such live user.
    pub async fn set_profile(&self, user_id: i64, profile: &Profile) -> Result<bool, StoreError> {
        let text = "UPDATE users SET name = $2, company = $3, phone = $4, timezone = $5, \
                    attributes = $6 WHERE id = $1 AND deleted_at IS NULL"
            .to_owned();
        let attributes = profile.attributes.to_string();
        run!(self, |q, exec| {
            let done = sqlx::query(q(text))
                .bind(user_id)
                .bind(&profile.name)
                .bind(&profile.company)
                .bind(&profile.phone)
                .bind(&profile.timezone)
                .bind(&attributes)
                .execute(exec)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records that the user confirmed their e-mail.
    pub async fn set_email_verified(&self, user_id: i64, now_ms: i64) -> Result<(), StoreError> {
        let text = "UPDATE users SET email_verified_at = $2 WHERE id = $1".to_owned();
        run!(self, |q, exec| {
            sqlx::query(q(text))
                .bind(user_id)
                .bind(now_ms)
                .execute(exec)
                .await?;
            Ok(())
        })
    }
}
