//! Writing samples: the [`SampleStore`] port of the tree, for both backends.
//!
//! - PostgreSQL: one binary `COPY` straight into `samples` — the fast path, taken
//!   by every batch without duplicates. A batch that hits a (sensor, instant)
//!   already stored fails as a whole with a unique violation; it is then written
//!   again through a staging table with `ON CONFLICT DO NOTHING`.
//! - SQLite: multi-row prepared `INSERT … ON CONFLICT DO NOTHING` statements in
//!   one transaction.
//!
//! Either way the first value stored for a (sensor, instant) wins: a later
//! duplicate, in the same batch or another, is counted and dropped. That makes
//! every write idempotent, which the writer's replay relies on.

use std::collections::HashSet;
use std::sync::OnceLock;

use futures::future::BoxFuture;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::Connection as _;

use hydrowatch_actors::storage::{SampleStore, StoreFailure, StoredSample, Written};
use hydrowatch_models::Quality;

use super::Store;

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
                Store::Postgres(pool) => write_postgres(pool, rows).await,
                Store::Sqlite(pool) => write_sqlite(pool, rows).await,
            };
            result.map_err(classify)
        })
    }
}

/// Whether an error will go away by itself (retry) or never (set the rows aside).
fn classify(error: sqlx::Error) -> StoreFailure {
    let rejected = match &error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => permanent_code(&code),
            None => false,
        },
        sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    };
    if rejected {
        StoreFailure::Rejected(error.to_string())
    } else {
        StoreFailure::Unavailable(error.to_string())
    }
}

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

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// `rows` in PostgreSQL's binary COPY format for
/// `(sensor_id int8, ts timestamptz, value float8, quality int2)`.
pub fn copy_payload(rows: &[StoredSample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + rows.len() * 46 + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension
    for r in rows {
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&r.sensor.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(r.ts_ms * 1000 - PG_EPOCH_US).to_be_bytes());
        match r.value {
            Some(v) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        out.extend_from_slice(&2i32.to_be_bytes());
        out.extend_from_slice(&quality_code(r.quality).to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Quality as stored: 0 good, 1 uncertain, 2 bad.
pub fn quality_code(q: Quality) -> i16 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

async fn write_postgres(pool: &PgPool, rows: &[StoredSample]) -> Result<Written, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let payload = copy_payload(rows);
    {
        let mut tx = conn.begin().await?;
        let mut copy = tx
            .copy_in_raw("COPY samples (sensor_id, ts, value, quality) FROM STDIN (FORMAT binary)")
            .await?;
        copy.send(payload).await?;
        match copy.finish().await {
            Ok(n) => {
                tx.commit().await?;
                return Ok(Written {
                    inserted: n,
                    duplicates: 0,
                });
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                tx.rollback().await?;
            }
            Err(e) => return Err(e),
        }
    }
    // Some rows are stored already (a replay, a retried request): keep the first
    // of each (sensor, instant) in this batch, then let the database skip the
    // ones it has.
    let (unique, in_batch) = first_of_each(rows);
    let mut tx = conn.begin().await?;
    sqlx::query(
        "CREATE TEMP TABLE samples_incoming \
         (sensor_id BIGINT, ts TIMESTAMPTZ, value DOUBLE PRECISION, quality SMALLINT) \
         ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY samples_incoming (sensor_id, ts, value, quality) FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(copy_payload(&unique)).await?;
    copy.finish().await?;
    let inserted = sqlx::query(
        "INSERT INTO samples (sensor_id, ts, value, quality) \
         SELECT sensor_id, ts, value, quality FROM samples_incoming \
         ON CONFLICT (sensor_id, ts) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Written {
        inserted,
        duplicates: in_batch + (unique.len() as u64 - inserted),
    })
}

/// The first row of each (sensor, instant), in order, and how many were dropped.
fn first_of_each(rows: &[StoredSample]) -> (Vec<StoredSample>, u64) {
    let mut seen = HashSet::with_capacity(rows.len());
    let unique: Vec<StoredSample> = rows
        .iter()
        .filter(|r| seen.insert((r.sensor, r.ts_ms)))
        .copied()
        .collect();
    let dropped = (rows.len() - unique.len()) as u64;
    (unique, dropped)
}

/// Rows per SQLite statement (4 parameters each, well under its limit).
const SQLITE_CHUNK: usize = 256;

fn sqlite_insert(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO samples (sensor_id, ts_ms, value, quality) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?)");
    }
    sql.push_str(" ON CONFLICT (sensor_id, ts_ms) DO NOTHING");
    sql
}

async fn write_sqlite(pool: &SqlitePool, rows: &[StoredSample]) -> Result<Written, sqlx::Error> {
    static FULL: OnceLock<String> = OnceLock::new();
    let full = FULL.get_or_init(|| sqlite_insert(SQLITE_CHUNK));
    // Only the last chunk can be shorter.
    let tail = sqlite_insert(rows.len() % SQLITE_CHUNK);
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    for chunk in rows.chunks(SQLITE_CHUNK) {
        // The full statement is prepared once per connection and cached.
        let mut query = if chunk.len() == SQLITE_CHUNK {
            sqlx::query(full.as_str())
        } else {
            // Built from constant fragments and a row count only.
            sqlx::query(sqlx::AssertSqlSafe(tail.clone()))
        };
        for r in chunk {
            query = query
                .bind(r.sensor)
                .bind(r.ts_ms)
                .bind(r.value)
                .bind(quality_code(r.quality));
        }
        inserted += query.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(Written {
        inserted,
        duplicates: rows.len() as u64 - inserted,
    })
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

    #[test]
    fn copy_payload_frames_every_row() {
        let rows = [
            StoredSample {
                sensor: 3,
                ts_ms: 946_684_800_000,
                value: Some(1.5),
                quality: Quality::Good,
            },
            StoredSample {
                sensor: 4,
                ts_ms: 946_684_800_001,
                value: None,
                quality: Quality::Bad,
            },
        ];
        let p = copy_payload(&rows);
        // Header 19, a full row 2+12+12+12+6 = 44, a null-valued row 36, trailer 2.
        assert_eq!(p.len(), 19 + 44 + 36 + 2);
        // The PostgreSQL epoch is zero microseconds.
        assert_eq!(&p[19 + 14 + 4..19 + 14 + 12], &0i64.to_be_bytes());
        assert_eq!(&p[p.len() - 2..], &(-1i16).to_be_bytes());
    }

    #[test]
    fn the_first_of_each_duplicate_is_kept() {
        let s = |sensor, ts_ms, v| StoredSample {
            sensor,
            ts_ms,
            value: Some(v),
            quality: Quality::Good,
        };
        let (unique, dropped) = first_of_each(&[s(1, 1, 1.0), s(1, 1, 2.0), s(2, 1, 3.0)]);
        assert_eq!(unique, vec![s(1, 1, 1.0), s(2, 1, 3.0)]);
        assert_eq!(dropped, 1);
    }
}
