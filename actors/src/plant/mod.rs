//! The plant: equipment units and their sensors.

pub mod alerts;
pub mod equipment;
pub mod scoring;
pub mod sensor;

pub use alerts::{AlertLink, UnitRules};
pub use equipment::{Equipment, EquipmentArgs, EquipmentMsg};
pub use scoring::{CycleScoring, VerdictSink};
pub use sensor::{Sensor, SensorArgs, SensorMsg};
