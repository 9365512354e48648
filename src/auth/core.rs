//! What every auth service shares: the settings, token keys, store, audit
//! log, the supervision tree, cross-node state and the session cache, and
//! the steps several of them take (audit an event, end a session live,
//! tell every node a user changed, count a failed password).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hydrowatch_actors::clock::now_ms;
use hydrowatch_actors::login::LoginSpec;

use super::roles::Role;
use super::tokens::{self, SigningKey, TokenKeys};
use super::{AuthError, AuthSettings, Principal};
use crate::audit::{AuditEvent, AuditLog};
use crate::cross_node::CrossNode;
use crate::notify::email::Mailer;
use crate::store::users::{SessionRecord, SessionUser, UserRecord};
use crate::store::{Store, StoreError};

/// How far nodes' clocks may disagree when a user change is compared with
/// a cached session.
const CLOCK_SKEW_MS: i64 = 5_000;

/// The state and steps the auth services share; each service holds it in
/// an `Arc`. Built first, so that what is optional (mail) can be set before
/// the services share it.
pub struct AuthCore {
    pub(super) settings: AuthSettings,
    pub(super) keys: TokenKeys,
    pub(super) store: Store,
    pub(super) audit: Arc<AuditLog>,
    /// Set once the supervision tree runs: sessions are login actors there.
    pub(super) tree: OnceLock<hydrowatch_actors::Tree>,
    /// Revocations, user changes and rate limits across nodes.
    pub(super) cross_node: Arc<CrossNode>,
    /// With Redis: sessions checked in the database lately, by id.
    cache: Mutex<HashMap<String, Cached>>,
    /// Where account e-mails go out, and the link base (`notify.base_url`).
    pub(super) mail: Option<(Arc<Mailer>, String)>,
}

/// A session as the database said, and when it said it.
#[derive(Clone)]
struct Cached {
    session: SessionUser,
    at_ms: i64,
    checked: Instant,
}

impl AuthCore {
    /// Over `store`; security events go to `audit`. Without configured
    /// keys, access tokens are signed with a key made now (a warning says
    /// they end with the process).
    pub fn new(
        settings: AuthSettings,
        store: Store,
        audit: Arc<AuditLog>,
        cross_node: Arc<CrossNode>,
    ) -> Result<AuthCore, String> {
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
        Ok(AuthCore {
            settings,
            keys,
            store,
            audit,
            tree: OnceLock::new(),
            cross_node,
            cache: Default::default(),
            mail: None,
        })
    }

    /// Account e-mails (password reset, address verification) go out
    /// through `mailer`, with links under `base_url`.
    pub fn set_mail(&mut self, mailer: Arc<Mailer>, base_url: &str) {
        self.mail = Some((mailer, base_url.trim_end_matches('/').to_owned()));
    }

    /// Tells the session's login actor of a request (starting it if needed).
    /// The session is valid whether or not that works: the actor only
    /// holds what is live about it.
    pub(super) async fn touch(&self, session_id: &str, spec: impl FnOnce() -> LoginSpec) {
        if let Some(tree) = self.tree.get() {
            if let Err(e) = tree.touch_login(session_id, now_ms(), spec).await {
                tracing::warn!(error = %e, "no login actor for the session");
            }
        }
    }

    /// A session was ended (already recorded in the database): every node
    /// is told, and its actor closes its WebSockets with `reason` and stops.
    pub(super) async fn end_live(&self, session_id: &str, reason: &str) {
        self.cache_lock().remove(session_id);
        self.cross_node.revoke(session_id, self.revoked_for()).await;
        if let Some(tree) = self.tree.get() {
            tree.end_login(session_id, reason);
        }
    }

    /// Ends every session of a user (recorded, then live): how many.
    pub(super) async fn end_all(&self, user_id: i64, reason: &str) -> Result<usize, AuthError> {
        let ended = self
            .store
            .revoke_other_sessions(user_id, "", reason, now_ms())
            .await?;
        for id in &ended {
            self.end_live(id, reason).await;
        }
        Ok(ended.len())
    }

    /// A user changed (role, deletion, password): every node reads their
    /// sessions from the database again.
    pub(super) async fn user_changed(&self, user_id: i64) {
        self.cache_lock()
            .retain(|_, c| c.session.user_id != user_id);
        // Open WebSockets were authorised under the old rules.
        if let Some(tree) = self.tree.get() {
            tree.reauthorise_user(user_id);
        }
        let ttl = Duration::from_secs(self.settings.session_cache_secs)
            + Duration::from_millis(2 * CLOCK_SKEW_MS as u64);
        self.cross_node.user_changed(user_id, now_ms(), ttl).await;
    }

    /// How long an ended session is remembered in Redis: as long as its
    /// access tokens could be presented.
    pub(super) fn revoked_for(&self) -> Duration {
        Duration::from_secs(self.settings.access_ttl_secs + 60)
    }

    fn cache_lock(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session, from the cache when Redis vouches that it did not end
    /// and its user did not change since; else from the database.
    pub(super) async fn session_user(
        &self,
        session_id: &str,
        user_id: i64,
    ) -> Result<Option<SessionUser>, AuthError> {
        let fresh = Duration::from_secs(self.settings.session_cache_secs);
        let hit = self
            .cache_lock()
            .get(session_id)
            .filter(|c| c.checked.elapsed() < fresh)
            .cloned();
        if let Some(hit) = hit {
            match self.cross_node.check(session_id, user_id).await {
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
            if self.cross_node.has_redis() {
                let mut cache = self.cache_lock();
                if cache.len() >= 100_000 {
                    cache.retain(|_, c| c.checked.elapsed() < fresh);
                }
                cache.insert(
                    session_id.to_owned(),
                    Cached {
                        session: session.clone(),
                        at_ms,
                        checked: Instant::now(),
                    },
                );
            }
        }
        Ok(found)
    }

    /// The session if it is neither ended nor expired at `now`.
    pub(super) async fn live_session(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, AuthError> {
        Ok(self
            .store
            .session(id)
            .await?
            .filter(|s| s.revoked_at.is_none() && s.expires_at > now))
    }

    /// The user behind a signed-in principal (break-glass and API keys
    /// have none to act as here).
    pub(super) async fn signed_in_user(&self, who: &Principal) -> Result<UserRecord, AuthError> {
        let (user_id, _) = who.user_session()?;
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)
    }

    /// The user with e-mail `raw` as typed; none when it is not even an
    /// address.
    pub(super) async fn user_by_email(&self, raw: &str) -> Result<Option<UserRecord>, AuthError> {
        match email_of(raw) {
            Ok(email) => Ok(self.store.user_by_email(&email).await?),
            Err(_) => Ok(None),
        }
    }

    /// Takes a token from the address's and the e-mail's login buckets
    /// (shared across nodes with Redis). The e-mail's bucket is spent alike
    /// whether or not it belongs to a user.
    pub(super) async fn limit_login(&self, email: &str, ip: Option<&str>) -> Result<(), AuthError> {
        let mut buckets = vec![(
            format!("login-user:{}", attempted(email)),
            self.settings.login_per_user,
        )];
        if let Some(ip) = ip {
            buckets.push((format!("login-ip:{ip}"), self.settings.login_per_ip));
        }
        for (bucket, rate) in buckets {
            if let Err(wait) = self.cross_node.take(&bucket, rate).await {
                metrics::counter!("hydrowatch_login_rate_limited_total").increment(1);
                tracing::warn!(event = "login_rate_limited", %bucket, "login refused: rate limit");
                return Err(AuthError::RateLimited(wait));
            }
        }
        Ok(())
    }

    /// Counts a wrong password against the user: after `max_failures` in a
    /// row the account locks for `lockout_secs`. The failures so far and the
    /// lock.
    pub(super) async fn count_failure(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<(i64, Option<i64>), AuthError> {
        let lock_until = now + (self.settings.lockout_secs * 1000) as i64;
        Ok(self
            .store
            .record_login_failure(user_id, i64::from(self.settings.max_failures), lock_until)
            .await?)
    }

    /// Records a security event about user `user_id`, by `by`.
    pub(super) async fn audit_user(
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
    pub(super) async fn audit(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(e) = self.audit.record(event, now_ms()).await {
            metrics::counter!("hydrowatch_audit_failures_total").increment(1);
            tracing::error!(error = %e, %action, "audit event not recorded");
        }
    }
}

/// An audit event about `resource_type`/`resource_id` by `user_id`.
pub(super) fn event(
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
pub(super) fn email_of(raw: &str) -> Result<String, AuthError> {
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

/// An e-mail as typed, made fit for a rate-limit bucket or the audit log
/// even when it is not an address.
pub(super) fn attempted(email: &str) -> String {
    email.trim().to_lowercase().chars().take(254).collect()
}

/// A stored user's role; one the code does not know means the database
/// was changed behind its back.
pub(super) fn stored_role(user_id: i64, role: &str) -> Result<Role, AuthError> {
    Role::parse(role).ok_or_else(|| {
        AuthError::Store(StoreError::Corrupt(format!(
            "user {user_id}: role {role:?}"
        )))
    })
}

/// What a login actor starts with, from the stored session.
pub(super) fn login_spec(session: &SessionRecord) -> LoginSpec {
    LoginSpec {
        session_id: session.id.clone(),
        user_id: session.user_id,
        ip: session.ip.clone(),
        user_agent: session.user_agent.clone(),
        started_ms: session.created_at,
    }
}
