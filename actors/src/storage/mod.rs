//! Storage as the tree sees it (the port storage adapters implement) and the
//! local spool that bridges database outages.

pub mod spool;

pub use spool::{Recovery, ReplayError, Spool};
