//! Idempotent retries: a batch id is applied by one request at a time, and
//! a retry of a batch already applied is answered with the first answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{IngestResponse, IngestState};
use crate::http::error::ApiError;
use crate::http::AppState;

/// Holds a batch id as in flight until dropped.
pub(super) struct InFlight<'a> {
    state: &'a IngestState,
    id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// What to do with a request.
pub(super) enum Claim<'a> {
    /// Answer it with the answer its batch got before.
    Replay(Response),
    /// Apply it, holding its batch id (if any) until done.
    Apply(Option<InFlight<'a>>),
}

/// Claims `batch_id` for this request (digest `sha256`), or finds the answer
/// a retry must get. A batch id in use, or used for another request, is a
/// conflict.
pub(super) async fn claim<'a>(
    state: &'a AppState,
    batch_id: Option<&str>,
    sha256: &str,
) -> Result<Claim<'a>, ApiError> {
    let Some(id) = batch_id else {
        return Ok(Claim::Apply(None));
    };
    if !state
        .ingest
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_owned())
    {
        return Err(ApiError::Conflict(format!(
            "batch {id:?} is being applied by another request"
        )));
    }
    let guard = InFlight {
        state: &state.ingest,
        id: id.to_owned(),
    };
    match state.store.recorded_batch(id).await {
        Ok(Some(recorded)) if recorded.request_sha256.as_deref() != Some(sha256) => Err(
            ApiError::Conflict(format!("batch id {id:?} was used for a different request")),
        ),
        Ok(Some(recorded)) => {
            metrics::counter!("hydrowatch_ingest_requests_total", "outcome" => "replayed")
                .increment(1);
            let spooled = serde_json::from_str::<IngestResponse>(&recorded.response)
                .is_ok_and(|r| r.durability == "spooled");
            let mut response = (
                if spooled {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                [(header::CONTENT_TYPE, "application/json")],
                recorded.response,
            )
                .into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Claim::Replay(response))
        }
        Ok(None) => Ok(Claim::Apply(Some(guard))),
        // Samples are deduplicated by the writer anyway; go on.
        Err(err) => {
            tracing::warn!(error = %err, batch_id = %id, "batch lookup failed");
            Ok(Claim::Apply(Some(guard)))
        }
    }
}

/// Keeps the answer batch `id` got, for its retries. Not kept, a retry
/// applies the batch again, and its samples are deduplicated.
pub(super) async fn record(
    state: &AppState,
    id: &str,
    received_ms: i64,
    response: &IngestResponse,
    json: &str,
    sha256: &str,
) {
    let counts = (
        response.accepted as i64,
        response.quarantined as i64,
        response.duplicates as i64,
    );
    if let Err(err) = state
        .store
        .record_batch(id, received_ms, counts, json, sha256)
        .await
    {
        tracing::warn!(error = %err, batch_id = %id, "batch answer not recorded; a retry re-applies it (its samples deduplicated)");
    }
}
