//! Alert rules: when a source fires, as written in `plant.toml` or an API
//! body, checked once, and the evaluators that turn live data into
//! [`super::engine::Signal`]s.
//!
//! Three kinds:
//! - **threshold** on a sensor or on every sensor of a type (`TS` covers
//!   TS1…TS4: a sensor's type is its id without the trailing number), with a
//!   band (`min`, `max`) and a hysteresis: firing beyond the band, clear only
//!   once back inside it by the hysteresis;
//! - **model**: a component judged degraded at least this severely for N
//!   cycles in a row, or a novelty score above a level for N cycles;
//! - **quality**: a sensor offline or with bad readings for longer than T.
//!
//! Every rule has an id (the alert's type: `<kind>:<id>`), an optional
//! equipment unit (all when left out), a severity, the pending
//! (`for_ms`) and keep-firing periods, and an escalation policy by name.

use serde::{Deserialize, Serialize};

use super::escalation::{EscalationPolicy, EscalationStep};
use super::{Millis, Timing};
use crate::ensemble::{Component, Severity, Verdict};

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique among the rules; names the alerts' type.
    pub id: String,
    /// Only this equipment unit; all when left out.
    #[serde(default)]
    pub equipment: Option<String>,
    /// The alerts' severity (a model rule may raise it to the level's).
    pub severity: Severity,
    /// How long the condition must hold before the alert fires, ms.
    #[serde(default)]
    pub for_ms: Millis,
    /// How long the alert keeps firing once the condition is gone, ms.
    #[serde(default)]
    pub keep_firing_ms: Millis,
    /// The escalation policy's name; none: recorded and shown only.
    #[serde(default)]
    pub policy: Option<String>,
    /// Channels told at once when an alert fires (`wallboard`,
    /// `email:ADDRESS`, `webhook:NAME`, `slack:NAME`), besides the policy's
    /// steps: added to its first step when that is immediate, else as a
    /// step of their own before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Flapping: more than this many changes between active and cleared
    /// (default 4)…
    #[serde(default)]
    pub flap_changes: Option<usize>,
    /// …within this window, ms (default 10 min), holds notifications until
    /// a window passes without a change.
    #[serde(default)]
    pub flap_window_ms: Option<Millis>,
    /// What makes the rule fire.
    pub when: Condition,
}

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// A sensor's value outside a band.
    Threshold(ThresholdCondition),
    /// A component's health by the cycle models.
    Model(ModelCondition),
    /// The cycle novelty score.
    Novelty(NoveltyCondition),
    /// A sensor offline or reading bad values.
    Quality(QualityCondition),
}

/// A band on a sensor's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCondition {
    /// One sensor…
    #[serde(default)]
    pub sensor: Option<String>,
    /// …or every sensor of a type (its id without the trailing number).
    #[serde(default)]
    pub sensor_type: Option<String>,
    /// Firing below this.
    #[serde(default)]
    pub min: Option<f64>,
    /// Firing above this.
    #[serde(default)]
    pub max: Option<f64>,
    /// Clear only once back inside the band by this much.
    #[serde(default)]
    pub hysteresis: f64,
}

/// A component judged degraded for some cycles in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCondition {
    /// The component; any when left out.
    #[serde(default)]
    pub component: Option<Component>,
    /// Degraded at least this severely.
    pub at_least: Severity,
    /// Cycles in a row (1 or more).
    #[serde(default = "one")]
    pub cycles: u32,
}

/// A cycle novelty score above a level for some cycles in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoveltyCondition {
    /// The level (1 is the detector's own threshold).
    pub above: f64,
    /// Cycles in a row (1 or more).
    #[serde(default = "one")]
    pub cycles: u32,
}

/// A sensor offline or reading bad values for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityCondition {
    /// One sensor…
    #[serde(default)]
    pub sensor: Option<String>,
    /// …or every sensor of a type; every sensor when both are left out.
    #[serde(default)]
    pub sensor_type: Option<String>,
    /// For longer than this, ms.
    pub longer_than_ms: Millis,
}

fn one() -> u32 {
    1
}

/// Why a rule is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: {field}: {reason}")]
pub struct RuleError {
    /// The rule's id.
    pub rule: String,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl RuleSpec {
    /// Checks the rule on its own (that its equipment, sensors and policy
    /// exist is checked against the plant by the caller).
    pub fn validate(&self) -> Result<(), RuleError> {
        let err = |field: &'static str, reason: &str| RuleError {
            rule: self.id.clone(),
            field,
            reason: reason.to_owned(),
        };
        if !valid_name(&self.id) {
            return Err(err("id", NAME_RULE));
        }
        if self.for_ms < 0 || self.keep_firing_ms < 0 {
            return Err(err("for_ms", "durations must be zero or more"));
        }
        if self.channels.iter().any(|c| c.trim().is_empty()) {
            return Err(err("channels", "a channel must not be empty"));
        }
        if self.flap_changes == Some(0) {
            return Err(err("flap_changes", "must be 1 or more"));
        }
        if self.flap_window_ms.is_some_and(|w| w <= 0) {
            return Err(err("flap_window_ms", "must be more than zero"));
        }
        match &self.when {
            Condition::Threshold(t) => {
                if t.sensor.is_some() == t.sensor_type.is_some() {
                    return Err(err(
                        "when.threshold",
                        "give sensor or sensor_type (one of them)",
                    ));
                }
                if t.min.is_none() && t.max.is_none() {
                    return Err(err("when.threshold", "give min, max or both"));
                }
                if t.min.into_iter().chain(t.max).any(|v| !v.is_finite()) {
                    return Err(err("when.threshold", "min and max must be finite numbers"));
                }
                if let (Some(min), Some(max)) = (t.min, t.max) {
                    if min >= max {
                        return Err(err("when.threshold.min", "must be below max"));
                    }
                    if t.hysteresis * 2.0 >= max - min {
                        return Err(err(
                            "when.threshold.hysteresis",
                            "must be less than half the band",
                        ));
                    }
                }
                if !(t.hysteresis >= 0.0 && t.hysteresis.is_finite()) {
                    return Err(err("when.threshold.hysteresis", "must be zero or more"));
                }
            }
            Condition::Model(m) if m.cycles == 0 => {
                return Err(err("when.model.cycles", "must be 1 or more"))
            }
            Condition::Novelty(n) if n.cycles == 0 || !(n.above > 0.0 && n.above.is_finite()) => {
                return Err(err(
                    "when.novelty",
                    "above must be a positive number, cycles 1 or more",
                ))
            }
            Condition::Quality(q) if q.longer_than_ms <= 0 => {
                return Err(err("when.quality.longer_than_ms", "must be more than zero"))
            }
            _ => {}
        }
        Ok(())
    }

    /// The alerts' type: `<kind>:<id>`.
    pub fn alert_kind(&self) -> String {
        let kind = match self.when {
            Condition::Threshold(_) => "threshold",
            Condition::Model(_) => "model",
            Condition::Novelty(_) => "novelty",
            Condition::Quality(_) => "quality",
        };
        format!("{kind}:{}", self.id)
    }

    /// The lifecycle timing of its alerts.
    pub fn timing(&self) -> Timing {
        let defaults = Timing::default();
        Timing {
            for_ms: self.for_ms,
            keep_firing_ms: self.keep_firing_ms,
            flap_changes: self.flap_changes.unwrap_or(defaults.flap_changes),
            flap_window_ms: self.flap_window_ms.unwrap_or(defaults.flap_window_ms),
        }
    }

    /// The escalation its alerts follow: `policy` (the one it names) with
    /// the rule's own channels told at once.
    pub fn escalation(&self, policy: Option<&EscalationPolicy>) -> Option<EscalationPolicy> {
        if self.channels.is_empty() {
            return policy.cloned();
        }
        let mut escalation = policy.cloned().unwrap_or(EscalationPolicy {
            steps: Vec::new(),
            repeat_critical_ms: None,
        });
        match escalation.steps.first_mut() {
            Some(first) if first.after_ms == 0 => {
                for c in &self.channels {
                    if !first.channels.contains(c) {
                        first.channels.push(c.clone());
                    }
                }
            }
            _ => escalation.steps.insert(
                0,
                EscalationStep {
                    after_ms: 0,
                    channels: self.channels.clone(),
                },
            ),
        }
        Some(escalation)
    }

    /// Whether it applies to this equipment unit.
    pub fn covers_equipment(&self, equipment: &str) -> bool {
        self.equipment.as_deref().is_none_or(|e| e == equipment)
    }
}

/// What a rule id or policy name may be, for messages.
pub const NAME_RULE: &str = "letters, digits, '-', '_' and '.' only, 1 to 100 characters";

/// Whether `name` may be a rule id or an escalation policy's name: it names
/// alert types and URL paths.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A sensor's type: its id without the trailing number (`TS3` → `TS`).
pub fn sensor_type(sensor: &str) -> &str {
    sensor.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn selects(sensor: &Option<String>, sensor_type_: &Option<String>, id: &str) -> bool {
    match (sensor, sensor_type_) {
        (Some(s), _) => s == id,
        (None, Some(t)) => t == sensor_type(id),
        (None, None) => true,
    }
}

impl ThresholdCondition {
    /// Whether it watches this sensor.
    pub fn covers_sensor(&self, sensor: &str) -> bool {
        selects(&self.sensor, &self.sensor_type, sensor)
    }
}

impl QualityCondition {
    /// Whether it watches this sensor.
    pub fn covers_sensor(&self, sensor: &str) -> bool {
        selects(&self.sensor, &self.sensor_type, sensor)
    }
}

/// A threshold rule on one sensor: whether it fires, sample by sample.
#[derive(Debug, Clone)]
pub struct ThresholdEvaluator {
    condition: ThresholdCondition,
    firing: bool,
}

impl ThresholdEvaluator {
    /// Not firing to begin with.
    pub fn new(condition: ThresholdCondition) -> ThresholdEvaluator {
        ThresholdEvaluator {
            condition,
            firing: false,
        }
    }

    /// Whether it fires now.
    pub fn firing(&self) -> bool {
        self.firing
    }

    /// Feeds one value; returns whether it fires after it. A missing value
    /// changes nothing (the quality rules watch for those).
    pub fn observe(&mut self, value: Option<f64>) -> bool {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return self.firing;
        };
        let c = &self.condition;
        let outside = c.max.is_some_and(|max| v > max) || c.min.is_some_and(|min| v < min);
        let back_inside = c.max.is_none_or(|max| v <= max - c.hysteresis)
            && c.min.is_none_or(|min| v >= min + c.hysteresis);
        if outside {
            self.firing = true;
        } else if back_inside {
            self.firing = false;
        }
        self.firing
    }
}

/// A model or novelty rule on one equipment unit, cycle by cycle.
#[derive(Debug, Clone)]
pub struct CycleEvaluator {
    condition: Condition,
    run: u32,
}

/// What a cycle rule says after a verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleFinding {
    /// Whether it fires.
    pub firing: bool,
    /// The severity the verdict gives (for a model rule, the worst level of
    /// the matching components; a novelty rule has none of its own).
    pub severity: Option<Severity>,
    /// The deciding value: the component's probability or the novelty score.
    pub value: Option<f64>,
}

impl CycleEvaluator {
    /// For a model or novelty condition; `None` for the others.
    pub fn new(condition: &Condition) -> Option<CycleEvaluator> {
        matches!(condition, Condition::Model(_) | Condition::Novelty(_)).then(|| CycleEvaluator {
            condition: condition.clone(),
            run: 0,
        })
    }

    /// Feeds the verdict on one cycle.
    pub fn observe(&mut self, verdict: &Verdict) -> CycleFinding {
        let (hit, severity, value, cycles) = match &self.condition {
            Condition::Model(m) => {
                let worst = verdict
                    .health
                    .iter()
                    .filter(|h| m.component.is_none_or(|c| c == h.component))
                    .filter(|h| h.severity.is_some_and(|s| s >= m.at_least))
                    .max_by(|a, b| a.severity.cmp(&b.severity));
                (
                    worst.is_some(),
                    worst.and_then(|h| h.severity),
                    worst.map(|h| h.probability),
                    m.cycles,
                )
            }
            Condition::Novelty(n) => {
                let score = verdict.novelty;
                (score.is_some_and(|s| s > n.above), None, score, n.cycles)
            }
            _ => (false, None, None, 1),
        };
        self.run = if hit { self.run.saturating_add(1) } else { 0 };
        CycleFinding {
            firing: self.run >= cycles,
            severity,
            value,
        }
    }
}

/// A quality rule on one sensor: fires once readings have been missing or
/// bad for longer than the limit.
#[derive(Debug, Clone)]
pub struct QualityEvaluator {
    longer_than_ms: Millis,
    /// Since when the readings have been missing or bad.
    bad_since: Option<Millis>,
}

impl QualityEvaluator {
    pub fn new(condition: &QualityCondition) -> QualityEvaluator {
        QualityEvaluator {
            longer_than_ms: condition.longer_than_ms,
            bad_since: None,
        }
    }

    /// A reading at `at`: good or not (bad quality, device error, out of
    /// range). Returns whether it fires.
    pub fn observe(&mut self, at: Millis, good: bool) -> bool {
        if good {
            self.bad_since = None;
        } else {
            self.bad_since.get_or_insert(at);
        }
        self.check(at)
    }

    /// Whether it fires at `now` (an offline sensor sends no readings: the
    /// caller checks on its staleness timer, passing the last reading time
    /// as the start of the silence through [`QualityEvaluator::offline_since`]).
    pub fn check(&self, now: Millis) -> bool {
        self.bad_since
            .is_some_and(|since| now - since > self.longer_than_ms)
    }

    /// Marks the sensor silent since `since` (its last reading), unless it
    /// was already bad earlier.
    pub fn offline_since(&mut self, since: Millis) {
        self.bad_since = Some(self.bad_since.map_or(since, |b| b.min(since)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::ComponentHealth;

    fn parse(toml_like: serde_json::Value) -> RuleSpec {
        serde_json::from_value(toml_like).unwrap()
    }

    fn threshold(min: Option<f64>, max: Option<f64>, hysteresis: f64) -> RuleSpec {
        parse(serde_json::json!({
            "id": "oil-hot", "severity": "major", "for_ms": 30000,
            "when": {"threshold": {"sensor_type": "TS", "min": min, "max": max, "hysteresis": hysteresis}}
        }))
    }

    #[test]
    fn a_rules_own_channels_are_told_at_once() {
        let mut rule = threshold(None, Some(60.0), 0.0);
        assert_eq!(rule.escalation(None), None);
        rule.channels = vec!["webhook:ops".into()];
        let alone = rule.escalation(None).unwrap();
        assert_eq!(alone.steps.len(), 1);
        assert_eq!(
            (alone.steps[0].after_ms, &alone.steps[0].channels[..]),
            (0, &["webhook:ops".to_owned()][..])
        );
        let policy = EscalationPolicy {
            steps: vec![
                EscalationStep {
                    after_ms: 0,
                    channels: vec!["wallboard".into(), "webhook:ops".into()],
                },
                EscalationStep {
                    after_ms: 300_000,
                    channels: vec!["email:oncall@plant.example".into()],
                },
            ],
            repeat_critical_ms: Some(1_800_000),
        };
        // Merged into an immediate first step, without repeating a channel.
        rule.channels = vec!["webhook:ops".into(), "slack:shift".into()];
        let merged = rule.escalation(Some(&policy)).unwrap();
        assert_eq!(
            merged.steps[0].channels,
            ["wallboard", "webhook:ops", "slack:shift"]
        );
        assert_eq!(merged.steps[1], policy.steps[1]);
        assert_eq!(merged.repeat_critical_ms, policy.repeat_critical_ms);
        // A step of their own before a delayed first step.
        let mut later = policy.clone();
        later.steps.remove(0);
        let before = rule.escalation(Some(&later)).unwrap();
        assert_eq!(before.steps.len(), 2);
        assert_eq!(before.steps[0].after_ms, 0);
        assert_eq!(before.steps[1], later.steps[0]);
        rule.channels = vec![" ".into()];
        assert_eq!(rule.validate().unwrap_err().field, "channels");
    }

    #[test]
    fn rules_are_checked_with_the_field_named() {
        let ok = threshold(Some(10.0), Some(60.0), 2.0);
        ok.validate().unwrap();
        assert_eq!(ok.alert_kind(), "threshold:oil-hot");
        assert_eq!(ok.timing().for_ms, 30_000);
        assert_eq!(ok.timing().flap_changes, Timing::default().flap_changes);
        let mut flappy = threshold(None, Some(1.0), 0.0);
        flappy.flap_changes = Some(2);
        flappy.flap_window_ms = Some(60_000);
        assert_eq!(
            (flappy.timing().flap_changes, flappy.timing().flap_window_ms),
            (2, 60_000)
        );
        flappy.flap_changes = Some(0);
        assert_eq!(flappy.validate().unwrap_err().field, "flap_changes");
        let bad = |spec: RuleSpec| spec.validate().unwrap_err().field;
        assert_eq!(
            bad(threshold(Some(60.0), Some(10.0), 0.0)),
            "when.threshold.min"
        );
        assert_eq!(bad(threshold(None, None, 0.0)), "when.threshold");
        assert_eq!(
            bad(threshold(Some(0.0), Some(10.0), 5.0)),
            "when.threshold.hysteresis"
        );
        assert_eq!(
            bad(threshold(None, Some(10.0), -1.0)),
            "when.threshold.hysteresis"
        );
        let mut both = threshold(None, Some(1.0), 0.0);
        if let Condition::Threshold(t) = &mut both.when {
            t.sensor = Some("TS1".into());
        }
        assert_eq!(bad(both), "when.threshold");
        let mut id = threshold(None, Some(1.0), 0.0);
        id.id = "no spaces".into();
        assert_eq!(bad(id), "id");
        let model = parse(serde_json::json!({
            "id": "acc", "severity": "minor",
            "when": {"model": {"component": "accumulator", "at_least": "minor", "cycles": 0}}
        }));
        assert_eq!(bad(model), "when.model.cycles");
        // Unknown fields are refused at parse time.
        assert!(serde_json::from_value::<RuleSpec>(serde_json::json!({
            "id": "x", "severity": "minor", "when": {"quality": {"longer_than_ms": 1, "sensr": "TS1"}}
        }))
        .is_err());
    }

    #[test]
    fn a_sensor_type_covers_its_numbered_sensors() {
        assert_eq!(sensor_type("TS3"), "TS");
        assert_eq!(sensor_type("EPS1"), "EPS");
        assert_eq!(sensor_type("CE"), "CE");
        let Condition::Threshold(t) = threshold(None, Some(1.0), 0.0).when else {
            unreachable!()
        };
        assert!(t.covers_sensor("TS1") && t.covers_sensor("TS4") && !t.covers_sensor("PS1"));
        let mut unit = threshold(None, Some(1.0), 0.0);
        unit.equipment = Some("rig-1".into());
        assert!(unit.covers_equipment("rig-1") && !unit.covers_equipment("rig-2"));
    }

    #[test]
    fn a_band_with_hysteresis_does_not_flap_on_noise_at_its_edge() {
        let Condition::Threshold(t) = threshold(Some(10.0), Some(60.0), 2.0).when else {
            unreachable!()
        };
        let mut e = ThresholdEvaluator::new(t);
        assert!(!e.observe(Some(59.0)));
        assert!(e.observe(Some(60.5)));
        // Noise between 58.5 and 60.5 keeps it firing.
        let mut changes = 0;
        let mut last = true;
        for i in 0..100 {
            let v = 59.5 + if i % 2 == 0 { 1.0 } else { -1.0 };
            let now = e.observe(Some(v));
            changes += usize::from(now != last);
            last = now;
        }
        assert_eq!(changes, 0);
        assert!(e.observe(None), "a gap changes nothing");
        assert!(!e.observe(Some(57.9)));
        assert!(e.observe(Some(9.0)), "below the band fires too");
        assert!(e.observe(Some(11.0)));
        assert!(!e.observe(Some(12.0)));
    }

    fn verdict(accumulator: Option<Severity>, novelty: f64) -> Verdict {
        let mut v: Verdict = serde_json::from_value(serde_json::json!({
            "is_anomaly": false, "score": 0.0, "affected_component": null, "confidence": 1.0,
            "components": {}, "health": [], "severity": null, "novelty": novelty,
            "model_version": "t", "per_model": []
        }))
        .unwrap();
        v.health.push(ComponentHealth {
            component: Component::Accumulator,
            degraded: accumulator.is_some(),
            probability: if accumulator.is_some() { 0.9 } else { 0.1 },
            confidence: 0.9,
            level: None,
            severity: accumulator,
        });
        v
    }

    #[test]
    fn a_model_rule_needs_its_cycles_in_a_row() {
        let spec = parse(serde_json::json!({
            "id": "acc", "severity": "minor",
            "when": {"model": {"component": "accumulator", "at_least": "major", "cycles": 2}}
        }));
        let mut e = CycleEvaluator::new(&spec.when).unwrap();
        assert!(!e.observe(&verdict(Some(Severity::Critical), 0.1)).firing);
        assert!(
            !e.observe(&verdict(Some(Severity::Minor), 0.1)).firing,
            "minor is below major"
        );
        assert!(!e.observe(&verdict(Some(Severity::Major), 0.1)).firing);
        let f = e.observe(&verdict(Some(Severity::Critical), 0.1));
        assert!(f.firing);
        assert_eq!(f.severity, Some(Severity::Critical));
        assert_eq!(f.value, Some(0.9));
        assert!(!e.observe(&verdict(None, 0.1)).firing);
        let novelty = parse(serde_json::json!({
            "id": "novel", "severity": "warning", "when": {"novelty": {"above": 1.0}}
        }));
        let mut n = CycleEvaluator::new(&novelty.when).unwrap();
        assert!(n.observe(&verdict(None, 1.5)).firing);
        assert!(!n.observe(&verdict(None, 0.5)).firing);
        assert!(CycleEvaluator::new(&threshold(None, Some(1.0), 0.0).when).is_none());
    }

    #[test]
    fn a_quality_rule_fires_after_its_duration_of_bad_or_missing_readings() {
        let mut q = QualityEvaluator::new(&QualityCondition {
            sensor: None,
            sensor_type: None,
            longer_than_ms: 10_000,
        });
        assert!(!q.observe(0, false));
        assert!(!q.observe(10_000, false));
        assert!(q.observe(10_001, false));
        assert!(!q.observe(10_002, true));
        // Silent since its last reading at 20 s: fires after 30 s.
        q.observe(20_000, true);
        q.offline_since(20_000);
        assert!(!q.check(30_000) && q.check(30_001));
    }
}
