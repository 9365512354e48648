//! Device I/O for hydrowatch: register decoding, Modbus clients, and simulators
//! of the hydraulic test rig that replay real recorded data.

pub mod modbus;
pub mod opcua;
pub mod poll;
pub mod register;
pub mod rig;

pub use register::{
    ByteOrder, DataType, Endianness, RegisterKind, RegisterMap, RegisterPoint, WordOrder,
};
