//! A limit with hysteresis and minimum durations.
//!
//! The alarm is *raised* when the value has been beyond the set level
//! continuously for `min_set_ms`, and *cleared* when it has been back beyond
//! the clear level (on the normal side) continuously for `min_clear_ms`.
//! Between the two levels nothing changes: a signal whose noise spans the set
//! level but not the clear level raises once and stays raised.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Which side of the limit is abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Values above `set` are abnormal (e.g. a temperature).
    Above,
    /// Values below `set` are abnormal (e.g. a supply pressure).
    Below,
}

/// A limit's levels and timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HysteresisConfig {
    /// Which side is abnormal.
    pub direction: Direction,
    /// Level beyond which the alarm sets.
    pub set: f64,
    /// Level back beyond which it clears (below `set` for `above`, above it
    /// for `below`).
    pub clear: f64,
    /// How long the value must stay beyond `set` before the alarm is raised, ms.
    #[serde(default)]
    pub min_set_ms: u64,
    /// How long it must stay back beyond `clear` before the alarm clears, ms.
    #[serde(default)]
    pub min_clear_ms: u64,
}

impl HysteresisConfig {
    /// Checks that the levels are finite and on the right sides.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.set.is_finite() {
            return Err(invalid("set", "must be a finite number"));
        }
        if !self.clear.is_finite() {
            return Err(invalid("clear", "must be a finite number"));
        }
        let ordered = match self.direction {
            Direction::Above => self.clear < self.set,
            Direction::Below => self.clear > self.set,
        };
        if !ordered {
            return Err(invalid(
                "clear",
                format!(
                    "must be on the normal side of set ({}) for direction {:?}",
                    self.set, self.direction
                ),
            ));
        }
        Ok(())
    }
}

/// What a sample did to the alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdEvent {
    /// The alarm was raised: the value has been beyond `set` since `since_ms`.
    Raised {
        /// When the value first went beyond `set` (this excursion).
        since_ms: i64,
        /// The value that completed the minimum duration.
        value: f64,
    },
    /// The alarm cleared: the value has been back since `since_ms`.
    Cleared {
        /// When the value came back beyond `clear`.
        since_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Normal,
    /// Beyond `set` since then, not long enough yet.
    Setting(i64),
    Active,
    /// Back beyond `clear` since then, not long enough yet.
    Clearing(i64),
}

/// The state machine of one limit on one sensor.
#[derive(Debug, Clone)]
pub struct HysteresisThreshold {
    config: HysteresisConfig,
    state: State,
    since: i64,
}

impl HysteresisThreshold {
    /// A limit in the normal state.
    pub fn new(config: HysteresisConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(HysteresisThreshold {
            config,
            state: State::Normal,
            since: 0,
        })
    }

    /// Whether the alarm is raised.
    pub fn active(&self) -> bool {
        matches!(self.state, State::Active | State::Clearing(_))
    }

    fn beyond_set(&self, v: f64) -> bool {
        match self.config.direction {
            Direction::Above => v > self.config.set,
            Direction::Below => v < self.config.set,
        }
    }

    fn back_past_clear(&self, v: f64) -> bool {
        match self.config.direction {
            Direction::Above => v < self.config.clear,
            Direction::Below => v > self.config.clear,
        }
    }

    /// Feeds one sample (in time order). A missing value raises or clears
    /// nothing, and restarts a minimum duration being waited out: a duration
    /// counts only while the value is seen beyond the level (a raised alarm
    /// stays raised through a gap; absence is no sign of recovery).
    pub fn update(&mut self, ts_ms: i64, value: Option<f64>) -> Option<ThresholdEvent> {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            self.state = match self.state {
                State::Setting(_) => State::Normal,
                State::Clearing(_) => State::Active,
                other => other,
            };
            return None;
        };
        let min_set = self.config.min_set_ms as i64;
        let min_clear = self.config.min_clear_ms as i64;
        match self.state {
            State::Normal | State::Setting(_) if !self.beyond_set(v) => {
                self.state = State::Normal;
                None
            }
            State::Normal | State::Setting(_) => {
                let since = match self.state {
                    State::Setting(since) => since,
                    _ => ts_ms,
                };
                if ts_ms - since >= min_set {
                    self.state = State::Active;
                    self.since = since;
                    Some(ThresholdEvent::Raised {
                        since_ms: since,
                        value: v,
                    })
                } else {
                    self.state = State::Setting(since);
                    None
                }
            }
            State::Active | State::Clearing(_) if !self.back_past_clear(v) => {
                self.state = State::Active;
                None
            }
            State::Active | State::Clearing(_) => {
                let since = match self.state {
                    State::Clearing(since) => since,
                    _ => ts_ms,
                };
                if ts_ms - since >= min_clear {
                    self.state = State::Normal;
                    Some(ThresholdEvent::Cleared { since_ms: since })
                } else {
                    self.state = State::Clearing(since);
                    None
                }
            }
        }
    }

    /// When the current (or last) alarm's excursion began, ms.
    pub fn raised_since(&self) -> Option<i64> {
        self.active().then_some(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn above(set: f64, clear: f64, min_set_ms: u64, min_clear_ms: u64) -> HysteresisThreshold {
        HysteresisThreshold::new(HysteresisConfig {
            direction: Direction::Above,
            set,
            clear,
            min_set_ms,
            min_clear_ms,
        })
        .unwrap()
    }

    /// A deterministic noise in [-1, 1).
    fn noise(i: u64) -> f64 {
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    #[test]
    fn a_noisy_signal_around_the_set_level_raises_once_and_does_not_flap() {
        // 60 ± 1 around a set level of 60.5, clear at 58: raised once, never cleared.
        let mut t = above(60.5, 58.0, 0, 0);
        let events: Vec<_> = (0..10_000u64)
            .filter_map(|i| t.update(i as i64 * 10, Some(60.0 + noise(i))))
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(events[0], ThresholdEvent::Raised { .. }));
        assert!(t.active());
        // The same noise with no hysteresis (clear = set - ε) flaps thousands of times.
        let mut flappy = above(60.5, 60.499_999, 0, 0);
        let flaps = (0..10_000u64)
            .filter(|&i| {
                flappy
                    .update(i as i64 * 10, Some(60.0 + noise(i)))
                    .is_some()
            })
            .count();
        assert!(flaps > 1000, "{flaps}");
    }

    #[test]
    fn short_excursions_shorter_than_the_minimum_duration_do_not_raise() {
        let mut t = above(10.0, 8.0, 1_000, 500);
        // 900 ms beyond, then back: nothing.
        for ms in (0..900).step_by(100) {
            assert_eq!(t.update(ms, Some(11.0)), None);
        }
        assert_eq!(t.update(900, Some(9.0)), None);
        // Beyond for a whole second: raised at the sample that completes it.
        for ms in (1_000..2_000).step_by(100) {
            assert_eq!(t.update(ms, Some(12.0)), None);
        }
        assert_eq!(
            t.update(2_000, Some(12.5)),
            Some(ThresholdEvent::Raised {
                since_ms: 1_000,
                value: 12.5
            })
        );
        assert_eq!(t.raised_since(), Some(1_000));
        // Between clear and set: still raised. Below clear for 400 ms, then
        // above it again: still raised. Below for 500 ms: cleared.
        assert_eq!(t.update(2_100, Some(9.0)), None);
        assert_eq!(t.update(2_200, Some(7.0)), None);
        assert_eq!(t.update(2_600, Some(7.0)), None);
        assert_eq!(t.update(2_700, Some(8.5)), None);
        assert!(t.active());
        assert_eq!(t.update(3_000, Some(7.0)), None);
        assert_eq!(
            t.update(3_500, Some(7.5)),
            Some(ThresholdEvent::Cleared { since_ms: 3_000 })
        );
        assert!(!t.active());
        // Gaps change nothing.
        assert_eq!(t.update(3_600, None), None);
        assert_eq!(t.update(3_700, Some(f64::NAN)), None);
    }

    #[test]
    fn a_gap_restarts_the_minimum_duration_but_keeps_a_raised_alarm() {
        let mut t = above(10.0, 8.0, 5_000, 5_000);
        assert_eq!(t.update(0, Some(12.0)), None);
        assert_eq!(t.update(4_000, None), None);
        // Beyond the level again after the gap: the 5 s start over.
        assert_eq!(t.update(6_000, Some(12.0)), None);
        assert_eq!(t.update(10_000, Some(12.0)), None);
        assert!(matches!(
            t.update(11_000, Some(12.0)),
            Some(ThresholdEvent::Raised {
                since_ms: 6_000,
                ..
            })
        ));
        // Raised, then a gap: still raised; clearing also starts over.
        assert_eq!(t.update(12_000, Some(5.0)), None);
        assert_eq!(t.update(13_000, None), None);
        assert!(t.active());
        assert_eq!(t.update(16_000, Some(5.0)), None);
        assert_eq!(t.update(20_000, Some(5.0)), None);
        assert!(matches!(
            t.update(21_000, Some(5.0)),
            Some(ThresholdEvent::Cleared { since_ms: 16_000 })
        ));
    }

    #[test]
    fn a_low_limit_works_the_other_way_round() {
        let mut t = HysteresisThreshold::new(HysteresisConfig {
            direction: Direction::Below,
            set: 100.0,
            clear: 110.0,
            min_set_ms: 0,
            min_clear_ms: 0,
        })
        .unwrap();
        assert_eq!(t.update(0, Some(105.0)), None);
        assert!(matches!(
            t.update(1, Some(99.0)),
            Some(ThresholdEvent::Raised { .. })
        ));
        assert_eq!(t.update(2, Some(105.0)), None);
        assert!(matches!(
            t.update(3, Some(111.0)),
            Some(ThresholdEvent::Cleared { .. })
        ));
    }

    #[test]
    fn levels_on_the_wrong_side_are_refused_by_field() {
        let err = HysteresisThreshold::new(HysteresisConfig {
            direction: Direction::Above,
            set: 10.0,
            clear: 12.0,
            min_set_ms: 0,
            min_clear_ms: 0,
        })
        .unwrap_err();
        assert_eq!(err.field, "clear");
        let err = HysteresisThreshold::new(HysteresisConfig {
            direction: Direction::Below,
            set: f64::NAN,
            clear: 12.0,
            min_set_ms: 0,
            min_clear_ms: 0,
        })
        .unwrap_err();
        assert_eq!(err.field, "set");
    }
}
