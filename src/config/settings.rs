//! `hydrowatch.toml`: the server's settings, section by section. Sections
//! whose owner is elsewhere (auth, storage, ingest, WebSocket, notify)
//! keep their types there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{err, ConfigError};
use crate::http::ingest::IngestSettings;
use crate::http::ws::WebSocketSettings;
use crate::store::StorageSettings;
pub use hydrowatch_ml::ModelsSettings;

/// `[server]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Time given to connections and actors to finish on shutdown, ms.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_ms: 5_000,
        }
    }
}

/// `[admin]`: retired. Its shared bearer token gave way to signed-in
/// users with roles; the key stays only so that a configuration still
/// setting it is refused with the way forward, not ignored.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Must be empty.
    pub token: String,
}

/// `[live]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    /// How long a live read waits for the owning actor, ms.
    pub actor_timeout_ms: u64,
    /// Period of the equipment's staleness check, ms.
    pub stale_check_ms: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            actor_timeout_ms: 2_000,
            stale_check_ms: 1_000,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,hydrowatch=debug`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,ractor=warn".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[files]`: where the other files are, relative to `hydrowatch.toml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSettings {
    /// The plant file (default `plant.toml`).
    pub plant: PathBuf,
    /// The supervision tree's file (default `../supervision.toml`).
    pub supervision: PathBuf,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            plant: "plant.toml".into(),
            supervision: "../supervision.toml".into(),
        }
    }
}

/// `hydrowatch.toml`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Retired (see [`AdminSettings`]).
    pub admin: AdminSettings,
    /// WebSocket API.
    pub websocket: WebSocketSettings,
    /// Live reads.
    pub live: LiveSettings,
    /// Logging.
    pub log: LogSettings,
    /// Database.
    pub storage: StorageSettings,
    /// The ingest API.
    pub ingest: IngestSettings,
    /// The cycle models.
    pub models: ModelsSettings,
    /// Where alert notifications go.
    pub notify: crate::notify::NotifySettings,
    /// Sign-in: token keys and lifetimes, lockout, password hashing.
    pub auth: crate::auth::AuthSettings,
    /// State shared across nodes.
    pub redis: crate::cross_node::RedisSettings,
    /// The audit log's chain key.
    pub audit: crate::audit::AuditSettings,
    /// The other files.
    pub files: FileSettings,
}

impl Settings {
    /// Ping period.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.websocket.ping_interval_secs)
    }
    /// How long a WebSocket client may stay silent before it is disconnected.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.websocket.idle_timeout_secs)
    }
    /// Live-read timeout.
    pub fn actor_timeout(&self) -> Duration {
        Duration::from_millis(self.live.actor_timeout_ms)
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let ws = &self.websocket;
        if ws.ping_interval_secs == 0 {
            return Err(err(
                file,
                "websocket.ping_interval_secs = 0: must be at least 1",
            ));
        }
        if ws.idle_timeout_secs <= ws.ping_interval_secs {
            return Err(err(file, format!(
                "websocket.idle_timeout_secs = {}: must be longer than websocket.ping_interval_secs ({})",
                ws.idle_timeout_secs, ws.ping_interval_secs
            )));
        }
        if ws.max_message_bytes < 256 {
            return Err(err(
                file,
                "websocket.max_message_bytes: must be at least 256",
            ));
        }
        if self.live.actor_timeout_ms == 0 {
            return Err(err(file, "live.actor_timeout_ms = 0: must be at least 1"));
        }
        if self.live.stale_check_ms < 10 {
            return Err(err(file, "live.stale_check_ms: must be at least 10"));
        }
        self.storage.validate().map_err(|m| err(file, m))?;
        self.ingest.validate().map_err(|m| err(file, m))?;
        self.notify.validate().map_err(|m| err(file, m))?;
        self.auth.validate().map_err(|m| err(file, m))?;
        self.redis.validate().map_err(|m| err(file, m))?;
        self.audit.validate().map_err(|m| err(file, m))?;
        self.models
            .ensemble
            .validate()
            .map_err(|e| err(file, format!("models.ensemble.{e}")))?;
        if !self.admin.token.is_empty() {
            return Err(err(
                file,
                "admin.token is no longer used: sign in as a user with the ADMIN role \
                 (create the first with `hydrowatch user add --role admin`), or, when no \
                 admin can sign in, set auth.break_glass_token",
            ));
        }
        Ok(())
    }
}
