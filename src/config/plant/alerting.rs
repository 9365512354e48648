//! `[alerting]` of `plant.toml`: rules, escalation policies, silences and
//! inhibitions, checked against the equipment.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use hydrowatch_actors::alerting::AlertingConfig;
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::RuleSpec;
use hydrowatch_models::alert::silence::{Inhibition, Matchers, Silence, Window, WindowSpec};
use hydrowatch_models::EquipmentSpec;

use crate::config::{err, ConfigError};

/// `[alerting]` of `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSection {
    /// How often the alerting actor looks at its timers, ms.
    pub tick_ms: u64,
    /// Which alerts of an equipment unit hold back its sensors' lesser ones.
    pub inhibition: Inhibition,
    /// Escalation policies by name.
    pub policies: BTreeMap<String, EscalationPolicy>,
    pub rules: Vec<RuleSpec>,
    /// Silences and maintenance windows in force from start-up.
    pub silences: Vec<SilenceConfig>,
}

impl Default for AlertingSection {
    fn default() -> Self {
        AlertingSection {
            tick_ms: 1_000,
            inhibition: Inhibition::default(),
            policies: BTreeMap::new(),
            rules: Vec::new(),
            silences: Vec::new(),
        }
    }
}

/// A silence in `plant.toml`: which alerts, when, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Which alerts.
    #[serde(default)]
    pub matchers: Matchers,
    pub window: WindowSpec,
    /// Why (shown with the silenced alerts).
    #[serde(default)]
    pub comment: String,
}

impl AlertingSection {
    /// Checks the rules against the plant and builds the alerting actor's
    /// configuration.
    pub(super) fn build(
        &self,
        file: &str,
        equipment: &[EquipmentSpec],
    ) -> Result<AlertingConfig, ConfigError> {
        if !(100..=60_000).contains(&self.tick_ms) {
            return Err(err(
                file,
                format!(
                    "alerting.tick_ms = {}: must be between 100 and 60000",
                    self.tick_ms
                ),
            ));
        }
        for (name, policy) in &self.policies {
            if !hydrowatch_models::alert::rules::valid_name(name) {
                return Err(err(
                    file,
                    format!(
                        "alerting.policies.{name:?}: {}",
                        hydrowatch_models::alert::rules::NAME_RULE
                    ),
                ));
            }
            policy
                .validate()
                .map_err(|e| err(file, format!("alerting.policies.{name}: {e}")))?;
            for (i, step) in policy.steps.iter().enumerate() {
                for channel in &step.channels {
                    crate::notify::Target::parse(channel).map_err(|e| {
                        err(file, format!("alerting.policies.{name}.steps[{i}]: {e}"))
                    })?;
                }
            }
        }
        let mut rules = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("alerting.rules[{i}]");
            check_rule(rule, &self.policies, equipment)
                .map_err(|m| err(file, format!("{key}.{}: {}", m.field, m.reason)))?;
            if rules.insert(rule.id.clone(), rule.clone()).is_some() {
                return Err(err(
                    file,
                    format!("{key}.id = {:?}: duplicate rule id", rule.id),
                ));
            }
        }
        let mut silences = Vec::new();
        for (i, s) in self.silences.iter().enumerate() {
            let window = Window::try_from(&s.window)
                .map_err(|e| err(file, format!("alerting.silences[{i}].window: {e}")))?;
            silences.push(Silence {
                matchers: s.matchers.clone(),
                window,
            });
        }
        Ok(AlertingConfig {
            rules,
            policies: self.policies.clone(),
            silences,
            inhibition: self.inhibition,
            tick: Duration::from_millis(self.tick_ms),
        })
    }
}

/// Why a rule does not fit the plant: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMisfit {
    /// The field, e.g. `when.threshold.min` or `policy`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks a rule on its own and against the plant: its policy exists, it
/// covers some equipment, and its condition watches something there.
pub fn check_rule(
    rule: &RuleSpec,
    policies: &BTreeMap<String, EscalationPolicy>,
    equipment: &[EquipmentSpec],
) -> Result<(), RuleMisfit> {
    use hydrowatch_models::alert::rules::Condition;
    let misfit = |field: &str, reason: String| RuleMisfit {
        field: field.to_owned(),
        reason,
    };
    rule.validate()
        .map_err(|e| misfit(e.field, format!("rule `{}`: {}", e.rule, e.reason)))?;
    for (i, channel) in rule.channels.iter().enumerate() {
        crate::notify::Target::parse(channel).map_err(|e| misfit(&format!("channels[{i}]"), e))?;
    }
    if let Some(p) = &rule.policy {
        if !policies.contains_key(p) {
            return Err(misfit(
                "policy",
                format!("{p:?}: no such escalation policy"),
            ));
        }
    }
    let units: Vec<&EquipmentSpec> = equipment
        .iter()
        .filter(|e| rule.covers_equipment(e.id.as_str()))
        .collect();
    if units.is_empty() {
        return Err(misfit(
            "equipment",
            format!("{:?}: no such equipment", rule.equipment),
        ));
    }
    let sensors = |covers: &dyn Fn(&str) -> bool| {
        units
            .iter()
            .flat_map(|e| e.sensors.iter())
            .any(|s| covers(s.id.as_str()))
    };
    let watches_something = match &rule.when {
        Condition::Threshold(t) => sensors(&|s| t.covers_sensor(s)),
        Condition::Quality(q) => sensors(&|s| q.covers_sensor(s)),
        Condition::Model(_) | Condition::Novelty(_) => units.iter().any(|e| e.cycle.is_some()),
    };
    if !watches_something {
        return Err(misfit(
            "when",
            "matches no sensor (or, for a model rule, no equipment with [equipment.cycle]) of the equipment it covers".into(),
        ));
    }
    Ok(())
}
