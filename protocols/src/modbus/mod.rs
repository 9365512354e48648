//! Modbus TCP: a poller that never hangs and a simulator of the hydraulic rig.

mod client;
mod simulator;

pub use client::{LinkState, ModbusPoller, PollOutcome, PollerConfig, ReconnectPolicy};
pub use simulator::{
    rig_register_map, SimulatorHandle, CONDITION_REGISTER, CYCLE_TIMER_REGISTER, CYCLE_TIMER_SENSOR,
};
