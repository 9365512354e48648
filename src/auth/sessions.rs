//! Sessions: who a bearer token stands for (an access token of a live
//! session, the break-glass token, or an API key), a user's live sessions,
//! and ending them; and the session store as the login actors' ledger.

use std::sync::Arc;

use hydrowatch_actors::clock::now_ms;
use hydrowatch_actors::login::{LoginSettings, LoginSpec};
use serde::Serialize;

use super::core::{event, stored_role, AuthCore};
use super::roles::Role;
use super::tokens::TokenError;
use super::{ApiKeys, AuthError, Credential, Principal, API_KEY_PREFIX};
use crate::audit::AuditLog;
use crate::cross_node::CrossNode;
use crate::store::Store;

/// A session as its user or an admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
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

/// Live sessions, and what a request's bearer token stands for. Holds the
/// API keys: a bearer token may be one.
pub struct Sessions {
    core: Arc<AuthCore>,
    keys: ApiKeys,
}

impl Sessions {
    pub(super) fn new(core: Arc<AuthCore>, keys: ApiKeys) -> Sessions {
        Sessions { core, keys }
    }

    /// The login actors' settings from `[auth]`.
    pub fn login_settings(&self) -> LoginSettings {
        let core = &self.core;
        LoginSettings {
            ledger: Arc::new(StoredSessions {
                store: core.store.clone(),
                audit: core.audit.clone(),
                cross_node: core.cross_node.clone(),
                revoked_for: core.revoked_for(),
            }),
            idle_timeout: std::time::Duration::from_secs(core.settings.idle_timeout_secs),
            touch_every: std::time::Duration::from_secs(60),
        }
    }

    /// Sessions become login actors of `tree` from now on.
    pub fn attach_tree(&self, tree: hydrowatch_actors::Tree) {
        let _ = self.core.tree.set(tree);
    }

    /// Who a bearer token stands for: the break-glass token, an API key, or
    /// a valid access token of a session not ended whose user still exists.
    /// The role is the user's role now, not the one the token was issued
    /// with.
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
            return self.keys.authenticate(bearer).await;
        }
        self.authenticate_access_token(bearer).await
    }

    async fn authenticate_access_token(&self, bearer: &str) -> Result<Principal, AuthError> {
        let invalid = || AuthError::InvalidToken("the access token is not valid".into());
        let claims = self.core.keys.verify(bearer).map_err(|e| match e {
            TokenError::Expired => AuthError::InvalidToken("the access token has expired".into()),
            TokenError::Invalid => invalid(),
        })?;
        let user_id: i64 = claims.sub.parse().map_err(|_| invalid())?;
        let now = now_ms();
        let found = self.core.session_user(&claims.sid, user_id).await?;
        let Some(found) = found.filter(|s| s.user_id == user_id) else {
            return Err(invalid());
        };
        if found.revoked_at.is_some() || found.expires_at <= now || found.deleted {
            return Err(AuthError::InvalidToken("the session has ended".into()));
        }
        let role = stored_role(user_id, &found.role)?;
        self.core
            .touch(&claims.sid, || LoginSpec {
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
        let expected = self.core.settings.break_glass_token.as_bytes();
        !expected.is_empty() && crate::constant_time_eq(bearer.as_bytes(), expected)
    }

    /// A user's sessions not ended, oldest first, with what their login
    /// actors know (last activity, open WebSockets).
    pub async fn list(&self, user_id: i64) -> Result<Vec<SessionView>, AuthError> {
        let now = now_ms();
        let mut out = Vec::new();
        for s in self.core.store.live_sessions(user_id, now).await? {
            let live = match self.core.tree.get().and_then(|t| t.login(&s.id)) {
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
    pub async fn end(
        &self,
        session_id: &str,
        owner: Option<i64>,
        by: &Principal,
    ) -> Result<bool, AuthError> {
        let now = now_ms();
        let Some(session) = self.core.live_session(session_id, now).await? else {
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
        if !self
            .core
            .store
            .revoke_session(session_id, reason, now)
            .await?
        {
            return Ok(false);
        }
        self.core.end_live(session_id, reason).await;
        tracing::info!(event = reason, user = session.user_id, by = ?by.user_id, "session ended");
        let changes =
            serde_json::json!({"reason": reason, "user": session.user_id, "by": by.label});
        self.core
            .audit(event(
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
    pub async fn end_all_of(&self, user_id: i64, by: &Principal) -> Result<usize, AuthError> {
        let ended = self.core.end_all(user_id, "forced_logout").await?;
        tracing::info!(
            event = "forced_logout",
            user = user_id,
            sessions = ended,
            "user logged out"
        );
        let changes = serde_json::json!({"sessions_ended": ended, "by": by.label});
        self.core
            .audit_user(by.user_id, "forced_logout", user_id, changes)
            .await;
        Ok(ended)
    }
}

/// The session store as the login actors' ledger: an idle session is
/// revoked and audited, and activity is recorded.
pub struct StoredSessions {
    store: Store,
    audit: Arc<AuditLog>,
    cross_node: Arc<CrossNode>,
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
                self.cross_node.revoke(session_id, self.revoked_for).await;
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
