//! Per-sample detectors, run by sensor actors on every reading as it arrives.
//!
//! Each detector is a small state machine over one sensor's stream of
//! `(ts_ms, value)`: no clock of its own, no I/O, no allocation per sample in
//! the steady state. They are configured by typed, validated structs
//! (`serde`), so the application's config can carry them.
//!
//! - [`quality`]: is the signal believable? Outside the physical range, stuck
//!   at one value, a spike against the robust recent spread, a gap in time.
//! - [`threshold`]: has a process value crossed a limit, for long enough?
//!   Separate set and clear levels (hysteresis) and minimum durations, so a
//!   noisy signal near the limit does not flap.
//! - [`baseline`]: is this value unusual for this sensor? EWMA mean and
//!   variance learned from healthy operation, after a warm-up.

pub mod baseline;
pub mod quality;
pub mod sensor;
pub mod threshold;

pub use baseline::{AdaptiveBaseline, BaselineConfig, BaselineVerdict};
pub use quality::{QualityChecker, QualityConfig, QualityIssue};
pub use sensor::{DetectorsConfig, Findings, SensorDetectors};
pub use threshold::{Direction, HysteresisConfig, HysteresisThreshold, ThresholdEvent};

/// Why a detector's configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}
