//! Storage adapters: one [`Store`], two backends chosen by URL — `sqlite://`
//! (embedded, the default, zero setup) and `postgres://` (production).
//!
//! Only parameterised SQL; never SQL built from input.
//!
//! It implements the ports the actors define (`SampleStore`, `AlertStore`)
//! and knows nothing of HTTP; the application re-exports it as
//! `hydrowatch::store`.

/// Runs `$body` on either backend with `$exec` the pool and `$q` turning a
/// statement written with `$n` placeholders into the backend's (SQLite takes
/// `?n`). Statements are fixed text or built from fixed names, never from
/// input.
macro_rules! run {
    ($store:expr, |$q:ident, $exec:ident| $body:expr) => {
        match $store {
            Store::Postgres(pg) => {
                let $exec = &pg.pool;
                let $q = |s: String| sqlx::AssertSqlSafe(s);
                $body
            }
            Store::Sqlite(pool) => {
                let $exec = pool;
                let $q = |s: String| sqlx::AssertSqlSafe(s.replace('$', "?"));
                $body
            }
        }
    };
}

pub(crate) use run;

pub mod alerts;
pub mod anomalies;
pub mod api_keys;
pub mod audit;
pub mod blocks;
pub mod definitions;
pub mod history;
pub mod ingest;
pub mod layout;
pub mod samples;
pub mod settings;
pub mod silences;
pub mod users;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use hydrowatch_models::{EquipmentId, EquipmentSpec, SensorId};

pub use layout::{LayoutSettings, Maintenance, PgLayout, TimescaleMode};
pub use settings::StorageSettings;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
    /// The directory of the SQLite file could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The request makes no sense (an unknown table, an empty range).
    #[error("{0}")]
    Invalid(String),
    /// This backend or layout cannot do that.
    #[error("{0}")]
    Unsupported(String),
    /// Stored data could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The PostgreSQL backend: a pool and what it knows of its layout.
#[derive(Clone, Debug)]
pub struct Postgres {
    /// The connection pool.
    pub pool: PgPool,
    /// The time-series layout (TimescaleDB or native partitions).
    pub layout: Arc<PgLayout>,
}

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite file (WAL mode).
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(Postgres),
}

/// What [`Store::sync_plant`] found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantIds {
    /// Database id of each sensor.
    pub sensors: HashMap<(EquipmentId, SensorId), i64>,
}

impl PlantIds {
    /// The sensor ids grouped by equipment, as the storage writer looks them up.
    pub fn by_equipment(&self) -> HashMap<EquipmentId, HashMap<SensorId, i64>> {
        let mut out: HashMap<EquipmentId, HashMap<SensorId, i64>> = HashMap::new();
        for ((equipment, sensor), id) in &self.sensors {
            out.entry(equipment.clone())
                .or_default()
                .insert(sensor.clone(), *id);
        }
        out
    }
}

impl Store {
    /// Connects to `url` with the default layout; a SQLite file (and its
    /// directory) is created on first use.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, LayoutSettings::default()).await
    }

    /// Connects to `url`; on PostgreSQL, samples are laid out per `layout`.
    pub async fn connect_with(url: &str, layout: LayoutSettings) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(Postgres {
                pool,
                layout: Arc::new(PgLayout::new(layout)),
            }))
        } else {
            Err(StoreError::Url(url.to_owned()))
        }
    }

    /// Closes the pool, waiting for its connections to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pg) => pg.pool.close().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies the backend's migrations (embedded in the binary) and, on
    /// PostgreSQL, prepares the samples' layout; idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pg) => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&pg.pool)
                    .await?;
                layout::prepare(&pg.pool, &pg.layout).await?;
            }
        }
        let converted = self.convert_legacy_samples().await?;
        if converted > 0 {
            tracing::info!(
                samples = converted,
                "samples of the row layout rewritten as blocks"
            );
        }
        Ok(())
    }

    /// Writes the site, equipment and sensors of the plant (insert or update)
    /// and returns the sensors' database ids.
    pub async fn sync_plant(
        &self,
        site_id: &str,
        site_name: &str,
        equipment: &[EquipmentSpec],
        period_ms: &HashMap<EquipmentId, u64>,
    ) -> Result<PlantIds, StoreError> {
        const SITE: &str = "INSERT INTO sites (id, name) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name";
        const EQUIPMENT: &str = "INSERT INTO equipment (id, site_id, name) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, name = excluded.name";
        const SENSOR: &str = "INSERT INTO sensors \
             (equipment_id, sensor, name, unit, range_min, range_max, period_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (equipment_id, sensor) DO UPDATE SET name = excluded.name, \
             unit = excluded.unit, range_min = excluded.range_min, \
             range_max = excluded.range_max, period_ms = excluded.period_ms \
             RETURNING id";
        let mut ids = HashMap::new();
        // The same statements on either pool (their transaction types differ).
        macro_rules! sync_in {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query(SITE)
                    .bind(site_id)
                    .bind(site_name)
                    .execute(&mut *tx)
                    .await?;
                for e in equipment {
                    sqlx::query(EQUIPMENT)
                        .bind(e.id.as_str())
                        .bind(site_id)
                        .bind(&e.name)
                        .execute(&mut *tx)
                        .await?;
                    let period = period_ms.get(&e.id).map(|p| *p as i64);
                    for s in &e.sensors {
                        let row = sqlx::query(SENSOR)
                            .bind(e.id.as_str())
                            .bind(s.id.as_str())
                            .bind(&s.name)
                            .bind(&s.unit)
                            .bind(s.range.min)
                            .bind(s.range.max)
                            .bind(period)
                            .fetch_one(&mut *tx)
                            .await?;
                        ids.insert((e.id.clone(), s.id.clone()), row.try_get::<i64, _>(0)?);
                    }
                }
                tx.commit().await?;
            }};
        }
        match self {
            Store::Sqlite(pool) => sync_in!(pool),
            Store::Postgres(pg) => sync_in!(pg.pool),
        }
        Ok(PlantIds { sensors: ids })
    }

    /// Names of the tables the migrations created (for checks and tests).
    pub async fn tables(&self) -> Result<Vec<String>, StoreError> {
        let names = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar::<_, String>(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
                )
                .fetch_all(pool)
                .await?
            }
            Store::Postgres(pg) => {
                sqlx::query_scalar::<_, String>(
                    "SELECT c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
                 AND NOT c.relispartition AND c.relname NOT LIKE '_sqlx%' ORDER BY 1",
                )
                .fetch_all(&pg.pool)
                .await?
            }
        };
        Ok(names)
    }
}
