//! OPC-UA: a reader that keeps a sensor set in monitored items (or polls it
//! when the server will not), and a simulator of the hydraulic rig that can
//! misbehave and restart.

mod client;
mod simulator;
pub mod trust;

pub use client::{
    check_node_id, Acquisition, OpcUaConfig, OpcUaError, OpcUaPoint, OpcUaReader,
    OpcUaSecurityMode, OpcUaSecurityPolicy, OpcUaStatus,
};
pub use simulator::{
    rig_variable, OpcUaFaults, OpcUaSimulatorError, OpcUaSimulatorHandle, OpcUaSimulatorOptions,
    CYCLE_TIMER_VARIABLE, RIG_NAMESPACE,
};
