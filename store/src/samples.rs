//! Writing and reading samples: the [`SampleStore`] port of the tree, for both
//! backends, over the block layout of [`super::blocks`].
//!
//! A write, in one transaction: split the rows into fragments (first of each
//! (sensor, instant) in the batch wins), look up stored fragments of the same
//! blocks whose time range overlaps (normally none: a new fragment starts after
//! the last one), drop samples already stored (the stored value wins), insert
//! the fragments and add them to the rollups.
//!
//! - PostgreSQL: fragments by binary `COPY`, rollups by one `INSERT … SELECT
//!   unnest(…) ON CONFLICT DO UPDATE` per level (TimescaleDB maintains its own
//!   continuous aggregates instead). A transaction-scoped advisory lock keeps two
//!   writers from missing each other's fragments.
//! - SQLite: prepared statements in one transaction (SQLite has one writer).
//!
//! So the first value to reach the database wins and every write is
//! idempotent, which the writer's replay relies on.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use hydrowatch_actors::storage::{SampleStore, StoreFailure, StoredSample, Written};

use super::blocks::{
    self, bucket_start, copy_payload, decode_payload, encode_payload, Fragment, BLOCK_MS, ROLLUPS,
};
use super::{layout, Postgres, Store, StoreError};

impl SampleStore for Store {
    fn write<'a>(
        &'a self,
        rows: &'a [StoredSample],
    ) -> BoxFuture<'a, Result<Written, StoreFailure>> {
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(Written::default());
            }
            let result = match self {
                Store::Postgres(pg) => write_postgres(pg, rows).await,
                Store::Sqlite(pool) => write_sqlite(pool, rows).await,
            };
            result.map_err(|e| classify(self, e))
        })
    }
}

/// Whether an error will go away by itself (retry) or never (set the rows aside).
fn classify(store: &Store, error: sqlx::Error) -> StoreFailure {
    let code = match &error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    if code.as_deref() == Some(NO_PARTITION) {
        // A partition was dropped under the cache (retention ran elsewhere):
        // forget what is known and let the retry create it again.
        if let Store::Postgres(pg) = store {
            pg.layout.forget_partitions();
        }
        return StoreFailure::Unavailable(error.to_string());
    }
    let rejected = match (&error, code) {
        (sqlx::Error::Database(_), Some(code)) => permanent_code(&code),
        (sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. }, _) => true,
        _ => false,
    };
    if rejected {
        StoreFailure::Rejected(error.to_string())
    } else {
        StoreFailure::Unavailable(error.to_string())
    }
}

/// "no partition of relation … found for row" (check_violation).
const NO_PARTITION: &str = "23514";

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint) on
/// PostgreSQL; SQLITE_TOOBIG, _CONSTRAINT and _MISMATCH (with their extended
/// codes) on SQLite. Everything else — connections, locks, disk, shutdown — is
/// worth retrying.
fn permanent_code(code: &str) -> bool {
    // SQLSTATEs have five characters; SQLite's (extended) result codes at most four digits.
    if code.len() == 5 {
        return code.starts_with("22") || code.starts_with("23");
    }
    match code.parse::<u32>() {
        Ok(n) => matches!(n & 0xff, 18..=20),
        Err(_) => false,
    }
}

/// Key of the advisory lock writers hold while they write samples.
const WRITER_LOCK: i64 = 0x6877_7772_6974; // "hwwrit"

/// Instants stored in the blocks `fragments` touch, where a stored fragment's
/// range overlaps a new one: (sensor, block start) → instants.
type Stored = HashMap<(i64, i64), HashSet<i64>>;

/// The COPY statement for [`copy_payload`].
const COPY_BLOCKS: &str = concat!(
    "COPY sample_blocks (",
    blocks::copy_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

async fn write_postgres(pg: &Postgres, rows: &[StoredSample]) -> Result<Written, sqlx::Error> {
    let (mut fragments, in_batch) = blocks::fragments(rows);
    pg.layout
        .ensure_for_blocks(&pg.pool, fragments.iter().map(|f| f.block_start))
        .await?;
    let mut tx = pg.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITER_LOCK)
        .execute(&mut *tx)
        .await?;
    let stored = stored_postgres(&mut tx, &fragments).await?;
    let already = blocks::drop_stored(&mut fragments, &stored);
    let mut inserted = 0;
    if !fragments.is_empty() {
        let mut copy = tx.copy_in_raw(COPY_BLOCKS).await?;
        copy.send(copy_payload(&fragments)).await?;
        copy.finish().await?;
        inserted = fragments.iter().map(|f| f.ts.len() as u64).sum();
        if !pg.layout.timescale() {
            for (table, width) in ROLLUPS {
                upsert_rollup_postgres(&mut tx, table, &blocks::rollup_deltas(&fragments, width))
                    .await?;
            }
        }
    }
    tx.commit().await?;
    if pg.layout.timescale() && inserted > 0 {
        refresh_backfilled_rollups(pg, &fragments).await;
    }
    Ok(Written {
        inserted,
        duplicates: in_batch + already,
    })
}

/// Rows older than the continuous aggregate policies' window reach the
/// rollups only through an explicit refresh. A failed refresh leaves the rows
/// stored and the rollups behind: logged and counted, not failed (the rows must
/// not be spooled again).
async fn refresh_backfilled_rollups(pg: &Postgres, fragments: &[Fragment]) {
    let horizon = hydrowatch_actors::clock::now_ms() - layout::TIMESCALE_REFRESH_WINDOW_MS;
    let old: Vec<i64> = fragments
        .iter()
        .map(|f| f.block_start)
        .filter(|b| *b < horizon)
        .collect();
    let (Some(&from), Some(&to)) = (old.iter().min(), old.iter().max()) else {
        return;
    };
    if let Err(err) = layout::refresh_rollups(&pg.pool, from, to + BLOCK_MS).await {
        metrics::counter!("hydrowatch_storage_rollup_refresh_failures_total").increment(1);
        tracing::warn!(error = %err, from, to, "rollups of backfilled samples not refreshed");
    }
}

async fn stored_postgres(
    tx: &mut sqlx::PgConnection,
    fragments: &[Fragment],
) -> Result<Stored, sqlx::Error> {
    let sensors: Vec<i64> = fragments.iter().map(|f| f.sensor).collect();
    let starts: Vec<i64> = fragments.iter().map(|f| f.block_start).collect();
    let firsts: Vec<i64> = fragments.iter().map(Fragment::first_ts).collect();
    let lasts: Vec<i64> = fragments.iter().map(Fragment::last_ts).collect();
    let rows = sqlx::query(
        "SELECT b.sensor_id, f.block_ms, b.offsets \
         FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) \
              AS f (sensor_id, block_ms, first_ms, last_ms) \
         JOIN sample_blocks b ON b.sensor_id = f.sensor_id \
          AND b.block_start = timestamptz 'epoch' + f.block_ms * interval '1 millisecond' \
          AND b.first_ts <= timestamptz 'epoch' + f.last_ms * interval '1 millisecond' \
          AND b.last_ts >= timestamptz 'epoch' + f.first_ms * interval '1 millisecond'",
    )
    .bind(&sensors)
    .bind(&starts)
    .bind(&firsts)
    .bind(&lasts)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored = Stored::new();
    for row in rows {
        let sensor: i64 = row.try_get(0)?;
        let block: i64 = row.try_get(1)?;
        let offsets: Vec<i32> = row.try_get(2)?;
        stored
            .entry((sensor, block))
            .or_default()
            .extend(offsets.into_iter().map(|o| block + i64::from(o)));
    }
    Ok(stored)
}

/// Adds `deltas` to a rollup table (native layout).
async fn upsert_rollup_postgres(
    tx: &mut sqlx::PgConnection,
    table: &str,
    deltas: &[blocks::RollupDelta],
) -> Result<(), sqlx::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&blocks::RollupDelta) -> f64| deltas.iter().map(f).collect::<Vec<f64>>();
    let sensors: Vec<i64> = deltas.iter().map(|d| d.sensor).collect();
    let buckets: Vec<i64> = deltas.iter().map(|d| d.bucket).collect();
    let counts: Vec<i64> = deltas.iter().map(|d| d.summary.count).collect();
    let last_ts: Vec<i64> = deltas.iter().map(|d| d.summary.last_ts).collect();
    // `table` is one of the constant ROLLUPS names.
    let sql = format!(
        "INSERT INTO {table} AS r (sensor_id, bucket, n, vmin, vmax, vsum, vlast, last_ts) \
         SELECT s, timestamptz 'epoch' + b * interval '1 millisecond', n, lo, hi, total, v, \
                timestamptz 'epoch' + t * interval '1 millisecond' \
         FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::float8[], $5::float8[], \
                     $6::float8[], $7::float8[], $8::int8[]) AS d (s, b, n, lo, hi, total, v, t) \
         ON CONFLICT (sensor_id, bucket) DO UPDATE SET \
           n = r.n + excluded.n, vmin = least(r.vmin, excluded.vmin), \
           vmax = greatest(r.vmax, excluded.vmax), vsum = r.vsum + excluded.vsum, \
           vlast = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.vlast ELSE r.vlast END, \
           last_ts = greatest(r.last_ts, excluded.last_ts)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&sensors)
        .bind(&buckets)
        .bind(&counts)
        .bind(col(|d| d.summary.min))
        .bind(col(|d| d.summary.max))
        .bind(col(|d| d.summary.sum))
        .bind(col(|d| d.summary.last))
        .bind(&last_ts)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The stored instants of the blocks `fragments` overlap.
async fn stored_sqlite(
    tx: &mut sqlx::SqliteConnection,
    fragments: &[Fragment],
) -> Result<Stored, sqlx::Error> {
    let mut stored = Stored::new();
    for f in fragments {
        let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload FROM sample_blocks WHERE sensor_id = ? AND block_start = ? \
             AND first_ts <= ? AND last_ts >= ?",
        )
        .bind(f.sensor)
        .bind(f.block_start)
        .bind(f.last_ts())
        .bind(f.first_ts())
        .fetch_all(&mut *tx)
        .await?;
        for p in payloads {
            let old = decode_payload(f.sensor, f.block_start, &p)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            stored
                .entry((f.sensor, f.block_start))
                .or_default()
                .extend(old.ts);
        }
    }
    Ok(stored)
}

/// Write transactions on SQLite take the write lock at once: a transaction
/// that reads first and writes later fails (instead of waiting) when another
/// writer committed in between.
const SQLITE_WRITE: &str = "BEGIN IMMEDIATE";

/// Inserts one fragment as a row of `sample_blocks`.
async fn insert_sqlite_block(
    tx: &mut sqlx::SqliteConnection,
    f: &Fragment,
) -> Result<(), sqlx::Error> {
    let summary = f.summary();
    sqlx::query(
        "INSERT INTO sample_blocks (sensor_id, block_start, first_ts, last_ts, samples, n, \
         vmin, vmax, vsum, vlast, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(f.sensor)
    .bind(f.block_start)
    .bind(f.first_ts())
    .bind(f.last_ts())
    .bind(f.ts.len() as i64)
    .bind(summary.map_or(0, |s| s.count))
    .bind(summary.map(|s| s.min))
    .bind(summary.map(|s| s.max))
    .bind(summary.map(|s| s.sum))
    .bind(summary.map(|s| s.last))
    .bind(encode_payload(f))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_sqlite(pool: &SqlitePool, rows: &[StoredSample]) -> Result<Written, sqlx::Error> {
    let (mut fragments, in_batch) = blocks::fragments(rows);
    let mut tx = pool.begin_with(SQLITE_WRITE).await?;
    let stored = stored_sqlite(&mut tx, &fragments).await?;
    let already = blocks::drop_stored(&mut fragments, &stored);
    let mut inserted = 0;
    for f in &fragments {
        insert_sqlite_block(&mut tx, f).await?;
        inserted += f.ts.len() as u64;
    }
    for (table, width) in ROLLUPS {
        // `table` is one of the constant ROLLUPS names.
        let sql = format!(
            "INSERT INTO {table} AS r (sensor_id, bucket, n, vmin, vmax, vsum, vlast, last_ts) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (sensor_id, bucket) DO UPDATE SET \
               n = r.n + excluded.n, vmin = min(r.vmin, excluded.vmin), \
               vmax = max(r.vmax, excluded.vmax), vsum = r.vsum + excluded.vsum, \
               vlast = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.vlast ELSE r.vlast END, \
               last_ts = max(r.last_ts, excluded.last_ts)"
        );
        for d in blocks::rollup_deltas(&fragments, width) {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(d.sensor)
                .bind(d.bucket)
                .bind(d.summary.count)
                .bind(d.summary.min)
                .bind(d.summary.max)
                .bind(d.summary.sum)
                .bind(d.summary.last)
                .bind(d.summary.last_ts)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(Written {
        inserted,
        duplicates: in_batch + already,
    })
}

/// A stored fragment from a row of (sensor_id, block_start ms, offsets, vals,
/// quality).
fn fragment_from_pg(row: &sqlx::postgres::PgRow) -> Result<Fragment, StoreError> {
    let block_start: i64 = row.try_get(1)?;
    let offsets: Vec<i32> = row.try_get(2)?;
    let values: Vec<Option<f64>> = row.try_get(3)?;
    let quality: Option<Vec<i16>> = row.try_get(4)?;
    let quality = quality.unwrap_or_else(|| vec![0; offsets.len()]);
    if values.len() != offsets.len() || quality.len() != offsets.len() {
        return Err(StoreError::Corrupt(format!(
            "block of sensor {} at {block_start}: arrays of unequal length",
            row.try_get::<i64, _>(0)?
        )));
    }
    Ok(Fragment {
        sensor: row.try_get(0)?,
        block_start,
        ts: offsets
            .iter()
            .map(|o| block_start + i64::from(*o))
            .collect(),
        values,
        quality,
    })
}

/// What one [`Store::compact_blocks`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    /// Blocks now held in one row each.
    pub blocks: u64,
    /// Rows (fragments) they were held in before.
    pub fragments: u64,
}

/// Merges fragments into one per (sensor, block); they hold no instant twice.
fn merge(fragments: &[Fragment]) -> Vec<Fragment> {
    let samples: Vec<StoredSample> = fragments.iter().flat_map(Fragment::samples).collect();
    blocks::fragments(&samples).0
}

/// Rows of `samples_legacy` converted per round.
const LEGACY_PAGE: i64 = 50_000;

impl Store {
    /// Rewrites the blocks in [from_ms, to_ms) that are held in more than one
    /// fragment (every write adds one: at 1 Hz and a 500 ms flush, one sample
    /// each) as one row each, at most `max_blocks` of them per call. Samples and
    /// rollups are unchanged. Runs under the writers' lock, so no write of
    /// those blocks interleaves.
    pub async fn compact_blocks(
        &self,
        from_ms: i64,
        to_ms: i64,
        max_blocks: i64,
    ) -> Result<Compaction, StoreError> {
        match self {
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let groups: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT sensor_id, (extract(epoch FROM block_start) * 1000)::int8 \
                     FROM sample_blocks \
                     WHERE block_start >= timestamptz 'epoch' + $1 * interval '1 millisecond' \
                       AND block_start < timestamptz 'epoch' + $2 * interval '1 millisecond' \
                     GROUP BY sensor_id, block_start HAVING count(*) > 1 LIMIT $3",
                )
                .bind(from_ms)
                .bind(to_ms)
                .bind(max_blocks)
                .fetch_all(&mut *tx)
                .await?;
                if groups.is_empty() {
                    return Ok(Compaction::default());
                }
                let sensors: Vec<i64> = groups.iter().map(|g| g.0).collect();
                let starts: Vec<i64> = groups.iter().map(|g| g.1).collect();
                let rows = sqlx::query(
                    "SELECT b.sensor_id, g.block_ms, b.offsets, b.vals, b.quality \
                     FROM sample_blocks b \
                     JOIN unnest($1::int8[], $2::int8[]) AS g (sensor_id, block_ms) \
                       ON b.sensor_id = g.sensor_id \
                      AND b.block_start = timestamptz 'epoch' + g.block_ms * interval '1 millisecond' \
                     WHERE b.block_start >= timestamptz 'epoch' + $3 * interval '1 millisecond' \
                       AND b.block_start < timestamptz 'epoch' + $4 * interval '1 millisecond' \
                     ORDER BY b.sensor_id, b.block_start, b.first_ts",
                )
                .bind(&sensors)
                .bind(&starts)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&mut *tx)
                .await?;
                let stored = rows
                    .iter()
                    .map(fragment_from_pg)
                    .collect::<Result<Vec<_>, _>>()?;
                let merged = merge(&stored);
                let deleted = sqlx::query(
                    "DELETE FROM sample_blocks b \
                     USING unnest($1::int8[], $2::int8[]) AS g (sensor_id, block_ms) \
                     WHERE b.sensor_id = g.sensor_id \
                       AND b.block_start = timestamptz 'epoch' + g.block_ms * interval '1 millisecond' \
                       AND b.block_start >= timestamptz 'epoch' + $3 * interval '1 millisecond' \
                       AND b.block_start < timestamptz 'epoch' + $4 * interval '1 millisecond'",
                )
                .bind(&sensors)
                .bind(&starts)
                .bind(from_ms)
                .bind(to_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let mut copy = tx.copy_in_raw(COPY_BLOCKS).await?;
                copy.send(copy_payload(&merged)).await?;
                copy.finish().await?;
                tx.commit().await?;
                Ok(Compaction {
                    blocks: merged.len() as u64,
                    fragments: deleted,
                })
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin_with(SQLITE_WRITE).await?;
                let groups: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT sensor_id, block_start FROM sample_blocks \
                     WHERE block_start >= ? AND block_start < ? \
                     GROUP BY sensor_id, block_start HAVING count(*) > 1 LIMIT ?",
                )
                .bind(from_ms)
                .bind(to_ms)
                .bind(max_blocks)
                .fetch_all(&mut *tx)
                .await?;
                let mut result = Compaction::default();
                for (sensor, block_start) in groups {
                    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
                        "SELECT payload FROM sample_blocks WHERE sensor_id = ? AND block_start = ? \
                         ORDER BY first_ts",
                    )
                    .bind(sensor)
                    .bind(block_start)
                    .fetch_all(&mut *tx)
                    .await?;
                    let stored = payloads
                        .iter()
                        .map(|p| decode_payload(sensor, block_start, p))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    sqlx::query(
                        "DELETE FROM sample_blocks WHERE sensor_id = ? AND block_start = ?",
                    )
                    .bind(sensor)
                    .bind(block_start)
                    .execute(&mut *tx)
                    .await?;
                    for f in merge(&stored) {
                        insert_sqlite_block(&mut tx, &f).await?;
                        result.blocks += 1;
                    }
                    result.fragments += stored.len() as u64;
                }
                tx.commit().await?;
                Ok(result)
            }
        }
    }

    /// Rewrites the rows of the old one-row-per-sample table (renamed
    /// `samples_legacy` by migration 0002) as blocks, oldest key first, deleting
    /// each page once written, then drops the table. Interrupted, it resumes
    /// where it stopped (writes drop what is already stored). Returns the
    /// samples converted.
    pub(crate) async fn convert_legacy_samples(&self) -> Result<u64, StoreError> {
        let exists: bool = match self {
            Store::Postgres(pg) => {
                sqlx::query_scalar("SELECT to_regclass('samples_legacy') IS NOT NULL")
                    .fetch_one(&pg.pool)
                    .await?
            }
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' \
                     AND name = 'samples_legacy'",
                )
                .fetch_one(pool)
                .await?
            }
        };
        if !exists {
            return Ok(0);
        }
        let mut converted = 0u64;
        loop {
            let page: Vec<(i64, i64, Option<f64>, i16)> =
                match self {
                    Store::Postgres(pg) => sqlx::query_as(
                        "SELECT sensor_id, (extract(epoch FROM ts) * 1000)::int8, value, quality \
                         FROM samples_legacy ORDER BY sensor_id, ts LIMIT $1",
                    )
                    .bind(LEGACY_PAGE)
                    .fetch_all(&pg.pool)
                    .await?,
                    Store::Sqlite(pool) => {
                        sqlx::query_as(
                            "SELECT sensor_id, ts_ms, value, quality FROM samples_legacy \
                         ORDER BY sensor_id, ts_ms LIMIT ?",
                        )
                        .bind(LEGACY_PAGE)
                        .fetch_all(pool)
                        .await?
                    }
                };
            let Some(&(last_sensor, last_ts, _, _)) = page.last() else {
                break;
            };
            let rows: Vec<StoredSample> = page
                .iter()
                .map(|&(sensor, ts_ms, value, quality)| StoredSample {
                    sensor,
                    ts_ms,
                    value,
                    quality: blocks::quality_from_code(quality),
                })
                .collect();
            match self {
                Store::Postgres(pg) => {
                    write_postgres(pg, &rows).await?;
                    sqlx::query(
                        "DELETE FROM samples_legacy WHERE (sensor_id, ts) <= \
                         ($1, timestamptz 'epoch' + $2 * interval '1 millisecond')",
                    )
                    .bind(last_sensor)
                    .bind(last_ts)
                    .execute(&pg.pool)
                    .await?;
                }
                Store::Sqlite(pool) => {
                    write_sqlite(pool, &rows).await?;
                    sqlx::query("DELETE FROM samples_legacy WHERE (sensor_id, ts_ms) <= (?, ?)")
                        .bind(last_sensor)
                        .bind(last_ts)
                        .execute(pool)
                        .await?;
                }
            }
            converted += rows.len() as u64;
        }
        let drop = "DROP TABLE samples_legacy";
        match self {
            Store::Postgres(pg) => {
                sqlx::query(drop).execute(&pg.pool).await?;
            }
            Store::Sqlite(pool) => {
                sqlx::query(drop).execute(pool).await?;
            }
        }
        Ok(converted)
    }

    /// Which of `rows`' (sensor, instant) pairs are already stored.
    pub async fn stored_instants(
        &self,
        rows: &[StoredSample],
    ) -> Result<HashSet<(i64, i64)>, StoreError> {
        let (fragments, _) = blocks::fragments(rows);
        let stored = match self {
            Store::Postgres(pg) => {
                let mut conn = pg.pool.acquire().await?;
                stored_postgres(&mut conn, &fragments).await?
            }
            Store::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                stored_sqlite(&mut conn, &fragments).await?
            }
        };
        let wanted: HashSet<(i64, i64)> = rows.iter().map(|r| (r.sensor, r.ts_ms)).collect();
        Ok(stored
            .into_iter()
            .flat_map(|((sensor, _), instants)| instants.into_iter().map(move |ts| (sensor, ts)))
            .filter(|pair| wanted.contains(pair))
            .collect())
    }

    /// Every stored sample of `sensors` in [from_ms, to_ms), by sensor then time.
    pub async fn read_samples(
        &self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let fragments = self.read_fragments(sensors, from_ms, to_ms).await?;
        let mut samples: Vec<StoredSample> = fragments
            .iter()
            .flat_map(Fragment::samples)
            .filter(|s| s.ts_ms >= from_ms && s.ts_ms < to_ms)
            .collect();
        // Fragments of one minute may interleave in time (a late backfill).
        samples.sort_by_key(|s| (s.sensor, s.ts_ms));
        Ok(samples)
    }

    /// The stored fragments of `sensors` whose blocks meet [from_ms, to_ms),
    /// ordered by sensor, block and first instant (so their samples are in order).
    pub async fn read_fragments(
        &self,
        sensors: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Fragment>, StoreError> {
        let first_block = bucket_start(from_ms, BLOCK_MS);
        let mut out = Vec::new();
        match self {
            Store::Postgres(pg) => {
                let rows = sqlx::query(
                    "SELECT sensor_id, (extract(epoch FROM block_start) * 1000)::int8, \
                     offsets, vals, quality FROM sample_blocks \
                     WHERE sensor_id = ANY($1) \
                       AND block_start >= timestamptz 'epoch' + $2 * interval '1 millisecond' \
                       AND block_start < timestamptz 'epoch' + $3 * interval '1 millisecond' \
                     ORDER BY sensor_id, block_start, first_ts",
                )
                .bind(sensors)
                .bind(first_block)
                .bind(to_ms)
                .fetch_all(&pg.pool)
                .await?;
                for row in rows {
                    out.push(fragment_from_pg(&row)?);
                }
            }
            Store::Sqlite(pool) => {
                for sensor in sensors {
                    let rows = sqlx::query(
                        "SELECT block_start, payload FROM sample_blocks \
                         WHERE sensor_id = ? AND block_start >= ? AND block_start < ? \
                         ORDER BY block_start, first_ts",
                    )
                    .bind(sensor)
                    .bind(first_block)
                    .bind(to_ms)
                    .fetch_all(pool)
                    .await?;
                    for row in rows {
                        let block_start: i64 = row.try_get(0)?;
                        let payload: Vec<u8> = row.try_get(1)?;
                        out.push(
                            decode_payload(*sensor, block_start, &payload)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        );
                    }
                }
                out.sort_by_key(|f| (f.sensor, f.block_start, f.first_ts()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_and_constraint_errors_are_permanent() {
        assert!(permanent_code("23505"));
        assert!(permanent_code("23503"));
        assert!(permanent_code("22P02"));
        assert!(!permanent_code("08006"));
        assert!(!permanent_code("57P01"));
        assert!(!permanent_code("40001"));
        // SQLite: constraint (19, FOREIGN KEY 787), busy (5), full (13).
        assert!(permanent_code("19"));
        assert!(permanent_code("787"));
        assert!(!permanent_code("5"));
        assert!(!permanent_code("13"));
    }
}
