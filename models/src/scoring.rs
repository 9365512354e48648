//! Scoring a cycle as it completes: the ensemble's members run over the
//! cycle's features and [`crate::ensemble::combine`] turns what they say into
//! one [`Verdict`].
//!
//! A member is anything that implements [`CycleMember`]: the RandomForest
//! classifiers and the novelty detector live here; the XGBoost member, which
//! needs ONNX Runtime, is implemented by the application and handed in. A
//! member that fails on a cycle abstains and the others are reweighted, so a
//! broken member never stops scoring.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cycle::{Cycle, CycleError, FEATURES, SENSORS};
use crate::ensemble::Component;
use crate::ensemble::{combine, EnsembleConfig, MemberVerdict, Verdict};
use crate::forest::{CompiledForest, Forests};
use crate::novelty::{CompiledNovelty, Novelty};

/// Why a member could not judge a cycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{member}: {reason}")]
pub struct MemberError {
    /// Which member failed, e.g. `random_forest`, `novelty` or `xgboost`.
    pub member: String,
    /// What went wrong.
    pub reason: String,
}

/// One model of the ensemble.
pub trait CycleMember: Send + Sync {
    /// Its name in the ensemble's config (`random_forest`, `xgboost`, `novelty`).
    fn name(&self) -> &str;
    /// The version of its model (recorded with every verdict).
    fn version(&self) -> &str;
    /// What it says about a cycle with these features.
    fn judge(&self, features: &[f64; FEATURES]) -> Result<MemberVerdict, MemberError>;
}

/// The RandomForest classifiers as an ensemble member.
pub struct ForestMember {
    /// Per component: its healthy label and its classifier.
    targets: Vec<(Component, i32, Classifier)>,
    version: String,
}

/// One component's classifier, ready to score.
enum Classifier {
    /// The training data held one label only.
    Constant(i32),
    /// The forest, laid out for scoring.
    Forest(CompiledForest),
}

impl ForestMember {
    /// Wraps trained forests; `version` identifies the artifact. The
    /// forests of the four components are laid out for scoring here (the
    /// stable flag's forest is not used by the ensemble).
    pub fn new(forests: &Forests, version: impl Into<String>) -> Result<ForestMember, MemberError> {
        let mut targets = Vec::new();
        for (target, forest) in &forests.forests {
            let (Some(component), Some(healthy)) = (target.component(), target.healthy()) else {
                continue;
            };
            let classifier = match forest.compile() {
                Ok(Some(compiled)) => Classifier::Forest(compiled),
                Ok(None) => Classifier::Constant(forest.constant().unwrap_or(healthy)),
                Err(e) => {
                    return Err(MemberError {
                        member: "random_forest".into(),
                        reason: e.to_string(),
                    })
                }
            };
            targets.push((component, healthy, classifier));
        }
        Ok(ForestMember {
            targets,
            version: version.into(),
        })
    }
}

impl CycleMember for ForestMember {
    fn name(&self) -> &str {
        "random_forest"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn judge(&self, features: &[f64; FEATURES]) -> Result<MemberVerdict, MemberError> {
        let mut degraded = BTreeMap::new();
        let mut levels = BTreeMap::new();
        let mut level_shares = BTreeMap::new();
        for (component, healthy, classifier) in &self.targets {
            let (component, healthy) = (*component, *healthy);
            let votes = match classifier {
                Classifier::Constant(label) => BTreeMap::from([(*label, 1.0)]),
                Classifier::Forest(forest) => forest.votes(features),
            };
            degraded.insert(component, 1.0 - votes.get(&healthy).copied().unwrap_or(0.0));
            // The most voted level; a tie goes to the healthier (larger
            // share first, then the level nearest the healthy one).
            if let Some((level, _)) = votes.iter().max_by(|a, b| {
                a.1.total_cmp(b.1)
                    .then((b.0 - healthy).abs().cmp(&(a.0 - healthy).abs()))
            }) {
                levels.insert(component, *level);
            }
            level_shares.insert(component, votes);
        }
        Ok(MemberVerdict {
            model: self.name().into(),
            model_version: self.version.clone(),
            degraded,
            levels,
            level_shares,
            novelty: None,
        })
    }
}

/// The novelty detector as an ensemble member.
pub struct NoveltyMember {
    model: CompiledNovelty,
    version: String,
}

impl NoveltyMember {
    /// Wraps a fitted model of cycle features.
    pub fn new(model: Novelty, version: impl Into<String>) -> Result<NoveltyMember, MemberError> {
        if model.width() != FEATURES {
            return Err(MemberError {
                member: "novelty".into(),
                reason: format!(
                    "fitted on {} features; a cycle has {FEATURES}",
                    model.width()
                ),
            });
        }
        Ok(NoveltyMember {
            model: model.compile(),
            version: version.into(),
        })
    }
}

impl CycleMember for NoveltyMember {
    fn name(&self) -> &str {
        "novelty"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn judge(&self, features: &[f64; FEATURES]) -> Result<MemberVerdict, MemberError> {
        Ok(MemberVerdict {
            model: self.name().into(),
            model_version: self.version.clone(),
            degraded: BTreeMap::new(),
            levels: BTreeMap::new(),
            level_shares: BTreeMap::new(),
            novelty: Some(self.model.score(features)),
        })
    }
}

/// Everything needed to judge cycles and single sample vectors.
pub struct Scorer {
    config: EnsembleConfig,
    members: Vec<Arc<dyn CycleMember>>,
    /// Plausibility of one vector of the 17 sensors (the `/detect` sample
    /// shape), fitted on every second of the training cycles.
    sample_novelty: Option<Novelty>,
    /// Members configured but not available, with the reason.
    unavailable: Vec<(String, String)>,
    /// Times a member failed on a cycle and abstained.
    failures: AtomicU64,
}

impl Scorer {
    /// A scorer over `members`, combined per `config`.
    pub fn new(config: EnsembleConfig, members: Vec<Arc<dyn CycleMember>>) -> Scorer {
        Scorer {
            config,
            members,
            sample_novelty: None,
            unavailable: Vec::new(),
            failures: AtomicU64::new(0),
        }
    }

    /// Adds the sample-vector model (17 features, [`SENSORS`] order).
    pub fn with_sample_novelty(mut self, model: Novelty) -> Result<Scorer, MemberError> {
        if model.width() != SENSORS.len() {
            return Err(MemberError {
                member: "sample_novelty".into(),
                reason: format!(
                    "fitted on {} values; a sample has {}",
                    model.width(),
                    SENSORS.len()
                ),
            });
        }
        self.sample_novelty = Some(model);
        Ok(self)
    }

    /// Records a configured member that could not be loaded, for health reports.
    pub fn mark_unavailable(&mut self, member: impl Into<String>, reason: impl Into<String>) {
        self.unavailable.push((member.into(), reason.into()));
    }

    /// Members configured but not available, with the reason.
    pub fn unavailable(&self) -> &[(String, String)] {
        &self.unavailable
    }

    /// Times a member failed on a cycle and abstained, since start.
    pub fn member_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// `(name, version)` of every loaded member.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|m| (m.name(), m.version()))
    }

    /// The ensemble's configuration.
    pub fn config(&self) -> &EnsembleConfig {
        &self.config
    }

    /// Judges one cycle.
    pub fn score(&self, cycle: &Cycle) -> Result<Verdict, CycleError> {
        Ok(self.score_features(&cycle.features()?))
    }

    /// Judges one cycle's features.
    pub fn score_features(&self, features: &[f64; FEATURES]) -> Verdict {
        let verdicts: Vec<MemberVerdict> = self
            .members
            .iter()
            .filter(|m| self.config.member(m.name()).is_some())
            .filter_map(|m| match m.judge(features) {
                Ok(v) => Some(v),
                Err(_) => {
                    // Abstains; the others are reweighted. Counted, because
                    // this crate does not log.
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })
            .collect();
        combine(&self.config, &verdicts)
    }

    /// Judges one vector of the 17 sensors ([`SENSORS`] order) by its
    /// plausibility against the training data; `None` without the sample
    /// model. Only novelty can be told from one instant: no component is
    /// named.
    pub fn score_sample(&self, values: &[f64; 17]) -> Option<Verdict> {
        let model = self.sample_novelty.as_ref()?;
        let switch = self.config.member("sample_novelty")?;
        let verdict = MemberVerdict {
            model: "sample_novelty".into(),
            model_version: self
                .members
                .iter()
                .find(|m| m.name() == "novelty")
                .map_or_else(|| "1".to_owned(), |m| m.version().to_owned()),
            degraded: BTreeMap::new(),
            levels: BTreeMap::new(),
            level_shares: BTreeMap::new(),
            novelty: Some(model.score(values)),
        };
        // The sample model is judged on its own.
        let config = EnsembleConfig {
            members: BTreeMap::from([("sample_novelty".to_owned(), switch)]),
            threshold: self.config.threshold,
        };
        Some(combine(&config, &[verdict]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::{ForestParams, Target};
    use crate::novelty::NoveltyParams;

    /// A cycle whose TS1 (sensor 9) sits at `ts1` and PS1 (sensor 0) swings
    /// with the load steps; `k` varies the noise.
    fn cycle(ts1: f64, k: u64) -> Cycle {
        let values = (0..SENSORS.len())
            .map(|s| {
                (0..60)
                    .map(|t| {
                        let noise = ((k * 31 + s as u64 * 7 + t as u64) % 11) as f64 / 100.0;
                        match s {
                            0 => (if t % 20 < 10 { 150.0 } else { 100.0 }) + noise,
                            9 => ts1 + noise,
                            _ => s as f64 + noise,
                        }
                    })
                    .collect()
            })
            .collect();
        Cycle { values }
    }

    struct Broken;

    impl CycleMember for Broken {
        fn name(&self) -> &str {
            "xgboost"
        }
        fn version(&self) -> &str {
            "broken"
        }
        fn judge(&self, _: &[f64; FEATURES]) -> Result<MemberVerdict, MemberError> {
            Err(MemberError {
                member: "xgboost".into(),
                reason: "no runtime".into(),
            })
        }
    }

    #[test]
    fn members_judge_a_cycle_and_a_failing_member_abstains() {
        // The cooler is degraded (level 3) when TS1 runs hot.
        let cycles: Vec<Cycle> = (0..40)
            .map(|k| cycle(if k % 2 == 0 { 40.0 } else { 60.0 }, k))
            .collect();
        let features: Vec<[f64; FEATURES]> = cycles.iter().map(|c| c.features().unwrap()).collect();
        let labels: Vec<[i32; 5]> = (0..40)
            .map(|k| [if k % 2 == 0 { 100 } else { 3 }, 100, 0, 130, 0])
            .collect();
        let params = ForestParams {
            n_trees: 10,
            features_per_split: Some(FEATURES),
            ..ForestParams::default()
        };
        let forests = Forests::train(&features, &labels, &params).unwrap();
        assert_eq!(forests.forests[0].0, Target::Cooler);
        let rows: Vec<Vec<f64>> = features.iter().map(|f| f.to_vec()).collect();
        let novelty = Novelty::fit(&rows, &NoveltyParams::default()).unwrap();
        let scorer = Scorer::new(
            EnsembleConfig::default(),
            vec![
                Arc::new(ForestMember::new(&forests, "f1").unwrap()),
                Arc::new(Broken),
                Arc::new(NoveltyMember::new(novelty, "n1").unwrap()),
            ],
        );
        let hot = scorer.score(&cycle(60.0, 99)).unwrap();
        assert_eq!(hot.affected_component, Some(Component::Cooler));
        let cooler = hot
            .health
            .iter()
            .find(|h| h.component == Component::Cooler)
            .unwrap();
        assert_eq!(cooler.level, Some(3));
        assert_eq!(cooler.severity, Some(crate::ensemble::Severity::Critical));
        // The broken member abstained and was counted; the others decided.
        assert_eq!(hot.model_version, "random_forest@f1+novelty@n1");
        assert_eq!(scorer.member_failures(), 1);
        let normal = scorer.score(&cycle(40.0, 98)).unwrap();
        assert!(!normal.is_anomaly, "{normal:?}");
        // A cycle far from anything fitted is novel.
        let mut strange = cycle(40.0, 97);
        strange.values[0].iter_mut().for_each(|x| *x = 900.0);
        let strange = scorer.score(&strange).unwrap();
        assert!(strange.novelty.unwrap() > 1.0 && strange.is_anomaly);
        // A novelty model of another width is refused.
        let narrow = Novelty::fit(
            &[vec![1.0, 2.0], vec![2.0, 1.0], vec![0.0, 0.5]],
            &NoveltyParams::default(),
        )
        .unwrap();
        assert!(NoveltyMember::new(narrow, "x").is_err());
        assert!(scorer.score(&Cycle { values: vec![] }).is_err());
    }
}
