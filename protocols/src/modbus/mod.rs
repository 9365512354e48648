//! Modbus over TCP (Modbus TCP, or RTU frames through a serial gateway): a
//! codec that checks every byte, a poller that never hangs, and a simulator of
//! the hydraulic rig that misbehaves on demand.

mod client;
pub mod codec;
mod simulator;

pub use crate::poll::{ErrorCounts, LinkState, PollOutcome, ReconnectPolicy};
pub use client::{LinkError, ModbusLink, ModbusPoller, PollerConfig, WriteError, WriteOutcome};
pub use codec::Framing;
pub use simulator::{
    rig_register_map, ModbusFaults, SimulatorHandle, SimulatorOptions, SimulatorStats, COILS,
    CONDITION_REGISTER, CYCLE_TIMER_REGISTER, CYCLE_TIMER_SENSOR, DISCRETE_INPUTS,
    SETPOINT_REGISTERS,
};
