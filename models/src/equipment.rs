//! An equipment unit: its description and its live picture.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cycle::CycleLayout;
use crate::detect::Findings;
use crate::ensemble::Verdict;
use crate::{EquipmentId, Health, PhysicalRange, SensorId, SensorSpec, SensorState};

/// Static description of an equipment unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquipmentSpec {
    /// Identifier, unique in the plant.
    pub id: EquipmentId,
    pub name: String,
    /// Name of the site it stands on.
    pub site: String,
    /// Its sensors, in display order.
    pub sensors: Vec<SensorSpec>,
    /// How its samples are cut into cycles for the cycle models; `None`:
    /// no cycle scoring.
    pub cycle: Option<CycleLayout>,
}

/// The condition of an equipment unit as the cycle models judged its latest
/// complete cycle.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionView {
    /// When the cycle's first sample was read, ms since the Unix epoch.
    pub cycle_start_ms: i64,
    /// When its last sample was read.
    pub cycle_end_ms: i64,
    /// The ensemble's verdict: health per component with confidence.
    pub verdict: Verdict,
    /// Cycles scored since the actor started.
    pub cycles_scored: u64,
    /// Cycles not scored because too much was missing.
    pub cycles_incomplete: u64,
}

/// A sensor as the live picture shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorView {
    pub id: SensorId,
    pub name: String,
    /// Engineering unit (e.g. `bar`).
    pub unit: String,
    /// Physical range.
    pub range: PhysicalRange,
    /// Live state.
    pub state: SensorState,
    /// What its per-sample detectors say (`None` before its first reading).
    #[serde(default)]
    pub findings: Option<Findings>,
}

/// Everything known about an equipment unit right now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquipmentSnapshot {
    pub id: EquipmentId,
    pub name: String,
    /// Site name.
    pub site: String,
    pub health: Health,
    /// Sensors in display order.
    pub sensors: Vec<SensorView>,
    /// The cycle models' latest verdict (`None` until a cycle was scored,
    /// or for equipment without cycle scoring).
    #[serde(default)]
    pub condition: Option<ConditionView>,
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
    /// New findings of the sensors whose detectors changed their minds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub findings: BTreeMap<SensorId, Findings>,
    /// A new verdict on the latest cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionView>,
}

impl EquipmentDelta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.health.is_none()
            && self.sensors.is_empty()
            && self.findings.is_empty()
            && self.condition.is_none()
    }

    /// Folds a later delta into this one (later values win).
    pub fn merge(&mut self, later: EquipmentDelta) {
        if later.health.is_some() {
            self.health = later.health;
        }
        self.sensors.extend(later.sensors);
        self.findings.extend(later.findings);
        if later.condition.is_some() {
            self.condition = later.condition;
        }
    }
}

impl EquipmentSnapshot {
    /// Applies a delta in place.
    pub fn apply(&mut self, delta: EquipmentDelta) {
        if let Some(health) = delta.health {
            self.health = health;
        }
        if delta.condition.is_some() {
            self.condition = delta.condition;
        }
        for (id, state) in delta.sensors {
            if let Some(view) = self.sensors.iter_mut().find(|s| s.id == id) {
                view.state = state;
            }
        }
        for (id, findings) in delta.findings {
            if let Some(view) = self.sensors.iter_mut().find(|s| s.id == id) {
                view.findings = Some(findings);
            }
        }
    }
}
