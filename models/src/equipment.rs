//! An equipment unit: its description and its live picture.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{EquipmentId, Health, PhysicalRange, SensorId, SensorSpec, SensorState};

/// Static description of an equipment unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquipmentSpec {
    /// Identifier, unique in the plant.
    pub id: EquipmentId,
    /// Human-readable name.
    pub name: String,
    /// Name of the site it stands on.
    pub site: String,
    /// Its sensors, in display order.
    pub sensors: Vec<SensorSpec>,
}

/// A sensor as the live picture shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorView {
    /// Identifier.
    pub id: SensorId,
    /// Name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Physical range.
    pub range: PhysicalRange,
    /// Live state.
    pub state: SensorState,
}

/// Everything known about an equipment unit right now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquipmentSnapshot {
    /// Identifier.
    pub id: EquipmentId,
    /// Name.
    pub name: String,
    /// Site name.
    pub site: String,
    /// Health.
    pub health: Health,
    /// Sensors in display order.
    pub sensors: Vec<SensorView>,
}

/// What changed in an equipment's picture since the previous delta.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EquipmentDelta {
    /// New health, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// New states of the sensors that changed.
    pub sensors: BTreeMap<SensorId, SensorState>,
}

impl EquipmentDelta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.health.is_none() && self.sensors.is_empty()
    }

    /// Folds a later delta into this one (later values win).
    pub fn merge(&mut self, later: EquipmentDelta) {
        if later.health.is_some() {
            self.health = later.health;
        }
        self.sensors.extend(later.sensors);
    }
}

impl EquipmentSnapshot {
    /// Applies a delta in place.
    pub fn apply(&mut self, delta: EquipmentDelta) {
        if let Some(health) = delta.health {
            self.health = health;
        }
        for (id, state) in delta.sensors {
            if let Some(view) = self.sensors.iter_mut().find(|s| s.id == id) {
                view.state = state;
            }
        }
    }
}
