//! The in-process simulators of the plant's simulated devices, whatever
//! protocol they speak, behind one face for the admin API and the CLI.

use std::net::SocketAddr;

use hydrowatch_protocols::modbus::{ModbusFaults, SimulatorHandle};
use hydrowatch_protocols::opcua::{OpcUaFaults, OpcUaSimulatorHandle};
use hydrowatch_protocols::rig::RigCondition;

/// A simulated rig controller.
pub enum RigSimulator {
    /// Modbus TCP or RTU over TCP.
    Modbus(SimulatorHandle),
    OpcUa(Box<OpcUaSimulatorHandle>),
}

impl RigSimulator {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        match self {
            RigSimulator::Modbus(s) => s.addr(),
            RigSimulator::OpcUa(s) => s.addr(),
        }
    }

    /// What a connection is pointed at: `host:port`, or the `opc.tcp://` URL.
    pub fn endpoint(&self) -> String {
        match self {
            RigSimulator::Modbus(s) => s.addr().to_string(),
            RigSimulator::OpcUa(s) => s.endpoint_url(),
        }
    }

    /// `modbus_tcp`, `modbus_rtu_over_tcp` or `opcua`.
    pub fn protocol(&self) -> &'static str {
        match self {
            RigSimulator::Modbus(s) => s.framing().protocol(),
            RigSimulator::OpcUa(_) => "opcua",
        }
    }

    /// Whether it serves.
    pub fn is_running(&self) -> bool {
        match self {
            RigSimulator::Modbus(s) => s.is_running(),
            RigSimulator::OpcUa(s) => s.is_running(),
        }
    }

    /// The condition replayed.
    pub fn condition(&self) -> RigCondition {
        match self {
            RigSimulator::Modbus(s) => s.condition(),
            RigSimulator::OpcUa(s) => s.condition(),
        }
    }

    /// Switches the condition replayed.
    pub fn set_condition(&self, condition: RigCondition) {
        match self {
            RigSimulator::Modbus(s) => s.set_condition(condition),
            RigSimulator::OpcUa(s) => s.set_condition(condition),
        }
    }

    /// Powers it off: connections drop, an OPC-UA server forgets its
    /// sessions and subscriptions.
    pub async fn stop(&mut self) {
        match self {
            RigSimulator::Modbus(s) => s.stop().await,
            RigSimulator::OpcUa(s) => s.stop().await,
        }
    }

    /// Powers it on again (on the same address, with the same certificate).
    pub async fn start(&mut self) -> Result<(), String> {
        match self {
            RigSimulator::Modbus(s) => s.restart().await.map_err(|e| e.to_string()),
            RigSimulator::OpcUa(s) => {
                if s.is_running() {
                    return Ok(());
                }
                s.restart().await.map_err(|e| e.to_string())
            }
        }
    }

    /// The faults it injects, as JSON.
    pub fn faults(&self) -> serde_json::Value {
        let value = match self {
            RigSimulator::Modbus(s) => serde_json::to_value(s.faults()),
            RigSimulator::OpcUa(s) => serde_json::to_value(s.faults()),
        };
        value.unwrap_or_default()
    }

    /// Whether it injects any.
    pub fn faulty(&self) -> bool {
        match self {
            RigSimulator::Modbus(s) => s.faults().any(),
            RigSimulator::OpcUa(s) => s.faults().any(),
        }
    }

    /// Replaces the faults from JSON of the protocol's kind (`{}` clears them).
    pub fn set_faults(&self, faults: serde_json::Value) -> Result<(), String> {
        match self {
            RigSimulator::Modbus(s) => {
                let faults: ModbusFaults =
                    serde_json::from_value(faults).map_err(|e| e.to_string())?;
                s.set_faults(faults)
            }
            RigSimulator::OpcUa(s) => {
                let faults: OpcUaFaults =
                    serde_json::from_value(faults).map_err(|e| e.to_string())?;
                s.set_faults(faults)
            }
        }
    }

    /// What it has served, as JSON.
    pub fn stats(&self) -> serde_json::Value {
        match self {
            RigSimulator::Modbus(s) => serde_json::to_value(s.stats()).unwrap_or_default(),
            RigSimulator::OpcUa(s) => serde_json::json!({
                "connections": s.connections(),
                "restarts": s.restarts(),
            }),
        }
    }
}
