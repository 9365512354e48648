//! The time-series layout of samples on PostgreSQL, and its operations.
//!
//! With TimescaleDB (`CREATE EXTENSION` finds it and `timescale` is not `off`):
//! `sample_blocks` is a hypertable chunked by `block_start`, compressed after
//! `compress_after` segmented by sensor, dropped after `retention`, and the
//! rollups `rollup_1m`/`_1h`/`_1d` are continuous aggregates (hierarchical,
//! real-time). Without it: `sample_blocks` is range-partitioned by
//! `block_start`, the application creates partitions ahead and drops them after
//! retention, and the rollups are tables the writer updates in the same
//! transaction as the samples. Either way the same tables and columns are
//! queried. The layout is chosen once, when the database is first migrated, and
//! recorded in `storage_layout`.
//!
//! On SQLite only retention applies: `cleanup_old_partitions` deletes old blocks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::Row;

use hydrowatch_actors::clock::now_ms;

use super::blocks::{bucket_start, ROLLUPS};
use super::{Store, StoreError};

/// Whether to use TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    /// When `CREATE EXTENSION timescaledb` succeeds.
    #[default]
    Auto,
    /// Never (native partitions).
    Off,
}

/// How samples are laid out and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSettings {
    /// Use TimescaleDB when available.
    pub timescale: TimescaleMode,
    /// Length of a partition or chunk, hours.
    pub chunk_interval_hours: u32,
    /// Partitions created ahead of now (native layout).
    pub partitions_ahead: u32,
    /// Chunks older than this are compressed (TimescaleDB), days.
    pub compress_after_days: u32,
    /// Samples older than this are dropped, days.
    pub retention_days: u32,
}

impl Default for LayoutSettings {
    fn default() -> Self {
        LayoutSettings {
            timescale: TimescaleMode::Auto,
            chunk_interval_hours: 24,
            partitions_ahead: 2,
            compress_after_days: 7,
            retention_days: 5 * 365 + 1,
        }
    }
}

impl LayoutSettings {
    /// A chunk's length, ms.
    pub fn chunk_ms(&self) -> i64 {
        i64::from(self.chunk_interval_hours) * 3_600_000
    }
}

/// The PostgreSQL side of a [`Store`]: its pool and what it knows of its layout.
#[derive(Debug)]
pub struct PgLayout {
    /// How samples are laid out and kept.
    pub settings: LayoutSettings,
    timescale: AtomicBool,
    /// Chunk starts (ms) whose partitions are known to exist.
    covered: Mutex<HashSet<i64>>,
}

impl PgLayout {
    /// Layout state before [`prepare`] ran.
    pub fn new(settings: LayoutSettings) -> PgLayout {
        PgLayout {
            settings,
            timescale: AtomicBool::new(false),
            covered: Mutex::new(HashSet::new()),
        }
    }

    /// Whether samples live in a TimescaleDB hypertable.
    pub fn timescale(&self) -> bool {
        self.timescale.load(Ordering::Relaxed)
    }

    /// Forgets which partitions exist (after some were dropped).
    pub fn forget_partitions(&self) {
        if let Ok(mut covered) = self.covered.lock() {
            covered.clear();
        }
    }

    /// Creates the partitions that blocks starting at `block_starts` (ms) need,
    /// unless known to exist. Nothing to do with TimescaleDB.
    pub async fn ensure_for_blocks(
        &self,
        pool: &PgPool,
        block_starts: impl Iterator<Item = i64>,
    ) -> Result<(), sqlx::Error> {
        if self.timescale() {
            return Ok(());
        }
        let chunk = self.settings.chunk_ms();
        let needed: Vec<i64> = {
            let covered = self.covered.lock().map_err(|_| poisoned())?;
            let mut needed: Vec<i64> = block_starts
                .map(|b| bucket_start(b, chunk))
                .filter(|c| !covered.contains(c))
                .collect();
            needed.sort_unstable();
            needed.dedup();
            needed
        };
        for chunk_start in needed {
            ensure_partitions(pool, chunk_start, chunk_start + chunk, chunk).await?;
            self.covered
                .lock()
                .map_err(|_| poisoned())?
                .insert(chunk_start);
        }
        Ok(())
    }
}

fn poisoned() -> sqlx::Error {
    sqlx::Error::Protocol("partition cache lock poisoned".into())
}

/// SQL for a timestamp parameter given in ms since the epoch.
const TS: &str = "(timestamptz 'epoch' + $::int8 * interval '1 millisecond')";

/// `TS` for parameter `n`.
fn ts_param(n: usize) -> String {
    TS.replace('$', &format!("${n}"))
}

/// Creates partitions of `sample_blocks` for [from_ms, to_ms); returns their names.
async fn ensure_partitions(
    pool: &PgPool,
    from_ms: i64,
    to_ms: i64,
    chunk_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT hw_ensure_partitions('sample_blocks', {}, {}, $3::int8 * interval '1 millisecond')",
        ts_param(1),
        ts_param(2)
    );
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
        .bind(from_ms)
        .bind(to_ms)
        .bind(chunk_ms)
        .fetch_all(pool)
        .await
}

/// Most partitions one [`Store::ensure_partitions_for_range`] creates.
pub const MAX_PARTITIONS_PER_CALL: i64 = 1000;

/// The tables whose layout the operations manage.
pub const MANAGED_TABLES: [&str; 1] = ["sample_blocks"];

/// An operation on a table that is not one of [`MANAGED_TABLES`].
fn check_table(table: &str) -> Result<(), StoreError> {
    if MANAGED_TABLES.contains(&table) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "table {table:?} is not managed; expected one of {MANAGED_TABLES:?}"
        )))
    }
}

/// Creates `sample_blocks` and the rollups for this database (first start), or
/// reads which layout it has. Idempotent.
pub async fn prepare(pool: &PgPool, layout: &PgLayout) -> Result<(), StoreError> {
    let recorded: Option<String> = sqlx::query_scalar("SELECT kind FROM storage_layout")
        .fetch_optional(pool)
        .await?;
    let timescale = match recorded.as_deref() {
        Some(kind) => {
            let timescale = kind == "timescaledb";
            add_last_value_instant(pool, timescale).await?;
            timescale
        }
        None => {
            let wanted = layout.settings.timescale == TimescaleMode::Auto
                && timescale_available(pool).await?
                && install_timescale(pool).await;
            if wanted {
                create_timescale(pool, &layout.settings).await?;
            } else {
                create_native(pool).await?;
            }
            sqlx::query("INSERT INTO storage_layout (kind) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(if wanted { "timescaledb" } else { "native" })
                .execute(pool)
                .await?;
            wanted
        }
    };
    layout.timescale.store(timescale, Ordering::Relaxed);
    if timescale {
        tracing::info!("samples in a TimescaleDB hypertable");
    } else {
        let now = now_ms();
        let chunk = layout.settings.chunk_ms();
        let ahead = i64::from(layout.settings.partitions_ahead.max(1)) * chunk;
        ensure_partitions(pool, now - chunk, now + ahead, chunk).await?;
        tracing::info!("samples in native range partitions");
    }
    Ok(())
}

/// Databases laid out before blocks kept the instant of their last value get
/// the column, filled from the stored samples; on TimescaleDB the continuous
/// aggregates, which chose a bucket's last value by the wrong instant, are
/// made again over it and refreshed.
async fn add_last_value_instant(pool: &PgPool, timescale: bool) -> Result<(), StoreError> {
    let present: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'sample_blocks' \
         AND column_name = 'vlast_ts')",
    )
    .fetch_one(pool)
    .await?;
    if present {
        return Ok(());
    }
    tracing::warn!("sample_blocks predates vlast_ts: adding it and rebuilding the rollups");
    sqlx::query("ALTER TABLE sample_blocks ADD COLUMN IF NOT EXISTS vlast_ts TIMESTAMPTZ")
        .execute(pool)
        .await?;
    // The last counted sample: not a gap, quality good or uncertain (a block
    // without stored quality is all good).
    sqlx::query(
        "UPDATE sample_blocks b SET vlast_ts = b.block_start + interval '1 millisecond' * ( \
           SELECT u.o FROM unnest(b.offsets, b.vals, \
                                  coalesce(b.quality, array_fill(0::int2, ARRAY[b.samples]))) \
                           WITH ORDINALITY AS u(o, v, q, i) \
           WHERE u.v IS NOT NULL AND u.q < 2 ORDER BY u.i DESC LIMIT 1) \
         WHERE b.n > 0",
    )
    .execute(pool)
    .await?;
    if timescale {
        // Coarsest first: each level is built on the one below it.
        for (view, _) in ROLLUPS.iter().rev() {
            let sql = format!("DROP MATERIALIZED VIEW IF EXISTS {view}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await?;
        }
        for sql in rollup_view_statements() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await?;
        }
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (extract(epoch FROM min(block_start)) * 1000)::int8, \
                    (extract(epoch FROM max(block_start)) * 1000)::int8 FROM sample_blocks",
        )
        .fetch_one(pool)
        .await?;
        if let (Some(first), Some(last)) = (first, last) {
            refresh_rollups(pool, first, last).await?;
        }
    }
    Ok(())
}

/// The oldest TimescaleDB whose SQL we use (`by_range` came in 2.13).
pub const TIMESCALE_MIN_VERSION: (u32, u32) = (2, 13);

/// Installs TimescaleDB; whether it is there in a version we can use. A server
/// that offers the package but cannot load it (not in
/// `shared_preload_libraries`, no privilege) or an old version means the
/// native layout, with a warning, not a failed start.
async fn install_timescale(pool: &PgPool) -> bool {
    if let Err(err) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(pool)
        .await
    {
        tracing::warn!(error = %err, "TimescaleDB is offered but cannot be installed; using native partitions");
        return false;
    }
    let version: Option<String> = sqlx::query_scalar(
        "SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    match version.as_deref().and_then(major_minor) {
        Some(v) if v >= TIMESCALE_MIN_VERSION => true,
        _ => {
            tracing::warn!(
                version = ?version,
                "TimescaleDB is older than {}.{}; using native partitions",
                TIMESCALE_MIN_VERSION.0,
                TIMESCALE_MIN_VERSION.1
            );
            false
        }
    }
}

/// `2.13.1` → (2, 13).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

/// The oldest instant a TimescaleDB continuous aggregate policy refreshes:
/// rows written before it reach the rollups only by an explicit refresh.
pub const TIMESCALE_REFRESH_WINDOW_MS: i64 = 3 * 86_400_000 - 3_600_000;

/// Refreshes the continuous aggregates over [from_ms, to_ms) (rounded out to
/// days), finest first, so backfilled rows older than the policies' windows
/// reach the rollups. Not inside a transaction (TimescaleDB refuses that).
pub async fn refresh_rollups(pool: &PgPool, from_ms: i64, to_ms: i64) -> Result<(), sqlx::Error> {
    let from = bucket_start(from_ms, 86_400_000);
    let to = bucket_start(to_ms, 86_400_000) + 86_400_000;
    for (view, _) in ROLLUPS {
        // `view` is one of the constant rollup names.
        let sql = format!(
            "CALL refresh_continuous_aggregate('{view}', {}, {})",
            ts_param(1),
            ts_param(2)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Whether the server can install TimescaleDB.
pub async fn timescale_available(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(pool)
    .await
}

/// Columns of a block row (see blocks.rs); the same in both layouts.
const BLOCK_COLUMNS: &str = "
    sensor_id   BIGINT           NOT NULL REFERENCES sensors (id),
    block_start TIMESTAMPTZ      NOT NULL,
    first_ts    TIMESTAMPTZ      NOT NULL,
    last_ts     TIMESTAMPTZ      NOT NULL,
    samples     INTEGER          NOT NULL,
    n           INTEGER          NOT NULL,
    vmin        DOUBLE PRECISION,
    vmax        DOUBLE PRECISION,
    vsum        DOUBLE PRECISION,
    vlast       DOUBLE PRECISION,
    offsets     INTEGER[]        NOT NULL,
    vals        DOUBLE PRECISION[] NOT NULL,
    quality     SMALLINT[],
    vlast_ts    TIMESTAMPTZ,
    PRIMARY KEY (sensor_id, block_start, first_ts)";

async fn create_native(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let blocks = format!(
        "CREATE TABLE IF NOT EXISTS sample_blocks ({BLOCK_COLUMNS}) PARTITION BY RANGE (block_start)"
    );
    sqlx::query(sqlx::AssertSqlSafe(blocks))
        .execute(&mut *tx)
        .await?;
    for (table, _) in ROLLUPS {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                sensor_id BIGINT NOT NULL, bucket TIMESTAMPTZ NOT NULL, n BIGINT NOT NULL,
                vmin DOUBLE PRECISION, vmax DOUBLE PRECISION, vsum DOUBLE PRECISION,
                vlast DOUBLE PRECISION, last_ts TIMESTAMPTZ,
                PRIMARY KEY (sensor_id, bucket))"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// The TimescaleDB statements for `settings`, in order. Public so that their
/// text can be reviewed and checked without the extension.
pub fn timescale_statements(settings: &LayoutSettings) -> Vec<String> {
    let chunk = format!("{} hours", settings.chunk_interval_hours);
    let compress = format!("{} days", settings.compress_after_days);
    let retention = format!("{} days", settings.retention_days);
    let mut out = vec![
        "CREATE EXTENSION IF NOT EXISTS timescaledb".to_owned(),
        format!("CREATE TABLE IF NOT EXISTS sample_blocks ({BLOCK_COLUMNS})"),
        format!(
            "SELECT create_hypertable('sample_blocks', by_range('block_start', INTERVAL '{chunk}'), \
             if_not_exists => TRUE)"
        ),
        "ALTER TABLE sample_blocks SET (timescaledb.compress, \
         timescaledb.compress_segmentby = 'sensor_id', \
         timescaledb.compress_orderby = 'block_start, first_ts')"
            .to_owned(),
        format!(
            "SELECT add_compression_policy('sample_blocks', INTERVAL '{compress}', if_not_exists => TRUE)"
        ),
        format!(
            "SELECT add_retention_policy('sample_blocks', INTERVAL '{retention}', if_not_exists => TRUE)"
        ),
    ];
    out.extend(rollup_view_statements());
    out
}

/// The continuous aggregates and their refresh policies, finest first.
///
/// Hierarchical: 1 min over the blocks (a block is one minute, so its summary
/// is exact), 1 h over 1 min, 1 day over 1 h. A bucket's last value is the one
/// taken last (`vlast_ts`), not the one of the fragment that ends last: a
/// fragment whose last sample is bad ends later than the value it keeps.
fn rollup_view_statements() -> Vec<String> {
    // (view, width, source, bucket column, instant of the last value, refresh
    // window start)
    let levels = [
        (
            "rollup_1m",
            "1 minute",
            "sample_blocks",
            "block_start",
            "vlast_ts",
            "3 days",
        ),
        (
            "rollup_1h",
            "1 hour",
            "rollup_1m",
            "bucket",
            "last_ts",
            "7 days",
        ),
        (
            "rollup_1d",
            "1 day",
            "rollup_1h",
            "bucket",
            "last_ts",
            "30 days",
        ),
    ];
    let mut out = Vec::new();
    for (view, width, source, time, last_at, start_offset) in levels {
        let filter = if source == "sample_blocks" {
            " WHERE n > 0"
        } else {
            ""
        };
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {view} \
             WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
             SELECT sensor_id, time_bucket(INTERVAL '{width}', {time}) AS bucket, \
             sum(n)::bigint AS n, min(vmin) AS vmin, max(vmax) AS vmax, \
             sum(vsum) AS vsum, last(vlast, {last_at}) AS vlast, max({last_at}) AS last_ts \
             FROM {source}{filter} GROUP BY sensor_id, time_bucket(INTERVAL '{width}', {time}) \
             WITH NO DATA"
        ));
        out.push(format!(
            "SELECT add_continuous_aggregate_policy('{view}', \
             start_offset => INTERVAL '{start_offset}', end_offset => INTERVAL '{width}', \
             schedule_interval => INTERVAL '{width}', if_not_exists => TRUE)"
        ));
    }
    out
}

async fn create_timescale(pool: &PgPool, settings: &LayoutSettings) -> Result<(), sqlx::Error> {
    // Continuous aggregates cannot be created inside a transaction block, so
    // these run one by one; each is idempotent, so a failed start-up can rerun them.
    for sql in timescale_statements(settings) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// One partition or chunk of a managed table.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionInfo {
    /// Table name.
    pub name: String,
    /// First instant it holds, ms since the epoch.
    pub from_ms: i64,
    /// End of its range (exclusive), ms since the epoch.
    pub to_ms: i64,
    /// Bytes on disk, indexes and TOAST included.
    pub bytes: i64,
    /// Rows (blocks) it holds.
    pub rows: i64,
    /// Whether TimescaleDB compressed it.
    pub compressed: bool,
}

/// The layout of a managed table and its partitions.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutStats {
    /// `sqlite`, `native` (PostgreSQL range partitions) or `timescaledb`.
    pub layout: String,
    /// One of [`MANAGED_TABLES`].
    pub table: String,
    /// Its partitions or chunks, oldest first (empty on SQLite).
    pub partitions: Vec<PartitionInfo>,
    /// Blocks stored.
    pub rows: i64,
    /// Bytes on disk.
    pub bytes: i64,
}

/// What TimescaleDB reports about itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimescaleHealth {
    /// The server offers the extension.
    pub available: bool,
    /// Installed version, if installed.
    pub installed_version: Option<String>,
    /// Whether this database's samples use it.
    pub in_use: bool,
    /// Background jobs (policies) and how they fare.
    pub jobs: Vec<JobHealth>,
    /// Job errors of the last 24 hours, newest first (at most 20).
    pub recent_errors: Vec<String>,
    /// No job error in the last 24 hours but the known benign one (see
    /// [`BENIGN_JOB_ERROR`]); job status alone is not trusted.
    pub healthy: bool,
}

/// The error PostgreSQL 15.20 records for every TimescaleDB job run although
/// the job did its work.
pub const BENIGN_JOB_ERROR: &str = "cannot drop portal";

/// One TimescaleDB background job.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobHealth {
    /// Job id.
    pub id: i32,
    /// What it runs (e.g. `policy_compression`).
    pub kind: String,
    /// The table or view it works on.
    pub target: Option<String>,
    /// `Success`, `Failed` or none yet.
    pub last_run_status: Option<String>,
    /// Failed runs in all.
    pub total_failures: i64,
}

/// What one round of [`Store::maintain`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Maintenance {
    /// Partitions created (native PostgreSQL layout).
    pub created: Vec<String>,
    /// Partitions, chunks or blocks dropped by retention.
    pub dropped: Vec<String>,
}

impl Store {
    /// The periodic upkeep: partitions from the current chunk to
    /// `partitions_ahead` chunks ahead exist, and samples older than the
    /// retention are gone. TimescaleDB does both itself (its retention policy);
    /// then this only reports.
    pub async fn maintain(&self, settings: &LayoutSettings) -> Result<Maintenance, StoreError> {
        if matches!(self, Store::Postgres(pg) if pg.layout.timescale()) {
            return Ok(Maintenance::default());
        }
        let now = now_ms();
        let chunk = settings.chunk_ms();
        let from = bucket_start(now, chunk);
        let to = from + chunk * (1 + i64::from(settings.partitions_ahead));
        let created = self
            .ensure_partitions_for_range("sample_blocks", from, to, settings.chunk_interval_hours)
            .await?;
        let dropped = self
            .cleanup_old_partitions("sample_blocks", settings.retention_days)
            .await?;
        Ok(Maintenance { created, dropped })
    }

    /// Creates the partitions `table` needs for [from_ms, to_ms), chunks of
    /// `chunk_hours`; returns their names. TimescaleDB creates chunks itself
    /// (nothing to do); SQLite has no partitions.
    pub async fn ensure_partitions_for_range(
        &self,
        table: &str,
        from_ms: i64,
        to_ms: i64,
        chunk_hours: u32,
    ) -> Result<Vec<String>, StoreError> {
        check_table(table)?;
        if from_ms >= to_ms || chunk_hours == 0 {
            return Err(StoreError::Invalid(
                "need start < end and a chunk interval of at least one hour".into(),
            ));
        }
        let chunk = i64::from(chunk_hours) * 3_600_000;
        if (to_ms - from_ms) / chunk > MAX_PARTITIONS_PER_CALL {
            return Err(StoreError::Invalid(format!(
                "that range needs more than {MAX_PARTITIONS_PER_CALL} partitions; ask for less at a time"
            )));
        }
        match self {
            Store::Postgres(pg) if !pg.layout.timescale() => {
                Ok(ensure_partitions(&pg.pool, from_ms, to_ms, chunk).await?)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Drops what is older than `retention_days` from `table`: whole partitions
    /// (native), chunks (TimescaleDB), blocks (SQLite). Returns what was dropped.
    pub async fn cleanup_old_partitions(
        &self,
        table: &str,
        retention_days: u32,
    ) -> Result<Vec<String>, StoreError> {
        check_table(table)?;
        if retention_days == 0 {
            return Err(StoreError::Invalid(
                "a retention of 0 days would drop everything; keep at least 1".into(),
            ));
        }
        let cutoff = now_ms() - i64::from(retention_days) * 86_400_000;
        match self {
            Store::Postgres(pg) if pg.layout.timescale() => {
                let sql = format!(
                    "SELECT drop_chunks('sample_blocks', older_than => {})::text",
                    ts_param(1)
                );
                Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(cutoff)
                    .fetch_all(&pg.pool)
                    .await?)
            }
            Store::Postgres(pg) => {
                let sql = format!(
                    "SELECT hw_drop_partitions_before('sample_blocks', {})",
                    ts_param(1)
                );
                // Dropping a partition locks the parent exclusively; behind a
                // long read it would queue the writer too, so give up after a
                // while and let the next round try again.
                let mut tx = pg.pool.begin().await?;
                sqlx::query("SELECT set_config('lock_timeout', '5s', true)")
                    .execute(&mut *tx)
                    .await?;
                let dropped = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(cutoff)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                pg.layout.forget_partitions();
                Ok(dropped)
            }
            Store::Sqlite(pool) => {
                let n = sqlx::query("DELETE FROM sample_blocks WHERE block_start < ?")
                    .bind(bucket_start(cutoff, 60_000))
                    .execute(pool)
                    .await?
                    .rows_affected();
                Ok(if n == 0 {
                    Vec::new()
                } else {
                    vec![format!("{n} blocks")]
                })
            }
        }
    }

    /// Compresses the chunks of `table` older than `age_days` (TimescaleDB);
    /// returns the chunks compressed. Without TimescaleDB there is nothing to
    /// compress: block arrays are TOAST-compressed as they are written.
    pub async fn compress_old_chunks(
        &self,
        table: &str,
        age_days: u32,
    ) -> Result<Vec<String>, StoreError> {
        check_table(table)?;
        match self {
            Store::Postgres(pg) if pg.layout.timescale() => {
                let sql = format!(
                    "SELECT compress_chunk(c, if_not_compressed => TRUE)::text \
                     FROM show_chunks('sample_blocks', older_than => {}) c",
                    ts_param(1)
                );
                Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms() - i64::from(age_days) * 86_400_000)
                    .fetch_all(&pg.pool)
                    .await?)
            }
            _ => Err(StoreError::Unsupported(
                "compress_old_chunks needs TimescaleDB; without it block arrays are \
                 compressed by PostgreSQL's TOAST as they are written"
                    .into(),
            )),
        }
    }

    /// The partitions (or chunks) of `table`, their sizes and rows.
    pub async fn layout_stats(&self, table: &str) -> Result<LayoutStats, StoreError> {
        check_table(table)?;
        let epoch_ms = |col: &str| format!("(extract(epoch FROM {col}) * 1000)::int8");
        let (layout, partitions) = match self {
            Store::Postgres(pg) if pg.layout.timescale() => {
                // Exact counts, as below: the planner's estimate is -1 until
                // the chunk is analysed, and a compressed chunk's rows are
                // elsewhere.
                let sql = format!(
                    "SELECT c.chunk_schema || '.' || c.chunk_name, {}, {}, \
                     coalesce(s.total_bytes, 0)::int8, \
                     (SELECT count(*) FROM sample_blocks b \
                      WHERE b.block_start >= c.range_start AND b.block_start < c.range_end)::int8, \
                     c.is_compressed \
                     FROM timescaledb_information.chunks c \
                     LEFT JOIN chunks_detailed_size('sample_blocks') s \
                       ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name \
                     WHERE c.hypertable_name = 'sample_blocks' ORDER BY c.range_start",
                    epoch_ms("c.range_start"),
                    epoch_ms("c.range_end")
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pg.pool)
                    .await?;
                ("timescaledb", partitions_from(rows)?)
            }
            Store::Postgres(pg) => {
                // Exact counts: an admin asks rarely, and estimates read 0 before ANALYZE.
                let names: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT name, {}, {} FROM hw_partitions WHERE parent = $1 ORDER BY from_ts",
                    epoch_ms("from_ts"),
                    epoch_ms("to_ts")
                )))
                .bind(table)
                .fetch_all(&pg.pool)
                .await?;
                let mut out = Vec::with_capacity(names.len());
                for (name, from_ms, to_ms) in names {
                    // The name comes from hw_partitions, quoted as an identifier.
                    let sql = format!(
                        "SELECT pg_total_relation_size(to_regclass(quote_ident($1)))::int8, count(*)::int8 FROM \"{}\"",
                        name.replace('"', "\"\"")
                    );
                    let (bytes, rows): (Option<i64>, i64) =
                        sqlx::query_as(sqlx::AssertSqlSafe(sql))
                            .bind(&name)
                            .fetch_one(&pg.pool)
                            .await?;
                    out.push(PartitionInfo {
                        name,
                        from_ms,
                        to_ms,
                        bytes: bytes.unwrap_or(0),
                        rows,
                        compressed: false,
                    });
                }
                ("native", out)
            }
            Store::Sqlite(pool) => {
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sample_blocks")
                    .fetch_one(pool)
                    .await?;
                let bytes: i64 = sqlx::query_scalar(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(pool)
                .await?;
                return Ok(LayoutStats {
                    layout: "sqlite".into(),
                    table: table.into(),
                    partitions: Vec::new(),
                    rows,
                    bytes,
                });
            }
        };
        Ok(LayoutStats {
            layout: layout.into(),
            table: table.into(),
            rows: partitions.iter().map(|p| p.rows).sum(),
            bytes: partitions.iter().map(|p| p.bytes).sum(),
            partitions,
        })
    }

    /// TimescaleDB's state: extension, jobs and their failures.
    pub async fn timescale_health(&self) -> Result<TimescaleHealth, StoreError> {
        let Store::Postgres(pg) = self else {
            return Ok(TimescaleHealth {
                available: false,
                installed_version: None,
                in_use: false,
                jobs: Vec::new(),
                recent_errors: Vec::new(),
                healthy: true,
            });
        };
        let available = timescale_available(&pg.pool).await?;
        let installed_version: Option<String> = sqlx::query_scalar(
            "SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'",
        )
        .fetch_optional(&pg.pool)
        .await?;
        let mut jobs = Vec::new();
        let mut recent_errors: Vec<String> = Vec::new();
        if installed_version.is_some() {
            let rows = sqlx::query(
                "SELECT j.job_id, j.proc_name::text, j.hypertable_name::text, \
                 s.last_run_status::text, coalesce(s.total_failures, 0)::int8 \
                 FROM timescaledb_information.jobs j \
                 LEFT JOIN timescaledb_information.job_stats s USING (job_id) \
                 WHERE j.job_id >= 1000 ORDER BY j.job_id",
            )
            .fetch_all(&pg.pool)
            .await?;
            for r in rows {
                jobs.push(JobHealth {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    target: r.try_get(2)?,
                    last_run_status: r.try_get(3)?,
                    total_failures: r.try_get(4)?,
                });
            }
            recent_errors = sqlx::query_scalar(
                "SELECT format('job %s (%s) at %s: %s', job_id, proc_name, finish_time, err_message) \
                 FROM timescaledb_information.job_errors \
                 WHERE finish_time > now() - interval '24 hours' \
                 ORDER BY finish_time DESC LIMIT 20",
            )
            .fetch_all(&pg.pool)
            .await?;
        }
        // Job status is not trusted: on PostgreSQL 15.20 every scheduled job
        // does its work and is still recorded as failed ("cannot drop portal …
        // while it is being set up"). Errors of the last day are what count,
        // that known one aside (it stays listed).
        let healthy = recent_errors.iter().all(|e| e.contains(BENIGN_JOB_ERROR));
        Ok(TimescaleHealth {
            available,
            installed_version,
            in_use: pg.layout.timescale(),
            jobs,
            recent_errors,
            healthy,
        })
    }
}

fn partitions_from(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<PartitionInfo>, sqlx::Error> {
    rows.into_iter()
        .map(|r| {
            Ok(PartitionInfo {
                name: r.try_get(0)?,
                from_ms: r.try_get(1)?,
                to_ms: r.try_get(2)?,
                bytes: r.try_get(3)?,
                rows: r.try_get(4)?,
                compressed: r.try_get(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timescale_versions_are_compared_by_major_and_minor() {
        assert_eq!(major_minor("2.13.1"), Some((2, 13)));
        assert_eq!(major_minor("2.9.0-dev"), Some((2, 9)));
        assert_eq!(major_minor("2.17"), Some((2, 17)));
        assert!(major_minor("2.9.0").unwrap() < TIMESCALE_MIN_VERSION);
        assert_eq!(major_minor("x"), None);
    }

    #[test]
    fn timescale_statements_follow_the_settings() {
        let sql = timescale_statements(&LayoutSettings::default()).join(";\n");
        assert!(sql.contains("by_range('block_start', INTERVAL '24 hours')"));
        assert!(sql.contains("add_compression_policy('sample_blocks', INTERVAL '7 days'"));
        assert!(sql.contains("add_retention_policy('sample_blocks', INTERVAL '1826 days'"));
        assert!(sql.contains("timescaledb.compress_segmentby = 'sensor_id'"));
        for view in ["rollup_1m", "rollup_1h", "rollup_1d"] {
            assert!(sql.contains(&format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {view}")));
            assert!(sql.contains(&format!("add_continuous_aggregate_policy('{view}'")));
        }
    }

    #[test]
    fn only_managed_tables_are_accepted() {
        assert!(check_table("sample_blocks").is_ok());
        assert!(check_table("sensors; DROP TABLE sites").is_err());
    }
}
