//! `[ingest]` of `hydrowatch.toml`: the limits of `POST /api/v1/ingest`.

use serde::Deserialize;

/// `[ingest]`: `POST /api/v1/ingest`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Largest request body, bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Most rows in one request (413 beyond it).
    pub max_rows: usize,
    /// Timestamps further ahead of the server's clock are quarantined, seconds.
    pub max_future_secs: u64,
    /// Requests per second each client may make (429 beyond it).
    pub rate_per_sec: f64,
    /// Requests a client may make at once after being idle.
    pub rate_burst: u32,
    /// How long a request waits for its rows to be committed or spooled, ms.
    pub ack_timeout_ms: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_rows: 100_000,
            max_future_secs: 300,
            rate_per_sec: 20.0,
            rate_burst: 40,
            ack_timeout_ms: 30_000,
        }
    }
}

impl IngestSettings {
    /// Refuses settings the ingest API cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes < 1024 {
            return Err("ingest.max_body_bytes: must be at least 1024".into());
        }
        if self.max_rows == 0 {
            return Err("ingest.max_rows: must be at least 1".into());
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec >= 0.001) {
            return Err("ingest.rate_per_sec: must be at least 0.001".into());
        }
        if self.rate_burst == 0 {
            return Err("ingest.rate_burst: must be at least 1".into());
        }
        if self.max_future_secs > 366 * 86_400 {
            return Err("ingest.max_future_secs: must be at most a year (31622400)".into());
        }
        if self.ack_timeout_ms < 100 {
            return Err("ingest.ack_timeout_ms: must be at least 100".into());
        }
        Ok(())
    }
}
