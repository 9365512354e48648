//! Layered, typed configuration: built-in defaults, then the files, then
//! `HYDROWATCH_*` environment variables; validated before anything starts.
//!
//! Files:
//! - `hydrowatch.toml` — the server (this module's [`Settings`]);
//! - `plant.toml` — sites, equipment, sensors, register maps ([`PlantConfig`]);
//! - `supervision.toml` — the supervision tree ([`SupervisionConfig`]).
//!
//! An environment variable `HYDROWATCH_SECTION__KEY=value` overrides `key` in
//! `[section]` of `hydrowatch.toml` (e.g. `HYDROWATCH_SERVER__LISTEN=0.0.0.0:8080`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use hydrowatch_actors::alerting::AlertingConfig;
use hydrowatch_actors::connection::SetpointSpec;
use hydrowatch_actors::storage::WriterConfig;
use hydrowatch_actors::SupervisionConfig;
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::RuleSpec;
use hydrowatch_models::alert::silence::{Inhibition, Matchers, Silence, Window, WindowSpec};
use hydrowatch_models::{EquipmentId, EquipmentSpec, PhysicalRange, SensorId, SensorSpec};
use hydrowatch_protocols::modbus::{Framing, ModbusFaults, ReconnectPolicy};
use hydrowatch_protocols::opcua::{
    check_node_id, OpcUaConfig, OpcUaFaults, OpcUaPoint, OpcUaSecurityMode, OpcUaSecurityPolicy,
};
use hydrowatch_protocols::register::{MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ};
use hydrowatch_protocols::rig::RigCondition;
use hydrowatch_protocols::{
    ByteOrder, DataType, Endianness, RegisterKind, RegisterMap, RegisterPoint, WordOrder,
};

use crate::store::{LayoutSettings, TimescaleMode};

/// The demo configuration compiled into the binary, used when no file is found.
pub const EMBEDDED_SETTINGS: &str = include_str!("../config/hydrowatch.toml");
/// The demo plant compiled into the binary.
pub const EMBEDDED_PLANT: &str = include_str!("../config/plant.toml");
/// The supervision tree compiled into the binary.
pub const EMBEDDED_SUPERVISION: &str = include_str!("../supervision.toml");

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file (or `environment`).
    pub file: String,
    /// What is wrong, naming the key.
    pub message: String,
}

fn err(file: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        message: message.into(),
    }
}

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

/// `[websocket]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Server ping period, s.
    pub ping_interval_secs: u64,
    /// A client silent for this long is disconnected, s.
    pub idle_timeout_secs: u64,
    /// Largest client frame accepted, bytes.
    pub max_message_bytes: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            ping_interval_secs: 15,
            idle_timeout_secs: 60,
            max_message_bytes: 64 * 1024,
        }
    }
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

/// `[models]`: the cycle models and how their verdicts are combined.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSettings {
    /// Folder of the trained artifacts (`rf-cycle.json.gz`,
    /// `novelty.json.gz`, `xgb-cycle.onnx`); empty: the artifacts built into
    /// the binary (those of `models/artifacts` when it was built).
    pub dir: Option<PathBuf>,
    /// Members' switches and weights, and the decision threshold.
    pub ensemble: hydrowatch_models::ensemble::EnsembleConfig,
    /// The ONNX Runtime library for the XGBoost member
    /// (`libonnxruntime.so.1.31.x`); unset: `ORT_DYLIB_PATH`. Without it the
    /// member is unavailable and the others are reweighted.
    pub onnxruntime: Option<PathBuf>,
}

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
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(err(file, "ingest.max_body_bytes: must be at least 1024"));
        }
        if self.max_rows == 0 {
            return Err(err(file, "ingest.max_rows: must be at least 1"));
        }
        if !(self.rate_per_sec.is_finite() && self.rate_per_sec >= 0.001) {
            return Err(err(file, "ingest.rate_per_sec: must be at least 0.001"));
        }
        if self.rate_burst == 0 {
            return Err(err(file, "ingest.rate_burst: must be at least 1"));
        }
        if self.max_future_secs > 366 * 86_400 {
            return Err(err(
                file,
                "ingest.max_future_secs: must be at most a year (31622400)",
            ));
        }
        if self.ack_timeout_ms < 100 {
            return Err(err(file, "ingest.ack_timeout_ms: must be at least 100"));
        }
        Ok(())
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

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite://PATH` (embedded; a relative path is relative to the working
    /// directory) or `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// How long start-up waits for the database before giving up, seconds.
    pub connect_timeout_secs: u64,
    /// Rows per database write.
    pub batch_rows: usize,
    /// Longest a sample waits before it is written, ms.
    pub flush_interval_ms: u64,
    /// Rows held in memory while a write is in flight; beyond that they go to
    /// the spool.
    pub max_buffered_rows: usize,
    /// Directory of the spool that holds samples while the database is
    /// unreachable (relative to the working directory).
    pub spool_dir: PathBuf,
    /// Spool size past which sources are pushed back, MiB.
    pub spool_pushback_mib: u64,
    /// First retry delay after a database failure, ms (doubles up to
    /// `retry_max_ms`).
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// A write taking longer counts as failed and is spooled, ms.
    pub write_timeout_ms: u64,
    /// While pushed back, connections poll this many times less often.
    pub poll_slowdown: u32,
    /// `auto`: samples go into a TimescaleDB hypertable when the server has the
    /// extension (decided when the database is first migrated); `off`: native
    /// partitions always. PostgreSQL only.
    pub timescale: TimescaleMode,
    /// Length of a partition or chunk of samples, hours (PostgreSQL).
    pub chunk_interval_hours: u32,
    /// Partitions kept created ahead of now (native PostgreSQL layout).
    pub partitions_ahead: u32,
    /// Chunks older than this are compressed, days (TimescaleDB).
    pub compress_after_days: u32,
    /// Samples older than this are dropped, days.
    pub retention_days: u32,
    /// How often partitions ahead are ensured and retention is applied, seconds.
    pub maintenance_interval_secs: u64,
    /// How often the fragments of closed minutes are merged into one row per
    /// sensor and minute, seconds.
    pub compact_interval_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        let writer = WriterConfig::default();
        let layout = LayoutSettings::default();
        Self {
            url: "sqlite://data/hydrowatch.db".into(),
            connect_timeout_secs: 30,
            batch_rows: writer.batch_rows,
            flush_interval_ms: writer.flush_interval.as_millis() as u64,
            max_buffered_rows: writer.max_buffered_rows,
            spool_dir: "data/spool".into(),
            spool_pushback_mib: writer.spool_pushback_bytes / (1024 * 1024),
            retry_initial_ms: writer.retry_initial.as_millis() as u64,
            retry_max_ms: writer.retry_max.as_millis() as u64,
            write_timeout_ms: writer.write_timeout.as_millis() as u64,
            poll_slowdown: 4,
            timescale: layout.timescale,
            chunk_interval_hours: layout.chunk_interval_hours,
            partitions_ahead: layout.partitions_ahead,
            compress_after_days: layout.compress_after_days,
            retention_days: layout.retention_days,
            maintenance_interval_secs: 3600,
            compact_interval_secs: 60,
        }
    }
}

impl StorageSettings {
    /// The writer's configuration.
    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            batch_rows: self.batch_rows,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            max_buffered_rows: self.max_buffered_rows,
            spool_path: self.spool_dir.join("samples.spool"),
            spool_pushback_bytes: self.spool_pushback_mib * 1024 * 1024,
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
        }
    }

    /// How samples are laid out and kept.
    pub fn layout(&self) -> LayoutSettings {
        LayoutSettings {
            timescale: self.timescale,
            chunk_interval_hours: self.chunk_interval_hours,
            partitions_ahead: self.partitions_ahead,
            compress_after_days: self.compress_after_days,
            retention_days: self.retention_days,
        }
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let url = &self.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(err(
                file,
                format!("storage.url = {url:?}: expected sqlite://PATH or postgres://…"),
            ));
        }
        let at_least = |key: &str, value: u64, min: u64| {
            if value < min {
                Err(err(
                    file,
                    format!("storage.{key} = {value}: must be at least {min}"),
                ))
            } else {
                Ok(())
            }
        };
        at_least("batch_rows", self.batch_rows as u64, 1)?;
        at_least("flush_interval_ms", self.flush_interval_ms, 1)?;
        at_least("retry_initial_ms", self.retry_initial_ms, 1)?;
        at_least("retry_max_ms", self.retry_max_ms, self.retry_initial_ms)?;
        at_least("write_timeout_ms", self.write_timeout_ms, 100)?;
        at_least("poll_slowdown", self.poll_slowdown as u64, 1)?;
        at_least(
            "max_buffered_rows",
            self.max_buffered_rows as u64,
            self.batch_rows as u64,
        )?;
        at_least("chunk_interval_hours", self.chunk_interval_hours.into(), 1)?;
        at_least("partitions_ahead", self.partitions_ahead.into(), 1)?;
        at_least("compress_after_days", self.compress_after_days.into(), 1)?;
        at_least("retention_days", self.retention_days.into(), 1)?;
        if self.retention_days > 100 * 366 {
            return Err(err(file, "storage.retention_days: must be at most 36600"));
        }
        at_least(
            "maintenance_interval_secs",
            self.maintenance_interval_secs,
            1,
        )?;
        if self.spool_dir.as_os_str().is_empty() {
            return Err(err(file, "storage.spool_dir: must not be empty"));
        }
        Ok(())
    }
}

/// `[files]`: where the other files are, relative to `hydrowatch.toml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSettings {
    /// The plant.
    pub plant: PathBuf,
    /// The supervision tree.
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
    pub redis: crate::shared::RedisSettings,
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
    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.websocket.idle_timeout_secs)
    }
    /// Live-read timeout.
    pub fn actor_timeout(&self) -> Duration {
        Duration::from_millis(self.live.actor_timeout_ms)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
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
        self.storage.validate(file)?;
        self.ingest.validate(file)?;
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

/// `[site]` of `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A sensor in a sensor set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Identifier within the equipment.
    pub id: SensorId,
    /// Display name.
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Physical range minimum.
    pub min: f64,
    /// Physical range maximum.
    pub max: f64,
    /// Stale after this long without a reading, ms.
    #[serde(default = "default_stale_ms")]
    pub stale_after_ms: u64,
    /// Register table: `holding` (default), `input`, `coil`, `discrete_input`.
    #[serde(default = "default_kind")]
    pub register: RegisterKind,
    /// First register.
    pub address: u16,
    /// Encoding.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte order within a register (default big).
    pub byte_order: Option<ByteOrder>,
    /// Register order (default big).
    pub word_order: Option<WordOrder>,
    /// Both orders by their usual name (`abcd`, `cdab`, `badc`, `dcba`),
    /// instead of `byte_order` and `word_order`.
    pub order: Option<Endianness>,
    /// Unit id, when not the connection's (a device behind a gateway).
    pub unit_id: Option<u8>,
    /// Engineering = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
    /// OPC-UA: its variable, instead of the connection's `node_ids` pattern.
    pub node_id: Option<String>,
    /// OPC-UA: changes smaller than this are not sent (absolute deadband).
    pub deadband: Option<f64>,
    /// Process limits with hysteresis on this sensor (`[[sensor_sets.X.limits]]`).
    #[serde(default)]
    pub limits: Vec<hydrowatch_models::detect::HysteresisConfig>,
    /// This sensor's quality checks, instead of the plant's `[detectors.quality]`.
    pub quality: Option<hydrowatch_models::detect::QualityConfig>,
    /// This sensor's baseline, instead of the plant's `[detectors.baseline]`.
    pub baseline: Option<hydrowatch_models::detect::BaselineConfig>,
}

impl SensorConfig {
    /// The detectors of this sensor: its own quality and baseline settings
    /// where it has them, the plant's otherwise, and its limits.
    pub fn detectors(
        &self,
        defaults: &DetectorDefaults,
    ) -> hydrowatch_models::detect::DetectorsConfig {
        hydrowatch_models::detect::DetectorsConfig {
            quality: self
                .quality
                .clone()
                .unwrap_or_else(|| defaults.quality.clone()),
            baseline: self
                .baseline
                .clone()
                .unwrap_or_else(|| defaults.baseline.clone()),
            limits: self.limits.clone(),
        }
    }
}

/// A value operators may write to an equipment's device
/// (`[[setpoint_sets.X]]`): a holding register (or several) or a coil, written
/// through the API and read back before the write counts as done.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointConfig {
    /// Identifier within the equipment.
    pub id: SensorId,
    /// Display name.
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Lowest value accepted.
    pub min: f64,
    /// Highest value accepted.
    pub max: f64,
    /// `holding` (default) or `coil`.
    #[serde(default = "default_kind")]
    pub register: RegisterKind,
    /// First register.
    pub address: u16,
    /// Encoding.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte order within a register (default big).
    pub byte_order: Option<ByteOrder>,
    /// Register order (default big).
    pub word_order: Option<WordOrder>,
    /// Both orders by their usual name, instead of the two above.
    pub order: Option<Endianness>,
    /// Unit id, when not the connection's.
    pub unit_id: Option<u8>,
    /// Engineering = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    /// See `scale`.
    #[serde(default)]
    pub offset: f64,
}

/// Where a configured point lives, whatever it is (sensor or setpoint).
struct PointPlace<'a> {
    id: &'a SensorId,
    register: RegisterKind,
    address: u16,
    data_type: DataType,
    byte_order: Option<ByteOrder>,
    word_order: Option<WordOrder>,
    order: Option<Endianness>,
    unit_id: Option<u8>,
    scale: f64,
    offset: f64,
}

impl PointPlace<'_> {
    /// The register point, or why the orders contradict each other.
    fn point(&self) -> Result<RegisterPoint, String> {
        let (byte_order, word_order) = match (self.order, self.byte_order, self.word_order) {
            (Some(order), None, None) => order.orders(),
            (Some(_), _, _) => {
                return Err(format!(
                    "{}: give either order or byte_order/word_order, not both",
                    self.id.as_str()
                ))
            }
            (None, b, w) => (b.unwrap_or_default(), w.unwrap_or_default()),
        };
        Ok(RegisterPoint {
            sensor: self.id.clone(),
            unit: self.unit_id,
            kind: self.register,
            address: self.address,
            data_type: self.data_type,
            byte_order,
            word_order,
            scale: self.scale,
            offset: self.offset,
        })
    }
}

impl SensorConfig {
    fn place(&self) -> PointPlace<'_> {
        PointPlace {
            id: &self.id,
            register: self.register,
            address: self.address,
            data_type: self.data_type,
            byte_order: self.byte_order,
            word_order: self.word_order,
            order: self.order,
            unit_id: self.unit_id,
            scale: self.scale,
            offset: self.offset,
        }
    }
}

impl SetpointConfig {
    fn place(&self) -> PointPlace<'_> {
        PointPlace {
            id: &self.id,
            register: self.register,
            address: self.address,
            data_type: self.data_type,
            byte_order: self.byte_order,
            word_order: self.word_order,
            order: self.order,
            unit_id: self.unit_id,
            scale: self.scale,
            offset: self.offset,
        }
    }
}

fn default_stale_ms() -> u64 {
    3_000
}
fn default_kind() -> RegisterKind {
    RegisterKind::Holding
}
fn one() -> f64 {
    1.0
}

/// How an equipment's device is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// `modbus_tcp`, or `modbus_rtu_over_tcp` for a serial gateway.
    pub protocol: Protocol,
    /// `host:port` of the device, or `simulator` for the built-in simulator.
    pub endpoint: String,
    /// Modbus unit id.
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    /// Poll period, ms.
    #[serde(default = "default_period")]
    pub period_ms: u64,
    /// Per-request timeout, ms.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Connect timeout, ms.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Largest register read the device accepts.
    #[serde(default = "default_max_regs")]
    pub max_registers_per_read: u16,
    /// Largest coil or discrete-input read the device accepts.
    #[serde(default = "default_max_bits")]
    pub max_bits_per_read: u16,
    /// Unused registers worth reading to merge two requests.
    #[serde(default)]
    pub max_gap: u16,
    /// OPC-UA: each sensor's variable, `{id}` standing for the sensor id
    /// (`"ns=2;s=Rig.{id}"`); a sensor's own `node_id` wins.
    pub node_ids: Option<String>,
    /// OPC-UA: `none`, `basic256_sha256` or `aes128_sha256_rsa_oaep`.
    #[serde(default)]
    pub security_policy: OpcUaSecurityPolicy,
    /// OPC-UA: `none`, `sign` or `sign_and_encrypt`.
    #[serde(default)]
    pub security_mode: OpcUaSecurityMode,
    /// OPC-UA: user name (anonymous without).
    pub username: Option<String>,
    /// OPC-UA: password of `username`.
    pub password: Option<String>,
    /// OPC-UA: the environment variable holding the password, instead of
    /// writing it here.
    pub password_env: Option<String>,
    /// OPC-UA: the client's certificate store (`own/`, `private/`,
    /// `trusted/`, `rejected/`); trust a server with `hydrowatch opcua-trust`.
    #[serde(default = "default_client_pki")]
    pub pki_dir: PathBuf,
    /// OPC-UA: trust any server certificate (demos only).
    #[serde(default)]
    pub trust_server_certs: bool,
    /// OPC-UA: how often the server sends changes, ms (default: the poll period).
    pub publishing_interval_ms: Option<u64>,
    /// OPC-UA: how often the server samples each variable, ms (default: the poll period).
    pub sampling_interval_ms: Option<f64>,
    /// OPC-UA: use subscriptions (otherwise every poll reads).
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// OPC-UA: values the server queues per item between publishes (1: the
    /// latest only).
    #[serde(default = "one_item")]
    pub queue_size: u32,
    /// First reconnect delay, ms.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Largest reconnect delay, ms.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
}

fn default_unit() -> u8 {
    1
}
fn default_period() -> u64 {
    1_000
}
fn default_request_timeout() -> u64 {
    500
}
fn default_connect_timeout() -> u64 {
    1_000
}
fn default_max_regs() -> u16 {
    MAX_REGISTERS_PER_READ
}
fn default_client_pki() -> PathBuf {
    PathBuf::from("data/pki/client")
}
fn default_simulator_pki() -> PathBuf {
    PathBuf::from("data/pki/simulator")
}
fn yes() -> bool {
    true
}
fn one_item() -> u32 {
    1
}
fn default_max_bits() -> u16 {
    MAX_BITS_PER_READ
}
fn default_reconnect_initial() -> u64 {
    200
}
fn default_reconnect_max() -> u64 {
    10_000
}

/// Device protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Modbus TCP.
    ModbusTcp,
    /// Modbus RTU frames over TCP (a serial-to-Ethernet gateway).
    ModbusRtuOverTcp,
    /// OPC-UA (binary, `opc.tcp://`).
    Opcua,
}

impl Protocol {
    /// How its frames are delimited, for Modbus.
    pub fn framing(self) -> Option<Framing> {
        match self {
            Protocol::ModbusTcp => Some(Framing::Tcp),
            Protocol::ModbusRtuOverTcp => Some(Framing::RtuOverTcp),
            Protocol::Opcua => None,
        }
    }
}

/// The built-in simulator of an equipment unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Recorded condition replayed at start.
    #[serde(default = "healthy")]
    pub condition: String,
    /// Seconds into the recording to start at.
    #[serde(default)]
    pub phase_secs: f64,
    /// Recorded seconds replayed per second (1 = real time; more for demos
    /// and tests).
    #[serde(default = "real_time")]
    pub speed: f64,
    /// Port for `hydrowatch simulate` (serve picks a free loopback port).
    pub port: u16,
    /// Misbehaviour injected from the start (`[equipment.simulator.faults]`:
    /// the Modbus or the OPC-UA kind, as the connection's protocol); changed
    /// at run time through `PUT /api/v1/admin/simulators/{id}/faults`.
    #[serde(default)]
    pub faults: toml::Table,
    /// OPC-UA: where the simulated server keeps its certificate (one folder
    /// per equipment below it).
    #[serde(default = "default_simulator_pki")]
    pub pki_dir: PathBuf,
    /// OPC-UA: whether the simulated server serves subscriptions (otherwise
    /// only Read: the connection polls).
    #[serde(default = "yes")]
    pub subscriptions: bool,
}

fn real_time() -> f64 {
    1.0
}

/// How an equipment unit's samples are cut into load cycles for the cycle
/// models (`[equipment.cycle]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleConfig {
    /// The sensor holding the PLC's cycle timer (seconds into the cycle).
    pub phase_sensor: SensorId,
    /// Seconds a sensor may miss in a cycle and still be scored (filled by
    /// interpolation).
    #[serde(default = "default_max_missing")]
    pub max_missing: usize,
    /// A pause between polls longer than this ends the cycle, ms.
    #[serde(default = "default_max_gap")]
    pub max_gap_ms: i64,
}

fn default_max_missing() -> usize {
    3
}
fn default_max_gap() -> i64 {
    10_000
}

fn healthy() -> String {
    "healthy".into()
}

/// An equipment unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquipmentConfig {
    /// Identifier.
    pub id: EquipmentId,
    /// Display name.
    pub name: String,
    /// Name of the sensor set it carries.
    pub sensor_set: String,
    /// Name of the setpoint set operators may write, if any.
    pub setpoint_set: Option<String>,
    /// Its device.
    pub connection: ConnectionConfig,
    /// Its simulator, when `connection.endpoint = "simulator"`.
    pub simulator: Option<SimulatorConfig>,
    /// Cycle scoring; the unit must carry the rig's 17 sensors.
    pub cycle: Option<CycleConfig>,
}

/// `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantConfig {
    /// The site.
    pub site: SiteConfig,
    /// Reusable sensor sets by name.
    pub sensor_sets: BTreeMap<String, Vec<SensorConfig>>,
    /// Reusable setpoint sets by name.
    #[serde(default)]
    pub setpoint_sets: BTreeMap<String, Vec<SetpointConfig>>,
    /// Equipment units, in display order.
    pub equipment: Vec<EquipmentConfig>,
    /// The per-sample detectors every sensor actor runs, unless its sensor
    /// says otherwise.
    #[serde(default)]
    pub detectors: DetectorDefaults,
    /// Alert rules, escalation policies, silences and inhibition.
    #[serde(default)]
    pub alerting: AlertingSection,
}

/// `[alerting]` of `plant.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSection {
    /// How often the alerting actor looks at its timers, ms.
    pub tick_ms: u64,
    /// Which alerts of an equipment unit hold back its sensors' lesser ones.
    pub inhibition: Inhibition,
    /// Escalation policies by name.
    pub policies: BTreeMap<String, EscalationPolicy>,
    /// The rules.
    pub rules: Vec<RuleSpec>,
    /// Silences and maintenance windows in force from start-up.
    pub silences: Vec<SilenceConfig>,
}

impl Default for AlertingSection {
    fn default() -> Self {
        AlertingSection {
            tick_ms: 1_000,
            inhibition: Inhibition::default(),
            policies: BTreeMap::new(),
            rules: Vec::new(),
            silences: Vec::new(),
        }
    }
}

/// A silence in `plant.toml`: which alerts, when, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Which alerts.
    #[serde(default)]
    pub matchers: Matchers,
    /// When.
    pub window: WindowSpec,
    /// Why (shown with the silenced alerts).
    #[serde(default)]
    pub comment: String,
}

impl AlertingSection {
    /// Checks the rules against the plant and builds the alerting actor's
    /// configuration.
    fn build(
        &self,
        file: &str,
        equipment: &[EquipmentSpec],
    ) -> Result<AlertingConfig, ConfigError> {
        if !(100..=60_000).contains(&self.tick_ms) {
            return Err(err(
                file,
                format!(
                    "alerting.tick_ms = {}: must be between 100 and 60000",
                    self.tick_ms
                ),
            ));
        }
        for (name, policy) in &self.policies {
            if !hydrowatch_models::alert::rules::valid_name(name) {
                return Err(err(
                    file,
                    format!(
                        "alerting.policies.{name:?}: {}",
                        hydrowatch_models::alert::rules::NAME_RULE
                    ),
                ));
            }
            policy
                .validate()
                .map_err(|e| err(file, format!("alerting.policies.{name}: {e}")))?;
            for (i, step) in policy.steps.iter().enumerate() {
                for channel in &step.channels {
                    crate::notify::Target::parse(channel).map_err(|e| {
                        err(file, format!("alerting.policies.{name}.steps[{i}]: {e}"))
                    })?;
                }
            }
        }
        let mut rules = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("alerting.rules[{i}]");
            check_rule(rule, &self.policies, equipment)
                .map_err(|m| err(file, format!("{key}.{}: {}", m.field, m.reason)))?;
            if rules.insert(rule.id.clone(), rule.clone()).is_some() {
                return Err(err(
                    file,
                    format!("{key}.id = {:?}: duplicate rule id", rule.id),
                ));
            }
        }
        let mut silences = Vec::new();
        for (i, s) in self.silences.iter().enumerate() {
            let window = Window::try_from(&s.window)
                .map_err(|e| err(file, format!("alerting.silences[{i}].window: {e}")))?;
            silences.push(Silence {
                matchers: s.matchers.clone(),
                window,
            });
        }
        Ok(AlertingConfig {
            rules,
            policies: self.policies.clone(),
            silences,
            inhibition: self.inhibition,
            tick: Duration::from_millis(self.tick_ms),
        })
    }
}

/// Why a rule does not fit the plant: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMisfit {
    /// The field, e.g. `when.threshold.min` or `policy`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// Checks a rule on its own and against the plant: its policy exists, it
/// covers some equipment, and its condition watches something there.
pub fn check_rule(
    rule: &RuleSpec,
    policies: &BTreeMap<String, EscalationPolicy>,
    equipment: &[EquipmentSpec],
) -> Result<(), RuleMisfit> {
    use hydrowatch_models::alert::rules::Condition;
    let misfit = |field: &str, reason: String| RuleMisfit {
        field: field.to_owned(),
        reason,
    };
    rule.validate()
        .map_err(|e| misfit(e.field, format!("rule `{}`: {}", e.rule, e.reason)))?;
    for (i, channel) in rule.channels.iter().enumerate() {
        crate::notify::Target::parse(channel).map_err(|e| misfit(&format!("channels[{i}]"), e))?;
    }
    if let Some(p) = &rule.policy {
        if !policies.contains_key(p) {
            return Err(misfit(
                "policy",
                format!("{p:?}: no such escalation policy"),
            ));
        }
    }
    let units: Vec<&EquipmentSpec> = equipment
        .iter()
        .filter(|e| rule.covers_equipment(e.id.as_str()))
        .collect();
    if units.is_empty() {
        return Err(misfit(
            "equipment",
            format!("{:?}: no such equipment", rule.equipment),
        ));
    }
    let sensors = |covers: &dyn Fn(&str) -> bool| {
        units
            .iter()
            .flat_map(|e| e.sensors.iter())
            .any(|s| covers(s.id.as_str()))
    };
    let watches_something = match &rule.when {
        Condition::Threshold(t) => sensors(&|s| t.covers_sensor(s)),
        Condition::Quality(q) => sensors(&|s| q.covers_sensor(s)),
        Condition::Model(_) | Condition::Novelty(_) => units.iter().any(|e| e.cycle.is_some()),
    };
    if !watches_something {
        return Err(misfit(
            "when",
            "matches no sensor (or, for a model rule, no equipment with [equipment.cycle]) of the equipment it covers".into(),
        ));
    }
    Ok(())
}

/// `[detectors]` of `plant.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorDefaults {
    /// Stuck values, spikes, gaps.
    pub quality: hydrowatch_models::detect::QualityConfig,
    /// The adaptive baseline.
    pub baseline: hydrowatch_models::detect::BaselineConfig,
}

/// A simulated device to start.
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    /// The equipment it stands for.
    pub equipment: EquipmentId,
    /// Condition replayed at start.
    pub condition: RigCondition,
    /// Replay phase.
    pub phase_secs: f64,
    /// Recorded seconds per second.
    pub speed: f64,
    /// Port for `simulate`.
    pub port: u16,
    /// The protocol its connection speaks.
    pub protocol: Protocol,
    /// Modbus: TCP or RTU over TCP.
    pub framing: Framing,
    /// OPC-UA: the server's certificate store.
    pub pki_dir: PathBuf,
    /// OPC-UA: whether it serves subscriptions.
    pub subscriptions: bool,
    /// The unit ids it answers: the connection's and its points'.
    pub units: Vec<u8>,
    /// Faults injected from the start (Modbus).
    pub faults: ModbusFaults,
    /// Faults injected from the start (OPC-UA).
    pub opcua_faults: OpcUaFaults,
}

/// A connection, before the simulator addresses are known.
#[derive(Debug, Clone)]
pub struct PlannedConnection {
    /// Equipment.
    pub equipment: EquipmentId,
    /// The settings.
    pub config: ConnectionConfig,
    /// Where the device is; `None` = the built-in simulator.
    pub endpoint: Option<SocketAddr>,
    /// Its register map.
    pub map: RegisterMap,
    /// What operators may write.
    pub setpoints: Vec<SetpointSpec>,
    /// OPC-UA: each sensor's variable.
    pub opcua_points: Vec<OpcUaPoint>,
}

impl PlannedConnection {
    /// How the OPC-UA reader reaches `endpoint_url`.
    pub fn opcua_config(&self, endpoint_url: String) -> OpcUaConfig {
        let c = &self.config;
        OpcUaConfig {
            endpoint_url,
            security_policy: c.security_policy,
            security_mode: c.security_mode,
            user: c
                .username
                .clone()
                .map(|u| (u, c.password.clone().unwrap_or_default())),
            pki_dir: c.pki_dir.clone(),
            trust_server_certs: c.trust_server_certs,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            publishing_interval: Duration::from_millis(
                c.publishing_interval_ms.unwrap_or(c.period_ms),
            ),
            reconnect: self.reconnect_policy(),
            max_items_per_subscription: 1_000,
            subscribe: c.subscribe,
        }
    }

    /// The reconnect backoff.
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        ReconnectPolicy {
            initial: Duration::from_millis(self.config.reconnect_initial_ms),
            max: Duration::from_millis(self.config.reconnect_max_ms),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// The OPC-UA variables of `sensors` on connection `c`.
fn opcua_points(c: &ConnectionConfig, sensors: &[SensorConfig]) -> Result<Vec<OpcUaPoint>, String> {
    if (c.security_policy == OpcUaSecurityPolicy::None)
        != (c.security_mode == OpcUaSecurityMode::None)
    {
        return Err(format!(
            "security_policy {:?} with security_mode {:?}: none goes with none only",
            c.security_policy, c.security_mode
        ));
    }
    if (c.password.is_some() || c.password_env.is_some()) && c.username.is_none() {
        return Err("a password without a username".into());
    }
    sensors
        .iter()
        .map(|s| {
            let node_id = match (&s.node_id, &c.node_ids) {
                (Some(own), _) => own.clone(),
                (None, Some(pattern)) => pattern.replace("{id}", s.id.as_str()),
                (None, None) => {
                    return Err(format!(
                        "sensor {}: no node_id, and the connection has no node_ids pattern",
                        s.id.as_str()
                    ))
                }
            };
            check_node_id(&node_id).map_err(|m| format!("sensor {}: {m}", s.id.as_str()))?;
            if s.deadband.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
                return Err(format!(
                    "sensor {}: deadband must be a number ≥ 0",
                    s.id.as_str()
                ));
            }
            Ok(OpcUaPoint {
                sensor: s.id.clone(),
                node_id,
                sampling_interval_ms: c.sampling_interval_ms.unwrap_or(c.period_ms as f64),
                queue_size: c.queue_size,
                deadband: s.deadband,
            })
        })
        .collect()
}

/// The validated plant.
#[derive(Debug, Clone)]
pub struct Plant {
    /// The site.
    pub site: SiteConfig,
    /// Equipment units.
    pub equipment: Vec<EquipmentSpec>,
    /// Their connections.
    pub connections: Vec<PlannedConnection>,
    /// Built-in simulators to start.
    pub simulators: Vec<SimulatedDevice>,
    /// Rules, policies and silences, checked against the equipment.
    pub alerting: AlertingConfig,
}

impl Plant {
    /// Poll period of each polled equipment unit, ms (as the database records it).
    pub fn poll_periods_ms(&self) -> std::collections::HashMap<EquipmentId, u64> {
        self.connections
            .iter()
            .map(|c| (c.equipment.clone(), c.config.period_ms))
            .collect()
    }
}

impl PlantConfig {
    /// Checks the plant and turns it into runtime specs.
    pub fn build(&self, file: &str) -> Result<Plant, ConfigError> {
        if self.equipment.is_empty() {
            return Err(err(file, "equipment: the plant has no equipment"));
        }
        let defaults = hydrowatch_models::detect::DetectorsConfig {
            quality: self.detectors.quality.clone(),
            baseline: self.detectors.baseline.clone(),
            limits: Vec::new(),
        };
        if let Err(e) = defaults.validate() {
            return Err(err(file, format!("detectors.{e}")));
        }
        let mut seen = HashSet::new();
        let mut plant = Plant {
            site: self.site.clone(),
            equipment: Vec::new(),
            connections: Vec::new(),
            simulators: Vec::new(),
            alerting: AlertingConfig::default(),
        };
        for (set_name, sensors) in &self.sensor_sets {
            let mut ids = HashSet::new();
            for (i, s) in sensors.iter().enumerate() {
                let key = format!("sensor_sets.{set_name}[{i}]");
                if !ids.insert(s.id.clone()) {
                    return Err(err(
                        file,
                        format!("{key}.id = {:?}: duplicate sensor id", s.id.as_str()),
                    ));
                }
                if !(s.min.is_finite() && s.max.is_finite() && s.min < s.max) {
                    return Err(err(
                        file,
                        format!("{key}.min/max = {}/{}: min must be below max", s.min, s.max),
                    ));
                }
                if let Err(e) = s.detectors(&self.detectors).validate() {
                    return Err(err(file, format!("{key}.{e}")));
                }
                if s.stale_after_ms == 0 {
                    return Err(err(
                        file,
                        format!("{key}.stale_after_ms = 0: must be at least 1"),
                    ));
                }
            }
        }
        for (i, e) in self.equipment.iter().enumerate() {
            let key = format!("equipment[{i}]");
            if !seen.insert(e.id.clone()) {
                return Err(err(
                    file,
                    format!("{key}.id = {:?}: duplicate equipment id", e.id.as_str()),
                ));
            }
            let sensors = self.sensor_sets.get(&e.sensor_set).ok_or_else(|| {
                err(
                    file,
                    format!(
                        "{key}.sensor_set = {:?}: no such sensor set (known: {})",
                        e.sensor_set,
                        self.sensor_sets
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let points: Vec<RegisterPoint> = sensors
                .iter()
                .map(|s| s.place().point())
                .collect::<Result<_, _>>()
                .map_err(|m| err(file, format!("sensor_sets.{}.{m}", e.sensor_set)))?;
            let map = RegisterMap::new(points).map_err(|m| {
                err(
                    file,
                    format!("sensor_sets.{} (used by {key}): {m}", e.sensor_set),
                )
            })?;
            let c = &e.connection;
            let ckey = format!("{key}.connection");
            if c.period_ms < 5 {
                return Err(err(
                    file,
                    format!("{ckey}.period_ms = {}: must be at least 5", c.period_ms),
                ));
            }
            if c.request_timeout_ms == 0 || c.request_timeout_ms > 60_000 {
                return Err(err(
                    file,
                    format!(
                        "{ckey}.request_timeout_ms = {}: must be between 1 and 60000",
                        c.request_timeout_ms
                    ),
                ));
            }
            if c.connect_timeout_ms == 0 || c.connect_timeout_ms > 60_000 {
                return Err(err(
                    file,
                    format!(
                        "{ckey}.connect_timeout_ms = {}: must be between 1 and 60000",
                        c.connect_timeout_ms
                    ),
                ));
            }
            let widest = sensors
                .iter()
                .map(|s| s.data_type.registers())
                .max()
                .unwrap_or(1);
            if c.max_registers_per_read < widest
                || c.max_registers_per_read > MAX_REGISTERS_PER_READ
            {
                return Err(err(
                    file,
                    format!(
                        "{ckey}.max_registers_per_read = {}: must be between {widest} (the widest point of sensor set {:?}) and {MAX_REGISTERS_PER_READ}",
                        c.max_registers_per_read, e.sensor_set
                    ),
                ));
            }
            if c.max_bits_per_read == 0 || c.max_bits_per_read > MAX_BITS_PER_READ {
                return Err(err(
                    file,
                    format!(
                        "{ckey}.max_bits_per_read = {}: must be between 1 and {MAX_BITS_PER_READ}",
                        c.max_bits_per_read
                    ),
                ));
            }
            let setpoints = match &e.setpoint_set {
                None => Vec::new(),
                Some(name) => {
                    let set = self.setpoint_sets.get(name).ok_or_else(|| {
                        err(
                            file,
                            format!(
                                "{key}.setpoint_set = {name:?}: no such setpoint set (known: {})",
                                self.setpoint_sets
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                    setpoint_specs(name, set).map_err(|m| err(file, m))?
                }
            };
            if c.reconnect_initial_ms == 0 || c.reconnect_initial_ms > c.reconnect_max_ms {
                return Err(err(file, format!("{ckey}.reconnect_initial_ms = {}: must be at least 1 and at most reconnect_max_ms", c.reconnect_initial_ms)));
            }
            let endpoint = if c.endpoint == "simulator" {
                let sim = e.simulator.as_ref().ok_or_else(|| {
                    err(
                        file,
                        format!("{key}.simulator: required when {ckey}.endpoint = \"simulator\""),
                    )
                })?;
                let condition: RigCondition = sim
                    .condition
                    .parse()
                    .map_err(|m| err(file, format!("{key}.simulator.condition: {m}")))?;
                if !sim.phase_secs.is_finite() || sim.phase_secs < 0.0 {
                    return Err(err(
                        file,
                        format!("{key}.simulator.phase_secs: must be a non-negative number"),
                    ));
                }
                if !(sim.speed.is_finite() && sim.speed > 0.0 && sim.speed <= 1000.0) {
                    return Err(err(
                        file,
                        format!(
                            "{key}.simulator.speed = {}: must be more than 0 and at most 1000",
                            sim.speed
                        ),
                    ));
                }
                let faults_of = |kind: &str, e: toml::de::Error| {
                    err(
                        file,
                        format!("{key}.simulator.faults ({kind}): {}", e.message()),
                    )
                };
                let table = toml::Value::Table(sim.faults.clone());
                let (faults, opcua_faults) = if c.protocol == Protocol::Opcua {
                    let f = OpcUaFaults::deserialize(table).map_err(|e| faults_of("OPC-UA", e))?;
                    f.validate()
                        .map_err(|m| err(file, format!("{key}.simulator.faults.{m}")))?;
                    (ModbusFaults::default(), f)
                } else {
                    let f = ModbusFaults::deserialize(table).map_err(|e| faults_of("Modbus", e))?;
                    f.validate()
                        .map_err(|m| err(file, format!("{key}.simulator.faults.{m}")))?;
                    (f, OpcUaFaults::default())
                };
                let mut units: Vec<u8> = std::iter::once(c.unit_id)
                    .chain(map.points.iter().filter_map(|p| p.unit))
                    .chain(setpoints.iter().filter_map(|s| s.point.unit))
                    .collect();
                let mut seen_units = HashSet::new();
                units.retain(|u| seen_units.insert(*u));
                plant.simulators.push(SimulatedDevice {
                    equipment: e.id.clone(),
                    condition,
                    phase_secs: sim.phase_secs,
                    speed: sim.speed,
                    port: sim.port,
                    protocol: c.protocol,
                    framing: c.protocol.framing().unwrap_or_default(),
                    pki_dir: sim.pki_dir.join(e.id.as_str()),
                    subscriptions: sim.subscriptions,
                    units,
                    faults,
                    opcua_faults,
                });
                None
            } else if c.protocol == Protocol::Opcua {
                if !c.endpoint.starts_with("opc.tcp://") {
                    return Err(err(file, format!("{ckey}.endpoint = {:?}: expected opc.tcp://host:port/ or \"simulator\"", c.endpoint)));
                }
                None
            } else {
                Some(c.endpoint.parse::<SocketAddr>().map_err(|_| {
                    err(file, format!("{ckey}.endpoint = {:?}: expected host:port (an IP address) or \"simulator\"", c.endpoint))
                })?)
            };
            if c.protocol == Protocol::Opcua && !setpoints.is_empty() {
                return Err(err(
                    file,
                    format!("{key}.setpoint_set: setpoints are written over Modbus; this connection is OPC-UA"),
                ));
            }
            let opcua_points = if c.protocol == Protocol::Opcua {
                opcua_points(c, sensors).map_err(|m| err(file, format!("{ckey}: {m}")))?
            } else {
                Vec::new()
            };
            let mut config = c.clone();
            if let Some(var) = &c.password_env {
                if c.password.is_some() {
                    return Err(err(
                        file,
                        format!("{ckey}: give password or password_env, not both"),
                    ));
                }
                config.password = Some(std::env::var(var).map_err(|_| {
                    err(
                        file,
                        format!(
                            "{ckey}.password_env = {var:?}: the environment variable is not set"
                        ),
                    )
                })?);
            }
            plant.connections.push(PlannedConnection {
                equipment: e.id.clone(),
                config,
                endpoint,
                map,
                setpoints,
                opcua_points,
            });
            let cycle = e
                .cycle
                .as_ref()
                .map(|c| cycle_layout(c, sensors, &format!("{key}.cycle")))
                .transpose()
                .map_err(|m| err(file, m))?;
            plant.equipment.push(EquipmentSpec {
                id: e.id.clone(),
                cycle,
                name: e.name.clone(),
                site: self.site.name.clone(),
                sensors: sensors
                    .iter()
                    .map(|s| SensorSpec {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        unit: s.unit.clone(),
                        range: PhysicalRange {
                            min: s.min,
                            max: s.max,
                        },
                        stale_after_ms: s.stale_after_ms,
                        detectors: s.detectors(&self.detectors),
                    })
                    .collect(),
            });
        }
        plant.alerting = self.alerting.build(file, &plant.equipment)?;
        Ok(plant)
    }
}

/// The setpoints of set `name`, checked: unique ids, sane limits, writable
/// tables, places that do not overlap.
fn setpoint_specs(name: &str, set: &[SetpointConfig]) -> Result<Vec<SetpointSpec>, String> {
    let mut ids = HashSet::new();
    let mut specs = Vec::with_capacity(set.len());
    for (i, s) in set.iter().enumerate() {
        let key = format!("setpoint_sets.{name}[{i}]");
        if !ids.insert(s.id.as_str()) {
            return Err(format!(
                "{key}.id = {:?}: duplicate setpoint id",
                s.id.as_str()
            ));
        }
        if !(s.min.is_finite() && s.max.is_finite() && s.min <= s.max) {
            return Err(format!(
                "{key}.min/max = {}/{}: min must not be above max",
                s.min, s.max
            ));
        }
        if !s.register.is_writable() {
            return Err(format!(
                "{key}.register: a setpoint is a holding register or a coil"
            ));
        }
        let point = s.place().point().map_err(|m| format!("{key}: {m}"))?;
        specs.push(SetpointSpec {
            id: s.id.to_string(),
            name: s.name.clone(),
            unit: s.unit.clone(),
            min: s.min,
            max: s.max,
            point,
        });
    }
    // The map's own checks: types that fit their table, no overlap.
    RegisterMap::new(specs.iter().map(|s| s.point.clone()).collect())
        .map_err(|m| format!("setpoint_sets.{name}: {m}"))?;
    Ok(specs)
}

/// The cycle layout of an equipment carrying `sensors`, or what is missing.
fn cycle_layout(
    c: &CycleConfig,
    sensors: &[SensorConfig],
    key: &str,
) -> Result<hydrowatch_models::cycle::CycleLayout, String> {
    use hydrowatch_models::cycle::SENSORS;
    let index = |id: &str| sensors.iter().position(|s| s.id.as_str() == id);
    let phase_column = index(c.phase_sensor.as_str()).ok_or_else(|| {
        format!(
            "{key}.phase_sensor = {:?}: not a sensor of this equipment",
            c.phase_sensor.as_str()
        )
    })?;
    let missing: Vec<&str> = SENSORS
        .iter()
        .copied()
        .filter(|s| index(s).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{key}: the cycle models need the rig's 17 sensors ({}); this equipment lacks {}",
            SENSORS.join(", "),
            missing.join(", ")
        ));
    }
    if c.max_missing >= hydrowatch_models::cycle::CYCLE_SECONDS / 2 {
        return Err(format!(
            "{key}.max_missing = {}: must be below {}",
            c.max_missing,
            hydrowatch_models::cycle::CYCLE_SECONDS / 2
        ));
    }
    if c.max_gap_ms < 1 {
        return Err(format!(
            "{key}.max_gap_ms = {}: must be at least 1",
            c.max_gap_ms
        ));
    }
    Ok(hydrowatch_models::cycle::CycleLayout {
        phase_column,
        columns: SENSORS.map(|s| index(s).unwrap_or(0)),
        max_missing: c.max_missing,
        max_gap_ms: c.max_gap_ms,
    })
}

/// Everything loaded and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Server settings.
    pub settings: Settings,
    /// The plant.
    pub plant: Plant,
    /// The supervision tree.
    pub supervision: SupervisionConfig,
    /// Where each piece came from, for the start-up log.
    pub sources: Vec<String>,
}

/// Loads the configuration starting at `path` (or the embedded demo when `None`),
/// applying `env` overrides (`HYDROWATCH_*` pairs).
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let (settings_text, settings_name, base) = match path {
        Some(p) => (
            read(p)?,
            p.display().to_string(),
            Some(p.parent().unwrap_or(Path::new(".")).to_path_buf()),
        ),
        None => (
            EMBEDDED_SETTINGS.to_owned(),
            "embedded hydrowatch.toml".to_owned(),
            None,
        ),
    };
    let mut value: toml::Table =
        toml::from_str(&settings_text).map_err(|e| err(&settings_name, e.to_string()))?;
    apply_env(&mut value, env)?;
    // Re-serialised so that errors quote the offending line, key included.
    let merged = toml::to_string(&value).map_err(|e| err(&settings_name, e.to_string()))?;
    let settings: Settings = toml::from_str(&merged).map_err(|e| {
        let note = if env.iter().any(|(k, _)| k.starts_with("HYDROWATCH_")) {
            " (after HYDROWATCH_* overrides)"
        } else {
            ""
        };
        err(&settings_name, format!("{e}{note}"))
    })?;
    settings.validate(&settings_name)?;

    let (plant_text, plant_name) = match &base {
        Some(dir) => {
            let p = dir.join(&settings.files.plant);
            (read(&p)?, p.display().to_string())
        }
        None => (EMBEDDED_PLANT.to_owned(), "embedded plant.toml".to_owned()),
    };
    let plant_cfg: PlantConfig =
        toml::from_str(&plant_text).map_err(|e| err(&plant_name, e.to_string()))?;
    let plant = plant_cfg.build(&plant_name)?;

    let (sup_text, sup_name) = match &base {
        Some(dir) => {
            let p = dir.join(&settings.files.supervision);
            (read(&p)?, p.display().to_string())
        }
        None => (
            EMBEDDED_SUPERVISION.to_owned(),
            "embedded supervision.toml".to_owned(),
        ),
    };
    let supervision: SupervisionConfig =
        toml::from_str(&sup_text).map_err(|e| err(&sup_name, e.to_string()))?;
    supervision
        .validate()
        .map_err(|e| err(&sup_name, e.to_string()))?;

    Ok(Loaded {
        settings,
        plant,
        supervision,
        sources: vec![settings_name, plant_name, sup_name],
    })
}

/// The default configuration file: `config/hydrowatch.toml` if it exists here.
pub fn default_path() -> Option<PathBuf> {
    let p = PathBuf::from("config/hydrowatch.toml");
    p.exists().then_some(p)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| err(&path.display().to_string(), format!("cannot read: {e}")))
}

/// Applies `HYDROWATCH_SECTION__KEY=value` pairs onto the settings table;
/// deeper paths reach nested tables (`HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET`
/// sets `secret` of `[notify.webhooks.ops]`). Values are parsed as TOML
/// scalars when they can be (numbers, booleans), else taken as strings.
/// Unknown sections or keys are refused by the typed parse after.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("HYDROWATCH_") else {
            continue;
        };
        // Variables read by the CLI itself, not settings.
        if matches!(rest, "CONFIG" | "LOG_FORMAT") {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let Some((key, path)) = parts
            .split_last()
            .filter(|(_, path)| !path.is_empty() && !parts.iter().any(|p| p.is_empty()))
        else {
            return Err(err(
                "environment",
                format!("{name}: expected HYDROWATCH_<SECTION>__<KEY>"),
            ));
        };
        let value = typed_like_default(path, key, raw);
        let mut at = &mut *table;
        for (depth, part) in path.iter().enumerate() {
            let entry = at
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                err(
                    "environment",
                    format!("{name}: [{}] is not a section", path[..=depth].join(".")),
                )
            })?;
        }
        at.insert(key.clone(), value);
    }
    Ok(())
}

/// Reads an override as the type the setting has (a token of digits stays a
/// string); for keys without a default it guesses, and the typed parse refuses
/// unknown keys anyway.
fn typed_like_default(path: &[String], key: &str, raw: &str) -> toml::Value {
    let default = toml::Value::try_from(Settings::default())
        .ok()
        .and_then(|d| {
            path.iter()
                .try_fold(&d, |v, p| v.get(p.as_str()))
                .and_then(|s| s.get(key))
                .cloned()
        });
    match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Integer(_)) => raw
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        Some(toml::Value::Float(_)) => raw
            .parse::<f64>()
            .map(toml::Value::Float)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        Some(toml::Value::Boolean(_)) => raw
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
        _ => parse_scalar(raw),
    }
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_channels_must_be_well_formed() {
        let plant =
            EMBEDDED_PLANT.replacen("channels = [\"wallboard\"]", "channels = [\"pager\"]", 1);
        assert_ne!(plant, EMBEDDED_PLANT);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(
            e.contains("alerting.policies.default.steps[0]") && e.contains("\"pager\""),
            "{e}"
        );
        let plant = EMBEDDED_PLANT.replacen(
            "id = \"oil-hot\"",
            "id = \"oil-hot\"\nchannels = [\"webhook\"]",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(e.contains("alerting.rules[0].channels[0]"), "{e}");
    }

    #[test]
    fn a_cycle_section_needs_the_timer_and_the_rigs_sensors() {
        let plant =
            EMBEDDED_PLANT.replacen("phase_sensor = \"CYC\"", "phase_sensor = \"CLOCK\"", 1);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].cycle.phase_sensor = \"CLOCK\""),
            "{e}"
        );
        // A set without PS3 cannot feed the cycle models.
        let plant = EMBEDDED_PLANT.replacen("id = \"PS3\"", "id = \"PX3\"", 1);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].cycle") && e.contains("lacks PS3"),
            "{e}"
        );
        let plant = EMBEDDED_PLANT.replacen(
            "[equipment.simulator]",
            "[equipment.simulator]\nspeed = 0.0",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(e.contains("equipment[0].simulator.speed = 0"), "{e}");
    }

    /// The error building the demo plant after replacing `from` (once) with `to`.
    fn plant_error(from: &str, to: &str) -> String {
        let plant = EMBEDDED_PLANT.replacen(from, to, 1);
        assert_ne!(plant, EMBEDDED_PLANT, "no {from:?} in the demo plant");
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        cfg.build("plant.toml").unwrap_err().to_string()
    }

    #[test]
    fn field_points_and_setpoints_are_checked() {
        // An order given twice.
        let e = plant_error(
            "type = \"f32\"\nbyte_order",
            "type = \"f32\"\norder = \"cdab\"\nbyte_order",
        );
        assert!(
            e.contains("sensor_sets.zema-rig.PS1: give either order"),
            "{e}"
        );
        // A register type on a bit table.
        let e = plant_error(
            "address = 0\ntype = \"f32\"",
            "register = \"coil\"\naddress = 0\ntype = \"f32\"",
        );
        assert!(e.contains("coils and discrete inputs are `bool`"), "{e}");
        // A setpoint in a read-only table, or outside its set.
        let e = plant_error("address = 1102", "register = \"input\"\naddress = 1102");
        assert!(e.contains("setpoint_sets.zema-rig[1].register"), "{e}");
        let e = plant_error("setpoint_set = \"zema-rig\"", "setpoint_set = \"press\"");
        assert!(
            e.contains("equipment[0].setpoint_set = \"press\": no such setpoint set"),
            "{e}"
        );
        let e = plant_error("address = 1102", "address = 1101");
        assert!(e.contains("overlap"), "{e}");
    }

    #[test]
    fn an_opcua_connection_is_checked() {
        let opcua = |extra: &str| {
            EMBEDDED_PLANT.replacen(
                "protocol = \"modbus_tcp\"   # or \"modbus_rtu_over_tcp\" behind a serial gateway",
                &format!("protocol = \"opcua\"\n{extra}"),
                1,
            )
        };
        let build = |plant: String| {
            let cfg: PlantConfig = toml::from_str(&plant).unwrap();
            cfg.build("plant.toml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // Setpoints are Modbus-only.
        let e = build(opcua("node_ids = \"ns=2;s=Rig.{id}\"")).unwrap_err();
        assert!(
            e.contains("equipment[0].setpoint_set: setpoints are written over Modbus"),
            "{e}"
        );
        let without_setpoints =
            |extra: &str| opcua(extra).replacen("setpoint_set = \"zema-rig\"\n", "", 1);
        assert_eq!(
            build(without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"")),
            Ok(())
        );
        let e = build(without_setpoints("")).unwrap_err();
        assert!(e.contains("sensor PS1: no node_id"), "{e}");
        let e = build(without_setpoints("node_ids = \"Rig.{id}\"")).unwrap_err();
        assert!(e.contains("is not a node id"), "{e}");
        let e = build(without_setpoints(
            "node_ids = \"ns=2;s=Rig.{id}\"\nsecurity_policy = \"basic256_sha256\"",
        ))
        .unwrap_err();
        assert!(e.contains("none goes with none only"), "{e}");
        let e = build(
            without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"").replacen(
                "endpoint = \"simulator\"\nunit_id",
                "endpoint = \"10.0.0.5:4840\"\nunit_id",
                1,
            ),
        )
        .unwrap_err();
        assert!(e.contains("expected opc.tcp://host:port/"), "{e}");
        // Faults of the protocol's own kind.
        let with_faults = |faults: &str| {
            without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"").replacen(
                "port = 5020",
                &format!("port = 5020\n[equipment.simulator.faults]\n{faults}"),
                1,
            )
        };
        let cfg: PlantConfig = toml::from_str(&with_faults("no_response = true")).unwrap();
        let built = cfg.build("plant.toml").unwrap();
        assert!(built.simulators[0].opcua_faults.no_response);
        assert_eq!(built.simulators[0].protocol, Protocol::Opcua);
        let e = build(with_faults("garbage = true")).unwrap_err();
        assert!(e.contains("equipment[0].simulator.faults (OPC-UA)"), "{e}");
        // The password from the environment, not from the file.
        let user = |password: &str| {
            without_setpoints(&format!(
                "node_ids = \"ns=2;s=Rig.{{id}}\"\nusername = \"operator\"\n{password}"
            ))
        };
        let e = build(user("password_env = \"HYDROWATCH_TEST_NO_SUCH_VARIABLE\"")).unwrap_err();
        assert!(
            e.contains("password_env = \"HYDROWATCH_TEST_NO_SUCH_VARIABLE\": the environment variable is not set"),
            "{e}"
        );
        let e = build(user("password = \"x\"\npassword_env = \"PATH\"")).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        // PATH is set in every process: its value becomes the password.
        let cfg: PlantConfig = toml::from_str(&user("password_env = \"PATH\"")).unwrap();
        let built = cfg.build("plant.toml").unwrap();
        assert_eq!(
            built.connections[0].config.password,
            std::env::var("PATH").ok()
        );
    }

    #[test]
    fn demo_setpoints_and_simulator_faults_load() {
        let loaded = load(None, &[]).unwrap();
        let setpoints = &loaded.plant.connections[0].setpoints;
        let ids: Vec<&str> = setpoints.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["pump_pressure", "fan_speed", "cooler_enabled"]);
        assert_eq!(setpoints[2].point.kind, RegisterKind::Coil);
        let plant = EMBEDDED_PLANT.replacen(
            "port = 5020",
            "port = 5020\n[equipment.simulator.faults]\nlatency_ms = 20\nprobability = 0.1",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let built = cfg.build("plant.toml").unwrap();
        assert_eq!(built.simulators[0].faults.latency_ms, 20);
        let plant = EMBEDDED_PLANT.replacen(
            "port = 5020",
            "port = 5020\n[equipment.simulator.faults]\nprobability = 1.5",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml").unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].simulator.faults.probability 1.5"),
            "{e}"
        );
    }

    #[test]
    fn embedded_demo_loads() {
        let loaded = load(None, &[]).unwrap();
        assert_eq!(loaded.plant.equipment.len(), 3);
        // The rig's 17 sensors and the PLC's cycle timer; every rig is scored.
        assert!(loaded.plant.equipment.iter().all(|e| e.sensors.len() == 18));
        assert!(loaded.plant.equipment.iter().all(|e| e.cycle.is_some()));
        assert_eq!(loaded.plant.simulators.len(), 3);
        assert!(
            loaded.settings.auth.break_glass_token.is_empty(),
            "no break-glass token by default"
        );
    }

    #[test]
    fn env_overrides_and_names_unknown_keys() {
        let env = vec![(
            "HYDROWATCH_SERVER__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        )];
        let loaded = load(None, &env).unwrap();
        assert_eq!(loaded.settings.server.listen.port(), 9999);
        let env = vec![("HYDROWATCH_SERVER__LISTN".to_owned(), "x".to_owned())];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn a_numeric_token_stays_a_string() {
        let digits = "12345678901234567890123456789012";
        let env = vec![(
            "HYDROWATCH_AUTH__BREAK_GLASS_TOKEN".to_owned(),
            digits.to_owned(),
        )];
        let loaded = load(None, &env).unwrap();
        assert_eq!(loaded.settings.auth.break_glass_token, digits);
        let env = vec![(
            "HYDROWATCH_AUTH__BREAK_GLASS_TOKEN".to_owned(),
            "short".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("at least 32 characters"), "{e}");
        let env = vec![("HYDROWATCH_ADMIN__TOKEN".to_owned(), digits.to_owned())];
        let e = load(None, &env).unwrap_err();
        assert!(
            e.to_string().contains("hydrowatch user add --role admin"),
            "{e}"
        );
        let env = vec![(
            "HYDROWATCH_LIVE__ACTOR_TIMEOUT_MS".to_owned(),
            "soon".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("actor_timeout_ms"), "{e}");
    }

    #[test]
    fn impossible_value_is_named() {
        let env = vec![(
            "HYDROWATCH_WEBSOCKET__IDLE_TIMEOUT_SECS".to_owned(),
            "1".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("websocket.idle_timeout_secs"), "{e}");
    }

    #[test]
    fn environment_overrides_reach_nested_tables_and_bad_names_are_refused() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let env = [
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__URL",
                "http://127.0.0.1:9/hook",
            ),
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET",
                "0123456789abcdef0123",
            ),
            pair("HYDROWATCH_NOTIFY__MAX_ATTEMPTS", "3"),
        ];
        let loaded = load(None, &env).unwrap();
        let ops = &loaded.settings.notify.webhooks["ops"];
        assert_eq!(ops.secret, "0123456789abcdef0123");
        assert_eq!(loaded.settings.notify.max_attempts, 3);
        let bad = load(None, &[pair("HYDROWATCH_NOTIFY", "x")]).unwrap_err();
        assert!(bad.message.contains("HYDROWATCH_<SECTION>__<KEY>"), "{bad}");
        assert!(load(None, &[pair("HYDROWATCH_NOTIFY____X", "x")]).is_err());
        // A secret too short to sign with is refused at start-up.
        let weak = [
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__URL",
                "http://127.0.0.1:9/hook",
            ),
            pair("HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET", "short"),
        ];
        assert!(load(None, &weak).unwrap_err().message.contains("secret"));
    }
}
