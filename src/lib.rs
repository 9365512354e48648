//! hydrowatch: real-time supervision of industrial hydraulic equipment.
//!
//! The application crate: configuration, the HTTP/WebSocket façade, wiring.
//! The supervision tree lives in `hydrowatch-actors`, device I/O in
//! `hydrowatch-protocols`, domain types in `hydrowatch-models`.

pub mod alert_rules;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod cross_node;
pub mod http;
pub mod instant;
pub mod notify;
pub mod scoring;
pub mod simulators;
pub use hydrowatch_ml::{evaluate, onnx, rigdata};
pub use hydrowatch_store as store;
pub mod telemetry;

/// Bytes as lower-case hex (digests, signatures, random tokens).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether two secrets are equal, in a time that tells nothing of them:
/// both are hashed first, so neither where they differ nor their lengths
/// change how long the comparison takes.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub use app::{App, Exit};
