//! What every device link reports, whatever its protocol: a poll's readings
//! and failures by kind, the link's state, and how it backs off to reconnect.

use std::time::Duration;

use serde::Serialize;

use hydrowatch_models::Reading;

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
    /// Growth factor.
    pub multiplier: f64,
    /// Relative random spread in `[0, 1]`.
    pub jitter: f64,
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (1 = after the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32) as i32;
        let base =
            (self.initial.as_secs_f64() * self.multiplier.powi(exp)).min(self.max.as_secs_f64());
        let spread = base * self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// State of the link to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Connected and the last poll succeeded.
    Connected,
    /// Not connected; waiting for the next reconnect attempt.
    Disconnected,
}

/// Failures by kind, so that an operator can tell a dead device from a
/// misconfigured map from a noisy line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Connection attempts that failed or timed out.
    pub connect: u64,
    /// Requests without an answer in time.
    pub timeout: u64,
    /// Requests the device refused (Modbus exceptions, OPC-UA bad results).
    pub exception: u64,
    /// Well-framed answers that did not answer the request (short, wrong
    /// function, wrong echo): dropped.
    pub malformed: u64,
    /// Streams out of step (bad header, length or CRC): the link is dropped.
    pub garbled: u64,
    /// I/O errors and connections closed by the device.
    pub link: u64,
    /// Answers to another transaction or unit (late or stray), discarded
    /// while the right one was awaited. Not a failure by itself.
    pub discarded: u64,
}

impl ErrorCounts {
    /// Failed requests and connects (discarded stray answers excluded).
    pub fn failures(&self) -> u64 {
        self.connect + self.timeout + self.exception + self.malformed + self.garbled + self.link
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.exception += other.exception;
        self.malformed += other.malformed;
        self.garbled += other.garbled;
        self.link += other.link;
        self.discarded += other.discarded;
    }
}

/// What one poll produced.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    /// One reading per point, in the order the points were given.
    pub readings: Vec<Reading>,
    /// Link state after the poll.
    pub link: LinkState,
    /// The same failures by kind, and the stray answers discarded.
    pub counts: ErrorCounts,
    /// Whether the link was re-established during this poll.
    pub reconnected: bool,
    /// The first error of the poll, for logs and health.
    pub error: Option<String>,
}
