//! What the ingest API keeps besides samples: quarantined rows with their
//! reasons, and the answers to batches with a client id (so a retried request
//! is answered, not applied twice).

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// A row that failed validation, kept as it was received.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarantinedRow {
    /// When it was received, ms since the epoch.
    pub received_ms: i64,
    /// The client's batch id, if it gave one.
    pub batch_id: Option<String>,
    /// Its position in the request (0-based; CSV: data rows after the header).
    pub row: Option<i32>,
    /// Fields as sent (absent when the client left them out).
    pub equipment: Option<String>,
    /// Sensor as sent.
    pub sensor: Option<String>,
    /// Timestamp as sent.
    pub ts: Option<String>,
    /// Value as sent.
    pub value: Option<String>,
    /// Unit as sent.
    pub unit: Option<String>,
    /// Stable reason code (e.g. `unknown_sensor`).
    pub code: String,
    /// For humans.
    pub reason: String,
}

/// The answer recorded for a batch id.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedBatch {
    /// The JSON response the first request got.
    pub response: String,
    /// SHA-256 (hex) of the request it answered.
    pub request_sha256: Option<String>,
}

impl Store {
    /// Stores `rows` in the quarantine table, all or none; a row of a batch
    /// already there (same batch id and row) is not stored twice.
    pub async fn quarantine(&self, rows: &[QuarantinedRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Postgres(pg) => {
                let col = |f: fn(&QuarantinedRow) -> Option<String>| -> Vec<Option<String>> {
                    rows.iter().map(f).collect()
                };
                sqlx::query(
                    "INSERT INTO quarantine (received_at, batch_id, row_no, equipment, sensor, ts, \
                     value, unit, code, reason) \
                     SELECT timestamptz 'epoch' + r * interval '1 millisecond', b, n, e, s, t, v, u, c, why \
                     FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], $5::text[], \
                                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
                          AS x(r, b, n, e, s, t, v, u, c, why) \
                     ON CONFLICT (batch_id, row_no) WHERE batch_id IS NOT NULL DO NOTHING",
                )
                .bind(rows.iter().map(|r| r.received_ms).collect::<Vec<_>>())
                .bind(col(|r| r.batch_id.clone()))
                .bind(rows.iter().map(|r| r.row).collect::<Vec<_>>())
                .bind(col(|r| r.equipment.clone()))
                .bind(col(|r| r.sensor.clone()))
                .bind(col(|r| r.ts.clone()))
                .bind(col(|r| r.value.clone()))
                .bind(col(|r| r.unit.clone()))
                .bind(rows.iter().map(|r| r.code.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
                .execute(&pg.pool)
                .await?;
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for r in rows {
                    sqlx::query(
                        "INSERT OR IGNORE INTO quarantine (received_ms, batch_id, row_no, equipment, sensor, \
                         ts, value, unit, code, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(r.received_ms)
                    .bind(&r.batch_id)
                    .bind(r.row)
                    .bind(&r.equipment)
                    .bind(&r.sensor)
                    .bind(&r.ts)
                    .bind(&r.value)
                    .bind(&r.unit)
                    .bind(&r.code)
                    .bind(&r.reason)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The latest quarantined rows (of one batch when `batch_id` is given),
    /// newest first, at most `limit`.
    pub async fn quarantined(
        &self,
        batch_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QuarantinedRow>, StoreError> {
        let rows = match self {
            Store::Postgres(pg) => {
                sqlx::query(
                    "SELECT (extract(epoch FROM received_at) * 1000)::int8, batch_id, row_no, \
                     equipment, sensor, ts, value, unit, code, reason FROM quarantine \
                     WHERE $1::text IS NULL OR batch_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(batch_id)
                .bind(limit)
                .fetch_all(&pg.pool)
                .await?
                .iter()
                .map(quarantined_row)
                .collect::<Result<Vec<_>, _>>()?
            }
            Store::Sqlite(pool) => sqlx::query(
                "SELECT received_ms, batch_id, row_no, equipment, sensor, ts, value, unit, code, \
                 reason FROM quarantine WHERE ?1 IS NULL OR batch_id = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .bind(batch_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(quarantined_row)
            .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// The response recorded for `batch_id`, if that batch was applied.
    pub async fn recorded_batch(
        &self,
        batch_id: &str,
    ) -> Result<Option<RecordedBatch>, StoreError> {
        let found: Option<(String, Option<String>)> =
            match self {
                Store::Postgres(pg) => sqlx::query_as(
                    "SELECT response::text, request_sha256 FROM ingest_batches WHERE batch_id = $1",
                )
                .bind(batch_id)
                .fetch_optional(&pg.pool)
                .await?,
                Store::Sqlite(pool) => {
                    sqlx::query_as(
                        "SELECT response, request_sha256 FROM ingest_batches WHERE batch_id = ?",
                    )
                    .bind(batch_id)
                    .fetch_optional(pool)
                    .await?
                }
            };
        Ok(found.map(|(response, request_sha256)| RecordedBatch {
            response,
            request_sha256,
        }))
    }

    /// Records the answer to `batch_id`, given to the request whose SHA-256
    /// is `request_sha256` (the first record stays).
    pub async fn record_batch(
        &self,
        batch_id: &str,
        received_ms: i64,
        counts: (i64, i64, i64),
        response: &str,
        request_sha256: &str,
    ) -> Result<(), StoreError> {
        let (accepted, quarantined, duplicates) = counts;
        match self {
            Store::Postgres(pg) => {
                sqlx::query(
                    "INSERT INTO ingest_batches (batch_id, received_at, accepted, quarantined, \
                     duplicates, response, request_sha256) VALUES ($1, timestamptz 'epoch' + \
                     $2 * interval '1 millisecond', $3, $4, $5, $6::jsonb, $7) \
                     ON CONFLICT (batch_id) DO NOTHING",
                )
                .bind(batch_id)
                .bind(received_ms)
                .bind(accepted as i32)
                .bind(quarantined as i32)
                .bind(duplicates as i32)
                .bind(response)
                .bind(request_sha256)
                .execute(&pg.pool)
                .await?;
            }
            Store::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO ingest_batches (batch_id, received_ms, accepted, quarantined, \
                     duplicates, response, request_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (batch_id) DO NOTHING",
                )
                .bind(batch_id)
                .bind(received_ms)
                .bind(accepted)
                .bind(quarantined)
                .bind(duplicates)
                .bind(response)
                .bind(request_sha256)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }
}

fn quarantined_row<R: Row>(r: &R) -> Result<QuarantinedRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(QuarantinedRow {
        received_ms: r.try_get(0)?,
        batch_id: r.try_get(1)?,
        row: r.try_get(2)?,
        equipment: r.try_get(3)?,
        sensor: r.try_get(4)?,
        ts: r.try_get(5)?,
        value: r.try_get(6)?,
        unit: r.try_get(7)?,
        code: r.try_get(8)?,
        reason: r.try_get(9)?,
    })
}
