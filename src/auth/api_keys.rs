//! API keys: who a key stands for (and counting its uses), and making,
//! listing and revoking keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hydrowatch_actors::clock::now_ms;
use serde::Serialize;

use super::core::{event, AuthCore};
use super::roles::{Permission, Role};
use super::{tokens, AuthError, Credential, Principal};
use crate::cross_node::Rate;
use crate::store::api_keys::{ApiKeyRecord, NewApiKey};

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
    pub record: ApiKeyRecord,
}

/// Uses of API keys not yet written: at most one write a second per key.
#[derive(Default)]
struct KeyUses {
    pending: Mutex<HashMap<i64, (i64, i64)>>,
}

/// API keys, which act as their maker within their scopes.
#[derive(Clone)]
pub struct ApiKeys {
    core: Arc<AuthCore>,
    uses: Arc<KeyUses>,
}

impl ApiKeys {
    pub(super) fn new(core: Arc<AuthCore>) -> ApiKeys {
        ApiKeys {
            core,
            uses: Default::default(),
        }
    }

    /// Who an API key stands for: its maker, limited to its scopes, if it
    /// is known, not revoked, not expired, its maker still exists and its
    /// rate limit has room.
    pub(super) async fn authenticate(&self, key: &str) -> Result<Principal, AuthError> {
        let now = now_ms();
        let store = &self.core.store;
        let invalid = |why: &str| AuthError::InvalidToken(format!("the API key {why}"));
        let record = store
            .api_key_by_hash(&tokens::digest(key))
            .await?
            .ok_or_else(|| invalid("is not valid"))?;
        if record.revoked_at.is_some() {
            return Err(invalid("was revoked"));
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(invalid("has expired"));
        }
        let owner = store
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
            .core
            .cross_node
            .take(&format!("api-key:{}", record.id), rate)
            .await
        {
            metrics::counter!("hydrowatch_api_key_rate_limited_total").increment(1);
            return Err(AuthError::RateLimited(wait));
        }
        self.count_use(record.id, now);
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
                    .filter_map(|s| Permission::parse(s))
                    .collect(),
            ),
        })
    }

    /// Counts a use of a key: the first use in a second schedules one
    /// write of all of that second's uses.
    fn count_use(&self, id: i64, now: i64) {
        let first = {
            let mut pending = self.uses.pending.lock().unwrap_or_else(|e| e.into_inner());
            let entry = pending.entry(id).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
            entry.0 == 1
        };
        if !first {
            return;
        }
        let (uses, store) = (self.uses.clone(), self.core.store.clone());
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
    pub async fn create(&self, key: &NewKey, by: &Principal) -> Result<IssuedKey, AuthError> {
        let (user_id, _) = by.user_session()?;
        let (name, rate) = checked(key, by)?;
        let now = now_ms();
        let secret = format!("{API_KEY_PREFIX}{}", tokens::random_token());
        let prefix: String = secret.chars().take(12).collect();
        let expires_at = key.expires_in_days.map(|d| now + i64::from(d) * 86_400_000);
        let record = NewApiKey {
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
        let record = self.core.store.create_api_key(&record).await?;
        let changes = serde_json::json!({"name": name, "scopes": key.scopes, "expires_at": expires_at, "prefix": prefix});
        self.audit(Some(user_id), "api_key.create", record.id, changes)
            .await;
        Ok(IssuedKey {
            key: secret,
            record,
        })
    }

    /// Every API key, newest first (never the keys themselves).
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, AuthError> {
        Ok(self.core.store.api_keys().await?)
    }

    /// Revokes an API key: it stops working at once. False when there is
    /// no such key not yet revoked.
    pub async fn revoke(&self, id: i64, by: &Principal) -> Result<bool, AuthError> {
        if !self.core.store.revoke_api_key(id, now_ms()).await? {
            return Ok(false);
        }
        let changes = serde_json::json!({"by": by.label});
        self.audit(by.user_id, "api_key.revoke", id, changes).await;
        Ok(true)
    }

    async fn audit(&self, by: Option<i64>, action: &str, key: i64, changes: serde_json::Value) {
        self.core
            .audit(event(by, action, "api_key", Some(key.to_string()), changes))
            .await;
    }
}

/// The key's trimmed name and its rate limit, if `by` may make such a key.
fn checked<'k>(key: &'k NewKey, by: &Principal) -> Result<(&'k str, Rate), AuthError> {
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
        let allowed =
            Permission::parse(scope).filter(|p| *p != Permission::UsersManage && by.allows(*p));
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
    Ok((name, rate))
}
