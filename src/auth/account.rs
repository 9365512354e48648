//! Account e-mails: single-use links that reset a forgotten password or
//! confirm an address, and redeeming them.

use std::sync::Arc;

use hydrowatch_actors::clock::now_ms;

use super::core::{attempted, event, AuthCore};
use super::{password, tokens, AuthError, Principal};
use crate::store::users::UserRecord;

/// Password resets and address verification by e-mailed link.
pub struct Account {
    core: Arc<AuthCore>,
}

/// What a link is for: its token's purpose in the store, and its e-mail.
#[derive(Clone, Copy)]
enum Link {
    PasswordReset,
    Verification,
}

impl Link {
    fn purpose(self) -> &'static str {
        match self {
            Link::PasswordReset => "password_reset",
            Link::Verification => "email_verification",
        }
    }

    /// Subject and text of the e-mail that carries `token`.
    fn mail(self, email: &str, base: &str, token: &str, minutes: u64) -> (&'static str, String) {
        match self {
            Link::PasswordReset => (
                "Reset your hydrowatch password",
                format!(
                    "Someone asked to reset the password of {email} on hydrowatch.\n\n\
                     Set a new one here (the link works once, for {minutes} minutes):\n{base}/#reset={token}\n\n\
                     If it was not you, ignore this message: your password stays as it is.\n\n-- \nhydrowatch\n",
                ),
            ),
            Link::Verification => (
                "Confirm your e-mail address for hydrowatch",
                format!(
                    "Confirm that {email} is your address (the link works once, for {minutes} minutes):\n\
                     {base}/#verify={token}\n\n-- \nhydrowatch\n",
                ),
            ),
        }
    }
}

impl Account {
    pub(super) fn new(core: Arc<AuthCore>) -> Account {
        Account { core }
    }

    /// Sends a single-use link to the user, in the background (so that the
    /// answer takes as long whether or not there is a user).
    async fn send_link(
        &self,
        user: &UserRecord,
        link: Link,
        ttl_secs: u64,
    ) -> Result<(), AuthError> {
        let Some((mailer, base)) = self.core.mail.clone() else {
            return Err(AuthError::Unsupported(
                "account e-mails need [notify.email] configured".into(),
            ));
        };
        let purpose = link.purpose();
        let now = now_ms();
        let token = tokens::random_token();
        let expires = now + (ttl_secs * 1000) as i64;
        self.core
            .store
            .create_user_token(&tokens::digest(&token), user.id, purpose, now, expires)
            .await?;
        let (subject, text) = link.mail(&user.email, &base, &token, ttl_secs / 60);
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
        self.core.limit_login(email, ip.as_deref()).await?;
        if self.core.mail.is_none() {
            return Err(AuthError::Unsupported(
                "password reset needs [notify.email] configured".into(),
            ));
        }
        let user = self.core.user_by_email(email).await?;
        let changes = serde_json::json!({"email": attempted(email), "known": user.is_some()});
        let mut e = event(
            user.as_ref().map(|u| u.id),
            "password_reset.request",
            "user",
            None,
            changes,
        );
        e.ip = ip;
        self.core.audit(e).await;
        if let Some(user) = user {
            let ttl = self.core.settings.reset_ttl_secs;
            self.send_link(&user, Link::PasswordReset, ttl).await?;
        }
        Ok(())
    }

    /// Sets a new password with a reset link's token: the token works
    /// once (a password the policy refuses does not use it up); every
    /// session of the user ends, and the lockout is lifted.
    pub async fn reset_password(&self, token: &str, new: &str) -> Result<(), AuthError> {
        let now = now_ms();
        let store = &self.core.store;
        let invalid =
            || AuthError::InvalidToken("the reset link is not valid, expired or used".into());
        let hash = tokens::digest(token);
        let purpose = Link::PasswordReset.purpose();
        let user_id = store
            .user_token(&hash, purpose, now, false)
            .await?
            .ok_or_else(invalid)?;
        let user = store.user_by_id(user_id).await?.ok_or_else(invalid)?;
        let history = store
            .password_history(user.id, password::HISTORY as i64)
            .await?;
        password::check(new, &user.email, &history)?;
        if store.user_token(&hash, purpose, now, true).await?.is_none() {
            return Err(invalid());
        }
        let hashed = password::hash(new, &self.core.settings.hash)?;
        store.set_password(user.id, &hashed, now).await?;
        store.record_login_success(user.id, now).await?;
        let ended = self.core.end_all(user.id, "password_reset").await?;
        self.core.user_changed(user.id).await;
        let changes = serde_json::json!({"sessions_ended": ended});
        self.core
            .audit_user(Some(user.id), "password_reset", user.id, changes)
            .await;
        Ok(())
    }

    /// Sends the signed-in user a link that confirms their address.
    pub async fn request_verification(&self, who: &Principal) -> Result<(), AuthError> {
        let user = self.core.signed_in_user(who).await?;
        let ttl = self.core.settings.verification_ttl_secs;
        self.send_link(&user, Link::Verification, ttl).await
    }

    /// Confirms an address with a verification link's token (once).
    pub async fn verify_email(&self, token: &str) -> Result<(), AuthError> {
        let now = now_ms();
        let user_id = self
            .core
            .store
            .user_token(
                &tokens::digest(token),
                Link::Verification.purpose(),
                now,
                true,
            )
            .await?
            .ok_or_else(|| {
                AuthError::InvalidToken("the link is not valid, expired or used".into())
            })?;
        self.core.store.set_email_verified(user_id, now).await?;
        self.core
            .audit_user(
                Some(user_id),
                "email.verified",
                user_id,
                serde_json::Value::Null,
            )
            .await;
        Ok(())
    }
}
