//! Who is asking, and how they proved it.

use std::sync::Arc;

use super::roles::{self, Role};
use super::AuthError;

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
