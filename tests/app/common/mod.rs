//! The harness of the black-box tests: [`TestApp`] runs the application on
//! port 0 and hands out [`Client`]s signed in as a role, which get and post
//! by path; around it, configurations, a WebSocket client, throwaway
//! PostgreSQL databases, a TCP proxy that cuts connections on demand and an
//! SMTP sink.
//!
//! ```ignore
//! let app = TestApp::spawn().await;
//! let engineer = app.engineer().await;
//! let reply = engineer.post("/api/v1/silences", json!({...})).await;
//! assert_eq!(reply.status, 201, "{}", reply.body);
//! let mut ws = app.ws(&app.viewer().await).await;
//! ```

mod app;
mod client;
mod postgres;
mod proxy;
mod smtp;
mod ws;

use std::time::Duration;

pub use app::*;
pub use client::{send, Client, Reply};
pub use postgres::*;
pub use proxy::*;
pub use smtp::*;
pub use ws::*;

/// Waits until `done` holds, polling; panics with `what` after `within`.
pub async fn eventually(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
