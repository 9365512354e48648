//! Alert rules and escalation policies as the system runs them: those of
//! `plant.toml` (provisioned: read-only through the API, changed by editing
//! the file) and those created through the API (stored in the database).
//! Each change is checked against the plant and the notification channels,
//! stored, and published as a new [`AlertingConfig`] that the alerting
//! actor and the equipment units pick up.
//!
//! Changes are taken one at a time, so what is stored and what is published
//! always agree within a process.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{watch, Mutex};

use hydrowatch_actors::alerting::{AlertingConfig, ConfigFeed};
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::{valid_name, RuleSpec, NAME_RULE};
use hydrowatch_models::EquipmentSpec;

use crate::config::check_rule;
use crate::notify::{NotifySettings, Target};
use crate::store::definitions::{Definitions, Replaced, StoredDefinition};
use crate::store::{Store, StoreError};

/// Where a rule or policy is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefinedIn {
    /// `plant.toml`: read-only through the API.
    Config,
    /// The API: stored in the database.
    Api,
}

/// Who made a stored rule or policy, and when it last changed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Provenance {
    /// Raised by each change, from 1; name it in a replacement to make sure
    /// nobody changed it in between.
    pub version: i64,
    /// Who created it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at_ms: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_at_ms: i64,
}

impl From<&StoredDefinition> for Provenance {
    fn from(d: &StoredDefinition) -> Self {
        Provenance {
            version: d.version,
            created_by: d.created_by.clone(),
            created_at_ms: d.created_at,
            updated_by: d.updated_by.clone(),
            updated_at_ms: d.updated_at,
        }
    }
}

/// A rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RuleRow {
    #[schema(value_type = Object)]
    pub rule: RuleSpec,
    /// Where it is defined.
    pub defined_in: DefinedIn,
    /// Version and authors, for a rule created through the API.
    pub provenance: Option<Provenance>,
}

/// An escalation policy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PolicyRow {
    pub name: String,
    /// Its steps and repeat interval.
    #[schema(value_type = Object)]
    pub policy: EscalationPolicy,
    /// Where it is defined.
    pub defined_in: DefinedIn,
    /// Version and authors, for a policy created through the API.
    pub provenance: Option<Provenance>,
}

/// Why a change of a rule or policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Nothing has that id or name.
    #[error("no {0}")]
    NotFound(String),
    /// It is defined in `plant.toml`.
    #[error("{0} is defined in plant.toml; change it there")]
    Provisioned(String),
    /// One with that id or name exists already.
    #[error("{0} exists already")]
    Exists(String),
    /// It changed since the version the caller named.
    #[error("{what} is at version {current}, not {expected}: read it again")]
    Stale {
        /// The rule or policy.
        what: String,
        /// The version named.
        expected: i64,
        /// The version stored.
        current: i64,
    },
    /// Rules still name the policy.
    #[error("policy {name:?} is used by rules {rules:?}")]
    InUse {
        /// The policy.
        name: String,
        /// The rules using it.
        rules: Vec<String>,
    },
    /// The rule or policy is not usable; `field` names what is wrong.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One change to store.
struct Change<'a> {
    of: Definitions,
    key: &'a str,
    json: String,
    by: &'a str,
    now_ms: i64,
    /// "alert rule \"x\"", for messages.
    what: String,
}

/// What is stored, parsed.
#[derive(Default)]
struct Stored {
    rules: BTreeMap<String, (RuleSpec, Provenance)>,
    policies: BTreeMap<String, (EscalationPolicy, Provenance)>,
}

/// The rules and policies in force, and the one way to change them.
pub struct AlertRules {
    /// What `plant.toml` defines.
    provisioned: AlertingConfig,
    equipment: Vec<EquipmentSpec>,
    notify: NotifySettings,
    store: Store,
    /// The stored ones, as last read or written.
    stored: Mutex<Stored>,
    publish: watch::Sender<Arc<AlertingConfig>>,
}

impl AlertRules {
    /// Reads the stored rules and policies and merges them with those of
    /// `plant.toml`. A stored one that clashes with `plant.toml` or no longer
    /// fits the plant is left out (and logged), not fatal: the plant file
    /// may have changed since it was stored.
    pub async fn load(
        provisioned: AlertingConfig,
        equipment: Vec<EquipmentSpec>,
        notify: NotifySettings,
        store: Store,
    ) -> Result<(AlertRules, ConfigFeed), StoreError> {
        let mut stored = Stored::default();
        for d in store.definitions(Definitions::Policies).await? {
            match serde_json::from_str::<EscalationPolicy>(&d.spec) {
                Ok(_) if provisioned.policies.contains_key(&d.key) => tracing::warn!(
                    policy = %d.key,
                    "a stored escalation policy has the name of one in plant.toml; plant.toml wins"
                ),
                Ok(p) => {
                    stored.policies.insert(d.key.clone(), (p, (&d).into()));
                }
                Err(e) => {
                    tracing::warn!(policy = %d.key, error = %e, "a stored escalation policy does not parse; left out")
                }
            }
        }
        let mut policies = provisioned.policies.clone();
        policies.extend(
            stored
                .policies
                .iter()
                .map(|(k, (p, _))| (k.clone(), p.clone())),
        );
        for d in store.definitions(Definitions::Rules).await? {
            let rule = match serde_json::from_str::<RuleSpec>(&d.spec) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(rule = %d.key, error = %e, "a stored alert rule does not parse; left out");
                    continue;
                }
            };
            if provisioned.rules.contains_key(&d.key) {
                tracing::warn!(rule = %d.key, "a stored alert rule has the id of one in plant.toml; plant.toml wins");
            } else if let Err(m) = check_rule(&rule, &policies, &equipment) {
                tracing::warn!(rule = %d.key, field = %m.field, reason = %m.reason, "a stored alert rule no longer fits the plant; left out");
            } else {
                stored.rules.insert(d.key.clone(), (rule, (&d).into()));
            }
        }
        let config = Arc::new(merge(&provisioned, &stored));
        tracing::info!(
            rules = config.rules.len(),
            stored_rules = stored.rules.len(),
            policies = config.policies.len(),
            "alert rules loaded"
        );
        let (publish, feed) = watch::channel(config);
        Ok((
            AlertRules {
                provisioned,
                equipment,
                notify,
                store,
                stored: Mutex::new(stored),
                publish,
            },
            feed,
        ))
    }

    /// The rules and policies in force.
    pub fn current(&self) -> Arc<AlertingConfig> {
        self.publish.borrow().clone()
    }

    /// Every rule, by id.
    pub async fn rules(&self) -> Vec<RuleRow> {
        let stored = self.stored.lock().await;
        let mut rows: Vec<RuleRow> = self
            .provisioned
            .rules
            .values()
            .map(|r| RuleRow {
                rule: r.clone(),
                defined_in: DefinedIn::Config,
                provenance: None,
            })
            .chain(stored.rules.values().map(|(r, p)| RuleRow {
                rule: r.clone(),
                defined_in: DefinedIn::Api,
                provenance: Some(p.clone()),
            }))
            .collect();
        rows.sort_by(|a, b| a.rule.id.cmp(&b.rule.id));
        rows
    }

    /// The rule with that id, from config or the API.
    pub async fn rule(&self, id: &str) -> Result<RuleRow, RulesError> {
        self.rules()
            .await
            .into_iter()
            .find(|r| r.rule.id == id)
            .ok_or_else(|| RulesError::NotFound(format!("alert rule {id:?}")))
    }

    /// Every escalation policy, by name.
    pub async fn policies(&self) -> Vec<PolicyRow> {
        let stored = self.stored.lock().await;
        let mut rows: Vec<PolicyRow> = self
            .provisioned
            .policies
            .iter()
            .map(|(name, p)| PolicyRow {
                name: name.clone(),
                policy: p.clone(),
                defined_in: DefinedIn::Config,
                provenance: None,
            })
            .chain(stored.policies.iter().map(|(name, (p, prov))| PolicyRow {
                name: name.clone(),
                policy: p.clone(),
                defined_in: DefinedIn::Api,
                provenance: Some(prov.clone()),
            }))
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// One escalation policy.
    pub async fn policy(&self, name: &str) -> Result<PolicyRow, RulesError> {
        self.policies()
            .await
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| RulesError::NotFound(format!("escalation policy {name:?}")))
    }

    /// Creates a rule (`replace: None`) or replaces one created through the
    /// API (`replace: Some(expected version)`, 0 for any), and puts it in
    /// force.
    pub async fn put_rule(
        &self,
        rule: RuleSpec,
        by: &str,
        replace: Option<i64>,
        now_ms: i64,
    ) -> Result<RuleRow, RulesError> {
        let mut stored = self.stored.lock().await;
        let what = format!("alert rule {:?}", rule.id);
        if self.provisioned.rules.contains_key(&rule.id) {
            return Err(RulesError::Provisioned(what));
        }
        let current = self.current();
        check_rule(&rule, &current.policies, &self.equipment)
            .map_err(|m| invalid(m.field, m.reason))?;
        for (i, channel) in rule.channels.iter().enumerate() {
            Target::check(channel, &self.notify)
                .map_err(|e| invalid(format!("channels[{i}]"), e))?;
        }
        let json = serde_json::to_string(&rule).map_err(|e| invalid("rule", e.to_string()))?;
        let before = stored.rules.get(&rule.id).map(|(_, p)| p);
        let change = Change {
            of: Definitions::Rules,
            key: &rule.id,
            json,
            by,
            now_ms,
            what,
        };
        let provenance = self.write(&change, replace, before).await?;
        stored
            .rules
            .insert(rule.id.clone(), (rule.clone(), provenance.clone()));
        self.publish(&stored);
        tracing::info!(rule = %rule.id, by, version = provenance.version, "alert rule stored");
        Ok(RuleRow {
            rule,
            defined_in: DefinedIn::Api,
            provenance: Some(provenance),
        })
    }

    /// Deletes a rule created through the API; its open alerts are cleared.
    pub async fn delete_rule(&self, id: &str, by: &str) -> Result<(), RulesError> {
        let mut stored = self.stored.lock().await;
        let what = format!("alert rule {id:?}");
        if self.provisioned.rules.contains_key(id) {
            return Err(RulesError::Provisioned(what));
        }
        if !stored.rules.contains_key(id) {
            return Err(RulesError::NotFound(what));
        }
        self.store.delete_definition(Definitions::Rules, id).await?;
        stored.rules.remove(id);
        self.publish(&stored);
        tracing::info!(rule = %id, by, "alert rule deleted");
        Ok(())
    }

    /// Creates a policy (`replace: None`) or replaces one created through
    /// the API (`replace: Some(expected version)`, 0 for any); open alerts
    /// of the rules that use it follow the new steps.
    pub async fn put_policy(
        &self,
        name: &str,
        policy: EscalationPolicy,
        by: &str,
        replace: Option<i64>,
        now_ms: i64,
    ) -> Result<PolicyRow, RulesError> {
        let mut stored = self.stored.lock().await;
        let what = format!("escalation policy {name:?}");
        if self.provisioned.policies.contains_key(name) {
            return Err(RulesError::Provisioned(what));
        }
        check_policy(name, &policy, &self.notify)?;
        let json = serde_json::to_string(&policy).map_err(|e| invalid("policy", e.to_string()))?;
        let before = stored.policies.get(name).map(|(_, p)| p);
        let change = Change {
            of: Definitions::Policies,
            key: name,
            json,
            by,
            now_ms,
            what,
        };
        let provenance = self.write(&change, replace, before).await?;
        stored
            .policies
            .insert(name.to_owned(), (policy.clone(), provenance.clone()));
        self.publish(&stored);
        tracing::info!(policy = %name, by, version = provenance.version, "escalation policy stored");
        Ok(PolicyRow {
            name: name.to_owned(),
            policy,
            defined_in: DefinedIn::Api,
            provenance: Some(provenance),
        })
    }

    /// Deletes a policy created through the API that no rule uses.
    pub async fn delete_policy(&self, name: &str, by: &str) -> Result<(), RulesError> {
        let mut stored = self.stored.lock().await;
        let what = format!("escalation policy {name:?}");
        if self.provisioned.policies.contains_key(name) {
            return Err(RulesError::Provisioned(what));
        }
        if !stored.policies.contains_key(name) {
            return Err(RulesError::NotFound(what));
        }
        let users: Vec<String> = self
            .current()
            .rules
            .values()
            .filter(|r| r.policy.as_deref() == Some(name))
            .map(|r| r.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(RulesError::InUse {
                name: name.to_owned(),
                rules: users,
            });
        }
        self.store
            .delete_definition(Definitions::Policies, name)
            .await?;
        stored.policies.remove(name);
        self.publish(&stored);
        tracing::info!(policy = %name, by, "escalation policy deleted");
        Ok(())
    }

    /// Stores a new definition (`replace: None`) or replaces the stored one
    /// (`before`), only at the version named when one is (> 0).
    async fn write(
        &self,
        change: &Change<'_>,
        replace: Option<i64>,
        before: Option<&Provenance>,
    ) -> Result<Provenance, RulesError> {
        let Change {
            of,
            key,
            json,
            by,
            now_ms,
            what,
        } = change;
        let (of, now_ms) = (*of, *now_ms);
        match (replace, before) {
            (None, Some(_)) => Err(RulesError::Exists(what.clone())),
            (Some(_), None) => Err(RulesError::NotFound(what.clone())),
            (None, None) => {
                if !self
                    .store
                    .insert_definition(of, key, json, by, now_ms)
                    .await?
                {
                    // Created by another node in the meantime.
                    return Err(RulesError::Exists(what.clone()));
                }
                Ok(Provenance {
                    version: 1,
                    created_by: by.to_string(),
                    created_at_ms: now_ms,
                    updated_by: by.to_string(),
                    updated_at_ms: now_ms,
                })
            }
            (Some(expected), Some(before)) => {
                let expected_version = (expected > 0).then_some(expected);
                match self
                    .store
                    .replace_definition(of, key, json, by, now_ms, expected_version)
                    .await?
                {
                    Replaced::Done(version) => Ok(Provenance {
                        version,
                        updated_by: by.to_string(),
                        updated_at_ms: now_ms,
                        ..before.clone()
                    }),
                    Replaced::Missing => Err(RulesError::NotFound(what.clone())),
                    Replaced::Stale(current) => Err(RulesError::Stale {
                        what: what.clone(),
                        expected,
                        current,
                    }),
                }
            }
        }
    }

    fn publish(&self, stored: &Stored) {
        self.publish
            .send_replace(Arc::new(merge(&self.provisioned, stored)));
    }
}

/// The provisioned rules and policies with the stored ones added.
fn merge(provisioned: &AlertingConfig, stored: &Stored) -> AlertingConfig {
    let mut config = provisioned.clone();
    config.policies.extend(
        stored
            .policies
            .iter()
            .map(|(k, (p, _))| (k.clone(), p.clone())),
    );
    config.rules.extend(
        stored
            .rules
            .iter()
            .map(|(k, (r, _))| (k.clone(), r.clone())),
    );
    config
}

/// Checks a policy taken through the API: its name, its steps, and that
/// each channel is configured.
fn check_policy(
    name: &str,
    policy: &EscalationPolicy,
    notify: &NotifySettings,
) -> Result<(), RulesError> {
    if !valid_name(name) {
        return Err(invalid("name", NAME_RULE));
    }
    policy
        .validate()
        .map_err(|e| invalid("policy.steps", e.to_string()))?;
    for (i, step) in policy.steps.iter().enumerate() {
        for (j, channel) in step.channels.iter().enumerate() {
            Target::check(channel, notify)
                .map_err(|e| invalid(format!("policy.steps[{i}].channels[{j}]"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrowatch_models::alert::escalation::EscalationStep;

    fn policy(channels: &[&str]) -> EscalationPolicy {
        EscalationPolicy {
            steps: vec![EscalationStep {
                after_ms: 0,
                channels: channels.iter().map(|c| c.to_string()).collect(),
            }],
            repeat_critical_ms: None,
        }
    }

    #[test]
    fn a_policy_may_only_name_configured_channels() {
        let mut notify = NotifySettings::default();
        check_policy("ops", &policy(&["wallboard"]), &notify).unwrap();
        let field = |r: Result<(), RulesError>| match r {
            Err(RulesError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(check_policy(
                "ops",
                &policy(&["wallboard", "webhook:ops"]),
                &notify
            )),
            "policy.steps[0].channels[1]"
        );
        assert_eq!(
            field(check_policy(
                "ops",
                &policy(&["email:x@plant.example"]),
                &notify
            )),
            "policy.steps[0].channels[0]"
        );
        assert_eq!(
            field(check_policy("ops", &policy(&["pager"]), &notify)),
            "policy.steps[0].channels[0]"
        );
        assert_eq!(
            field(check_policy("o ps", &policy(&["wallboard"]), &notify)),
            "name"
        );
        assert_eq!(
            field(check_policy("ops", &policy(&[]), &notify)),
            "policy.steps"
        );
        notify.webhooks.insert(
            "ops".into(),
            serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef0123456789abcdef"})).unwrap(),
        );
        check_policy("ops", &policy(&["webhook:ops"]), &notify).unwrap();
    }
}
