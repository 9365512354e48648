//! Is this value unusual for this sensor? An adaptive baseline: the mean and
//! variance of the sensor's values, learned first over a warm-up (plain
//! running statistics), then followed with exponentially weighted ones so the
//! baseline tracks slow drift (wear, seasons).
//!
//! It learns from healthy operation only: a value judged unusual does not move
//! the baseline (so a developing fault cannot teach the baseline that it is
//! normal), and [`AdaptiveBaseline::freeze`] stops learning altogether while
//! the equipment is known not to be healthy (maintenance, a raised alarm).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Settings of an adaptive baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Weight of a new value in the moving mean and variance, in (0, 1):
    /// about `1 / alpha` samples of memory.
    pub alpha: f64,
    /// Samples learned before any verdict.
    pub warmup_samples: u32,
    /// Standard deviations from the mean beyond which a value is unusual.
    pub threshold_sigma: f64,
    /// Smallest standard deviation assumed, in the sensor's unit.
    pub min_std: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            alpha: 0.005,
            warmup_samples: 600,
            threshold_sigma: 5.0,
            min_std: 1e-6,
        }
    }
}

impl BaselineConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(invalid("alpha", "must be between 0 and 1 (exclusive)"));
        }
        if self.warmup_samples < 2 {
            return Err(invalid("warmup_samples", "must be at least 2"));
        }
        if !(self.threshold_sigma.is_finite() && self.threshold_sigma > 0.0) {
            return Err(invalid("threshold_sigma", "must be a number > 0"));
        }
        if !(self.min_std.is_finite() && self.min_std > 0.0) {
            return Err(invalid("min_std", "must be a number > 0"));
        }
        Ok(())
    }
}

/// The verdict on one value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum BaselineVerdict {
    /// Still learning: no verdict yet.
    WarmingUp {
        /// Values learned so far.
        seen: u32,
        /// Values the warm-up needs.
        needed: u32,
    },
    /// Within the baseline.
    Normal {
        /// Standard deviations from the mean (signed).
        z: f64,
    },
    /// Outside it.
    Unusual {
        /// Standard deviations from the mean (signed).
        z: f64,
        /// The baseline's mean.
        mean: f64,
        /// Its standard deviation.
        std: f64,
    },
}

/// One sensor's baseline.
#[derive(Debug, Clone)]
pub struct AdaptiveBaseline {
    config: BaselineConfig,
    seen: u32,
    mean: f64,
    /// Sum of squared deviations during warm-up, then the EW variance.
    var: f64,
    frozen: bool,
}

impl AdaptiveBaseline {
    /// A baseline that has learned nothing yet.
    pub fn new(config: BaselineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(AdaptiveBaseline {
            config,
            seen: 0,
            mean: 0.0,
            var: 0.0,
            frozen: false,
        })
    }

    /// Whether the warm-up is over.
    pub fn warm(&self) -> bool {
        self.seen >= self.config.warmup_samples
    }

    /// The learned mean and standard deviation, once warm.
    pub fn learned(&self) -> Option<(f64, f64)> {
        self.warm().then(|| (self.mean, self.std()))
    }

    fn std(&self) -> f64 {
        self.var.max(0.0).sqrt().max(self.config.min_std)
    }

    /// Stops learning (values are still judged).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Learns again.
    pub fn unfreeze(&mut self) {
        self.frozen = false;
    }

    /// Forgets everything and warms up again (after maintenance, a new
    /// operating point).
    pub fn reset(&mut self) {
        self.seen = 0;
        self.mean = 0.0;
        self.var = 0.0;
    }

    /// Judges `value` and, unless it is unusual or learning is frozen, learns it.
    pub fn update(&mut self, value: f64) -> Option<BaselineVerdict> {
        if !value.is_finite() {
            return None;
        }
        let needed = self.config.warmup_samples;
        if !self.warm() {
            if self.frozen {
                return Some(BaselineVerdict::WarmingUp {
                    seen: self.seen,
                    needed,
                });
            }
            // Welford's running mean and sum of squares.
            self.seen += 1;
            let delta = value - self.mean;
            self.mean += delta / f64::from(self.seen);
            self.var += delta * (value - self.mean);
            if self.seen == needed {
                self.var /= f64::from(needed - 1);
            }
            return Some(BaselineVerdict::WarmingUp {
                seen: self.seen,
                needed,
            });
        }
        let std = self.std();
        let z = (value - self.mean) / std;
        if z.abs() > self.config.threshold_sigma {
            return Some(BaselineVerdict::Unusual {
                z,
                mean: self.mean,
                std,
            });
        }
        if !self.frozen {
            // West's exponentially weighted mean and variance.
            let a = self.config.alpha;
            let diff = value - self.mean;
            let incr = a * diff;
            self.mean += incr;
            self.var = (1.0 - a) * (self.var + diff * incr);
        }
        Some(BaselineVerdict::Normal { z })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a well-mixed deterministic stream.
    fn uniform(seed: u64) -> f64 {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Deterministic, roughly normal noise (sum of 12 uniforms), sd ≈ 1.
    fn noise(i: u64) -> f64 {
        (0..12u64).map(|k| uniform(i * 12 + k)).sum::<f64>() - 6.0
    }

    fn baseline() -> AdaptiveBaseline {
        AdaptiveBaseline::new(BaselineConfig {
            alpha: 0.01,
            warmup_samples: 500,
            threshold_sigma: 5.0,
            min_std: 1e-6,
        })
        .unwrap()
    }

    #[test]
    fn it_warms_up_then_learns_mean_and_spread() {
        let mut b = baseline();
        for i in 0..499u64 {
            assert!(matches!(
                b.update(50.0 + 2.0 * noise(i)),
                Some(BaselineVerdict::WarmingUp { needed: 500, .. })
            ));
            assert_eq!(b.learned(), None);
        }
        b.update(50.0 + 2.0 * noise(499));
        let (mean, std) = b.learned().expect("warm after 500");
        assert!((mean - 50.0).abs() < 0.3, "{mean}");
        assert!((std - 2.0).abs() < 0.3, "{std}");
        // Healthy values: normal, and no false alarm in 10,000 of them.
        let unusual = (500..10_500u64)
            .filter(|&i| {
                matches!(
                    b.update(50.0 + 2.0 * noise(i)),
                    Some(BaselineVerdict::Unusual { .. })
                )
            })
            .count();
        assert_eq!(unusual, 0);
    }

    #[test]
    fn a_fault_is_unusual_and_is_not_learned() {
        let mut b = baseline();
        for i in 0..2_000u64 {
            b.update(50.0 + 2.0 * noise(i));
        }
        let (mean, _) = b.learned().unwrap();
        // A shift of 20 σ, held for a long time: unusual all along, baseline unmoved.
        for _ in 0..5_000 {
            assert!(matches!(
                b.update(90.0),
                Some(BaselineVerdict::Unusual { .. })
            ));
        }
        assert_eq!(b.learned().unwrap().0, mean);
    }

    #[test]
    fn slow_drift_is_followed_and_freezing_stops_it() {
        let mut b = baseline();
        for i in 0..20_000u64 {
            let drift = i as f64 * 0.0005; // 10 units over the run, 0.05 σ per 100 samples
            let v = b.update(50.0 + drift + 2.0 * noise(i));
            assert!(
                !matches!(v, Some(BaselineVerdict::Unusual { .. })),
                "{i}: {v:?}"
            );
        }
        let (mean, _) = b.learned().unwrap();
        assert!((mean - 60.0).abs() < 1.0, "{mean}");
        b.freeze();
        for i in 0..1_000u64 {
            b.update(55.0 + noise(i));
        }
        assert_eq!(b.learned().unwrap().0, mean);
    }

    #[test]
    fn bad_settings_are_refused_by_field() {
        let err = AdaptiveBaseline::new(BaselineConfig {
            alpha: 1.5,
            ..BaselineConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "alpha");
    }
}
