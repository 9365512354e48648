//! How a supervisor treats its children: the OTP vocabulary, as data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which children are restarted when one of them exits and must be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// Every child: the others are stopped (in reverse start order) and all are
    /// started again in order.
    OneForAll,
    /// The child that exited and every child started after it.
    RestForOne,
}

/// When a child that exited is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (a failure, a panic, a kill).
    Transient,
    /// Never; the child is forgotten once it exits.
    Temporary,
}

/// At most `max_restarts` restarts within `within`; one more and the supervisor
/// stops its children and fails, so that its own parent decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts tolerated within the period.
    pub max_restarts: u32,
    /// The sliding period.
    pub within: Duration,
}

/// Delay before a restart: `initial × multiplier^(n-1)` for the n-th restart of
/// the same child within the intensity period, capped at `max`, spread by ±`jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart (may be zero).
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Growth factor between consecutive restarts (≥ 1).
    pub multiplier: f64,
    /// Relative random spread in `[0, 1]`, so that siblings do not restart in lockstep.
    pub jitter: f64,
}

impl Backoff {
    /// No delay at all.
    pub const NONE: Backoff = Backoff {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        multiplier: 1.0,
        jitter: 0.0,
    };

    /// The delay before the `attempt`-th restart (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = secs.min(self.max.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(capped)
    }

    /// The delay before the `attempt`-th restart, with jitter drawn from `unit`
    /// (a number in `[0, 1)`).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = base * self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// Everything a supervisor needs to know about how to supervise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupervisorSpec {
    /// Which children restart together.
    pub strategy: Strategy,
    /// Restart intensity.
    pub intensity: Intensity,
    /// Delay before restarts.
    pub backoff: Backoff,
    /// How long a child gets to stop gracefully before it is killed.
    pub shutdown_timeout: Duration,
}

impl SupervisorSpec {
    /// A one_for_one supervisor with OTP's default intensity (1 restart in 5 s
    /// is OTP's; we use 3 in 5 s) and no backoff.
    pub fn one_for_one() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            intensity: Intensity {
                max_restarts: 3,
                within: Duration::from_secs(5),
            },
            backoff: Backoff::NONE,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.0,
        };
        assert_eq!(b.base_delay(1), Duration::from_millis(100));
        assert_eq!(b.base_delay(2), Duration::from_millis(200));
        assert_eq!(b.base_delay(4), Duration::from_millis(800));
        assert_eq!(b.base_delay(5), Duration::from_millis(1000));
        assert_eq!(b.base_delay(500), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_spread() {
        let b = Backoff {
            initial: Duration::from_millis(1000),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(1000));
        assert!(b.delay(1, 0.999_999) < Duration::from_millis(1500));
    }
}
