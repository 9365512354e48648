//! `POST /api/v1/ingest`: samples from clients, validated row by row.
//!
//! Valid rows take the polled samples' path: the owning equipment actor (so
//! wallboards see them live; rows older than what a sensor shows are history
//! only) and the storage writer, whose acknowledgement the response waits for.
//! Invalid rows go to the quarantine table with a stable code and a reason,
//! before anything else happens, so a request either keeps every row it got
//! or fails as a whole (503) and can be retried. A batch id (`batch_id` in the
//! JSON body, the `Idempotency-Key` header or `?batch_id=`) makes a retry
//! answer with the first response instead of applying the batch again.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use hydrowatch_actors::clock::now_ms;

mod parse;
mod replay;
mod service;
mod settings;

pub use settings::IngestSettings;

use super::error::{ApiError, ErrorResponse};
use super::AppState;

/// Most row errors listed in a response (all are in the quarantine table).
pub const MAX_LISTED_ERRORS: usize = 1000;

/// Per-client token buckets and the batch ids being applied right now.
#[derive(Debug, Default)]
pub struct IngestState {
    buckets: crate::cross_node::LocalBuckets,
    in_flight: Mutex<HashSet<String>>,
}

impl IngestState {
    /// Takes a token for `client`; when there is none, how long until there is.
    fn admit(&self, client: IpAddr, per_sec: f64, burst: u32) -> Result<(), Duration> {
        self.buckets
            .take_at(&client.to_string(), f64::from(burst), per_sec)
    }
}

/// One row of a JSON batch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestRow {
    pub equipment: String,
    /// Sensor id within the equipment.
    pub sensor: String,
    /// RFC 3339 timestamp or ms since the epoch.
    #[schema(value_type = String)]
    pub ts: Value,
    /// In `unit` when given, else in the sensor's own unit.
    pub value: f64,
    /// Its unit, when not the sensor's own (converted).
    pub unit: Option<String>,
}

/// A JSON batch (a bare array of rows is accepted too).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestBatch {
    /// Makes a retried request idempotent: 1–128 of `A-Z a-z 0-9 . _ : -`.
    pub batch_id: Option<String>,
    pub rows: Vec<IngestRow>,
}

/// Why one row was quarantined.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// Position in the request (0-based; CSV: data rows after the header).
    pub row: usize,
    /// Stable code: `malformed_row`, `missing_field`, `unknown_equipment`,
    /// `unknown_sensor`, `invalid_timestamp`, `future_timestamp`, `too_old`,
    /// `invalid_value`, `non_finite_value`, `unknown_unit`, `incompatible_unit`.
    pub code: String,
    /// For humans.
    pub message: String,
}

/// What became of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// The batch id, if given.
    pub batch_id: Option<String>,
    /// Valid rows newly stored (or spooled, see `durability`).
    pub accepted: usize,
    /// Rows put in quarantine.
    pub quarantined: usize,
    /// Valid rows whose (sensor, instant) was already stored or repeated in the
    /// request: the first value stays.
    pub duplicates: usize,
    /// `committed` (in the database) or `spooled` (on disk; the database gets
    /// them when it is back, and drops any that turn out to be stored already).
    pub durability: String,
    /// Why rows were quarantined, at most 1000.
    pub errors: Vec<RowError>,
    /// More rows were quarantined than listed.
    pub errors_truncated: bool,
}

/// Takes a batch of samples as JSON or CSV.
///
/// JSON (`Content-Type: application/json`): `{"batch_id": "…", "rows":
/// [{"equipment": "rig-1", "sensor": "PS1", "ts": "2026-11-23T18:00:00Z",
/// "value": 151.2, "unit": "bar"}]}` or a bare array of rows. CSV
/// (`text/csv`): a header naming `equipment,sensor,ts,value` and optionally
/// `unit`, in any order, then one row per line. `ts` is RFC 3339 or ms since
/// the epoch.
#[utoipa::path(post, path = "/api/v1/ingest", extensions(("x-access" = json!("ingest"))), tag = "ingest",
    request_body(content = IngestBatch, description = "JSON as shown, or CSV with a header row"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Batch id (alternative to `batch_id`)"),
        ("batch_id" = Option<String>, Query, description = "Batch id (alternative to `batch_id`)"),
    ),
    responses(
        (status = 200, body = IngestResponse, description = "rows committed (or a recorded batch answered again: header `Idempotent-Replayed: true`)"),
        (status = 202, body = IngestResponse, description = "rows spooled while the database is unreachable"),
        (status = 409, body = ErrorResponse, description = "the same batch id is being applied right now, or was used for a different request"),
        (status = 413, body = ErrorResponse, description = "body or row count over the limit"),
        (status = 415, body = ErrorResponse, description = "neither JSON nor CSV"),
        (status = 422, body = ErrorResponse, description = "the body cannot be read at all"),
        (status = 429, body = ErrorResponse, description = "rate limit; see Retry-After"),
        (status = 503, body = ErrorResponse, description = "storage pushed back or unavailable; retry later (see Retry-After)"),
    ))]
pub async fn ingest(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let settings = &state.settings.ingest;
    admit(&state, &request)?;
    let (parts, body) = request.into_parts();
    let body = parse::read_body(&parts.headers, body, settings.max_body_bytes).await?;
    let parsed = parse::parse(&parts.headers, parts.uri.query(), &body, settings.max_rows)?;
    let _in_flight = match replay::claim(&state, parsed.batch_id.as_deref(), &parsed.sha256).await?
    {
        replay::Claim::Replay(answer) => return Ok(answer),
        replay::Claim::Apply(in_flight) => in_flight,
    };
    let received_ms = now_ms();
    let batch_id = parsed.batch_id.clone();
    let response = service::apply(&state, batch_id, parsed.rows, received_ms).await?;
    let json = serde_json::to_string(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(id) = &parsed.batch_id {
        replay::record(&state, id, received_ms, &response, &json, &parsed.sha256).await;
    }
    let status = if response.durability == "spooled" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Refuses a client over its rate (429 with the wait) and everyone while
/// storage pushes back (503).
fn admit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let settings = &state.settings.ingest;
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = state
        .ingest
        .admit(client, settings.rate_per_sec, settings.rate_burst)
    {
        metrics::counter!("hydrowatch_ingest_requests_total", "outcome" => "rate_limited")
            .increment(1);
        // Retry-After is whole seconds: round up, so a client that obeys it
        // finds a token.
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        return Err(ApiError::RateLimited(secs.max(1)));
    }
    if let Some(storage) = &state.tree.storage {
        if storage.status.backpressure() {
            metrics::counter!("hydrowatch_ingest_requests_total", "outcome" => "backpressure")
                .increment(1);
            return Err(ApiError::Backpressure);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let state = IngestState::default();
        let client = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(state.admit(client, 1.0, 3).is_ok());
        }
        let wait = state.admit(client, 1.0, 3).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        // Another client is not affected.
        assert!(state.admit(IpAddr::from([10, 0, 0, 2]), 1.0, 3).is_ok());
    }
}
