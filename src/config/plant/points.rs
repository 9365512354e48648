//! Sensors and setpoints of `plant.toml` and where they sit in a device's
//! register image.

use std::collections::HashSet;

use serde::Deserialize;

use hydrowatch_actors::connection::SetpointSpec;
use hydrowatch_models::SensorId;
use hydrowatch_protocols::{
    ByteOrder, DataType, Endianness, RegisterKind, RegisterMap, RegisterPoint, WordOrder,
};

use super::*;

/// A sensor in a sensor set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Identifier within the equipment.
    pub id: SensorId,
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Physical range minimum.
    pub min: f64,
    /// Physical range maximum.
    pub max: f64,
    /// Stale after this long without a reading, ms.
    #[serde(default = "default_stale_ms")]
    pub stale_after_ms: u64,
    /// Register table: `holding` (default), `input`, `coil`, `discrete_input`.
    #[serde(default = "default_kind")]
    pub register: RegisterKind,
    /// First register; needed only where the sensor is read over Modbus
    /// (an OPC-UA connection reads it by node id).
    #[serde(default)]
    pub address: Option<u16>,
    /// Encoding.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte order within a register (default big).
    pub byte_order: Option<ByteOrder>,
    /// Register order (default big).
    pub word_order: Option<WordOrder>,
    /// Both orders by their usual name (`abcd`, `cdab`, `badc`, `dcba`),
    /// instead of `byte_order` and `word_order`.
    pub order: Option<Endianness>,
    /// Unit id, when not the connection's (a device behind a gateway).
    pub unit_id: Option<u8>,
    /// Engineering = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
    /// OPC-UA: its variable, instead of the connection's `node_ids` pattern.
    pub node_id: Option<String>,
    /// OPC-UA: changes smaller than this are not sent (absolute deadband).
    pub deadband: Option<f64>,
    /// Process limits with hysteresis on this sensor (`[[sensor_sets.X.limits]]`).
    #[serde(default)]
    pub limits: Vec<hydrowatch_models::detect::HysteresisConfig>,
    /// This sensor's quality checks, instead of the plant's `[detectors.quality]`.
    pub quality: Option<hydrowatch_models::detect::QualityConfig>,
    /// This sensor's baseline, instead of the plant's `[detectors.baseline]`.
    pub baseline: Option<hydrowatch_models::detect::BaselineConfig>,
}

impl SensorConfig {
    /// The detectors of this sensor: its own quality and baseline settings
    /// where it has them, the plant's otherwise, and its limits.
    pub fn detectors(
        &self,
        defaults: &DetectorDefaults,
    ) -> hydrowatch_models::detect::DetectorsConfig {
        hydrowatch_models::detect::DetectorsConfig {
            quality: self
                .quality
                .clone()
                .unwrap_or_else(|| defaults.quality.clone()),
            baseline: self
                .baseline
                .clone()
                .unwrap_or_else(|| defaults.baseline.clone()),
            limits: self.limits.clone(),
        }
    }
}

impl SensorConfig {
    pub(super) fn place(&self) -> PointPlace<'_> {
        PointPlace {
            id: &self.id,
            register: self.register,
            address: self.address,
            data_type: self.data_type,
            byte_order: self.byte_order,
            word_order: self.word_order,
            order: self.order,
            unit_id: self.unit_id,
            scale: self.scale,
            offset: self.offset,
        }
    }
}

/// A value operators may write to an equipment's device
/// (`[[setpoint_sets.X]]`): a holding register (or several) or a coil, written
/// through the API and read back before the write counts as done.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointConfig {
    /// Identifier within the equipment.
    pub id: SensorId,
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Lowest value accepted.
    pub min: f64,
    /// Highest value accepted.
    pub max: f64,
    /// `holding` (default) or `coil`.
    #[serde(default = "default_kind")]
    pub register: RegisterKind,
    /// First register.
    pub address: u16,
    /// Encoding.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte order within a register (default big).
    pub byte_order: Option<ByteOrder>,
    /// Register order (default big).
    pub word_order: Option<WordOrder>,
    /// Both orders by their usual name, instead of the two above.
    pub order: Option<Endianness>,
    /// Unit id, when not the connection's.
    pub unit_id: Option<u8>,
    /// Engineering = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
}

/// Where a configured point lives, whatever it is (sensor or setpoint).
pub(super) struct PointPlace<'a> {
    id: &'a SensorId,
    register: RegisterKind,
    address: Option<u16>,
    data_type: DataType,
    byte_order: Option<ByteOrder>,
    word_order: Option<WordOrder>,
    order: Option<Endianness>,
    unit_id: Option<u8>,
    scale: f64,
    offset: f64,
}

impl PointPlace<'_> {
    /// The register point, or why the orders contradict each other.
    pub(super) fn point(&self) -> Result<RegisterPoint, String> {
        let (byte_order, word_order) = match (self.order, self.byte_order, self.word_order) {
            (Some(order), None, None) => order.orders(),
            (Some(_), _, _) => {
                return Err(format!(
                    "{}: give either order or byte_order/word_order, not both",
                    self.id.as_str()
                ))
            }
            (None, b, w) => (b.unwrap_or_default(), w.unwrap_or_default()),
        };
        let address = self.address.ok_or_else(|| {
            format!(
                "{}.address: needed to read it over Modbus",
                self.id.as_str()
            )
        })?;
        Ok(RegisterPoint {
            sensor: self.id.clone(),
            unit: self.unit_id,
            kind: self.register,
            address,
            data_type: self.data_type,
            byte_order,
            word_order,
            scale: self.scale,
            offset: self.offset,
        })
    }
}

impl SetpointConfig {
    pub(super) fn place(&self) -> PointPlace<'_> {
        PointPlace {
            id: &self.id,
            register: self.register,
            address: Some(self.address),
            data_type: self.data_type,
            byte_order: self.byte_order,
            word_order: self.word_order,
            order: self.order,
            unit_id: self.unit_id,
            scale: self.scale,
            offset: self.offset,
        }
    }
}

fn default_stale_ms() -> u64 {
    3_000
}

fn default_kind() -> RegisterKind {
    RegisterKind::Holding
}

fn one() -> f64 {
    1.0
}

/// The setpoints of set `name`, checked: unique ids, sane limits, writable
/// tables, places that do not overlap.
pub(super) fn setpoint_specs(
    name: &str,
    set: &[SetpointConfig],
) -> Result<Vec<SetpointSpec>, String> {
    let mut ids = HashSet::new();
    let mut specs = Vec::with_capacity(set.len());
    for (i, s) in set.iter().enumerate() {
        let key = format!("setpoint_sets.{name}[{i}]");
        if !ids.insert(s.id.as_str()) {
            return Err(format!(
                "{key}.id = {:?}: duplicate setpoint id",
                s.id.as_str()
            ));
        }
        if !(s.min.is_finite() && s.max.is_finite() && s.min <= s.max) {
            return Err(format!(
                "{key}.min/max = {}/{}: min must not be above max",
                s.min, s.max
            ));
        }
        if !s.register.is_writable() {
            return Err(format!(
                "{key}.register: a setpoint is a holding register or a coil"
            ));
        }
        let point = s.place().point().map_err(|m| format!("{key}: {m}"))?;
        specs.push(SetpointSpec {
            id: s.id.to_string(),
            name: s.name.clone(),
            unit: s.unit.clone(),
            min: s.min,
            max: s.max,
            point,
        });
    }
    // The map's own checks: types that fit their table, no overlap.
    RegisterMap::new(specs.iter().map(|s| s.point.clone()).collect())
        .map_err(|m| format!("setpoint_sets.{name}: {m}"))?;
    Ok(specs)
}

impl SensorConfig {
    /// Refuses a range, detectors or staleness limit the sensor actor cannot
    /// work with; `key` names the sensor in messages.
    pub(super) fn check(&self, key: &str, defaults: &DetectorDefaults) -> Result<(), String> {
        if !(self.min.is_finite() && self.max.is_finite() && self.min < self.max) {
            return Err(format!(
                "{key}.min/max = {}/{}: min must be below max",
                self.min, self.max
            ));
        }
        self.detectors(defaults)
            .validate()
            .map_err(|e| format!("{key}.{e}"))?;
        if self.stale_after_ms == 0 {
            return Err(format!("{key}.stale_after_ms = 0: must be at least 1"));
        }
        Ok(())
    }
}
