//! The hydrowatch supervision tree: OTP-style supervision on ractor and every
//! actor of the product.
//!
//! This crate knows nothing of HTTP or SQL; it defines the ports the application
//! plugs into.

pub mod address;
pub mod alerting;
pub mod clock;
pub mod config;
pub mod connection;
pub mod hub;
pub mod login;
pub mod plant;
pub mod registry;
pub mod session;
pub mod storage;
pub mod supervision;
pub mod tree;

pub use address::{Address, Unavailable};
pub use config::SupervisionConfig;
pub use registry::{ActorInfo, ActorKind, LifecycleStatus, MailboxGauge, Registry};
pub use tree::{StorageHandle, Tree, TreeAlerting, TreeConfig, TreeStorage};
