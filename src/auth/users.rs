//! The users: adding, listing and deleting them, their role and equipment
//! scope (an admin's), and their own profile.

use std::sync::Arc;

use hydrowatch_actors::clock::now_ms;
use serde::Deserialize;

use super::core::{email_of, AuthCore};
use super::roles::Role;
use super::{password, AuthError, Principal};
use crate::store::users::{NewUserRecord, Profile, UserRecord};

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// The password (checked against the policy, then hashed).
    pub password: String,
    /// Must change it at first login.
    pub must_change_password: bool,
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
    /// Absent or `null`: unchanged.
    pub name: Option<String>,
    /// Absent: unchanged; `null`: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
    /// Absent: unchanged; `null`: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Extensible attributes: a JSON object.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

/// Users and their profiles.
#[derive(Clone)]
pub struct Users {
    core: Arc<AuthCore>,
}

impl Users {
    pub(super) fn new(core: Arc<AuthCore>) -> Users {
        Users { core }
    }

    /// Creates a user (the first admin comes from `hydrowatch user add`;
    /// there is no default password). `by`: the admin creating it (`None`
    /// from the command line).
    pub async fn add(&self, user: &NewUser, by: Option<i64>) -> Result<i64, AuthError> {
        let email = email_of(&user.email)?;
        let name = user.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AuthError::Invalid {
                field: "name",
                reason: "1 to 200 characters".into(),
            });
        }
        password::check(&user.password, &email, &[])?;
        let hash = password::hash(&user.password, &self.core.settings.hash)?;
        let record = NewUserRecord {
            email: &email,
            name,
            role: user.role.as_str(),
            timezone: "UTC",
            password_hash: &hash,
            must_change_password: user.must_change_password,
        };
        let id = self
            .core
            .store
            .create_user(&record, now_ms())
            .await?
            .ok_or(AuthError::EmailTaken)?;
        let changes = serde_json::json!({"email": email, "role": user.role});
        self.core.audit_user(by, "user.create", id, changes).await;
        Ok(id)
    }

    /// Every user not deleted.
    pub async fn list(&self) -> Result<Vec<UserRecord>, AuthError> {
        Ok(self.core.store.users().await?)
    }

    /// The user with that id, if not deleted.
    pub async fn get(&self, id: i64) -> Result<Option<UserRecord>, AuthError> {
        Ok(self.core.store.user_by_id(id).await?)
    }

    /// Gives a user another role; it holds from their next request. False
    /// when there is no such user.
    pub async fn set_role(
        &self,
        user_id: i64,
        role: Role,
        by: &Principal,
    ) -> Result<bool, AuthError> {
        let store = &self.core.store;
        let Some(user) = store.user_by_id(user_id).await? else {
            return Ok(false);
        };
        if !store.set_role(user_id, role.as_str()).await? {
            return Ok(false);
        }
        let changes = serde_json::json!({"from": user.role, "to": role, "by": by.label});
        self.changed(user_id, by, "user.role", changes).await;
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
        let store = &self.core.store;
        if !store.set_equipment_scope(user_id, scope.as_deref()).await? {
            return Ok(false);
        }
        let changes = serde_json::json!({"equipment": scope, "by": by.label});
        self.changed(user_id, by, "user.equipment", changes).await;
        Ok(true)
    }

    /// Every node drops what it knew of the user, then the admin's change
    /// is audited.
    async fn changed(
        &self,
        user_id: i64,
        by: &Principal,
        action: &str,
        changes: serde_json::Value,
    ) {
        self.core.user_changed(user_id).await;
        self.core
            .audit_user(by.user_id, action, user_id, changes)
            .await;
    }

    /// Deletes a user (marked, so the audit log stays whole) and ends their
    /// sessions. False when there is no such user. Nobody deletes
    /// themselves: an install must keep an administrator who can sign in.
    pub async fn delete(&self, user_id: i64, by: &Principal) -> Result<bool, AuthError> {
        if by.user_id == Some(user_id) {
            return Err(AuthError::Invalid {
                field: "id",
                reason: "you cannot delete yourself".into(),
            });
        }
        if !self.core.store.delete_user(user_id, now_ms()).await? {
            return Ok(false);
        }
        self.core.user_changed(user_id).await;
        let ended = self.core.end_all(user_id, "user_deleted").await?;
        let changes = serde_json::json!({"sessions_ended": ended, "by": by.label});
        self.core
            .audit_user(by.user_id, "user.delete", user_id, changes)
            .await;
        Ok(true)
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
        let user = self.core.signed_in_user(who).await?;
        let user_id = user.id;
        let profile = change.applied_to(user)?;
        self.core.store.set_profile(user_id, &profile).await?;
        let changes = serde_json::json!({"name": profile.name, "company": profile.company,
            "phone": profile.phone, "timezone": profile.timezone});
        self.core
            .audit_user(Some(user_id), "user.profile", user_id, changes)
            .await;
        self.core
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::NotAUser)
    }
}

impl ProfileChange {
    /// The user's profile with this change, if every field is valid.
    fn applied_to(self, user: UserRecord) -> Result<Profile, AuthError> {
        let invalid = |field, reason: &str| AuthError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let name = self.name.unwrap_or(user.name).trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        let company = self.company.unwrap_or(user.company);
        if company.as_ref().is_some_and(|c| c.chars().count() > 200) {
            return Err(invalid("company", "at most 200 characters"));
        }
        let phone = self.phone.unwrap_or(user.phone);
        if phone.as_ref().is_some_and(|p| {
            p.chars().count() > 50
                || !p
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +()-.".contains(c))
        }) {
            return Err(invalid("phone", "at most 50 digits, spaces and +()-."));
        }
        let timezone = self.timezone.unwrap_or(user.timezone);
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid("timezone", "an IANA time zone, e.g. Europe/Berlin"));
        }
        let attributes = self.attributes.unwrap_or(user.attributes);
        if !attributes.is_object() || attributes.to_string().len() > 16 * 1024 {
            return Err(invalid("attributes", "a JSON object of at most 16 KiB"));
        }
        Ok(Profile {
            name,
            company,
            phone,
            timezone,
            attributes,
        })
    }
}
