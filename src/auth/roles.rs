//! Roles and what they may do. VIEWER reads; ENGINEER also acknowledges
//! alerts and manages thresholds, silences and simulated conditions; ADMIN
//! also manages users, API keys, actors and configuration.

use serde::{Deserialize, Serialize};

/// A user's role.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Reads everything a plant operator sees.
    Viewer,
    /// Also acts on alerts, rules, silences and simulated conditions, and
    /// writes setpoints.
    Engineer,
    /// Also manages users, API keys, actors and configuration.
    Admin,
}

/// Something a request may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read equipment, history, alerts, rules, silences.
    Read,
    /// Send samples (ingest) and ask the models (`/detect`).
    Ingest,
    /// Acknowledge and clear alerts.
    AlertsAct,
    /// Create, change and delete alert rules, policies and silences.
    RulesManage,
    /// Change simulated rigs' conditions, power and injected faults.
    SimulatorsManage,
    /// Write setpoints to field devices.
    SetpointsWrite,
    /// Start, stop and restart actors; storage maintenance.
    ActorsManage,
    /// Manage users, sessions of others, API keys; read the audit log.
    UsersManage,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 8] = [
        Permission::Read,
        Permission::Ingest,
        Permission::AlertsAct,
        Permission::RulesManage,
        Permission::SimulatorsManage,
        Permission::SetpointsWrite,
        Permission::ActorsManage,
        Permission::UsersManage,
    ];

    /// Its name in tokens and API key scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Ingest => "ingest",
            Permission::AlertsAct => "alerts:act",
            Permission::RulesManage => "rules:manage",
            Permission::SimulatorsManage => "simulators:manage",
            Permission::SetpointsWrite => "setpoints:write",
            Permission::ActorsManage => "actors:manage",
            Permission::UsersManage => "users:manage",
        }
    }

    /// The permission of that name.
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl Role {
    /// What the role allows.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Viewer => &[Read],
            Role::Engineer => &[
                Read,
                Ingest,
                AlertsAct,
                RulesManage,
                SimulatorsManage,
                SetpointsWrite,
            ],
            Role::Admin => &Permission::ALL,
        }
    }

    /// Whether the role allows `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// Its name as stored: `ADMIN`, `ENGINEER`, `VIEWER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "VIEWER",
            Role::Engineer => "ENGINEER",
            Role::Admin => "ADMIN",
        }
    }

    /// The role of that name, in any case.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Viewer, Role::Engineer, Role::Admin]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_from_viewer_to_admin() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert!(Role::Admin.allows(p));
            if Role::Viewer.allows(p) {
                assert!(Role::Engineer.allows(p), "{p:?}");
            }
        }
        assert!(Role::Viewer.allows(Permission::Read));
        assert!(!Role::Viewer.allows(Permission::AlertsAct));
        assert!(Role::Engineer.allows(Permission::RulesManage));
        assert!(!Role::Engineer.allows(Permission::ActorsManage));
        assert!(!Role::Engineer.allows(Permission::UsersManage));
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
        assert_eq!(
            serde_json::to_string(&Role::Engineer).unwrap(),
            "\"ENGINEER\""
        );
    }
}
