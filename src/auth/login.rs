//! Signing in and out: first-administrator setup, login with lockout and
//! rate limits, refresh-token rotation, logout, and changing one's password.

use std::sync::{Arc, Mutex};

use hydrowatch_actors::clock::now_ms;
use serde::Serialize;

use super::core::{attempted, event, login_spec, stored_role, AuthCore};
use super::roles::Role;
use super::tokens::{self, Claims};
use super::{password, AuthError, Mfa, NewUser, Principal, Users};
use crate::audit::AuditEvent;
use crate::store::users::{RefreshUse, SessionRecord, UserRecord};

/// What a login or refresh hands out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    /// The access token (JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token: use it once to get the next pair.
    pub refresh_token: String,
    pub session_id: String,
    /// The user must set a new password first.
    pub must_change_password: bool,
}

/// Starts and ends sessions. Holds the users (setup creates the first
/// administrator) and the second factor (login checks it).
pub struct Logins {
    core: Arc<AuthCore>,
    users: Users,
    mfa: Mfa,
    /// The one-time code that creates the first administrator, while no
    /// user exists.
    setup: Mutex<Option<String>>,
}

/// One login attempt: every audit event of it says from where it came.
struct Attempt {
    /// The e-mail as typed (normalised): what a failure is recorded under.
    email: String,
    ip: Option<String>,
    user_agent: Option<String>,
    now: i64,
}

impl Attempt {
    /// `e`, as coming from this attempt's client.
    fn with_client(&self, e: AuditEvent) -> AuditEvent {
        AuditEvent {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            ..e
        }
    }

    fn failed(&self, user_id: Option<i64>, reason: &str, failures: Option<i64>) -> AuditEvent {
        let changes =
            serde_json::json!({"email": self.email, "reason": reason, "failures": failures});
        let id = user_id.map(|id| id.to_string());
        self.with_client(event(user_id, "login_failed", "user", id, changes))
    }
}

impl Logins {
    pub(super) fn new(core: Arc<AuthCore>, users: Users, mfa: Mfa) -> Logins {
        Logins {
            core,
            users,
            mfa,
            setup: Mutex::new(None),
        }
    }

    /// While no user exists: the one-time code that lets the first
    /// administrator be created from the wallboard (printed in the log at
    /// start, as a link), so that a fresh install needs no command line.
    /// `None` once a user exists.
    pub async fn setup_code(&self) -> Result<Option<String>, AuthError> {
        if self.core.store.count_users().await? > 0 {
            return Ok(None);
        }
        let mut slot = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some(slot.get_or_insert_with(tokens::random_token).clone()))
    }

    /// Creates the first administrator with the setup code and signs them
    /// in. The code works once, and only while no user exists.
    pub async fn set_up(
        &self,
        code: &str,
        admin: &NewUser,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Issued, AuthError> {
        // Taken under the lock: two requests with the code cannot both pass.
        let taken = {
            let mut slot = self.setup.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_deref() {
                Some(expected) if crate::constant_time_eq(code.as_bytes(), expected.as_bytes()) => {
                    slot.take()
                }
                _ => None,
            }
        };
        let Some(taken) = taken else {
            tracing::warn!(event = "setup_refused", "first-administrator setup refused");
            return Err(AuthError::SetupRefused);
        };
        if self.core.store.count_users().await? > 0 {
            return Err(AuthError::SetupRefused);
        }
        let admin = NewUser {
            role: Role::Admin,
            must_change_password: false,
            ..admin.clone()
        };
        if let Err(e) = self.users.add(&admin, None).await {
            // A password the policy refuses must not burn the code.
            *self.setup.lock().unwrap_or_else(|e| e.into_inner()) = Some(taken);
            return Err(e);
        }
        tracing::info!(event = "setup", "first administrator created");
        self.login(&admin.email, &admin.password, ip, user_agent)
            .await
    }

    /// Checks an e-mail and password (of an account without a second
    /// factor); starts a session.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Issued, AuthError> {
        self.login_with(email, password, None, ip, user_agent).await
    }

    /// Checks an e-mail, password and, for an account with a second
    /// factor, `code` (a TOTP code or a backup code); starts a session.
    pub async fn login_with(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Issued, AuthError> {
        self.core.limit_login(email, ip.as_deref()).await?;
        let attempt = Attempt {
            now: now_ms(),
            email: attempted(email),
            ip,
            user_agent,
        };
        let user = self.core.user_by_email(email).await?;
        let user = self.check_password(&attempt, user, password).await?;
        self.check_second_factor(&attempt, &user, code).await?;
        self.core
            .store
            .record_login_success(user.id, attempt.now)
            .await?;
        self.end_oldest_sessions(user.id, attempt.now).await?;
        self.start_session(&attempt, &user).await
    }

    /// The user if the password is theirs and the account is not locked;
    /// each refusal takes as long as a wrong password and gives one answer.
    async fn check_password(
        &self,
        attempt: &Attempt,
        user: Option<UserRecord>,
        password: &str,
    ) -> Result<UserRecord, AuthError> {
        let Some(user) = user else {
            password::verify(password, &password::decoy(&self.core.settings.hash));
            tracing::info!(
                event = "login_failed",
                reason = "unknown_email",
                "login refused"
            );
            self.core
                .audit(attempt.failed(None, "unknown_email", None))
                .await;
            return Err(AuthError::InvalidCredentials);
        };
        if user.account_locked_until.is_some_and(|t| t > attempt.now) {
            password::verify(password, &password::decoy(&self.core.settings.hash));
            tracing::warn!(
                event = "login_failed",
                user = user.id,
                reason = "locked",
                "login refused"
            );
            self.core
                .audit(attempt.failed(Some(user.id), "locked", None))
                .await;
            return Err(AuthError::InvalidCredentials);
        }
        if !password::verify(password, &user.password_hash) {
            self.wrong_password(attempt, user.id).await?;
            return Err(AuthError::InvalidCredentials);
        }
        Ok(user)
    }

    /// Counts and records a wrong password; the failure that locks the
    /// account is recorded as such too.
    async fn wrong_password(&self, attempt: &Attempt, user_id: i64) -> Result<(), AuthError> {
        let max = i64::from(self.core.settings.max_failures);
        let (failures, locked) = self.core.count_failure(user_id, attempt.now).await?;
        tracing::info!(
            event = "login_failed",
            user = user_id,
            failures,
            "login refused"
        );
        self.core
            .audit(attempt.failed(Some(user_id), "wrong_password", Some(failures)))
            .await;
        if locked.is_some_and(|t| t > attempt.now) && failures == max {
            tracing::warn!(
                event = "account_locked",
                user = user_id,
                failures,
                "account locked after failed logins"
            );
            let changes = serde_json::json!({"failures": failures, "until_ms": locked});
            let id = Some(user_id.to_string());
            self.core
                .audit(attempt.with_client(event(
                    Some(user_id),
                    "account_locked",
                    "user",
                    id,
                    changes,
                )))
                .await;
        }
        Ok(())
    }

    /// For an account with a second factor: `code` must be a valid one; a
    /// wrong one counts towards the lockout like a wrong password.
    async fn check_second_factor(
        &self,
        attempt: &Attempt,
        user: &UserRecord,
        code: Option<&str>,
    ) -> Result<(), AuthError> {
        if !user.is_mfa_enabled {
            return Ok(());
        }
        let Some(code) = code else {
            tracing::info!(
                event = "login_mfa_required",
                user = user.id,
                "login waits for the second factor"
            );
            return Err(AuthError::MfaRequired);
        };
        if !self.mfa.check(user.id, code).await? {
            let (failures, _) = self.core.count_failure(user.id, attempt.now).await?;
            self.core
                .audit(attempt.failed(Some(user.id), "wrong_mfa_code", Some(failures)))
                .await;
            return Err(AuthError::InvalidMfaCode);
        }
        Ok(())
    }

    /// Makes room for one more session: the oldest beyond
    /// `max_sessions_per_user` end.
    async fn end_oldest_sessions(&self, user_id: i64, now: i64) -> Result<(), AuthError> {
        let live = self.core.store.live_sessions(user_id, now).await?;
        let excess = (live.len() + 1).saturating_sub(self.core.settings.max_sessions_per_user);
        for old in live.iter().take(excess) {
            self.core
                .store
                .revoke_session(&old.id, "session_limit", now)
                .await?;
            self.core.end_live(&old.id, "session_limit").await;
            let changes = serde_json::json!({"reason": "session_limit"});
            self.core
                .audit(event(
                    Some(user_id),
                    "session.end",
                    "session",
                    Some(old.id.clone()),
                    changes,
                ))
                .await;
        }
        Ok(())
    }

    async fn start_session(
        &self,
        attempt: &Attempt,
        user: &UserRecord,
    ) -> Result<Issued, AuthError> {
        let now = attempt.now;
        let refresh = tokens::random_token();
        let session = SessionRecord {
            id: tokens::random_token(),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + (self.core.settings.refresh_ttl_secs * 1000) as i64,
            ip: attempt.ip.clone(),
            user_agent: attempt.user_agent.clone(),
            revoked_at: None,
            revoked_reason: None,
        };
        self.core
            .store
            .create_session(&session, &tokens::digest(&refresh), session.expires_at)
            .await?;
        tracing::info!(event = "login", user = user.id, session = %session.id, "logged in");
        self.core.touch(&session.id, || login_spec(&session)).await;
        let changes = serde_json::json!({"email": user.email});
        let id = Some(session.id.clone());
        self.core
            .audit(attempt.with_client(event(Some(user.id), "login", "session", id, changes)))
            .await;
        self.issue(user, &session.id, refresh, now)
    }

    /// Trades a refresh token for a new pair. A second use of one ends its
    /// session: someone holds a copy.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, AuthError> {
        let now = now_ms();
        let invalid = || AuthError::InvalidToken("the refresh token is not valid".into());
        let spent = self
            .core
            .store
            .use_refresh_token(&tokens::digest(refresh_token), now)
            .await?;
        let session_id = match spent {
            RefreshUse::Unknown => return Err(invalid()),
            RefreshUse::Reused { session_id } => {
                self.end_reused(session_id, now).await?;
                return Err(AuthError::RefreshReused);
            }
            RefreshUse::Fresh { expires_at, .. } if expires_at <= now => return Err(invalid()),
            RefreshUse::Fresh { session_id, .. } => session_id,
        };
        let session = self
            .core
            .live_session(&session_id, now)
            .await?
            .ok_or_else(invalid)?;
        let user = self
            .core
            .store
            .user_by_id(session.user_id)
            .await?
            .ok_or_else(invalid)?;
        self.core.touch(&session.id, || login_spec(&session)).await;
        let refresh = tokens::random_token();
        self.core
            .store
            .rotate_refresh_token(
                &session.id,
                &tokens::digest(&refresh),
                now,
                session.expires_at,
            )
            .await?;
        self.issue(&user, &session.id, refresh, now)
    }

    /// A rotated refresh token came back: whoever holds a copy is out, and
    /// so is the session's owner.
    async fn end_reused(&self, session_id: String, now: i64) -> Result<(), AuthError> {
        self.core
            .store
            .revoke_session(&session_id, "refresh_token_reuse", now)
            .await?;
        self.core.end_live(&session_id, "refresh_token_reuse").await;
        tracing::warn!(event = "refresh_token_reuse", session = %session_id, "a rotated refresh token was used again; session ended");
        let user_id = self
            .core
            .store
            .session(&session_id)
            .await?
            .map(|s| s.user_id);
        let changes = serde_json::json!({"session_ended": true});
        self.core
            .audit(event(
                user_id,
                "refresh_token_reuse",
                "session",
                Some(session_id),
                changes,
            ))
            .await;
        Ok(())
    }

    /// Changes the caller's password: the current one must be right (a
    /// wrong one counts towards the lockout, as at login), the new one must
    /// meet the policy and not be one of the last five. The caller's other
    /// sessions end: whoever knew the old password is out.
    pub async fn change_password(
        &self,
        who: &Principal,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        let (user_id, session_id) = who.user_session()?;
        let store = &self.core.store;
        let user = store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("the user no longer exists".into()))?;
        let id = Some(user.id.to_string());
        if !password::verify(current, &user.password_hash) {
            let (failures, _) = self.core.count_failure(user.id, now).await?;
            let changes =
                serde_json::json!({"reason": "wrong_current_password", "failures": failures});
            self.core
                .audit(event(
                    Some(user.id),
                    "password.change_failed",
                    "user",
                    id,
                    changes,
                ))
                .await;
            return Err(AuthError::WrongPassword);
        }
        let history = store
            .password_history(user.id, password::HISTORY as i64)
            .await?;
        password::check(new, &user.email, &history)?;
        let hash = password::hash(new, &self.core.settings.hash)?;
        store.set_password(user.id, &hash, now).await?;
        self.core.user_changed(user.id).await;
        let ended = store
            .revoke_other_sessions(user.id, session_id, "password_changed", now)
            .await?;
        for other in &ended {
            self.core.end_live(other, "password_changed").await;
        }
        let changes = serde_json::json!({"other_sessions_ended": ended.len()});
        self.core
            .audit(event(Some(user.id), "password.change", "user", id, changes))
            .await;
        Ok(())
    }

    /// Ends the caller's session.
    pub async fn logout(&self, who: &Principal) -> Result<(), AuthError> {
        let (user_id, session_id) = who.user_session()?;
        self.core
            .store
            .revoke_session(session_id, "logout", now_ms())
            .await?;
        self.core.end_live(session_id, "logout").await;
        tracing::info!(event = "logout", session = %session_id, "logged out");
        let session = Some(session_id.to_owned());
        self.core
            .audit(event(
                Some(user_id),
                "logout",
                "session",
                session,
                serde_json::Value::Null,
            ))
            .await;
        Ok(())
    }

    /// A signed access token for the session, with the refresh token that
    /// comes with it.
    fn issue(
        &self,
        user: &UserRecord,
        session_id: &str,
        refresh: String,
        now: i64,
    ) -> Result<Issued, AuthError> {
        let settings = &self.core.settings;
        let role = stored_role(user.id, &user.role)?;
        let iat = now / 1000;
        let exp = iat + settings.access_ttl_secs as i64;
        let claims = Claims::new(user.id, role, session_id, iat, exp);
        Ok(Issued {
            access_token: self.core.keys.sign(&claims),
            token_type: "Bearer",
            expires_in: settings.access_ttl_secs,
            refresh_token: refresh,
            session_id: session_id.to_owned(),
            must_change_password: user.must_change_password,
        })
    }
}
