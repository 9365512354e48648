//! The hydrowatch supervision tree: OTP-style supervision on ractor and every
//! actor of the product.
//!
//! This crate knows nothing of HTTP or SQL; it defines the ports the application
//! plugs into.

pub mod registry;
pub mod supervision;

pub use registry::{ActorInfo, ActorKind, LifecycleStatus, MailboxGauge, Registry};
