//! Readings as they come off a device, before any judgement.

use serde::{Deserialize, Serialize};

use crate::{EquipmentId, SensorId};

/// How far a value can be trusted, in the OPC UA sense.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// The device delivered the value and nothing is known to be wrong with it.
    Good,
    /// A value exists but may be wrong: held over a missed poll, or outside the
    /// physical range of the instrument.
    Uncertain,
    /// There is no usable value: the device is unreachable or refused the read.
    Bad,
}

impl Quality {
    /// The worse of two qualities.
    pub fn worst(self, other: Quality) -> Quality {
        self.max(other)
    }

    fn rank(self) -> u8 {
        match self {
            Quality::Good => 0,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
        }
    }
}

impl PartialOrd for Quality {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quality {
    /// Ordered from best (`Good`) to worst (`Bad`).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// One value of one sensor at one instant, as read from the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The sensor the value belongs to.
    pub sensor: SensorId,
    /// The value in engineering units, after scale and offset; `None` when the
    /// device gave nothing usable.
    pub value: Option<f64>,
    /// Quality as judged by the connection (device or transport problems).
    pub quality: Quality,
    /// Why the quality is not good, for operators (e.g. `timeout`, `exception 0x02`).
    pub reason: Option<String>,
}

/// Every reading of one poll of one equipment unit: the unit of transport from a
/// connection to the equipment that owns the sensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleBatch {
    /// The equipment the readings belong to.
    pub equipment: EquipmentId,
    /// When the poll completed, in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The readings, one per sensor polled.
    pub readings: Vec<Reading>,
}
