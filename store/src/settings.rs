//! `[storage]` of `hydrowatch.toml`: where samples go, how the writer
//! batches and spools them, and how they are laid out and kept.

use std::path::PathBuf;
use std::time::Duration;

use hydrowatch_actors::storage::WriterConfig;
use serde::Deserialize;

use crate::{LayoutSettings, TimescaleMode};

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

    /// Refuses settings storage cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(format!(
                "storage.url = {url:?}: expected sqlite://PATH or postgres://…"
            ));
        }
        let at_least = |key: &str, value: u64, min: u64| {
            if value < min {
                Err(format!("storage.{key} = {value}: must be at least {min}"))
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
            return Err("storage.retention_days: must be at most 36600".into());
        }
        at_least(
            "maintenance_interval_secs",
            self.maintenance_interval_secs,
            1,
        )?;
        if self.spool_dir.as_os_str().is_empty() {
            return Err("storage.spool_dir: must not be empty".into());
        }
        Ok(())
    }
}
