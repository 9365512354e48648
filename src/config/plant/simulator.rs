//! A simulated rig in `plant.toml`: the in-process device a unit's
//! connection polls when its endpoint is `"simulator"`.

use std::path::PathBuf;

use serde::Deserialize;

use hydrowatch_actors::connection::SetpointSpec;
use hydrowatch_models::EquipmentId;
use hydrowatch_protocols::modbus::{Framing, ModbusFaults};
use hydrowatch_protocols::opcua::OpcUaFaults;
use hydrowatch_protocols::rig::RigCondition;

use super::*;

/// The built-in simulator of an equipment unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Recorded condition replayed at start.
    #[serde(default = "healthy")]
    pub condition: String,
    /// Seconds into the recording to start at.
    #[serde(default)]
    pub phase_secs: f64,
    /// Recorded seconds replayed per second (1 = real time; more for demos
    /// and tests).
    #[serde(default = "real_time")]
    pub speed: f64,
    /// Port for `hydrowatch simulate` (serve picks a free loopback port).
    pub port: u16,
    /// Misbehaviour injected from the start (`[equipment.simulator.faults]`:
    /// the Modbus or the OPC-UA kind, as the connection's protocol); changed
    /// at run time through `PUT /api/v1/admin/simulators/{id}/faults`.
    #[serde(default)]
    pub faults: toml::Table,
    /// OPC-UA: where the simulated server keeps its certificate (one folder
    /// per equipment below it).
    #[serde(default = "default_simulator_pki")]
    pub pki_dir: PathBuf,
    /// OPC-UA: whether the simulated server serves subscriptions (otherwise
    /// only Read: the connection polls).
    #[serde(default = "yes")]
    pub subscriptions: bool,
}

fn default_simulator_pki() -> PathBuf {
    PathBuf::from("data/pki/simulator")
}

fn real_time() -> f64 {
    1.0
}

fn healthy() -> String {
    "healthy".into()
}

/// A simulated device to start.
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    /// The equipment it stands for.
    pub equipment: EquipmentId,
    /// Condition replayed at start.
    pub condition: RigCondition,
    /// Seconds into the recording to start at.
    pub phase_secs: f64,
    /// Recorded seconds per second.
    pub speed: f64,
    /// Port for `simulate`.
    pub port: u16,
    /// The protocol its connection speaks.
    pub protocol: Protocol,
    /// Modbus: TCP or RTU over TCP.
    pub framing: Framing,
    /// OPC-UA: the server's certificate store.
    pub pki_dir: PathBuf,
    /// OPC-UA: whether it serves subscriptions.
    pub subscriptions: bool,
    /// The unit ids it answers: the connection's and its points'.
    pub units: Vec<u8>,
    /// Faults injected from the start (Modbus).
    pub faults: ModbusFaults,
    /// Faults injected from the start (OPC-UA).
    pub opcua_faults: OpcUaFaults,
}

impl SimulatorConfig {
    /// The simulated device of unit `equipment` (at `key`) behind connection
    /// `c`, serving every unit id that its points and setpoints use.
    pub(super) fn plan(
        &self,
        key: &str,
        equipment: &EquipmentId,
        c: &ConnectionConfig,
        map: &RegisterMap,
        setpoints: &[SetpointSpec],
    ) -> Result<SimulatedDevice, String> {
        let condition: RigCondition = self
            .condition
            .parse()
            .map_err(|m| format!("{key}.simulator.condition: {m}"))?;
        if !self.phase_secs.is_finite() || self.phase_secs < 0.0 {
            return Err(format!(
                "{key}.simulator.phase_secs: must be a non-negative number"
            ));
        }
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1000.0) {
            return Err(format!(
                "{key}.simulator.speed = {}: must be more than 0 and at most 1000",
                self.speed
            ));
        }
        let (faults, opcua_faults) = self.faults_for(key, c.protocol)?;
        let mut units: Vec<u8> = std::iter::once(c.unit_id)
            .chain(map.points.iter().filter_map(|p| p.unit))
            .chain(setpoints.iter().filter_map(|s| s.point.unit))
            .collect();
        let mut seen_units = HashSet::new();
        units.retain(|u| seen_units.insert(*u));
        Ok(SimulatedDevice {
            equipment: equipment.clone(),
            condition,
            phase_secs: self.phase_secs,
            speed: self.speed,
            port: self.port,
            protocol: c.protocol,
            framing: c.protocol.framing().unwrap_or_default(),
            pki_dir: self.pki_dir.join(equipment.as_str()),
            subscriptions: self.subscriptions,
            units,
            faults,
            opcua_faults,
        })
    }

    /// The faults to inject, read as the connection's protocol kind.
    fn faults_for(
        &self,
        key: &str,
        protocol: Protocol,
    ) -> Result<(ModbusFaults, OpcUaFaults), String> {
        let faults_of = |kind: &str, e: toml::de::Error| {
            format!("{key}.simulator.faults ({kind}): {}", e.message())
        };
        let invalid = |m: String| format!("{key}.simulator.faults.{m}");
        let table = toml::Value::Table(self.faults.clone());
        if protocol == Protocol::Opcua {
            let f = OpcUaFaults::deserialize(table).map_err(|e| faults_of("OPC-UA", e))?;
            f.validate().map_err(invalid)?;
            Ok((ModbusFaults::default(), f))
        } else {
            let f = ModbusFaults::deserialize(table).map_err(|e| faults_of("Modbus", e))?;
            f.validate().map_err(invalid)?;
            Ok((f, OpcUaFaults::default()))
        }
    }
}
