//! The per-sample detectors of one sensor bundled: what a sensor actor runs
//! on every reading, and the findings it reports when they change.

use serde::{Deserialize, Serialize};

use super::{
    AdaptiveBaseline, BaselineConfig, BaselineVerdict, ConfigError, HysteresisConfig,
    HysteresisThreshold, QualityChecker, QualityConfig, QualityIssue, ThresholdEvent,
};
use crate::PhysicalRange;

/// The detectors' settings for one sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// Signal quality: stuck, spikes, gaps.
    pub quality: QualityConfig,
    /// Adaptive baseline.
    pub baseline: BaselineConfig,
    /// Process limits with hysteresis (none by default).
    pub limits: Vec<HysteresisConfig>,
}

impl DetectorsConfig {
    /// Checks every part; the field is prefixed with the part.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.quality
            .validate()
            .map_err(|e| prefixed("quality", e))?;
        self.baseline
            .validate()
            .map_err(|e| prefixed("baseline", e))?;
        for limit in &self.limits {
            limit.validate().map_err(|e| prefixed("limits", e))?;
        }
        Ok(())
    }
}

fn prefixed(part: &'static str, e: ConfigError) -> ConfigError {
    ConfigError {
        field: part,
        reason: format!("{}: {}", e.field, e.reason),
    }
}

/// What the detectors currently say about a sensor.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    /// The value has not moved for the configured number of samples.
    pub stuck: bool,
    /// Spikes seen since the actor started.
    pub spikes: u64,
    /// When the latest spike was sampled, ms since the Unix epoch.
    pub last_spike_ms: Option<i64>,
    /// The baseline is still learning.
    pub warming_up: bool,
    /// The latest value is unusual for this sensor's learned baseline.
    pub unusual: bool,
    /// Standard deviations of the latest value from the baseline, once warm
    /// (rounded to a tenth, so small moves do not count as changes).
    pub z: Option<f64>,
    /// Per configured limit, in order: whether its alarm is raised.
    pub limits: Vec<bool>,
}

impl Findings {
    /// Whether anything is wrong.
    pub fn any(&self) -> bool {
        self.stuck || self.unusual || self.limits.iter().any(|l| *l)
    }
}

/// Quality checks, adaptive baseline and process limits of one sensor, fed
/// sample by sample.
#[derive(Debug, Clone)]
pub struct SensorDetectors {
    quality: QualityChecker,
    baseline: AdaptiveBaseline,
    limits: Vec<HysteresisThreshold>,
    findings: Findings,
}

impl SensorDetectors {
    /// Detectors for a sensor of physical range `range`.
    pub fn new(range: PhysicalRange, config: &DetectorsConfig) -> Result<Self, ConfigError> {
        Ok(SensorDetectors {
            quality: QualityChecker::new(range, config.quality.clone())?,
            baseline: AdaptiveBaseline::new(config.baseline.clone())?,
            limits: config
                .limits
                .iter()
                .map(|l| HysteresisThreshold::new(l.clone()))
                .collect::<Result<_, _>>()?,
            findings: Findings {
                warming_up: true,
                limits: vec![false; config.limits.len()],
                ..Findings::default()
            },
        })
    }

    /// What the detectors say now.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    /// Runs every detector on one sample (in time order; `None` when the
    /// reading has no usable value). Returns whether the findings changed.
    pub fn observe(&mut self, ts_ms: i64, value: Option<f64>) -> bool {
        let before = self.findings.clone();
        let issues = self.quality.check(ts_ms, value);
        self.findings.stuck = issues
            .iter()
            .any(|i| matches!(i, QualityIssue::Stuck { .. }));
        for issue in &issues {
            if let QualityIssue::Spike { ts_ms, .. } = issue {
                self.findings.spikes += 1;
                self.findings.last_spike_ms = Some(*ts_ms);
            }
        }
        // A value the quality checks reject does not teach the baseline.
        let usable = value.filter(|v| {
            v.is_finite()
                && !issues.iter().any(|i| {
                    matches!(
                        i,
                        QualityIssue::OutOfRange { .. } | QualityIssue::Stuck { .. }
                    )
                })
        });
        if let Some(v) = usable {
            match self.baseline.update(v) {
                Some(BaselineVerdict::WarmingUp { .. }) => {
                    self.findings.warming_up = true;
                    self.findings.unusual = false;
                    self.findings.z = None;
                }
                Some(BaselineVerdict::Normal { z }) => {
                    self.findings.warming_up = false;
                    self.findings.unusual = false;
                    self.findings.z = Some((z * 10.0).round() / 10.0);
                }
                Some(BaselineVerdict::Unusual { z, .. }) => {
                    self.findings.warming_up = false;
                    self.findings.unusual = true;
                    self.findings.z = Some((z * 10.0).round() / 10.0);
                }
                None => {}
            }
        }
        for (limit, active) in self.limits.iter_mut().zip(&mut self.findings.limits) {
            match limit.update(ts_ms, value) {
                Some(ThresholdEvent::Raised { .. }) => *active = true,
                Some(ThresholdEvent::Cleared { .. }) => *active = false,
                None => {}
            }
        }
        // z moves with every sample; only a change of state is news.
        let state = |f: &Findings| (f.stuck, f.spikes, f.warming_up, f.unusual, f.limits.clone());
        state(&before) != state(&self.findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Direction;

    fn detectors() -> SensorDetectors {
        let config = DetectorsConfig {
            quality: QualityConfig {
                stuck_samples: 10,
                ..QualityConfig::default()
            },
            baseline: BaselineConfig {
                warmup_samples: 20,
                ..BaselineConfig::default()
            },
            limits: vec![HysteresisConfig {
                direction: Direction::Above,
                set: 80.0,
                clear: 75.0,
                min_set_ms: 2_000,
                min_clear_ms: 2_000,
            }],
        };
        SensorDetectors::new(
            PhysicalRange {
                min: 0.0,
                max: 100.0,
            },
            &config,
        )
        .unwrap()
    }

    #[test]
    fn findings_change_only_when_a_state_changes() {
        let mut d = detectors();
        let mut changes = 0;
        // A noisy signal around 50: warms up, then stays normal.
        for i in 0..100 {
            let v = 50.0 + ((i * 7919) % 13) as f64 / 10.0;
            changes += usize::from(d.observe(i * 1000, Some(v)));
        }
        assert!(
            !d.findings().warming_up && !d.findings().any(),
            "{:?}",
            d.findings()
        );
        assert_eq!(changes, 1, "only the end of the warm-up");
        // Stuck at 50 for ten samples.
        for i in 100..115 {
            d.observe(i * 1000, Some(50.0));
        }
        assert!(d.findings().stuck);
        // Above the limit long enough: raised; the baseline finds 90 unusual.
        for i in 115..120 {
            d.observe(i * 1000, Some(90.0));
        }
        assert!(d.findings().limits[0] && d.findings().unusual && !d.findings().stuck);
        for i in 120..125 {
            d.observe(i * 1000, Some(50.5 + (i % 2) as f64));
        }
        assert!(!d.findings().limits[0] && !d.findings().unusual);
    }
}
