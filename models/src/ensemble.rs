//! The ensemble: combines what each enabled model says about a cycle into one
//! verdict, with weights and on/off switches from config.
//!
//! Each classifier member gives, per component, the probability that the
//! component is degraded (for a forest: the share of its votes for a
//! non-healthy label). The ensemble's probability per component is the
//! weighted mean over the members that are enabled **and present**: a member
//! that cannot run (the XGBoost member without ONNX Runtime) drops out and
//! the others' weights are renormalised. The novelty member gives a score
//! (distance over threshold; above 1 is novel); a novel cycle is an anomaly
//! even when no classifier names a component.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A monitored component of a hydraulic rig.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Cooler,
    /// The switching valve.
    Valve,
    /// The pump (internal leakage).
    Pump,
    /// The hydraulic accumulator.
    Accumulator,
}

impl Component {
    /// All of them.
    pub const ALL: [Component; 4] = [
        Component::Cooler,
        Component::Valve,
        Component::Pump,
        Component::Accumulator,
    ];

    /// The name used in APIs and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Cooler => "cooler",
            Component::Valve => "valve",
            Component::Pump => "pump",
            Component::Accumulator => "accumulator",
        }
    }

    /// The component of a name from [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Component> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// How serious a predicted condition level of this component is, on the
    /// rig data's scales: cooler efficiency % (100, 20, 3), valve switching %
    /// (100, 90, 80, 73), pump leakage (0, 1, 2), accumulator bar (130, 115,
    /// 100, 90). `None` for the healthy level; an unknown level counts as
    /// major.
    pub fn severity_of(self, level: i32) -> Option<Severity> {
        use Severity::*;
        match (self, level) {
            (Component::Cooler, 100)
            | (Component::Valve, 100)
            | (Component::Pump, 0)
            | (Component::Accumulator, 130) => None,
            (Component::Cooler, 3) | (Component::Valve, 73) | (Component::Accumulator, 90) => {
                Some(Critical)
            }
            (Component::Valve, 90) | (Component::Pump, 1) | (Component::Accumulator, 115) => {
                Some(Minor)
            }
            _ => Some(Major),
        }
    }
}

/// How serious an anomaly is, from least to most (the alerting scale).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Unusual; worth a look (a novel cycle no classifier explains).
    Warning,
    /// Early degradation.
    Minor,
    /// Clear degradation; plan maintenance.
    Major,
    /// Near failure; act now.
    Critical,
}

impl Severity {
    /// Every severity, least first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Warning,
        Severity::Minor,
        Severity::Major,
        Severity::Critical,
    ];

    /// The name used in APIs and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// The severity of a name from [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One member's switch and weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Whether the member takes part.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its weight among the classifiers (> 0).
    #[serde(default = "one")]
    pub weight: f64,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// Names of the ensemble's members.
pub const KNOWN_MEMBERS: [&str; 4] = ["random_forest", "xgboost", "novelty", "sample_novelty"];

/// The ensemble's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    /// Members by name (`random_forest`, `xgboost`, `novelty`).
    pub members: BTreeMap<String, MemberConfig>,
    /// A component with a degraded probability at or above this is reported.
    pub threshold: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        let member = |weight| MemberConfig {
            enabled: true,
            weight,
        };
        EnsembleConfig {
            members: BTreeMap::from([
                ("random_forest".to_owned(), member(1.0)),
                ("xgboost".to_owned(), member(1.0)),
                ("novelty".to_owned(), member(1.0)),
            ]),
            threshold: 0.5,
        }
    }
}

impl EnsembleConfig {
    /// Checks member names, weights and threshold.
    pub fn validate(&self) -> Result<(), crate::detect::ConfigError> {
        for (name, m) in &self.members {
            if !KNOWN_MEMBERS.contains(&name.as_str()) {
                return Err(crate::detect::ConfigError {
                    field: "members",
                    reason: format!(
                        "unknown member {name:?} (known: {})",
                        KNOWN_MEMBERS.join(", ")
                    ),
                });
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return Err(crate::detect::ConfigError {
                    field: "weight",
                    reason: format!("member {name}: must be a number > 0"),
                });
            }
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(crate::detect::ConfigError {
                field: "threshold",
                reason: "must be between 0 and 1".into(),
            });
        }
        Ok(())
    }

    /// The switch and weight of member `name`, when it takes part: as
    /// configured, or enabled at weight 1 for a known member the config does
    /// not list (so configuring one member does not switch the others off).
    pub fn member(&self, name: &str) -> Option<MemberConfig> {
        match self.members.get(name) {
            Some(m) => m.enabled.then(|| m.clone()),
            None => KNOWN_MEMBERS.contains(&name).then_some(MemberConfig {
                enabled: true,
                weight: 1.0,
            }),
        }
    }
}

/// What one member said about a cycle.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberVerdict {
    /// Member name, as in the config.
    pub model: String,
    /// Version of the member's model.
    pub model_version: String,
    /// Per component, the probability it is degraded (classifiers).
    pub degraded: BTreeMap<Component, f64>,
    /// Per component, the condition level it predicts (classifiers that
    /// predict levels), on the scales of [`Component::severity_of`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub levels: BTreeMap<Component, i32>,
    /// Per component, the probability of each condition level (members that
    /// give one); the ensemble names a level by their weighted mean.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub level_shares: BTreeMap<Component, BTreeMap<i32, f64>>,
    /// Novelty score (novelty member): above 1 is novel.
    pub novelty: Option<f64>,
}

/// One component's health in a verdict.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub component: Component,
    /// Whether the ensemble calls it degraded.
    pub degraded: bool,
    /// The weighted probability that it is degraded.
    pub probability: f64,
    /// How sure the call is: the probability of what was called, 0.5–1.
    pub confidence: f64,
    /// Condition level predicted by the weightiest member that predicts one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    /// Severity of that level when degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// The ensemble's verdict on a cycle.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Some component is degraded, or the cycle is novel.
    pub is_anomaly: bool,
    /// The highest degraded probability, or the novelty score over 2 when
    /// higher (novelty's edge, 1, maps to 0.5), capped at 1.
    pub score: f64,
    /// The component most likely degraded, when one is.
    pub affected_component: Option<Component>,
    /// How sure the ensemble is of what decided the verdict, 0–1: the named
    /// component's degraded probability; for novelty alone 1 − 1/score; for
    /// a healthy verdict 1 − (worst probability / threshold); 0 when no
    /// member took part.
    pub confidence: f64,
    /// Per component, the weighted degraded probability.
    pub components: BTreeMap<Component, f64>,
    /// Per component that some member judged: the call, its confidence,
    /// level and severity.
    pub health: Vec<ComponentHealth>,
    /// The most serious severity: the worst degraded component's, or
    /// warning for a novel cycle no classifier explains; `None` when healthy.
    pub severity: Option<Severity>,
    /// The largest novelty score among the members (above 1 is novel).
    pub novelty: Option<f64>,
    /// The versions of the members that took part, `name@version` joined by `+`.
    pub model_version: String,
    /// What each member that took part said.
    pub per_model: Vec<MemberVerdict>,
}

/// Combines the verdicts of the members that ran (`verdicts`) per `config`.
/// Members not enabled are ignored; enabled members that did not run are
/// simply absent, and the weights of the others are renormalised.
pub fn combine(config: &EnsembleConfig, verdicts: &[MemberVerdict]) -> Verdict {
    let taking_part: Vec<&MemberVerdict> = verdicts
        .iter()
        .filter(|v| config.member(&v.model).is_some())
        .collect();
    let mut components = BTreeMap::new();
    for component in Component::ALL {
        let (mut sum, mut weights) = (0.0, 0.0);
        for v in &taking_part {
            if let (Some(p), Some(m)) = (v.degraded.get(&component), config.member(&v.model)) {
                // A member that could not judge this component (NaN) abstains.
                if p.is_finite() {
                    sum += m.weight * p.clamp(0.0, 1.0);
                    weights += m.weight;
                }
            }
        }
        if weights > 0.0 {
            components.insert(component, sum / weights);
        }
    }
    // A component's level is voted: each member spreads its weight over the
    // levels by its probabilities (all of it on its level when it gives
    // none). A tie goes to the level that agrees with the degraded call
    // (healthy or not), then to the member listed first.
    let level_of = |component: Component, degraded: bool| {
        let mut votes: Vec<(i32, f64)> = Vec::new();
        let mut add = |level: i32, w: f64| match votes.iter_mut().find(|(l, _)| *l == level) {
            Some((_, sum)) => *sum += w,
            None => votes.push((level, w)),
        };
        for v in &taking_part {
            let Some(m) = config.member(&v.model) else {
                continue;
            };
            match (v.level_shares.get(&component), v.levels.get(&component)) {
                (Some(shares), _) => {
                    for (level, p) in shares {
                        if p.is_finite() {
                            add(*level, m.weight * p);
                        }
                    }
                }
                (None, Some(level)) => add(*level, m.weight),
                (None, None) => {}
            }
        }
        let agrees = |level: i32| component.severity_of(level).is_some() == degraded;
        votes
            .iter()
            .rev()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(agrees(a.0).cmp(&agrees(b.0))))
            .map(|(level, _)| *level)
    };
    let health: Vec<ComponentHealth> = components
        .iter()
        .map(|(&component, &p)| {
            let degraded = p >= config.threshold;
            let level = level_of(component, degraded);
            ComponentHealth {
                component,
                degraded,
                probability: p,
                confidence: if degraded { p } else { 1.0 - p },
                level,
                // Degraded by the vote but with a healthy level predicted
                // (the members disagree): at least minor.
                severity: degraded.then(|| {
                    level
                        .and_then(|l| component.severity_of(l))
                        .unwrap_or(Severity::Minor)
                }),
            }
        })
        .collect();
    let worst = components
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(c, p)| (*c, *p));
    // A novelty score that is not a number means the cycle could not be
    // placed at all: treated as novel (fail safe), not ignored.
    let novelty = taking_part
        .iter()
        .filter_map(|v| v.novelty)
        .map(|s| if s.is_nan() { f64::INFINITY } else { s })
        .fold(None, |acc: Option<f64>, s| {
            Some(acc.map_or(s, |a| a.max(s)))
        });
    let degraded = worst.filter(|(_, p)| *p >= config.threshold);
    let novel = novelty.is_some_and(|s| s > 1.0);
    let p_max = worst.map_or(0.0, |(_, p)| p);
    let score = p_max.max(novelty.map_or(0.0, |s| (s / 2.0).min(1.0)));
    // Confidence in what decided the verdict: the named component's
    // probability; for novelty alone, how far past its threshold; for a
    // healthy verdict, how far below the threshold the worst component is.
    let confidence = match (degraded, novel) {
        (Some((_, p)), _) => p,
        (None, true) => novelty.map_or(0.0, |s| (1.0 - 1.0 / s).clamp(0.0, 1.0)),
        (None, false) if taking_part.is_empty() => 0.0,
        (None, false) => (1.0 - p_max / config.threshold).clamp(0.0, 1.0),
    };
    let severity = health
        .iter()
        .filter_map(|h| h.severity)
        .max()
        .or(novel.then_some(Severity::Warning));
    Verdict {
        is_anomaly: degraded.is_some() || novel,
        score,
        affected_component: degraded.map(|(c, _)| c),
        confidence,
        components,
        health,
        severity,
        novelty,
        model_version: taking_part
            .iter()
            .map(|v| format!("{}@{}", v.model, v.model_version))
            .collect::<Vec<_>>()
            .join("+"),
        per_model: taking_part.into_iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(model: &str, valve: f64, accumulator: f64) -> MemberVerdict {
        MemberVerdict {
            model: model.into(),
            model_version: "1".into(),
            degraded: BTreeMap::from([
                (Component::Cooler, 0.0),
                (Component::Valve, valve),
                (Component::Pump, 0.0),
                (Component::Accumulator, accumulator),
            ]),
            levels: BTreeMap::new(),
            level_shares: BTreeMap::new(),
            novelty: None,
        }
    }

    fn novelty(score: f64) -> MemberVerdict {
        MemberVerdict {
            model: "novelty".into(),
            model_version: "1".into(),
            degraded: BTreeMap::new(),
            levels: BTreeMap::new(),
            level_shares: BTreeMap::new(),
            novelty: Some(score),
        }
    }

    #[test]
    fn weights_decide_and_a_missing_member_is_reweighted_away() {
        let mut config = EnsembleConfig::default();
        config.members.get_mut("xgboost").unwrap().weight = 3.0;
        let both = combine(
            &config,
            &[
                classifier("random_forest", 0.2, 0.0),
                classifier("xgboost", 0.8, 0.0),
            ],
        );
        // (1 × 0.2 + 3 × 0.8) / 4 = 0.65.
        assert!((both.components[&Component::Valve] - 0.65).abs() < 1e-12);
        assert_eq!(both.affected_component, Some(Component::Valve));
        assert!(both.is_anomaly);
        assert_eq!(both.model_version, "random_forest@1+xgboost@1");
        // Without ONNX Runtime the XGBoost member does not run: the forest
        // alone decides, at full weight.
        let alone = combine(&config, &[classifier("random_forest", 0.2, 0.0)]);
        assert!((alone.components[&Component::Valve] - 0.2).abs() < 1e-12);
        assert!(!alone.is_anomaly);
        assert_eq!(alone.affected_component, None);
        // Healthy, the worst component at 0.2 against a threshold of 0.5.
        assert!((alone.confidence - 0.6).abs() < 1e-12);
        // A member that cannot judge a component abstains instead of hiding
        // the others' findings.
        let mut nan = classifier("xgboost", f64::NAN, 0.0);
        nan.degraded.insert(Component::Cooler, f64::NAN);
        let mixed = combine(&config, &[classifier("random_forest", 0.9, 0.0), nan]);
        assert_eq!(mixed.affected_component, Some(Component::Valve));
        assert!((mixed.confidence - 0.9).abs() < 1e-12);
        assert!(combine(&config, &[novelty(f64::NAN)]).is_anomaly);
        let nobody = combine(&config, &[]);
        assert!(!nobody.is_anomaly && nobody.confidence == 0.0);
        assert_eq!(alone.per_model.len(), 1);
    }

    #[test]
    fn disabled_members_are_ignored_and_novelty_alone_is_an_anomaly() {
        let mut config = EnsembleConfig::default();
        config.members.get_mut("xgboost").unwrap().enabled = false;
        let v = combine(
            &config,
            &[
                classifier("random_forest", 0.1, 0.1),
                classifier("xgboost", 0.9, 0.9),
                novelty(1.6),
            ],
        );
        assert!((v.components[&Component::Valve] - 0.1).abs() < 1e-12);
        assert!(v.is_anomaly, "novel");
        assert_eq!(v.affected_component, None);
        assert!((v.score - 0.8).abs() < 1e-12);
        assert_eq!(v.model_version, "random_forest@1+novelty@1");
        config.members.get_mut("novelty").unwrap().enabled = false;
        let v = combine(
            &config,
            &[classifier("random_forest", 0.1, 0.1), novelty(9.0)],
        );
        assert!(!v.is_anomaly);
    }

    #[test]
    fn levels_are_voted_and_a_tie_goes_to_the_level_that_agrees_with_the_call() {
        let member = |model: &str, p: f64, level: i32| MemberVerdict {
            model: model.into(),
            model_version: "1".into(),
            degraded: BTreeMap::from([(Component::Accumulator, p)]),
            levels: BTreeMap::from([(Component::Accumulator, level)]),
            level_shares: BTreeMap::new(),
            novelty: None,
        };
        let config = EnsembleConfig::default();
        let level = |v: &Verdict| v.health[0].level;
        // Equal weights, disagreeing: degraded on average, so the degraded level.
        let v = combine(
            &config,
            &[
                member("random_forest", 0.9, 90),
                member("xgboost", 0.3, 130),
            ],
        );
        assert_eq!(level(&v), Some(90));
        assert_eq!(v.health[0].severity, Some(Severity::Critical));
        // Healthy on average: the healthy level, whichever member said it.
        let v = combine(
            &config,
            &[
                member("random_forest", 0.6, 100),
                member("xgboost", 0.1, 130),
            ],
        );
        assert_eq!(level(&v), Some(130));
        assert_eq!(v.health[0].severity, None);
        // Weight wins over agreement.
        let mut heavy = EnsembleConfig::default();
        heavy.members.get_mut("xgboost").unwrap().weight = 3.0;
        let v = combine(
            &heavy,
            &[
                member("random_forest", 0.9, 90),
                member("xgboost", 0.45, 115),
            ],
        );
        assert_eq!(level(&v), Some(115));
        // Tie between two degraded levels: the member listed first.
        let v = combine(
            &config,
            &[
                member("random_forest", 0.9, 90),
                member("xgboost", 0.8, 100),
            ],
        );
        assert_eq!(level(&v), Some(90));
        // With probabilities, the weighted mean decides: 0.55 × 90 + 0.45 × 100
        // against 0.1 × 90 + 0.9 × 100.
        let mut rf = member("random_forest", 0.9, 90);
        rf.level_shares.insert(
            Component::Accumulator,
            BTreeMap::from([(90, 0.55), (100, 0.45)]),
        );
        let mut xgb = member("xgboost", 0.9, 100);
        xgb.level_shares.insert(
            Component::Accumulator,
            BTreeMap::from([(90, 0.1), (100, 0.9)]),
        );
        assert_eq!(level(&combine(&config, &[rf, xgb])), Some(100));
    }

    #[test]
    fn bad_weights_are_refused() {
        let mut config = EnsembleConfig::default();
        config.members.get_mut("novelty").unwrap().weight = 0.0;
        assert_eq!(config.validate().unwrap_err().field, "weight");
    }
}
