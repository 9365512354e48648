//! Is the signal believable? Four checks on each sample of one sensor:
//!
//! - **out of range**: outside the instrument's physical range;
//! - **stuck**: the same value (within `stuck_tolerance`) for `stuck_samples`
//!   samples in a row — except at the values in `stuck_exempt`, where a long
//!   constant run is how the process looks (in the rig data PS4 reads 0.0 bar
//!   for whole cycles whenever the cooler is degraded; that is not a sensor
//!   fault);
//! - **spike**: one sample more than `spike_threshold` robust deviations
//!   (median absolute deviation × 1.4826) from the median of the previous
//!   `spike_window` samples, *and the next sample back within it*. The second
//!   condition tells a spike from a step (a new operating point), so a spike
//!   is reported one sample late, with its own timestamp;
//! - **gap**: more than `max_gap_ms` since the previous sample.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::PhysicalRange;

/// Settings of the quality checks of one sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Samples in a row at one value that make it stuck (0: off).
    pub stuck_samples: usize,
    /// Values closer than this count as the same, in the sensor's unit.
    pub stuck_tolerance: f64,
    /// Values at which a constant run is legitimate.
    pub stuck_exempt: Vec<f64>,
    /// Previous samples the spike check compares with (0: off).
    pub spike_window: usize,
    /// Robust deviations beyond which a sample is a spike candidate.
    pub spike_threshold: f64,
    /// Smallest spread assumed, in the sensor's unit (a perfectly flat signal
    /// would otherwise make any change infinitely unusual).
    pub spike_min_spread: f64,
    /// Longest normal interval between samples, ms (0: off).
    pub max_gap_ms: u64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            stuck_samples: 120,
            stuck_tolerance: 0.0,
            stuck_exempt: Vec::new(),
            spike_window: 25,
            spike_threshold: 8.0,
            spike_min_spread: 1e-6,
            max_gap_ms: 0,
        }
    }
}

impl QualityConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.stuck_tolerance.is_finite() && self.stuck_tolerance >= 0.0) {
            return Err(invalid("stuck_tolerance", "must be a number ≥ 0"));
        }
        if self.stuck_exempt.iter().any(|v| !v.is_finite()) {
            return Err(invalid("stuck_exempt", "must be finite numbers"));
        }
        if self.spike_window == 1 || self.spike_window == 2 {
            return Err(invalid("spike_window", "must be 0 (off) or at least 3"));
        }
        if !(self.spike_threshold.is_finite() && self.spike_threshold > 0.0) {
            return Err(invalid("spike_threshold", "must be a number > 0"));
        }
        if !(self.spike_min_spread.is_finite() && self.spike_min_spread > 0.0) {
            return Err(invalid("spike_min_spread", "must be a number > 0"));
        }
        Ok(())
    }
}

/// Something wrong with the signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "issue", rename_all = "snake_case")]
pub enum QualityIssue {
    /// Not a finite number.
    NotFinite,
    /// Outside the physical range (reported for every such sample).
    OutOfRange { value: f64 },
    /// The value has not changed for `samples` samples (reported for every
    /// sample while it lasts).
    Stuck {
        /// The value it is stuck at.
        value: f64,
        /// Samples in the run so far.
        samples: usize,
    },
    /// The sample at `ts_ms` was a spike (reported when the next sample shows
    /// it was not a step).
    Spike {
        /// When the spike was sampled.
        ts_ms: i64,
        value: f64,
        /// Median of the samples before it.
        median: f64,
        /// How many robust deviations away it was.
        score: f64,
    },
    /// Nothing came for `gap_ms` before this sample.
    Gap { gap_ms: i64 },
}

/// The quality checks' state for one sensor.
#[derive(Debug, Clone)]
pub struct QualityChecker {
    config: QualityConfig,
    range: PhysicalRange,
    last_ts: Option<i64>,
    run_value: f64,
    run_len: usize,
    recent: VecDeque<f64>,
    scratch: Vec<f64>,
    /// A spike candidate: (ts, value, median, spread, score).
    pending: Option<(i64, f64, f64, f64, f64)>,
}

/// Median of `xs` (reordered in place); `xs` must not be empty.
fn median(xs: &mut [f64]) -> f64 {
    let mid = xs.len() / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

impl QualityChecker {
    /// Checks for a sensor of physical range `range`.
    pub fn new(range: PhysicalRange, config: QualityConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(QualityChecker {
            recent: VecDeque::with_capacity(config.spike_window),
            scratch: Vec::with_capacity(config.spike_window),
            config,
            range,
            last_ts: None,
            run_value: f64::NAN,
            run_len: 0,
            pending: None,
        })
    }

    /// Median and spread (robust standard deviation, floored) of the window.
    fn window_stats(&mut self) -> (f64, f64) {
        self.scratch.clear();
        self.scratch.extend(self.recent.iter().copied());
        let med = median(&mut self.scratch);
        for x in self.scratch.iter_mut() {
            *x = (*x - med).abs();
        }
        let mad = median(&mut self.scratch);
        (med, (1.4826 * mad).max(self.config.spike_min_spread))
    }

    /// Checks one sample (in time order) and reports what is wrong, if
    /// anything. A missing value (`None`) only moves the clock.
    pub fn check(&mut self, ts_ms: i64, value: Option<f64>) -> Vec<QualityIssue> {
        let mut issues = Vec::new();
        if let (Some(last), max) = (self.last_ts, self.config.max_gap_ms) {
            if max > 0 && ts_ms - last > max as i64 {
                issues.push(QualityIssue::Gap {
                    gap_ms: ts_ms - last,
                });
            }
        }
        self.last_ts = Some(ts_ms);
        let Some(v) = value else {
            return issues;
        };
        if !v.is_finite() {
            issues.push(QualityIssue::NotFinite);
            return issues;
        }
        if !self.range.contains(v) {
            issues.push(QualityIssue::OutOfRange { value: v });
        }

        // Stuck.
        if self.run_len > 0 && (v - self.run_value).abs() <= self.config.stuck_tolerance {
            self.run_len += 1;
        } else {
            self.run_value = v;
            self.run_len = 1;
        }
        let exempt = self
            .config
            .stuck_exempt
            .iter()
            .any(|e| (self.run_value - e).abs() <= self.config.stuck_tolerance);
        if self.config.stuck_samples > 0 && self.run_len >= self.config.stuck_samples && !exempt {
            issues.push(QualityIssue::Stuck {
                value: self.run_value,
                samples: self.run_len,
            });
        }

        // Spike: a candidate is confirmed when this sample is back in the band.
        let window = self.config.spike_window;
        if window > 0 {
            if let Some((ts, value, med, spread, score)) = self.pending.take() {
                if (v - med).abs() / spread <= self.config.spike_threshold {
                    issues.push(QualityIssue::Spike {
                        ts_ms: ts,
                        value,
                        median: med,
                        score,
                    });
                }
            }
            if self.recent.len() == window {
                let (med, spread) = self.window_stats();
                let score = (v - med).abs() / spread;
                if score > self.config.spike_threshold {
                    self.pending = Some((ts_ms, v, med, spread, score));
                }
                self.recent.pop_front();
            }
            self.recent.push_back(v);
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(config: QualityConfig) -> QualityChecker {
        QualityChecker::new(
            PhysicalRange {
                min: 0.0,
                max: 200.0,
            },
            config,
        )
        .unwrap()
    }

    /// A smooth signal with deterministic noise.
    fn signal(i: i64) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
        150.0 + 5.0 * (i as f64 / 50.0).sin() + 0.3 * noise
    }

    #[test]
    fn a_clean_signal_raises_nothing() {
        let mut q = checker(QualityConfig::default());
        for i in 0..10_000 {
            let issues = q.check(i * 10, Some(signal(i)));
            assert!(issues.is_empty(), "{i}: {issues:?}");
        }
    }

    #[test]
    fn a_spike_is_found_one_sample_late_and_a_step_is_not_a_spike() {
        let mut q = checker(QualityConfig::default());
        let mut found = Vec::new();
        for i in 0..2_000 {
            let v = match i {
                500 => 190.0,                // spike
                1_000.. => signal(i) + 30.0, // step to a new level
                _ => signal(i),
            };
            for issue in q.check(i * 10, Some(v)) {
                found.push((i, issue));
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let (at, issue) = found[0];
        assert_eq!(at, 501);
        match issue {
            QualityIssue::Spike {
                ts_ms,
                value,
                score,
                ..
            } => {
                assert_eq!((ts_ms, value), (5_000, 190.0));
                assert!(score > 8.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stuck_value_is_found_but_not_at_an_exempt_value() {
        let config = QualityConfig {
            stuck_samples: 100,
            stuck_exempt: vec![0.0],
            ..QualityConfig::default()
        };
        let mut q = checker(config);
        let mut stuck_at = None;
        for i in 0..300 {
            let v = if i >= 100 { 151.25 } else { signal(i) };
            if let Some(QualityIssue::Stuck { samples, .. }) = q
                .check(i * 10, Some(v))
                .into_iter()
                .find(|x| matches!(x, QualityIssue::Stuck { .. }))
            {
                stuck_at.get_or_insert((i, samples));
            }
        }
        assert_eq!(stuck_at, Some((199, 100)));
        // PS4 at 0.0 bar for a whole cycle: not a fault.
        let mut q = checker(QualityConfig {
            stuck_samples: 100,
            stuck_exempt: vec![0.0],
            ..QualityConfig::default()
        });
        for i in 0..6_000 {
            let issues = q.check(i * 10, Some(0.0));
            assert!(issues.is_empty(), "{i}: {issues:?}");
        }
    }

    #[test]
    fn out_of_range_gaps_and_non_numbers_are_reported() {
        let mut q = checker(QualityConfig {
            max_gap_ms: 100,
            ..QualityConfig::default()
        });
        assert_eq!(
            q.check(0, Some(250.0)),
            vec![QualityIssue::OutOfRange { value: 250.0 }]
        );
        assert_eq!(q.check(50, Some(f64::NAN)), vec![QualityIssue::NotFinite]);
        assert_eq!(q.check(100, None), vec![]);
        assert_eq!(
            q.check(300, Some(10.0)),
            vec![QualityIssue::Gap { gap_ms: 200 }]
        );
    }

    #[test]
    fn bad_settings_are_refused_by_field() {
        let range = PhysicalRange { min: 0.0, max: 1.0 };
        let err = QualityChecker::new(
            range,
            QualityConfig {
                spike_window: 2,
                ..QualityConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.field, "spike_window");
        let err = QualityChecker::new(
            range,
            QualityConfig {
                stuck_tolerance: -1.0,
                ..QualityConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.field, "stuck_tolerance");
    }
}
