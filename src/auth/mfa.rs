//! The second factor: checking a TOTP or backup code, and a user turning
//! it on and off (or an admin turning it off for them).

use std::sync::Arc;

use hydrowatch_actors::clock::now_ms;
use serde::Serialize;

use super::core::AuthCore;
use super::{password, tokens, totp, AuthError, Principal};

/// Backup codes made when the second factor is turned on.
const BACKUP_CODES: usize = 10;

/// What enrolling a second factor hands out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32, for typing into an authenticator app.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

/// A backup code as typed: lower case, without spaces or dashes.
fn normalise_backup_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Second factors (TOTP, with single-use backup codes).
#[derive(Clone)]
pub struct Mfa {
    core: Arc<AuthCore>,
}

impl Mfa {
    pub(super) fn new(core: Arc<AuthCore>) -> Mfa {
        Mfa { core }
    }

    /// Checks a second factor: a TOTP code (each step once) or a backup
    /// code (each once).
    pub(super) async fn check(&self, user_id: i64, code: &str) -> Result<bool, AuthError> {
        let store = &self.core.store;
        let (secret, _, last) = store.totp_state(user_id).await?;
        let Some(secret) = secret else {
            return Ok(false);
        };
        let trimmed = code.trim();
        if trimmed.len() == 6 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let Some(step) = totp::verify(&secret, trimmed, now_ms() / 1000, last) else {
                return Ok(false);
            };
            return Ok(store.use_totp_step(user_id, step).await?);
        }
        let hash = tokens::digest(&normalise_backup_code(code));
        let used = store.use_backup_code(user_id, &hash, now_ms()).await?;
        if used {
            let changes = serde_json::json!({"backup_code": true});
            self.core
                .audit_user(Some(user_id), "mfa.backup_code_used", user_id, changes)
                .await;
        }
        Ok(used)
    }

    /// Starts enrolling a second factor for the signed-in user: a new
    /// secret, in force once confirmed with a code from it.
    pub async fn enrol(&self, who: &Principal) -> Result<Enrolment, AuthError> {
        let user = self.core.signed_in_user(who).await?;
        let secret = totp::new_secret();
        self.core.store.set_totp_pending(user.id, &secret).await?;
        Ok(Enrolment {
            otpauth_uri: totp::uri(&secret, &user.email),
            secret,
        })
    }

    /// Confirms the enrolled secret with a code from it: the second factor
    /// is on, and the backup codes (shown this once) replace any earlier.
    pub async fn confirm(&self, who: &Principal, code: &str) -> Result<Vec<String>, AuthError> {
        let (user_id, _) = who.user_session()?;
        let (_, pending, _) = self.core.store.totp_state(user_id).await?;
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
        self.core
            .store
            .set_totp(user_id, Some((&pending, step, &hashes)))
            .await?;
        self.core.user_changed(user_id).await;
        let changes = serde_json::json!({"backup_codes": BACKUP_CODES});
        self.core
            .audit_user(Some(user_id), "mfa.enable", user_id, changes)
            .await;
        Ok(codes)
    }

    /// Turns the signed-in user's second factor off: their password and a
    /// current code (or a backup code) are needed.
    pub async fn disable(
        &self,
        who: &Principal,
        password: &str,
        code: &str,
    ) -> Result<(), AuthError> {
        let user = self.core.signed_in_user(who).await?;
        if !password::verify(password, &user.password_hash) {
            self.core.count_failure(user.id, now_ms()).await?;
            return Err(AuthError::WrongPassword);
        }
        if !self.check(user.id, code).await? {
            return Err(AuthError::InvalidMfaCode);
        }
        self.turn_off(
            user.id,
            Some(user.id),
            "mfa.disable",
            serde_json::Value::Null,
        )
        .await
    }

    /// An admin turns a user's second factor off (a lost phone and no
    /// backup codes left): false when there is no such user.
    pub async fn reset(&self, user_id: i64, by: &Principal) -> Result<bool, AuthError> {
        if self.core.store.user_by_id(user_id).await?.is_none() {
            return Ok(false);
        }
        let changes = serde_json::json!({"by": by.label});
        self.turn_off(user_id, by.user_id, "mfa.reset", changes)
            .await?;
        Ok(true)
    }

    async fn turn_off(
        &self,
        user_id: i64,
        by: Option<i64>,
        action: &str,
        changes: serde_json::Value,
    ) -> Result<(), AuthError> {
        self.core.store.set_totp(user_id, None).await?;
        self.core.user_changed(user_id).await;
        self.core.audit_user(by, action, user_id, changes).await;
        Ok(())
    }
}
