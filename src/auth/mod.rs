//! Identity: users with roles, argon2id passwords under a policy, logins
//! that start a session with a short-lived access JWT and an opaque refresh
//! token rotated on every use (a replayed one ends the session), lockout
//! after repeated failures, and logout.
//!
//! A login answers the same for an unknown e-mail, a wrong password and a
//! locked account, and takes as long (a decoy hash is verified), so it tells
//! nobody which e-mails exist.
//!
//! [`Auth`] is what the application holds: one service per concern
//! ([`Logins`], [`Sessions`], [`Users`], [`ApiKeys`], [`Mfa`], [`Account`]),
//! all over one [`AuthCore`] that holds the shared state.

mod account;
mod api_keys;
mod core;
mod login;
mod mfa;
pub mod password;
mod principal;
pub mod roles;
mod sessions;
mod settings;
pub mod tokens;
pub mod totp;
mod users;

use std::sync::Arc;

pub use self::core::AuthCore;
pub use account::Account;
pub use api_keys::{ApiKeys, IssuedKey, NewKey, API_KEY_PREFIX};
pub use login::{Issued, Logins};
pub use mfa::{Enrolment, Mfa};
pub use principal::{Credential, Principal};
pub use sessions::{SessionView, Sessions, StoredSessions};
pub use settings::AuthSettings;
pub use users::{NewUser, ProfileChange, Users};

use crate::store::StoreError;
use password::PasswordError;

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
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Logins, tokens, sessions, users, API keys and second factors: what the
/// application holds. Each field is one service; they share one core.
pub struct Auth {
    /// First-administrator setup, login (lockout, rate limits, second
    /// factor), refresh, logout, password change.
    pub logins: Logins,
    /// What a bearer token stands for; listing and ending live sessions;
    /// the login actors' ledger.
    pub sessions: Sessions,
    /// Adding, listing and deleting users, their role, equipment scope and
    /// profile.
    pub users: Users,
    /// Making, listing and revoking API keys.
    pub keys: ApiKeys,
    /// Enrolling, confirming, disabling and resetting a second factor.
    pub mfa: Mfa,
    /// Password-reset and address-verification links by e-mail.
    pub account: Account,
}

impl Auth {
    /// The services over `core` (with its mail, if any, already set).
    pub fn new(core: AuthCore) -> Auth {
        let core = Arc::new(core);
        let users = Users::new(core.clone());
        let mfa = Mfa::new(core.clone());
        let keys = ApiKeys::new(core.clone());
        Auth {
            logins: Logins::new(core.clone(), users.clone(), mfa.clone()),
            sessions: Sessions::new(core.clone(), keys.clone()),
            account: Account::new(core),
            users,
            keys,
            mfa,
        }
    }
}
