//! What a sensor is, and what the latest judgement of it says.

use serde::{Deserialize, Serialize};

use crate::{Quality, Reading, SensorId};

/// The range an instrument can physically measure; a value outside it is a sign of
/// a broken sensor or a wrong register map, not of a process excursion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhysicalRange {
    /// Lowest measurable value, in the sensor's unit.
    pub min: f64,
    /// Highest measurable value, in the sensor's unit.
    pub max: f64,
}

impl PhysicalRange {
    /// Whether `value` lies within the range, bounds included.
    pub fn contains(&self, value: f64) -> bool {
        value >= self.min && value <= self.max
    }
}

/// Static description of a sensor, from the plant configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorSpec {
    /// Identifier, unique within the equipment.
    pub id: SensorId,
    pub name: String,
    /// Engineering unit (e.g. `bar`).
    pub unit: String,
    /// Physical measuring range.
    pub range: PhysicalRange,
    /// After this long without a reading the sensor is stale, in milliseconds.
    pub stale_after_ms: u64,
    /// The per-sample detectors its actor runs.
    pub detectors: crate::detect::DetectorsConfig,
}

/// The verdict on a sensor's latest value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorStatus {
    /// Value present, in range, fresh.
    Ok,
    /// Value outside the physical range of the instrument.
    OutOfRange,
    /// No reading for longer than the sensor's staleness limit.
    Stale,
    /// Nothing has been read yet.
    NoData,
    /// The device or the link to it failed for this reading.
    DeviceError,
}

/// The live state of a sensor: latest value and the judgement of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    /// Latest value, if any.
    pub value: Option<f64>,
    /// Quality after the sensor's own checks.
    pub quality: Quality,
    /// Time of the latest reading (ms since the Unix epoch); 0 when none yet.
    pub ts_ms: i64,
    /// The verdict.
    pub status: SensorStatus,
    /// Why the status is not `ok`, for operators.
    pub reason: Option<String>,
}

impl SensorState {
    /// The state of a sensor nothing has been read from.
    pub fn no_data() -> Self {
        Self {
            value: None,
            quality: Quality::Bad,
            ts_ms: 0,
            status: SensorStatus::NoData,
            reason: None,
        }
    }
}

impl SensorSpec {
    /// Judges a fresh reading of this sensor taken at `ts_ms`.
    pub fn assess(&self, reading: &Reading, ts_ms: i64) -> SensorState {
        let (status, quality, reason) = match (reading.quality, reading.value) {
            (Quality::Bad, _) | (_, None) => (
                SensorStatus::DeviceError,
                Quality::Bad,
                reading.reason.clone(),
            ),
            (quality, Some(v)) if !v.is_finite() || !self.range.contains(v) => (
                SensorStatus::OutOfRange,
                quality.worst(Quality::Uncertain),
                Some(format!(
                    "{v} {} outside physical range {}..{}",
                    self.unit, self.range.min, self.range.max
                )),
            ),
            (Quality::Uncertain, Some(_)) => {
                (SensorStatus::Ok, Quality::Uncertain, reading.reason.clone())
            }
            (Quality::Good, Some(_)) => (SensorStatus::Ok, Quality::Good, None),
        };
        SensorState {
            value: reading.value.filter(|v| v.is_finite()),
            quality,
            ts_ms,
            status,
            reason,
        }
    }

    /// The state `state` becomes at `now_ms` if it has gone stale, or `None` if it
    /// is still fresh (or already marked stale or empty).
    pub fn check_stale(&self, state: &SensorState, now_ms: i64) -> Option<SensorState> {
        if matches!(state.status, SensorStatus::Stale | SensorStatus::NoData) {
            return None;
        }
        let age = now_ms.saturating_sub(state.ts_ms);
        if age <= self.stale_after_ms as i64 {
            return None;
        }
        Some(SensorState {
            value: state.value,
            quality: Quality::Bad,
            ts_ms: state.ts_ms,
            status: SensorStatus::Stale,
            reason: Some(format!("no reading for {} s", age / 1000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SensorSpec {
        SensorSpec {
            id: SensorId::parse("PS1").unwrap(),
            name: "Pressure 1".into(),
            unit: "bar".into(),
            range: PhysicalRange {
                min: 0.0,
                max: 250.0,
            },
            stale_after_ms: 3000,
            detectors: Default::default(),
        }
    }

    fn reading(value: Option<f64>, quality: Quality) -> Reading {
        Reading {
            sensor: SensorId::parse("PS1").unwrap(),
            value,
            quality,
            reason: None,
        }
    }

    #[test]
    fn good_in_range_is_ok() {
        let s = spec().assess(&reading(Some(150.0), Quality::Good), 10);
        assert_eq!(s.status, SensorStatus::Ok);
        assert_eq!(s.quality, Quality::Good);
        assert_eq!(s.value, Some(150.0));
    }

    #[test]
    fn out_of_range_is_uncertain_and_says_why() {
        let s = spec().assess(&reading(Some(300.0), Quality::Good), 10);
        assert_eq!(s.status, SensorStatus::OutOfRange);
        assert_eq!(s.quality, Quality::Uncertain);
        assert!(s.reason.unwrap().contains("300"));
    }

    #[test]
    fn nan_is_out_of_range_without_a_value() {
        let s = spec().assess(&reading(Some(f64::NAN), Quality::Good), 10);
        assert_eq!(s.status, SensorStatus::OutOfRange);
        assert_eq!(s.value, None);
    }

    #[test]
    fn bad_reading_is_device_error() {
        let s = spec().assess(&reading(None, Quality::Bad), 10);
        assert_eq!(s.status, SensorStatus::DeviceError);
        assert_eq!(s.quality, Quality::Bad);
    }

    #[test]
    fn goes_stale_after_limit_once() {
        let sp = spec();
        let fresh = sp.assess(&reading(Some(1.0), Quality::Good), 1000);
        assert!(sp.check_stale(&fresh, 4000).is_none());
        let stale = sp.check_stale(&fresh, 4001).expect("stale");
        assert_eq!(stale.status, SensorStatus::Stale);
        assert_eq!(stale.quality, Quality::Bad);
        assert!(sp.check_stale(&stale, 9000).is_none());
    }
}
