//! Domain types of hydrowatch and the pure checks applied to them.
//!
//! This crate is synchronous and free of I/O on purpose: everything here can be
//! unit-tested without a runtime and reused by actors, storage and the façade alike.

pub mod alert;
pub mod cycle;
pub mod detect;
pub mod ensemble;
pub mod forest;
pub mod health;
pub mod id;
pub mod novelty;
pub mod sample;
pub mod scoring;
pub mod sensor;
pub mod units;

pub use health::{Health, HealthStatus};
pub use id::{EquipmentId, IdError, SensorId};
pub use sample::{Quality, Reading, SampleBatch};
pub use sensor::{PhysicalRange, SensorSpec, SensorState, SensorStatus};
pub mod equipment;
pub use equipment::{ConditionView, EquipmentDelta, EquipmentSnapshot, EquipmentSpec, SensorView};
