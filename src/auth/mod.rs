//! Identity: users with roles, argon2id passwords under a policy, logins
//! that start a session with a short-lived access JWT and an opaque refresh
//! token rotated on every use (a replayed one ends the session), lockout
//! after repeated failures, and logout.
//!
//! A login answers the same for an unknown e-mail, a wrong password and a
//! locked account, and takes as long (a decoy hash is verified), so it tells
//! nobody which e-mails exist.

pub mod password;
pub mod roles;
pub mod tokens;
pub mod totp;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use hydrowatch_actors::clock::now_ms;

use crate::audit::{AuditEvent, AuditLog};
use crate::shared::{Rate, Shared};
use crate::store::users::{
    NewUserRecord, Profile, RefreshUse, SessionRecord, SessionUser, UserRecord,
};
use crate::store::{Store, StoreError};
use password::{HashCost, PasswordError};
use roles::Role;
use tokens::{Claims, SigningKey, TokenError, TokenKeys};

/// `[auth]` of `hydrowatch.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Signing keys of access tokens. None configured: a random key is made
    /// at start (tokens then do not outlive the process; a warning says so).
    pub keys: Vec<SigningKey>,
    /// The key new tokens are signed with.
    pub active_key: String,
    /// Lifetime of an access token, s.
    pub access_ttl_secs: u64,
    /// Lifetime of a session and its refresh tokens, s.
    pub refresh_ttl_secs: u64,
    /// Failed logins in a row before the account locks…
    pub max_failures: u32,
    /// …for this long, s.
    pub lockout_secs: u64,
    /// Live sessions per user; a new login ends the oldest beyond it.
    pub max_sessions_per_user: usize,
    /// A session without a request (token renewals count) for this long
    /// ends, s.
    pub idle_timeout_secs: u64,
    /// Logins from one address (all e-mails together).
    pub login_per_ip: Rate,
    /// Logins for one e-mail (from all addresses together).
    pub login_per_user: Rate,
    /// With Redis: a session checked in the database is trusted this long,
    /// s, while Redis says it is not ended and its user not changed.
    pub session_cache_secs: u64,
    /// A password-reset link works this long, s.
    pub reset_ttl_secs: u64,
    /// An address-verification link works this long, s.
    pub verification_ttl_secs: u64,
    /// argon2id cost of new password hashes.
    pub hash: HashCost,
    /// A bearer token that acts as an administrator without signing in,
    /// for when no admin can sign in (lost passwords, a broken database of
    /// users). Empty (the default): off. When set (32+ characters, from the
    /// environment: `HYDROWATCH_AUTH__BREAK_GLASS_TOKEN`), every start and
    /// every use is logged as a warning and each use is audited.
    pub break_glass_token: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            keys: Vec::new(),
            active_key: String::new(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 86_400,
            max_failures: 5,
            lockout_secs: 900,
            max_sessions_per_user: 5,
            idle_timeout_secs: 1800,
            login_per_ip: Rate {
                burst: 20,
                per_min: 10,
            },
            login_per_user: Rate {
                burst: 10,
                per_min: 5,
            },
            session_cache_secs: 30,
            reset_ttl_secs: 3600,
            verification_ttl_secs: 86_400,
            hash: HashCost::default(),
            break_glass_token: String::new(),
        }
    }
}

impl AuthSettings {
    /// Checks the settings (at start-up).
    pub fn validate(&self) -> Result<(), String> {
        if self.access_ttl_secs == 0 || self.access_ttl_secs > 86_400 {
            return Err("auth.access_ttl_secs: between 1 and 86400".into());
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            return Err("auth.refresh_ttl_secs: at least auth.access_ttl_secs".into());
        }
        if self.idle_timeout_secs == 0 {
            return Err("auth.idle_timeout_secs: at least 1".into());
        }
        self.login_per_ip.validate("auth.login_per_ip")?;
        self.login_per_user.validate("auth.login_per_user")?;
        if self.session_cache_secs > self.access_ttl_secs {
            return Err("auth.session_cache_secs: at most auth.access_ttl_secs".into());
        }
        if self.max_failures == 0 || self.max_sessions_per_user == 0 {
            return Err("auth.max_failures and auth.max_sessions_per_user: at least 1".into());
        }
        if !self.break_glass_token.is_empty() && self.break_glass_token.len() < 32 {
            return Err("auth.break_glass_token: empty (off) or at least 32 characters".into());
        }
        self.hash
            .validate()
            .map_err(|e| format!("auth.hash: {e}"))?;
        if !self.keys.is_empty() {
            TokenKeys::new(&self.keys, &self.active_key).map_err(|e| format!("auth: {e}"))?;
        }
        Ok(())
    }
}

/// Why a login, refresh or token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong e-mail or password, or the account is locked (one answer for all).
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// No token, or one that is malformed, foreign, expired or of an ended
    /// session.
    #[error("{0}")]
    InvalidToken(String),
    /// The current password given to change it is wrong.
    #[error("that is not the current password")]
    WrongPassword,
    /// The request needs a signed-in user's session (the break-glass token
    /// has none).
    #[error("this needs a signed-in user; the break-glass token has no user or session")]
    NotAUser,
    /// The first-administrator setup code is wrong, used, or users exist.
    #[error("first-time setup is not open with that code: sign in, or create users with `hydrowatch user add`")]
    SetupRefused,
    /// The password was right; the second factor is missing.
    #[error("this account needs a code from its authenticator app (or a backup code) as `code`")]
    MfaRequired,
    /// The second factor is wrong, or was used already.
    #[error("the code is not valid (wrong, expired or used already)")]
    InvalidMfaCode,
    /// This install cannot do that (e-mail not configured).
    #[error("{0}")]
    Unsupported(String),
    /// Too many logins from this address or for this e-mail: retry after
    /// this long.
    #[error("too many sign-in attempts; retry in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
    /// A refresh token was used twice: its session is ended.
    #[error("this refresh token was already used; the session is ended")]
    RefreshReused,
    /// A new password does not meet the policy.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A user with that e-mail exists.
    #[error("a user with that e-mail exists")]
    EmailTaken,
    /// Bad input (e-mail, name, role).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    /// The session.
    pub session_id: String,
    /// The user must set a new password first.
    pub must_change_password: bool,
}

/// How a principal proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An access token of this live session.
    Session(String),
    /// The configured break-glass token.
    BreakGlass,
    /// An API key, by id.
    ApiKey(i64),
}

/// Who is asking: a user from a valid access token of a live session, or
/// the break-glass administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id (`None`: break-glass).
    pub user_id: Option<i64>,
    /// How the caller is named in alerts, silences and rules they act on:
    /// the user's e-mail, or `break-glass`.
    pub label: String,
    /// Their role now (read with the session, so a changed role holds at
    /// once, not when the token expires).
    pub role: Role,
    /// How they signed in.
    pub credential: Credential,
    /// They must set a new password before anything else.
    pub must_change_password: bool,
    /// An API key's scopes: it may do only these, and only what its
    /// maker's role allows (`None`: what the role allows).
    pub scopes: Option<Vec<roles::Permission>>,
    /// The equipment the user may see (`None`: all of it).
    pub equipment: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl Principal {
    /// Whether the principal may do `permission`.
    pub fn allows(&self, permission: roles::Permission) -> bool {
        self.role.allows(permission)
            && self
                .scopes
                .as_ref()
                .is_none_or(|scopes| scopes.contains(&permission))
    }

    /// Whether the principal may see equipment `id`.
    pub fn sees(&self, id: &str) -> bool {
        self.equipment
            .as_ref()
            .is_none_or(|scope| scope.contains(id))
    }

    /// The signed-in user and their session; break-glass has neither.
    pub fn user_session(&self) -> Result<(i64, &str), AuthError> {
        match (&self.credential, self.user_id) {
            (Credential::Session(sid), Some(user)) => Ok((user, sid)),
            _ => Err(AuthError::NotAUser),
        }
    }
}

/// What every API key starts with: tells it from an access token (JWT).
pub const API_KEY_PREFIX: &str = "hwk_";

/// An API key to make.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// What it is for (1 to 100 characters).
    pub name: String,
    /// Permission names, at least one; never `users:manage` (a key does
    /// not manage users or keys).
    pub scopes: Vec<String>,
    /// It stops working after this many days (none: never).
    pub expires_in_days: Option<u32>,
    /// Its own rate limit (none: 60 at once, then 600 a minute).
    pub rate: Option<Rate>,
}

/// A key just made: the key itself is shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    /// The key, for `Authorization: Bearer`; only its hash is kept.
    pub key: String,
    /// What is stored about it.
    pub record: crate::store::api_keys::ApiKeyRecord,
}

/// Uses of API keys not yet written: at most one write a second per key.
#[derive(Default)]
struct KeyUses {
    pending: std::sync::Mutex<std::collections::HashMap<i64, (i64, i64)>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`, so
/// that null clears it and leaving it out keeps it.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A change of one's own profile: the fields given replace the stored ones
/// (`company` and `phone` may be set to null).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// Display name.
    pub name: Option<String>,
    /// Company.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
    /// Phone.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Extensible attributes: a JSON object.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// A session as its user or an admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// Started, ms since the epoch.
    pub started_ms: i64,
    /// Last request, ms since the epoch.
    pub last_activity_ms: i64,
    /// Ends at the latest (unless renewed by use), ms since the epoch.
    pub expires_ms: i64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client software at login.
    pub user_agent: Option<String>,
    /// WebSockets open with it.
    pub websockets: usize,
    /// The session of this request.
    pub current: bool,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// E-mail.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The password (checked against the policy, then hashed).
    pub password: String,
    /// Must change it at first login.
    pub must_change_password: bool,
}

/// Logins, tokens and sessions.
pub struct Auth {
    settings: AuthSettings,
    keys: TokenKeys,
    store: Store,
    audit: Arc<AuditLog>,
    /// The one-time code that creates the first administrator, while no
    /// user exists.
    setup: std::sync::Mutex<Option<String>>,
    /// The supervision tree, once it runs: sessions are login actors there.
    tree: std::sync::OnceLock<hydrowatch_actors::Tree>,
    /// Revocations, user changes and rate limits across nodes.
    shared: Arc<Shared>,
    /// With Redis: sessions checked in the database lately, by id.
    cache: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    /// API key uses to count.
    key_uses: Arc<KeyUses>,
    /// Where account e-mails go out, and the link base (`notify.base_url`).
    mail: Option<(Arc<crate::notify::email::Mailer>, String)>,
}

/// What a login actor starts with, from the stored session.
fn login_spec(session: &SessionRecord) -> hydrowatch_actors::login::LoginSpec {
    hydrowatch_actors::login::LoginSpec {
        session_id: session.id.clone(),
        user_id: session.user_id,
        ip: session.ip.clone(),
        user_agent: session.user_agent.clone(),
        started_ms: session.created_at,
    }
}

/// Backup codes made when the second factor is turned on.
const BACKUP_CODES: usize = 10;

/// A backup code as typed: lower case, without spaces or dashes.
fn normalise_backup_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What enrolling a second factor hands out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32, for typing into an authenticator app.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

/// A session as the database said, and when it said it.
#[derive(Clone)]
struct Cached {
    session: SessionUser,
    at_ms: i64,
    checked: std::time::Instant,
}

/// How far nodes' clocks may disagree when a user change is compared with
/// a cached session.
const CLOCK_SKEW_MS: i64 = 5_000;

/// The session store as the login actors' ledger: an idle session is
/// revoked and audited, and activity is recorded.
pub struct StoredSessions {
    store: Store,
    audit: Arc<AuditLog>,
    shared: Arc<Shared>,
    revoked_for: std::time::Duration,
}

impl hydrowatch_actors::login::SessionLedger for StoredSessions {
    fn end<'a>(
        &'a self,
        session_id: &'a str,
        reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let now = now_ms();
            let user = self
                .store
                .session(session_id)
                .await
                .map_err(|e| e.to_string())?
                .map(|s| s.user_id);
            let ended = self
                .store
                .revoke_session(session_id, reason, now)
                .await
                .map_err(|e| e.to_string())?;
            if ended {
                self.shared.revoke(session_id, self.revoked_for).await;
                let changes = serde_json::json!({"reason": reason});
                let e = event(
                    user,
                    "session.end",
                    "session",
                    Some(session_id.to_owned()),
                    changes,
                );
                if let Err(e) = self.audit.record(e, now).await {
                    metrics::counter!("hydrowatch_audit_failures_total").increment(1);
                    tracing::error!(error = %e, "audit event not recorded");
                }
            }
            Ok(())
        })
    }

    fn touch<'a>(
        &'a self,
        session_id: &'a str,
        at_ms: i64,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.store
                .touch_session(session_id, at_ms)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// An audit event about `resource_type`/`resource_id` by `user_id`.
fn event(
    user_id: Option<i64>,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    changes: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        user_id,
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id,
        changes,
        ip: None,
        user_agent: None,
    }
}

/// A plausible e-mail address, lower-cased.
fn email_of(raw: &str) -> Result<String, AuthError> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if ok {
        Ok(email)
    } else {
        Err(AuthError::Invalid {
            field: "email",
            reason: "not an e-mail address".into(),
        })
    }
}

impl Auth {
    /// Logins and tokens over `store`; security events go to `audit`.
    pub fn new(
        settings: AuthSettings,
        store: Store,
        audit: Arc<AuditLog>,
        shared: Arc<Shared>,
    ) -> Result<Auth, String> {
        let keys = if settings.keys.is_empty() {
            tracing::warn!("no auth.keys configured: access tokens are signed with a key made at start and end with the process");
            TokenKeys::new(
                &[SigningKey {
                    id: "ephemeral".into(),
                    secret: tokens::random_token(),
                }],
                "ephemeral",
            )?
        } else {
            TokenKeys::new(&settings.keys, &settings.active_key)?
        };
        if !settings.break_glass_token.is_empty() {
            tracing::warn!(
                event = "break_glass_enabled",
                "auth.break_glass_token is set: whoever holds it acts as an administrator; unset it once an admin can sign in"
            );
        }
        Ok(Auth {
            settings,
            keys,
            store,
            audit,
            setup: std::sync::Mutex::new(None),
            tree: std::sync::OnceLock::new(),
            shared,
            cache: Default::default(),
            key_uses: Default::default(),
            mail: None,
        })
    }

    /// Account e-mails (password reset, address verification) go out
    /// through `mailer`, with links under `base_url`.
    pub fn set_mail(&mut self, mailer: Arc<crate::notify::email::Mailer>, base_url: &str) {
        self.mail = Some((mailer, base_url.trim_end_matches('/').to_owned()));
    }

    /// Sessions become login actors of `tree` from now on.
    pub fn attach_tree(&self, tree: hydrowatch_actors::Tree) {
        let _ = self.tree.set(tree);
    }

    /// The login actors' settings from `[auth]`.
    pub fn login_settings(&self) -> hydrowatch_actors::login::LoginSettings {
        hydrowatch_actors::login::LoginSettings {
            ledger: Arc::new(StoredSessions {
                store: self.store.clone(),
                audit: self.audit.clone(),
                shared: self.shared.clone(),
                revoked_for: self.revoked_for(),
            }),
            idle_timeout: std::time::Duration::from_secs(self.settings.idle_timeout_secs),
            touch_every: std::time::Duration::from_secs(60),
        }
    }

    /// Tells the session's login actor of a request (starting it if needed).
    /// The session is valid whether or not that works: the actor only
    /// holds what is live about it.
    async fn touch(
        &self,
        session_id: &str,
        spec: impl FnOnce() -> hydrowatch_actors::login::LoginSpec,
    ) {
        if let Some(tree) = self.tree.get() {
            if let Err(e) = tree.touch_login(session_id, now_ms(), spec).await {
                tracing::warn!(error = %e, "no login actor for the session");
            }
        }
    }

    /// A session was ended (already recorded in the database): every node
    /// is told, and its actor closes its WebSockets with `reason` and stops.
    async fn end_live(&self, session_id: &str, reason: &str) {
        self.cache_lock().remove(session_id);
        self.shared.revoke(session_id, self.revoked_for()).await;
        if let Some(tree) = self.tree.get() {
            tree.end_login(session_id, reason);
        }
    }

    /// A user changed (role, deletion, password): every node reads their
    /// sessions from the database again.
    async fn user_changed(&self, user_id: i64) {
        self.cache_lock()
            .retain(|_, c| c.session.user_id != user_id);
        // Open WebSockets were authorised under the old rules.
        if let Some(tree) = self.tree.get() {
            tree.reauthorise_user(user_id);
        }
        let ttl = std::time::Duration::from_secs(self.settings.session_cache_secs)
            + std::time::Duration::from_millis(2 * CLOCK_SKEW_MS as u64);
        self.shared.user_changed(user_id, now_ms(), ttl).await;
    }

    /// How long an ended session is remembered in Redis: as long as its
    /// access tokens could be presented.
    fn revoked_for(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.access_ttl_secs + 60)
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session, from the cache when Redis vouches that it did not end
    /// and its user did not change since; else from the database.
    async fn session_user(
        &self,
        session_id: &str,
        user_id: i64,
    ) -> Result<Option<SessionUser>, AuthError> {
        let fresh = std::time::Duration::from_secs(self.settings.session_cache_secs);
        let hit = self
            .cache_lock()
            .get(session_id)
            .filter(|c| c.checked.elapsed() < fresh)
            .cloned();
        if let Some(hit) = hit {
            match self.shared.check(session_id, user_id).await {
                Some((true, _)) => {
                    self.cache_lock().remove(session_id);
                    return Err(AuthError::InvalidToken("the session has ended".into()));
                }
                Some((false, changed)) if changed.is_none_or(|c| c < hit.at_ms - CLOCK_SKEW_MS) => {
                    metrics::counter!("hydrowatch_session_cache_hits_total").increment(1);
                    return Ok(Some(hit.session));
                }
                _ => {}
            }
        }
        let at_ms = now_ms();
        let found = self.store.session_user(session_id).await?;
        if let Some(session) = &found {
            if self.shared.has_redis() {
                let mut cache = self.cache_lock();
                if cache.len() >= 100_000 {
                    cache.retain(|_, c| c.checked.elapsed() < fresh);
                }
                cache.insert(
                    session_id.to_owned(),
                    Cached {
                        session: session.clone(),
                        at_ms,
                        checked: std::time::Instant::now(),
                    },
                );
            }
        }
        Ok(found)
    }

    /// Records a security event about user `user_id`, by `by`.
    async fn audit_user(
        &self,
        by: Option<i64>,
        action: &str,
        user_id: i64,
        changes: serde_json::Value,
    ) {
        self.audit(event(
            by,
            action,
            "user",
            Some(user_id.to_string()),
            changes,
        ))
        .await;
    }

    /// Records a security event. The event has happened whether or not it
    /// is recorded: a failure is logged loudly, not returned.
    async fn audit(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(e) = self.audit.record(event, now_ms()).await {
            metrics::counter!("hydrowatch_audit_failures_total").increment(1);
            tracing::error!(error = %e, %action, "audit event not recorded");
        }
    }

    /// Creates a user (the first admin comes from `hydrowatch user add`;
    /// there is no default password). `by`: the admin creating it (`None`
    /// from the command line).
    pub async fn add_user(&self, user: &NewUser, by: Option<i64>) -> Result<i64, AuthError> {
        let email = email_of(&user.email)?;
        let name = user.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AuthError::Invalid {
                field: "name",
                reason: "1 to 200 characters".into(),
            });
        }
        password::check(&user.password, &email, &[])?;
        let hash = password::hash(&user.password, &self.settings.hash)?;
        let record = NewUserRecord {
            email: &email,
            name,
            role: user.role.as_str(),
            timezone: "UTC",
            password_hash: &hash,
            must_change_password: user.must_change_password,
        };
        let id = self
            .store
            .create_user(&record, now_ms())
            .await?
            .ok_or(AuthError::EmailTaken)?;
        let changes = serde_json::json!({"email": email, "role": user.role});
        self.audit_user(by, "user.create", id, changes).await;
        Ok(id)
    }

    /// While no user exists: the one-time code that lets the first
    /// administrator be created from the wallboard (printed in the log at
    /// start, as a link), so that a fresh install needs no command line.
    /// `None` once a user exists.
    pub async fn setup_code(&self) -> Result<Option<String>, AuthError> {
        if self.store.count_users().await? > 0 {
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
        if self.store.count_users().await? > 0 {
            return Err(AuthError::SetupRefused);
        }
        let admin = NewUser {
            role: Role::Admin,
            must_change_password: false,
            ..admin.clone()
        };
        if let Err(e) = self.add_user(&admin, None).await {
            // A password the policy refuses must not burn the code.
            *self.setup.lock().unwrap_or_else(|e| e.into_inner()) = Some(taken);
            return Err(e);
        }
        tracing::info!(event = "setup", "first administrator created");
        self.login(&admin.email, &admin.password, ip, user_agent)
            .await
    }

    /// Takes a token from the address's and the e-mail's login buckets
    /// (shared across nodes with Redis). The e-mail's bucket is spent alike
    /// whether or not it belongs to a user.
    async fn limit_login(&self, email: &str, ip: Option<&str>) -> Result<(), AuthError> {
        let attempted: String = email.trim().to_lowercase().chars().take(254).collect();
        let mut buckets = vec![(
            format!("login-user:{attempted}"),
            self.settings.login_per_user,
        )];
        if let Some(ip) = ip {
            buckets.push((format!("login-ip:{ip}"), self.settings.login_per_ip));
        }
        for (bucket, rate) in buckets {
            if let Err(wait) = self.shared.take(&bucket, rate).await {
                metrics::counter!("hydrowatch_login_rate_limited_total").increment(1);
                tracing::warn!(event = "login_rate_limited", %bucket, "login refused: rate limit");
                return Err(AuthError::RateLimited(wait));
            }
        }
        Ok(())
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
        self.limit_login(email, ip.as_deref()).await?;
        let now = now_ms();
        let user = match email_of(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let attempted: String = email.trim().to_lowercase().chars().take(254).collect();
        let from = |mut e: AuditEvent| {
            e.ip = ip.clone();
            e.user_agent = user_agent.clone();
            e
        };
        let failed = |user_id: Option<i64>, reason: &str, failures: Option<i64>| {
            let changes =
                serde_json::json!({"email": attempted, "reason": reason, "failures": failures});
            let id = user_id.map(|id| id.to_string());
            from(event(user_id, "login_failed", "user", id, changes))
        };
        let Some(user) = user else {
            // As long as a wrong password takes.
            password::verify(password, &password::decoy(&self.settings.hash));
            tracing::info!(
                event = "login_failed",
                reason = "unknown_email",
                "login refused"
            );
            self.audit(failed(None, "unknown_email", None)).await;
            return Err(AuthError::InvalidCredentials);
        };
        if user.account_locked_until.is_some_and(|t| t > now) {
            password::verify(password, &password::decoy(&self.settings.hash));
            tracing::warn!(
                event = "login_failed",
                user = user.id,
                reason = "locked",
                "login refused"
            );
            self.audit(failed(Some(user.id), "locked", None)).await;
            return Err(AuthError::InvalidCredentials);
        }
        if !password::verify(password, &user.password_hash) {
            let max = i64::from(self.settings.max_failures);
            let (failures, locked) = self.count_failure(user.id, now).await?;
            tracing::info!(
                event = "login_failed",
                user = user.id,
                failures,
                "login refused"
            );
            self.audit(failed(Some(user.id), "wrong_password", Some(failures)))
                .await;
            if locked.is_some_and(|t| t > now) && failures == max {
                tracing::warn!(
                    event = "account_locked",
                    user = user.id,
                    failures,
                    "account locked after failed logins"
                );
                let changes = serde_json::json!({"failures": failures, "until_ms": locked});
                let id = Some(user.id.to_string());
                self.audit(from(event(
                    Some(user.id),
                    "account_locked",
                    "user",
                    id,
                    changes,
                )))
                .await;
            }
            return Err(AuthError::InvalidCredentials);
        }
        if user.is_mfa_enabled {
            let Some(code) = code else {
                tracing::info!(
                    event = "login_mfa_required",
                    user = user.id,
                    "login waits for the second factor"
                );
                return Err(AuthError::MfaRequired);
            };
            if !self.second_factor(user.id, code).await? {
                let (failures, _) = self.count_failure(user.id, now).await?;
                self.audit(failed(Some(user.id), "wrong_mfa_code", Some(failures)))
                    .await;
                return Err(AuthError::InvalidMfaCode);
            }
        }
        self.store.record_login_success(user.id, now).await?;
        // The oldest sessions beyond the limit end.
        let live = self.store.live_sessions(user.id, now).await?;
        let excess = (live.len() + 1).saturating_sub(self.settings.max_sessions_per_user);
        for old in live.iter().take(excess) {
            self.store
                .revoke_session(&old.id, "session_limit", now)
                .await?;
            self.end_live(&old.id, "session_limit").await;
            let changes = serde_json::json!({"reason": "session_limit"});
            self.audit(event(
                Some(user.id),
                "session.end",
                "session",
                Some(old.id.clone()),
                changes,
            ))
            .await;
        }
        let refresh = tokens::random_token();
        let session = SessionRecord {
            id: tokens::random_token(),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.refresh_ttl_ms(),
            ip: ip.clone(),
            user_agent: user_agent.clone(),
            revoked_at: None,
            revoked_reason: None,
        };
        self.store
            .create_session(&session, &tokens::digest(&refresh), session.expires_at)
            .await?;
        tracing::info!(event = "login", user = user.id, session = %session.id, "logged in");
        self.touch(&session.id, || login_spec(&session)).await;
        let changes = serde_json::json!({"email": user.email});
        self.audit(from(event(
            Some(user.id),
            "login",
            "session",
            Some(session.id.clone()),
            changes,
        )))
        .await;
        self.issue(&user, &session.id, refresh, now)
    }

    /// Trades a refresh token for a new pair. A second use of one ends its
    /// session: someone holds a copy.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, AuthError> {
        let now = now_ms();
        let invalid = || AuthError::InvalidToken("the refresh token is not valid".into());
        let spent = self
            .store
            .use_refresh_token(&tokens::digest(refresh_token), now)
            .await?;
        let session_id = match spent {
            RefreshUse::Unknown => return Err(invalid()),
            RefreshUse::Reused { session_id } => {
                self.store
                    .revoke_session(&session_id, "refresh_token_reuse", now)
                    .await?;
                self.end_live(&session_id, "refresh_token_reuse").await;
                tracing::warn!(event = "refresh_token_reuse", session = %session_id, "a rotated refresh token was used again; session ended");
                let user_id = self.store.session(&session_id).await?.map(|s| s.user_id);
                let changes = serde_json::json!({"session_ended": true});
                self.audit(event(
                    user_id,
                    "refresh_token_reuse",
                    "session",
                    Some(session_id),
                    changes,
                ))
                .await;
                return Err(AuthError::RefreshReused);
            }
            RefreshUse::Fresh { expires_at, .. } if expires_at <= now => return Err(invalid()),
            RefreshUse::Fresh { session_id, .. } => session_id,
        };
        let session = self
            .live_session(&session_id, now)
            .await?
            .ok_or_else(invalid)?;
        let user = self
            .store
            .user_by_id(session.user_id)
            .await?
            .ok_or_else(invalid)?;
        self.touch(&session.id, || login_spec(&session)).await;
        let refresh = tokens::random_token();
        self.store
            .rotate_refresh_token(
                &session.id,
                &tokens::digest(&refresh),
                now,
                session.expires_at,
            )
            .await?;
        self.issue(&user, &session.id, refresh, now)
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
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| AuthError::InvalidToken("the user no longer exists".into()))?;
        let id = Some(user.id.to_string());
        if !password::verify(current, &user.password_hash) {
            let (failures, _) = self.count_failure(user.id, now).await?;
            let changes =
                serde_json::json!({"reason": "wrong_current_password", "failures": failures});
            self.audit(event(
                Some(user.id),
                "password.change_failed",
                "user",
                id,
                changes,
            ))
            .await;
            return Err(AuthError::WrongPassword);
        }
        let history = self
            .store
            .password_history(user.id, password::HISTORY as i64)
            .await?;
        password::check(new, &user.email, &history)?;
        let hash = password::hash(new, &self.settings.hash)?;
        self.store.set_password(user.id, &hash, now).await?;
        self.user_changed(user.id).await;
        let ended = self
            .store
            .revoke_other_sessions(user.id, session_id, "password_changed", now)
            .await?;
        for other in &ended {
            self.end_live(other, "password_changed").await;
        }
        let changes = serde_json::json!({"other_sessions_ended": ended.len()});
        self.audit(event(Some(user.id), "password.change", "user", id, changes))
            .await;
        Ok(())
    }

    /// Ends the caller's session.
    pub async fn logout(&self, who: &Principal) -> Result<(), AuthError> {
        let (user_id, session_id) = who.user_session()?;
        self.store
            .revoke_session(session_id, "logout", now_ms())
            .await?;
        self.end_live(session_id, "logout").await;
        tracing::info!(event = "logout", session = %session_id, "logged out");
        let session = Some(session_id.to_owned());
        self.audit(event(
            Some(user_id),
            "logout",
            "session",
            session,
            serde_json::Value::Null,
        ))
        .await;
        Ok(())
    }

    /// Counts a wrong password against the user: after `max_failures` in a
    /// row the account locks for `lockout_secs`. The failures so far and the
    /// lock.
    async fn count_failure(&self, user_id: i64, now: i64) -> Result<(i64, Option<i64>), AuthError> {
        let lock_until = now + (self.settings.lockout_secs * 1000) as i64;
        Ok(self
            .store
            .record_login_failure(user_id, i64::from(self.settings.max_failures), lock_until)
            .await?)
    }

    /// Who a bearer token stands for: the break-glass token, or a valid
    /// access token of a session not ended whose user still exists. The
    /// role is the user's role now, not the one the token was issued with.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if self.is_break_glass(bearer) {
            metrics::counter!("hydrowatch_break_glass_uses_total").increment(1);
            tracing::warn!(
                event = "break_glass",
                "request authenticated with the break-glass token"
            );
            return Ok(Principal {
                user_id: None,
                label: "break-glass".into(),
                role: Role::Admin,
                credential: Credential::BreakGlass,
                must_change_password: false,
                scopes: None,
                equipment: None,
            });
        }
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.authenticate_key(bearer).await;
        }
        let invalid = || AuthError::InvalidToken("the access token is not valid".into());
        let claims = self.keys.verify(bearer).map_err(|e| match e {
            TokenError::Expired => AuthError::InvalidToken("the access token has expired".into()),
            TokenError::Invalid => invalid(),
        })?;
        let user_id: i64 = claims.sub.parse().map_err(|_| invalid())?;
        let now = now_ms();
        let found = self.session_user(&claims.sid, user_id).await?;
        let Some(found) = found.filter(|s| s.user_id == user_id) else {
            return Err(invalid());
        };
        if found.revoked_at.is_some() || found.expires_at <= now || found.deleted {
            return Err(AuthError::InvalidToken("the session has ended".into()));
        }
        let role = Role::parse(&found.role).ok_or_else(|| {
            AuthError::Store(StoreError::Corrupt(format!(
                "user {user_id}: role {:?}",
                found.role
            )))
        })?;
        self.touch(&claims.sid, || hydrowatch_actors::login::LoginSpec {
            session_id: claims.sid.clone(),
            user_id,
            ip: found.ip.clone(),
            user_agent: found.user_agent.clone(),
            started_ms: found.created_at,
        })
        .await;
        Ok(Principal {
            user_id: Some(user_id),
            label: found.email,
            role,
            credential: Credential::Session(claims.sid),
            must_change_password: found.must_change_password,
            scopes: None,
            equipment: found
                .equipment_scope
                .map(|ids| Arc::new(ids.into_iter().collect())),
        })
    }

    /// Whether `bearer` is the break-glass token (compared in constant
    /// time; never when it is off).
    fn is_break_glass(&self, bearer: &str) -> bool {
        let expected = self.settings.break_glass_token.as_bytes();
        !expected.is_empty() && crate::constant_time_eq(bearer.as_bytes(), expected)
    }

    /// A user's sessions not ended, oldest first, with what their login
    /// actors know (last activity, open WebSockets).
    pub async fn sessions_of(&self, user_id: i64) -> Result<Vec<SessionView>, AuthError> {
        let now = now_ms();
        let mut out = Vec::new();
        for s in self.store.live_sessions(user_id, now).await? {
            let live = match self.tree.get().and_then(|t| t.login(&s.id)) {
                Some(actor) => {
                    ractor::call_t!(actor, hydrowatch_actors::login::LoginMsg::Info, 1000).ok()
                }
                None => None,
            };
            out.push(SessionView {
                last_activity_ms: live
                    .as_ref()
                    .map_or(s.last_seen_at, |l| l.last_activity_ms.max(s.last_seen_at)),
                websockets: live.as_ref().map_or(0, |l| l.websockets),
                id: s.id,
                started_ms: s.created_at,
                expires_ms: s.expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
                current: false,
            });
        }
        Ok(out)
    }

    /// Ends one session: the caller's own (`owner`: their user id) or,
    /// for an admin (`owner: None`), anyone's, which is a forced logout.
    /// False when there is no such live session (of that owner).
    pub async fn end_session(
        &self,
        session_id: &str,
        owner: Option<i64>,
        by: &Principal,
    ) -> Result<bool, AuthError> {
        let now = now_ms();
        let Some(session) = self.live_session(session_id, now).await? else {
            return Ok(false);
        };
        if owner.is_some_and(|o| o != session.user_id) {
            return Ok(false);
        }
        let reason = if owner.is_some() {
            "ended_by_user"
        } else {
            "forced_logout"
        };
        if !self.store.revoke_session(session_id, reason, now).await? {
            return Ok(false);
        }
        self.end_live(session_id, reason).await;
        tracing::info!(event = reason, user = session.user_id, by = ?by.user_id, "session ended");
        let changes =
            serde_json::json!({"reason": reason, "user": session.user_id, "by": by.label});
        self.audit(event(
            by.user_id,
            reason,
            "session",
            Some(session_id.to_owned()),
            changes,
        ))
        .await;
        Ok(true)
    }

    /// An admin's forced logout of every session of a user: how many ended.
    pub async fn end_sessions_of(&self, user_id: i64, by: &Principal) -> Result<usize, AuthError> {
        let ended = self.end_all(user_id, "forced_logout").await?;
        tracing::info!(
            event = "forced_logout",
            user = user_id,
            sessions = ended,
            "user logged out"
        );
        let changes = serde_json::json!({"sessions_ended": ended, "by": by.label});
        self.audit_user(by.user_id, "forced_logout", user_id, changes)
            .await;
        Ok(ended)
    }

    async fn end_all(&self, user_id: i64, reason: &str) -> Result<usize, AuthError> {
        let ended = self
            .store
            .revoke_other_sessions(user_id, "", reason, now_ms())
            .await?;
        for id in &ended {
            self.end_live(id, reason).await;
        }
        Ok(ended.len())
    }

    /// Every user not deleted.
    pub async fn users(&self) -> Result<Vec<UserRecord>, AuthError> {
        Ok(self.store.users().await?)
    }

    /// Gives a user another role; it holds from their next request. False
    /// when there is no such user.
    pub async fn set_role(
        &self,
        user_id: i64,
        role: Role,
        by: &Principal,
    ) -> Result<bool, AuthError> {
        let Some(user) = self.store.user_by_id(user_id).await? else {
            return Ok(false);
        };
        if !self.store.set_role(user_id, role.as_str()).await? {
            return Ok(false);
        }
        self.user_changed(user_id).await;
        let changes = serde_json::json!({"from": user.role, "to": role, "by": by.label});
        self.audit_user(by.user_id, "user.role", user_id, changes)
            .await;
        Ok(true)
    }

    /// Limits the equipment a user sees (`None`: all of it); it holds from
    /// their next request and WebSocket subscription. False when there is
    /// no such user.
    pub async fn set_equipment_scope(
        &self,
        user_id: i64,
        scope: Option<Vec<String>>,
        by: &Principal,
    ) -> Result<bool, AuthError> {
        if !self
            .store
            .set_equipment_scope(user_id, scope.as_deref())
            .await?
        {
            return Ok(false);
        }
        self.user_changed(user_id).await;
        let changes = serde_json::json!({"equipment": scope, "by": by.label});
        self.audit_user(by.user_id, "user.equipment", user_id, changes)
            .await;
        Ok(true)
    }

    /// Deletes a user (marked, so the audit log stays whole) and ends their
    /// sessions. False when there is no such user. Nobody deletes
    /// themselves: an install must keep an administrator who can sign in.
    pub async fn delete_user(&self, user_id: i64, by: &Principal) -> Result<bool, AuthError> {
        if by.user_id == Some(user_id) {
            return Err(AuthError::Invalid {
                field: "id",
                reason: "you cannot delete yourself".into(),
            });
        }
        if !self.store.delete_user(user_id, now_ms()).await? {
            return Ok(false);
        }
        self.user_changed(user_id).await;
        let ended = self.end_all(user_id, "user_deleted").await?;
        let changes = serde_json::json!({"sessions_ended": ended, "by": by.label});
        self.audit_user(by.user_id, "user.delete", user_id, changes)
            .await;
        Ok(true)
    }

    /// Who an API key stands for: its maker, limited to its scopes, if it
    /// is known, not revoked, not expired, its maker still exists and its
    /// rate limit has room.
    async fn authenticate_key(&self, key: &str) -> Result<Principal, AuthError> {
        let now = now_ms();
        let invalid = |why: &str| AuthError::InvalidToken(format!("the API key {why}"));
        let record = self
            .store
            .api_key_by_hash(&tokens::digest(key))
            .await?
            .ok_or_else(|| invalid("is not valid"))?;
        if record.revoked_at.is_some() {
            return Err(invalid("was revoked"));
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(invalid("has expired"));
        }
        let owner = self
            .store
            .user_by_id(record.user_id)
            .await?
            .ok_or_else(|| invalid("belongs to a deleted user"))?;
        let role =
            Role::parse(&owner.role).ok_or_else(|| invalid("has an owner without a role"))?;
        let rate = Rate {
            burst: u32::try_from(record.rate_burst).unwrap_or(u32::MAX),
            per_min: u32::try_from(record.rate_per_min).unwrap_or(u32::MAX),
        };
        if let Err(wait) = self
            .shared
            .take(&format!("api-key:{}", record.id), rate)
            .await
        {
            metrics::counter!("hydrowatch_api_key_rate_limited_total").increment(1);
            return Err(AuthError::RateLimited(wait));
        }
        self.count_key_use(record.id, now);
        Ok(Principal {
            user_id: Some(owner.id),
            label: format!("api-key:{}", record.name),
            role,
            credential: Credential::ApiKey(record.id),
            must_change_password: false,
            equipment: owner
                .equipment_scope
                .map(|ids| Arc::new(ids.into_iter().collect())),
            scopes: Some(
                record
                    .scopes
                    .iter()
                    .filter_map(|s| roles::Permission::parse(s))
                    .collect(),
            ),
        })
    }

    /// Counts a use of a key: the first use in a second schedules one
    /// write of all of that second's uses.
    fn count_key_use(&self, id: i64, now: i64) {
        let first = {
            let mut pending = self
                .key_uses
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let entry = pending.entry(id).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
            entry.0 == 1
        };
        if !first {
            return;
        }
        let (uses, store) = (self.key_uses.clone(), self.store.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let taken = uses
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some((count, last)) = taken {
                if let Err(e) = store.count_api_key_uses(id, count, last).await {
                    tracing::warn!(error = %e, key = id, "API key use not counted");
                }
            }
        });
    }

    /// Makes an API key for the signed-in `by`, acting as them within its
    /// scopes. The key is returned this once.
    pub async fn create_api_key(
        &self,
        key: &NewKey,
        by: &Principal,
    ) -> Result<IssuedKey, AuthError> {
        let (user_id, _) = by.user_session()?;
        let name = key.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AuthError::Invalid {
                field: "name",
                reason: "1 to 100 characters".into(),
            });
        }
        if key.scopes.is_empty() {
            return Err(AuthError::Invalid {
                field: "scopes",
                reason: "at least one permission".into(),
            });
        }
        for (i, scope) in key.scopes.iter().enumerate() {
            let allowed = roles::Permission::parse(scope)
                .filter(|p| *p != roles::Permission::UsersManage && by.allows(*p));
            if allowed.is_none() {
                return Err(AuthError::Invalid {
                    field: "scopes",
                    reason: format!(
                        "scopes[{i}]: {scope:?} is not a permission a key of yours may have \
                         (read, ingest, alerts:act, rules:manage, simulators:manage, setpoints:write, actors:manage)"
                    ),
                });
            }
        }
        let rate = key.rate.unwrap_or(Rate {
            burst: 60,
            per_min: 600,
        });
        rate.validate("rate").map_err(|reason| AuthError::Invalid {
            field: "rate",
            reason,
        })?;
        if key.expires_in_days == Some(0) {
            return Err(AuthError::Invalid {
                field: "expires_in_days",
                reason: "at least 1 (or left out: never)".into(),
            });
        }
        let now = now_ms();
        let secret = format!("{API_KEY_PREFIX}{}", tokens::random_token());
        let prefix: String = secret.chars().take(12).collect();
        let expires_at = key.expires_in_days.map(|d| now + i64::from(d) * 86_400_000);
        let record = crate::store::api_keys::NewApiKey {
            user_id,
            name,
            prefix: &prefix,
            hash: &tokens::digest(&secret),
            scopes: &key.scopes,
            rate_burst: i64::from(rate.burst),
            rate_per_min: i64::from(rate.per_min),
            created_at: now,
            expires_at,
        };
        let record = self.store.create_api_key(&record).await?;
        let changes = serde_json::json!({"name": name, "scopes": key.scopes, "expires_at": expires_at, "prefix": prefix});
        self.audit(event(
            Some(user_id),
            "api_key.create",
            "api_key",
            Some(record.id.to_string()),
            changes,
        ))
        .await;
        Ok(IssuedKey {
            key: secret,
            record,
        })
    }

    /// Every API key, newest first (never the keys themselves).
    pub async fn api_keys(&self) -> Result<Vec<crate::store::api_keys::ApiKeyRecord>, AuthError> {
        Ok(self.store.api_keys().await?)
    }

    /// Revokes an API key: it stops working at once. False when there is
    /// no such key not yet revoked.
    pub async fn revoke_api_key(&self, id: i64, by: &Principal) -> Result<bool, AuthError> {
        if !self.store.revoke_api_key(id, now_ms()).await? {
            return Ok(false);
        }
        let changes = serde_json::json!({"by": by.label});
        self.audit(event(
            by.user_id,
            "api_key.revoke",
            "api_key",
            Some(id.to_string()),
            changes,
        ))
        .await;
        Ok(true)
    }

    /// Checks a second factor: a TOTP code (each step once) or a backup
    /// code (each once).
    async fn second_factor(&self, user_id: i64, code: &str) -> Result<bool, AuthError> {
        let (secret, _, last) = self.store.totp_state(user_id).await?;
        let Some(secret) = secret else {
            return Ok(false);
        };
        let trimmed = code.trim();
        if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let Some(step) = totp::verify(&secret, trimmed, now_ms() / 1000, last) else {
                return Ok(false);
            };
            return Ok(self.store.use_totp_step(user_id, step).await?);
        }
        let hash = tokens::digest(&normalise_backup_code(code));
        let used = self.store.use_backup_code(user_id, &hash, now_ms()).await?;
        if used {
            let changes = serde_json::json!({"backup_code": true});
            self.audit_user(Some(user_id), "mfa.backup_code_used", user_id, changes)
                .await;
        }
        Ok(used)
    }

    /// Starts enrolling a second factor for the signed-in user: a new
    /// secret, in force once confirmed with a code from it.
    pub async fn mfa_enrol(&self, who: &Principal) -> Result<Enrolment, AuthError> {
        let (user_id, _) = who.user_session()?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)?;
        let secret = totp::new_secret();
        self.store.set_totp_pending(user_id, &secret).await?;
        Ok(Enrolment {
            otpauth_uri: totp::uri(&secret, &user.email),
            secret,
        })
    }

    /// Confirms the enrolled secret with a code from it: the second factor
    /// is on, and the backup codes (shown this once) replace any earlier.
    pub async fn mfa_confirm(&self, who: &Principal, code: &str) -> Result<Vec<String>, AuthError> {
        let (user_id, _) = who.user_session()?;
        let (_, pending, _) = self.store.totp_state(user_id).await?;
        let pending = pending.ok_or_else(|| AuthError::Invalid {
            field: "code",
            reason: "enrol first (POST /api/v1/auth/mfa/enrol)".into(),
        })?;
        let step =
            totp::verify(&pending, code, now_ms() / 1000, None).ok_or(AuthError::Invalid {
                field: "code",
                reason: "not the current code of the enrolled secret".into(),
            })?;
        let codes: Vec<String> = (0..BACKUP_CODES)
            .map(|_| {
                let raw = tokens::random_token();
                format!("{}-{}", &raw[..5], &raw[5..10])
            })
            .collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| tokens::digest(&normalise_backup_code(c)))
            .collect();
        self.store
            .set_totp(user_id, Some((&pending, step, &hashes)))
            .await?;
        self.user_changed(user_id).await;
        let changes = serde_json::json!({"backup_codes": BACKUP_CODES});
        self.audit_user(Some(user_id), "mfa.enable", user_id, changes)
            .await;
        Ok(codes)
    }

    /// Turns the signed-in user's second factor off: their password and a
    /// current code (or a backup code) are needed.
    pub async fn mfa_disable(
        &self,
        who: &Principal,
        password: &str,
        code: &str,
    ) -> Result<(), AuthError> {
        let (user_id, _) = who.user_session()?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)?;
        if !password::verify(password, &user.password_hash) {
            self.count_failure(user_id, now_ms()).await?;
            return Err(AuthError::WrongPassword);
        }
        if !self.second_factor(user_id, code).await? {
            return Err(AuthError::InvalidMfaCode);
        }
        self.store.set_totp(user_id, None).await?;
        self.user_changed(user_id).await;
        self.audit_user(
            Some(user_id),
            "mfa.disable",
            user_id,
            serde_json::Value::Null,
        )
        .await;
        Ok(())
    }

    /// An admin turns a user's second factor off (a lost phone and no
    /// backup codes left): false when there is no such user.
    pub async fn mfa_reset(&self, user_id: i64, by: &Principal) -> Result<bool, AuthError> {
        if self.store.user_by_id(user_id).await?.is_none() {
            return Ok(false);
        }
        self.store.set_totp(user_id, None).await?;
        self.user_changed(user_id).await;
        let changes = serde_json::json!({"by": by.label});
        self.audit_user(by.user_id, "mfa.reset", user_id, changes)
            .await;
        Ok(true)
    }

    /// Sends a single-use link for `purpose` to the user, in the
    /// background (so that the answer takes as long whether or not there
    /// is a user).
    async fn send_link(
        &self,
        user: &UserRecord,
        purpose: &'static str,
        ttl_secs: u64,
    ) -> Result<(), AuthError> {
        let Some((mailer, base)) = self.mail.clone() else {
            return Err(AuthError::Unsupported(
                "account e-mails need [notify.email] configured".into(),
            ));
        };
        let now = now_ms();
        let token = tokens::random_token();
        let expires = now + (ttl_secs * 1000) as i64;
        self.store
            .create_user_token(&tokens::digest(&token), user.id, purpose, now, expires)
            .await?;
        let minutes = ttl_secs / 60;
        let (subject, text) = match purpose {
            "password_reset" => (
                "Reset your hydrowatch password",
                format!(
                    "Someone asked to reset the password of {} on hydrowatch.\n\n\
                     Set a new one here (the link works once, for {minutes} minutes):\n{base}/#reset={token}\n\n\
                     If it was not you, ignore this message: your password stays as it is.\n\n-- \nhydrowatch\n",
                    user.email
                ),
            ),
            _ => (
                "Confirm your e-mail address for hydrowatch",
                format!(
                    "Confirm that {} is your address (the link works once, for {minutes} minutes):\n\
                     {base}/#verify={token}\n\n-- \nhydrowatch\n",
                    user.email
                ),
            ),
        };
        let to = user.email.clone();
        tokio::spawn(async move {
            match mailer.send_text(&to, subject, &text).await {
                Ok(()) => {
                    metrics::counter!("hydrowatch_account_emails_total", "purpose" => purpose)
                        .increment(1)
                }
                Err(e) => {
                    metrics::counter!("hydrowatch_account_email_failures_total", "purpose" => purpose).increment(1);
                    tracing::warn!(error = ?e, purpose, "account e-mail not sent");
                }
            }
        });
        Ok(())
    }

    /// Asks for a password-reset link for `email`. The answer is the same
    /// whether or not the address is a user's (and as quick: the e-mail
    /// goes out in the background); rate-limited like a login.
    pub async fn request_password_reset(
        &self,
        email: &str,
        ip: Option<String>,
    ) -> Result<(), AuthError> {
        self.limit_login(email, ip.as_deref()).await?;
        if self.mail.is_none() {
            return Err(AuthError::Unsupported(
                "password reset needs [notify.email] configured".into(),
            ));
        }
        let user = match email_of(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let attempted: String = email.trim().to_lowercase().chars().take(254).collect();
        let changes = serde_json::json!({"email": attempted, "known": user.is_some()});
        let mut e = event(
            user.as_ref().map(|u| u.id),
            "password_reset.request",
            "user",
            None,
            changes,
        );
        e.ip = ip;
        self.audit(e).await;
        if let Some(user) = user {
            self.send_link(&user, "password_reset", self.settings.reset_ttl_secs)
                .await?;
        }
        Ok(())
    }

    /// Sets a new password with a reset link's token: the token works
    /// once (a password the policy refuses does not use it up); every
    /// session of the user ends, and the lockout is lifted.
    pub async fn reset_password(&self, token: &str, new: &str) -> Result<(), AuthError> {
        let now = now_ms();
        let invalid =
            || AuthError::InvalidToken("the reset link is not valid, expired or used".into());
        let hash = tokens::digest(token);
        let user_id = self
            .store
            .user_token(&hash, "password_reset", now, false)
            .await?
            .ok_or_else(invalid)?;
        let user = self.store.user_by_id(user_id).await?.ok_or_else(invalid)?;
        let history = self
            .store
            .password_history(user.id, password::HISTORY as i64)
            .await?;
        password::check(new, &user.email, &history)?;
        if self
            .store
            .user_token(&hash, "password_reset", now, true)
            .await?
            .is_none()
        {
            return Err(invalid());
        }
        let hashed = password::hash(new, &self.settings.hash)?;
        self.store.set_password(user.id, &hashed, now).await?;
        self.store.record_login_success(user.id, now).await?;
        let ended = self.end_all(user.id, "password_reset").await?;
        self.user_changed(user.id).await;
        let changes = serde_json::json!({"sessions_ended": ended});
        self.audit_user(Some(user.id), "password_reset", user.id, changes)
            .await;
        Ok(())
    }

    /// Sends the signed-in user a link that confirms their address.
    pub async fn request_verification(&self, who: &Principal) -> Result<(), AuthError> {
        let (user_id, _) = who.user_session()?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)?;
        self.send_link(
            &user,
            "email_verification",
            self.settings.verification_ttl_secs,
        )
        .await
    }

    /// Confirms an address with a verification link's token (once).
    pub async fn verify_email(&self, token: &str) -> Result<(), AuthError> {
        let now = now_ms();
        let user_id = self
            .store
            .user_token(&tokens::digest(token), "email_verification", now, true)
            .await?
            .ok_or_else(|| {
                AuthError::InvalidToken("the link is not valid, expired or used".into())
            })?;
        self.store.set_email_verified(user_id, now).await?;
        self.audit_user(
            Some(user_id),
            "email.verified",
            user_id,
            serde_json::Value::Null,
        )
        .await;
        Ok(())
    }

    /// Changes the signed-in user's profile: the fields given replace
    /// theirs (name 1 to 200 characters, company up to 200, phone up to 50
    /// of digits, spaces and `+()-.`, an IANA time zone, attributes a JSON
    /// object of at most 16 KiB). The user as it now is.
    pub async fn update_profile(
        &self,
        who: &Principal,
        change: ProfileChange,
    ) -> Result<UserRecord, AuthError> {
        let (user_id, _) = who.user_session()?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)?;
        let invalid = |field, reason: &str| AuthError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let name = change.name.unwrap_or(user.name).trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        let company = change.company.unwrap_or(user.company);
        if company.as_ref().is_some_and(|c| c.chars().count() > 200) {
            return Err(invalid("company", "at most 200 characters"));
        }
        let phone = change.phone.unwrap_or(user.phone);
        if phone.as_ref().is_some_and(|p| {
            p.chars().count() > 50
                || !p
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +()-.".contains(c))
        }) {
            return Err(invalid("phone", "at most 50 digits, spaces and +()-."));
        }
        let timezone = change.timezone.unwrap_or(user.timezone);
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid("timezone", "an IANA time zone, e.g. Europe/Berlin"));
        }
        let attributes = change.attributes.unwrap_or(user.attributes);
        if !attributes.is_object() || attributes.to_string().len() > 16 * 1024 {
            return Err(invalid("attributes", "a JSON object of at most 16 KiB"));
        }
        let profile = Profile {
            name,
            company,
            phone,
            timezone,
            attributes,
        };
        self.store.set_profile(user_id, &profile).await?;
        let changes = serde_json::json!({"name": profile.name, "company": profile.company,
            "phone": profile.phone, "timezone": profile.timezone});
        self.audit_user(Some(user_id), "user.profile", user_id, changes)
            .await;
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)
    }

    /// The user behind a principal.
    pub async fn user(&self, id: i64) -> Result<Option<UserRecord>, AuthError> {
        Ok(self.store.user_by_id(id).await?)
    }

    async fn live_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, AuthError> {
        Ok(self
            .store
            .session(id)
            .await?
            .filter(|s| s.revoked_at.is_none() && s.expires_at > now))
    }

    fn refresh_ttl_ms(&self) -> i64 {
        (self.settings.refresh_ttl_secs * 1000) as i64
    }

    fn issue(
        &self,
        user: &UserRecord,
        session_id: &str,
        refresh: String,
        now: i64,
    ) -> Result<Issued, AuthError> {
        let role = Role::parse(&user.role).ok_or_else(|| {
            AuthError::Store(StoreError::Corrupt(format!(
                "user {}: role {:?}",
                user.id, user.role
            )))
        })?;
        let iat = now / 1000;
        let exp = iat + self.settings.access_ttl_secs as i64;
        let claims = Claims::new(user.id, role, session_id, iat, exp);
        Ok(Issued {
            access_token: self.keys.sign(&claims),
            token_type: "Bearer",
            expires_in: self.settings.access_ttl_secs,
            refresh_token: refresh,
            session_id: session_id.to_owned(),
            must_change_password: user.must_change_password,
        })
    }
}
