//! `[auth]` of `hydrowatch.toml`: its fields, defaults and checks.

use serde::{Deserialize, Serialize};

use super::password::HashCost;
use super::tokens::{SigningKey, TokenKeys};
use crate::cross_node::Rate;

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
