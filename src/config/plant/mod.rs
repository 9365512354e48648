//! `plant.toml`: the site, its equipment, their sensors and connections,
//! checked and turned into the specs the actors run.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use hydrowatch_actors::alerting::AlertingConfig;
use hydrowatch_actors::connection::SetpointSpec;
use hydrowatch_models::{EquipmentId, EquipmentSpec, PhysicalRange, SensorSpec};
use hydrowatch_protocols::{RegisterMap, RegisterPoint};

use crate::config::{err, ConfigError};

mod alerting;
mod connection;
mod cycle;
mod points;
mod simulator;

pub use alerting::*;
pub use connection::*;
pub use cycle::*;
pub use points::*;
pub use simulator::*;

/// `[site]` of `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub name: String,
}

/// An equipment unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquipmentConfig {
    pub id: EquipmentId,
    pub name: String,
    /// Name of the sensor set it carries.
    pub sensor_set: String,
    /// Name of the setpoint set operators may write, if any.
    pub setpoint_set: Option<String>,
    /// Its device.
    pub connection: ConnectionConfig,
    /// Its simulator, when `connection.endpoint = "simulator"`.
    pub simulator: Option<SimulatorConfig>,
    /// Cycle scoring; the unit must carry the rig's 17 sensors.
    pub cycle: Option<CycleConfig>,
}

/// `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantConfig {
    pub site: SiteConfig,
    /// Reusable sensor sets by name.
    pub sensor_sets: BTreeMap<String, Vec<SensorConfig>>,
    /// Reusable setpoint sets by name.
    #[serde(default)]
    pub setpoint_sets: BTreeMap<String, Vec<SetpointConfig>>,
    /// Equipment units, in display order.
    pub equipment: Vec<EquipmentConfig>,
    /// The per-sample detectors every sensor actor runs, unless its sensor
    /// says otherwise.
    #[serde(default)]
    pub detectors: DetectorDefaults,
    /// Alert rules, escalation policies, silences and inhibition.
    #[serde(default)]
    pub alerting: AlertingSection,
}

/// `[detectors]` of `plant.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorDefaults {
    /// Stuck values, spikes, gaps.
    pub quality: hydrowatch_models::detect::QualityConfig,
    /// The adaptive baseline.
    pub baseline: hydrowatch_models::detect::BaselineConfig,
}

/// The validated plant.
#[derive(Debug, Clone)]
pub struct Plant {
    pub site: SiteConfig,
    /// Equipment units.
    pub equipment: Vec<EquipmentSpec>,
    /// Their connections.
    pub connections: Vec<PlannedConnection>,
    /// Built-in simulators to start.
    pub simulators: Vec<SimulatedDevice>,
    /// Rules, policies and silences, checked against the equipment.
    pub alerting: AlertingConfig,
}

impl Plant {
    /// Poll period of each polled equipment unit, ms (as the database records it).
    pub fn poll_periods_ms(&self) -> std::collections::HashMap<EquipmentId, u64> {
        self.connections
            .iter()
            .map(|c| (c.equipment.clone(), c.config.period_ms))
            .collect()
    }
}

impl PlantConfig {
    /// Checks the plant and turns it into runtime specs. `env` is the
    /// process environment, which `password_env` of a connection reads.
    pub fn build(&self, file: &str, env: &[(String, String)]) -> Result<Plant, ConfigError> {
        let at = |m: String| err(file, m);
        self.check_defaults().map_err(at)?;
        self.check_sensor_sets().map_err(at)?;
        let mut plant = Plant {
            site: self.site.clone(),
            equipment: Vec::new(),
            connections: Vec::new(),
            simulators: Vec::new(),
            alerting: AlertingConfig::default(),
        };
        let mut seen = HashSet::new();
        for (i, unit) in self.equipment.iter().enumerate() {
            let key = format!("equipment[{i}]");
            if !seen.insert(unit.id.clone()) {
                let id = unit.id.as_str();
                return Err(at(format!("{key}.id = {id:?}: duplicate equipment id")));
            }
            self.plan_unit(&key, unit, env, &mut plant).map_err(at)?;
        }
        plant.alerting = self.alerting.build(file, &plant.equipment)?;
        Ok(plant)
    }

    fn check_defaults(&self) -> Result<(), String> {
        if self.equipment.is_empty() {
            return Err("equipment: the plant has no equipment".into());
        }
        let defaults = hydrowatch_models::detect::DetectorsConfig {
            quality: self.detectors.quality.clone(),
            baseline: self.detectors.baseline.clone(),
            limits: Vec::new(),
        };
        defaults.validate().map_err(|e| format!("detectors.{e}"))
    }

    fn check_sensor_sets(&self) -> Result<(), String> {
        for (set_name, sensors) in &self.sensor_sets {
            let mut ids = HashSet::new();
            for (i, sensor) in sensors.iter().enumerate() {
                let key = format!("sensor_sets.{set_name}[{i}]");
                if !ids.insert(sensor.id.clone()) {
                    let id = sensor.id.as_str();
                    return Err(format!("{key}.id = {id:?}: duplicate sensor id"));
                }
                sensor.check(&key, &self.detectors)?;
            }
        }
        Ok(())
    }

    /// Adds `unit`'s connection, simulator and spec to `plant`.
    fn plan_unit(
        &self,
        key: &str,
        unit: &EquipmentConfig,
        env: &[(String, String)],
        plant: &mut Plant,
    ) -> Result<(), String> {
        let sensors = self.sensor_set_of(key, unit)?;
        // An OPC-UA connection reads by node id: its sensors need no registers.
        let map = if unit.connection.protocol == Protocol::Opcua {
            RegisterMap::default()
        } else {
            register_map(key, unit, sensors)?
        };
        let c = &unit.connection;
        let ckey = format!("{key}.connection");
        c.check_limits(&ckey, sensors, &unit.sensor_set)?;
        let setpoints = self.setpoints_of(key, unit)?;
        let endpoint = if c.endpoint == "simulator" {
            let sim = unit.simulator.as_ref().ok_or_else(|| {
                format!("{key}.simulator: required when {ckey}.endpoint = \"simulator\"")
            })?;
            plant
                .simulators
                .push(sim.plan(key, &unit.id, c, &map, &setpoints)?);
            None
        } else {
            c.device_address(&ckey)?
        };
        if c.protocol == Protocol::Opcua && !setpoints.is_empty() {
            return Err(format!(
                "{key}.setpoint_set: setpoints are written over Modbus; this connection is OPC-UA"
            ));
        }
        let opcua_points = if c.protocol == Protocol::Opcua {
            opcua_points(c, sensors).map_err(|m| format!("{ckey}: {m}"))?
        } else {
            Vec::new()
        };
        plant.connections.push(PlannedConnection {
            equipment: unit.id.clone(),
            config: c.with_password_from(&ckey, env)?,
            endpoint,
            map,
            setpoints,
            opcua_points,
        });
        plant
            .equipment
            .push(self.equipment_spec(key, unit, sensors)?);
        Ok(())
    }

    fn sensor_set_of(&self, key: &str, unit: &EquipmentConfig) -> Result<&[SensorConfig], String> {
        self.sensor_sets
            .get(&unit.sensor_set)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                let known: Vec<&str> = self.sensor_sets.keys().map(String::as_str).collect();
                format!(
                    "{key}.sensor_set = {:?}: no such sensor set (known: {})",
                    unit.sensor_set,
                    known.join(", ")
                )
            })
    }

    fn setpoints_of(&self, key: &str, unit: &EquipmentConfig) -> Result<Vec<SetpointSpec>, String> {
        let Some(name) = &unit.setpoint_set else {
            return Ok(Vec::new());
        };
        let set = self.setpoint_sets.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.setpoint_sets.keys().map(String::as_str).collect();
            format!(
                "{key}.setpoint_set = {name:?}: no such setpoint set (known: {})",
                known.join(", ")
            )
        })?;
        setpoint_specs(name, set)
    }

    fn equipment_spec(
        &self,
        key: &str,
        unit: &EquipmentConfig,
        sensors: &[SensorConfig],
    ) -> Result<EquipmentSpec, String> {
        let cycle = unit
            .cycle
            .as_ref()
            .map(|c| cycle_layout(c, sensors, &format!("{key}.cycle")))
            .transpose()?;
        Ok(EquipmentSpec {
            id: unit.id.clone(),
            cycle,
            name: unit.name.clone(),
            site: self.site.name.clone(),
            sensors: sensors
                .iter()
                .map(|s| SensorSpec {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    unit: s.unit.clone(),
                    range: PhysicalRange {
                        min: s.min,
                        max: s.max,
                    },
                    stale_after_ms: s.stale_after_ms,
                    detectors: s.detectors(&self.detectors),
                })
                .collect(),
        })
    }
}

/// The register map of `unit`'s sensors.
fn register_map(
    key: &str,
    unit: &EquipmentConfig,
    sensors: &[SensorConfig],
) -> Result<RegisterMap, String> {
    let set = &unit.sensor_set;
    let points: Vec<RegisterPoint> = sensors
        .iter()
        .map(|s| s.place().point())
        .collect::<Result<_, _>>()
        .map_err(|m| format!("sensor_sets.{set}.{m}"))?;
    RegisterMap::new(points).map_err(|m| format!("sensor_sets.{set} (used by {key}): {m}"))
}
