//! Admin operations on the samples' layout: partitions, retention, compression,
//! stats and TimescaleDB's health (the same as `hydrowatch storage …`).

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::instant::parse_instant;
use crate::store::ingest::QuarantinedRow;
use crate::store::layout::{LayoutStats, TimescaleHealth};

fn default_table() -> String {
    "sample_blocks".into()
}

/// Which managed table.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TableQuery {
    /// The table (only `sample_blocks` is managed).
    #[serde(default = "default_table")]
    pub table: String,
}

/// Partitions of a managed table, their ranges, sizes and rows.
#[utoipa::path(get, path = "/api/v1/admin/storage/stats", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    params(TableQuery),
    responses((status = 200, body = LayoutStats), (status = 422, body = ErrorResponse),
              (status = 503, body = ErrorResponse)))]
pub async fn stats(
    State(state): State<AppState>,
    query: Result<Query<TableQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LayoutStats>, ApiError> {
    let Query(q) = query?;
    Ok(Json(state.store.layout_stats(&q.table).await?))
}

/// TimescaleDB: whether it is offered, installed and used, its jobs and
/// their failures.
#[utoipa::path(get, path = "/api/v1/admin/storage/timescale", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    responses((status = 200, body = TimescaleHealth), (status = 503, body = ErrorResponse)))]
pub async fn timescale(State(state): State<AppState>) -> Result<Json<TimescaleHealth>, ApiError> {
    Ok(Json(state.store.timescale_health().await?))
}

/// `POST /admin/storage/partitions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsurePartitions {
    /// The table (default `sample_blocks`).
    #[serde(default = "default_table")]
    pub table: String,
    /// Start, RFC 3339 or ms since the epoch.
    pub start: String,
    /// End (exclusive).
    pub end: String,
    /// Partition length, hours (default: `storage.chunk_interval_hours`).
    pub chunk_interval_hours: Option<u32>,
}

/// What an operation created, dropped or compressed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    /// Partitions, chunks or blocks, by name.
    pub affected: Vec<String>,
}

/// Creates the partitions a range needs (native PostgreSQL layout; nothing to
/// do with TimescaleDB or SQLite). Idempotent.
#[utoipa::path(post, path = "/api/v1/admin/storage/partitions", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    request_body = EnsurePartitions,
    responses((status = 200, body = Affected), (status = 422, body = ErrorResponse),
              (status = 503, body = ErrorResponse)))]
pub async fn ensure_partitions(
    State(state): State<AppState>,
    body: Result<Json<EnsurePartitions>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Affected>, ApiError> {
    let Json(b) = body?;
    let start = parse_instant(&b.start).map_err(|e| ApiError::invalid("start", e))?;
    let end = parse_instant(&b.end).map_err(|e| ApiError::invalid("end", e))?;
    let chunk = b
        .chunk_interval_hours
        .unwrap_or(state.settings.storage.chunk_interval_hours);
    let affected = state
        .store
        .ensure_partitions_for_range(&b.table, start, end, chunk)
        .await?;
    Ok(Json(Affected { affected }))
}

/// `POST /admin/storage/cleanup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// The table (default `sample_blocks`).
    #[serde(default = "default_table")]
    pub table: String,
    /// Keep this many days (default: `storage.retention_days`).
    pub retention_days: Option<u32>,
}

/// Drops samples older than the retention: whole partitions (native), chunks
/// (TimescaleDB) or blocks (SQLite).
#[utoipa::path(post, path = "/api/v1/admin/storage/cleanup", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    request_body = Cleanup,
    responses((status = 200, body = Affected), (status = 422, body = ErrorResponse),
              (status = 503, body = ErrorResponse)))]
pub async fn cleanup(
    State(state): State<AppState>,
    body: Result<Json<Cleanup>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Affected>, ApiError> {
    let Json(b) = body?;
    let days = b
        .retention_days
        .unwrap_or(state.settings.storage.retention_days);
    let affected = state.store.cleanup_old_partitions(&b.table, days).await?;
    Ok(Json(Affected { affected }))
}

/// `POST /admin/storage/compress`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Compress {
    /// The table (default `sample_blocks`).
    #[serde(default = "default_table")]
    pub table: String,
    /// Compress chunks older than this, days (default:
    /// `storage.compress_after_days`).
    pub older_than_days: Option<u32>,
}

/// Compresses old chunks now (TimescaleDB; 501 `unsupported` without it).
#[utoipa::path(post, path = "/api/v1/admin/storage/compress", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    request_body = Compress,
    responses((status = 200, body = Affected), (status = 422, body = ErrorResponse),
              (status = 501, body = ErrorResponse, description = "not on TimescaleDB"),
              (status = 503, body = ErrorResponse)))]
pub async fn compress(
    State(state): State<AppState>,
    body: Result<Json<Compress>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Affected>, ApiError> {
    let Json(b) = body?;
    let days = b
        .older_than_days
        .unwrap_or(state.settings.storage.compress_after_days);
    let affected = state.store.compress_old_chunks(&b.table, days).await?;
    Ok(Json(Affected { affected }))
}

/// `GET /admin/quarantine` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    /// Only rows of this batch.
    pub batch_id: Option<String>,
    /// Most rows, 1–10000 (default 100).
    pub limit: Option<i64>,
}

/// Quarantined rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineList {
    /// Newest first.
    pub rows: Vec<QuarantinedRow>,
}

/// The latest quarantined ingest rows, as received, with their reasons.
#[utoipa::path(get, path = "/api/v1/admin/quarantine", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    params(QuarantineQuery),
    responses((status = 200, body = QuarantineList), (status = 422, body = ErrorResponse),
              (status = 503, body = ErrorResponse)))]
pub async fn quarantine(
    State(state): State<AppState>,
    query: Result<Query<QuarantineQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<QuarantineList>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1 to 10000"));
    }
    let rows = state
        .store
        .quarantined(q.batch_id.as_deref(), limit)
        .await?;
    Ok(Json(QuarantineList { rows }))
}
