//! Silences and maintenance windows created through the API (those in
//! `plant.toml` are not stored).

use serde::Serialize;
use sqlx::Row;

use hydrowatch_models::alert::silence::{Matchers, WindowSpec};

use super::{Store, StoreError};

/// A stored silence.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SilenceRow {
    pub id: i64,
    /// Which alerts: `site`, `equipment`, `sensor`, `severities`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub matchers: Matchers,
    /// When: `{"type": "fixed", "starts", "ends"}` or `{"type": "recurring",
    /// "cron", "duration_ms", "timezone"}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub window: WindowSpec,
    /// Why.
    pub comment: String,
    /// Who created it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at_ms: i64,
    /// When it was ended early, if it was.
    pub ended_at_ms: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
}

const COLUMNS: &str =
    "id, matchers, time_window, comment, created_by, created_at, ended_at, ended_by";

macro_rules! decode_silence {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<SilenceRow, StoreError> {
            let matchers: String = r.try_get(1)?;
            let window: String = r.try_get(2)?;
            let id: i64 = r.try_get(0)?;
            Ok(SilenceRow {
                id,
                matchers: serde_json::from_str(&matchers)
                    .map_err(|e| StoreError::Corrupt(format!("silence {id}: matchers: {e}")))?,
                window: serde_json::from_str(&window)
                    .map_err(|e| StoreError::Corrupt(format!("silence {id}: window: {e}")))?,
                comment: r.try_get(3)?,
                created_by: r.try_get(4)?,
                created_at_ms: r.try_get(5)?,
                ended_at_ms: r.try_get(6)?,
                ended_by: r.try_get(7)?,
            })
        })()
    }};
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

impl Store {
    /// Stores a new silence; returns its id.
    pub async fn create_silence(
        &self,
        matchers: &Matchers,
        window: &WindowSpec,
        comment: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let (matchers, window) = (json(matchers)?, json(window)?);
        let id = match self {
            Store::Postgres(pg) => sqlx::query_scalar(
                "INSERT INTO silences (matchers, time_window, comment, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(matchers)
            .bind(window)
            .bind(comment)
            .bind(by)
            .bind(now_ms)
            .fetch_one(&pg.pool)
            .await?,
            Store::Sqlite(pool) => sqlx::query_scalar(
                "INSERT INTO silences (matchers, time_window, comment, created_by, created_at) \
                     VALUES (?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(matchers)
            .bind(window)
            .bind(comment)
            .bind(by)
            .bind(now_ms)
            .fetch_one(pool)
            .await?,
        };
        Ok(id)
    }

    /// Every silence not ended early, oldest first (`all`: ended ones too).
    pub async fn silences(&self, all: bool) -> Result<Vec<SilenceRow>, StoreError> {
        let filter = if all { "" } else { "WHERE ended_at IS NULL" };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM silences {filter} ORDER BY id"
        ));
        match self {
            Store::Postgres(pg) => sqlx::query(sql)
                .fetch_all(&pg.pool)
                .await?
                .iter()
                .map(|r| decode_silence!(r))
                .collect(),
            Store::Sqlite(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| decode_silence!(r))
                .collect(),
        }
    }

    /// Ends a silence now; `false` when there is none with that id still in
    /// force.
    pub async fn end_silence(&self, id: i64, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = match self {
            Store::Postgres(pg) => sqlx::query(
                "UPDATE silences SET ended_at = $2, ended_by = $3 WHERE id = $1 AND ended_at IS NULL",
            )
            .bind(id)
            .bind(now_ms)
            .bind(by)
            .execute(&pg.pool)
            .await?
            .rows_affected(),
            Store::Sqlite(pool) => sqlx::query(
                "UPDATE silences SET ended_at = ?2, ended_by = ?3 WHERE id = ?1 AND ended_at IS NULL",
            )
            .bind(id)
            .bind(now_ms)
            .bind(by)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }
}
