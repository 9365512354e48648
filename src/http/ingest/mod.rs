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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use utoipa::ToSchema;

use hydrowatch_actors::plant::EquipmentMsg;
use hydrowatch_actors::storage::{Durability, StoredSample, WriterMsg};
use hydrowatch_models::units::{convert, UnitError};
use hydrowatch_models::{EquipmentId, Quality, Reading, SampleBatch, SensorSpec};

mod settings;

pub use settings::IngestSettings;

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::instant::parse_instant;
use crate::store::ingest::QuarantinedRow;
use hydrowatch_actors::clock::now_ms;

/// Most row errors listed in a response (all are in the quarantine table).
pub const MAX_LISTED_ERRORS: usize = 1000;

/// Per-client token buckets and the batch ids being applied right now.
#[derive(Debug, Default)]
pub struct IngestState {
    buckets: crate::shared::LocalBuckets,
    in_flight: Mutex<HashSet<String>>,
}

impl IngestState {
    /// Takes a token for `client`; when there is none, how long until there is.
    fn admit(&self, client: IpAddr, per_sec: f64, burst: u32) -> Result<(), Duration> {
        self.buckets
            .take_at(&client.to_string(), f64::from(burst), per_sec)
    }
}

/// Holds a batch id as in flight until dropped.
struct InFlight<'a> {
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

/// One row of a JSON batch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestRow {
    /// Equipment id.
    pub equipment: String,
    /// Sensor id within the equipment.
    pub sensor: String,
    /// RFC 3339 timestamp or ms since the epoch.
    #[schema(value_type = String)]
    pub ts: Value,
    /// The value.
    pub value: f64,
    /// Its unit, when not the sensor's own (converted).
    pub unit: Option<String>,
}

/// A JSON batch (a bare array of rows is accepted too).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestBatch {
    /// Makes a retried request idempotent: 1–128 of `A-Z a-z 0-9 . _ : -`.
    pub batch_id: Option<String>,
    /// The rows.
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

/// A row as received, fields as text for quarantine.
#[derive(Debug, Default)]
struct RawRow {
    equipment: Option<String>,
    sensor: Option<String>,
    ts: Option<String>,
    value: Option<String>,
    unit: Option<String>,
    /// Set when the row could not even be split into fields.
    malformed: Option<String>,
    /// The value as a JSON number, when it was one.
    number: Option<f64>,
}

/// Takes a batch of samples as JSON or CSV.
///
/// JSON (`Content-Type: application/json`): `{"batch_id": "…", "rows":
/// [{"equipment": "rig-1", "sensor": "PS1", "ts": "2026-11-23T18:00:00Z",
/// "value": 151.2, "unit": "bar"}]}` or a bare array of rows. CSV
/// (`text/csv`): a header naming `equipment,sensor,ts,value` and optionally
/// `unit`, in any order, then one row per line. `ts` is RFC 3339 or ms since
/// the epoch.
#[utoipa::path(post, path = "/api/v1/ingest", tag = "ingest",
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

    let (parts, body) = request.into_parts();
    let limit = settings.max_body_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is limited to {limit} bytes (ingest.max_body_bytes)"
        ))
    };
    if content_length(&parts.headers).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let kind = content_kind(&parts.headers)?;
    let (body_batch_id, rows) = match kind {
        Kind::Json => parse_json(&body)?,
        Kind::Csv => (None, parse_csv(&body)?),
    };
    if rows.len() > settings.max_rows {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} rows; a request may carry {} (ingest.max_rows)",
            rows.len(),
            settings.max_rows
        )));
    }
    let batch_id = batch_id(&parts.headers, parts.uri.query(), body_batch_id)?;
    let request_sha256 = {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(if matches!(kind, Kind::Json) {
            b"json:"
        } else {
            b"csv: "
        });
        hash.update(&body);
        format!("{:x}", hash.finalize())
    };

    let _in_flight = match &batch_id {
        Some(id) => {
            if !state
                .ingest
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone())
            {
                return Err(ApiError::Conflict(format!(
                    "batch {id:?} is being applied by another request"
                )));
            }
            let guard = InFlight {
                state: &state.ingest,
                id: id.clone(),
            };
            match state.store.recorded_batch(id).await {
                Ok(Some(recorded))
                    if recorded.request_sha256.as_deref() != Some(&request_sha256) =>
                {
                    return Err(ApiError::Conflict(format!(
                        "batch id {id:?} was used for a different request"
                    )));
                }
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
                    return Ok(response);
                }
                Ok(None) => {}
                // Samples are deduplicated by the writer anyway; go on.
                Err(err) => tracing::warn!(error = %err, batch_id = %id, "batch lookup failed"),
            }
            Some(guard)
        }
        None => None,
    };

    let received_ms = now_ms();
    let plant = PlantIndex::new(&state);
    let limits = Limits {
        latest_ms: received_ms + settings.max_future_secs as i64 * 1000,
        earliest_ms: received_ms - i64::from(state.settings.storage.retention_days) * 86_400_000,
    };
    let mut valid: Vec<Valid> = Vec::new();
    let mut quarantine: Vec<QuarantinedRow> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in rows.into_iter().enumerate() {
        match plant.validate(&raw, &limits) {
            Ok(v) => valid.push(v),
            Err((code, message)) => {
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(RowError {
                        row: i,
                        code: code.into(),
                        message: message.clone(),
                    });
                }
                quarantine.push(QuarantinedRow {
                    received_ms,
                    batch_id: batch_id.clone(),
                    row: i32::try_from(i).ok(),
                    equipment: raw.equipment,
                    sensor: raw.sensor,
                    ts: raw.ts,
                    value: raw.value.or(raw.malformed),
                    unit: raw.unit,
                    code: code.into(),
                    reason: message,
                });
            }
        }
    }
    // Quarantine first: if it cannot be kept, nothing of the request is applied.
    state.store.quarantine(&quarantine).await?;

    let duplicates = drop_duplicates(&state, &mut valid).await;
    let durability = if valid.is_empty() {
        "committed"
    } else {
        send_live(&state, &valid, now_ms());
        store_rows(&state, &valid).await?
    };
    let accepted = valid.len();
    let response = IngestResponse {
        batch_id: batch_id.clone(),
        accepted,
        quarantined: quarantine.len(),
        duplicates,
        durability: durability.into(),
        errors_truncated: quarantine.len() > errors.len(),
        errors,
    };
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "quarantined")
        .increment(quarantine.len() as u64);
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "duplicate")
        .increment(duplicates as u64);
    metrics::counter!("hydrowatch_ingest_requests_total", "outcome" => durability).increment(1);
    let json = serde_json::to_string(&response).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(id) = &batch_id {
        let counts = (
            accepted as i64,
            response.quarantined as i64,
            duplicates as i64,
        );
        if let Err(err) = state
            .store
            .record_batch(id, received_ms, counts, &json, &request_sha256)
            .await
        {
            tracing::warn!(error = %err, batch_id = %id, "batch answer not recorded; a retry re-applies it (its samples deduplicated)");
        }
    }
    let status = if durability == "spooled" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Csv,
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn content_kind(headers: &HeaderMap) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Kind::Json),
        "text/csv" | "application/csv" => Ok(Kind::Csv),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {ct:?}: send application/json or text/csv"
        ))),
    }
}

fn batch_id(
    headers: &HeaderMap,
    query: Option<&str>,
    in_body: Option<String>,
) -> Result<Option<String>, ApiError> {
    let from_header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "not visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "batch_id")
            .map(|(_, v)| v.to_owned())
    });
    let mut found: Option<(&str, String)> = None;
    for (field, id) in [
        ("batch_id", in_body),
        ("Idempotency-Key", from_header),
        ("batch_id", from_query),
    ] {
        let Some(id) = id else { continue };
        let ok = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if !ok {
            return Err(ApiError::invalid(
                field,
                "a batch id is 1 to 128 of A-Z a-z 0-9 . _ : -",
            ));
        }
        match &found {
            Some((_, first)) if *first != id => {
                return Err(ApiError::invalid(
                    field,
                    "batch ids given in more than one place differ",
                ))
            }
            _ => found = Some((field, id)),
        }
    }
    Ok(found.map(|(_, id)| id))
}

fn parse_json(body: &[u8]) -> Result<(Option<String>, Vec<RawRow>), ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not JSON: {e}")))?;
    let (batch_id, rows) = match doc {
        Value::Array(rows) => (None, rows),
        Value::Object(mut map) => {
            let batch_id = match map.remove("batch_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err(ApiError::invalid("batch_id", "must be a string")),
            };
            match map.remove("rows") {
                Some(Value::Array(rows)) => (batch_id, rows),
                _ => return Err(ApiError::invalid("rows", "expected an array of rows")),
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "body",
                "expected an object with `rows` or an array of rows",
            ))
        }
    };
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    Ok((
        batch_id,
        rows.into_iter()
            .map(|row| match row {
                Value::Object(map) => RawRow {
                    equipment: text(map.get("equipment")),
                    sensor: text(map.get("sensor")),
                    ts: text(map.get("ts")),
                    value: text(map.get("value")),
                    unit: text(map.get("unit")),
                    malformed: None,
                    number: map.get("value").and_then(Value::as_f64),
                },
                other => RawRow {
                    malformed: Some(other.to_string()),
                    ..RawRow::default()
                },
            })
            .collect(),
    ))
}

fn parse_csv(body: &[u8]) -> Result<Vec<RawRow>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::invalid("body", format!("CSV header: {e}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut index = HashMap::new();
    for name in ["equipment", "sensor", "ts", "value"] {
        let i = column(name).ok_or_else(|| {
            ApiError::invalid(
                "body",
                format!("the CSV header must name equipment, sensor, ts, value (and optionally unit); {name} is missing"),
            )
        })?;
        index.insert(name, i);
    }
    let unit = column("unit");
    let mut rows = Vec::new();
    for record in reader.records() {
        let row = match record {
            Ok(r) if r.len() == header.len() => {
                let field = |i: usize| r.get(i).filter(|s| !s.is_empty()).map(str::to_owned);
                RawRow {
                    equipment: field(index["equipment"]),
                    sensor: field(index["sensor"]),
                    ts: field(index["ts"]),
                    value: field(index["value"]),
                    unit: unit.and_then(field),
                    malformed: None,
                    number: None,
                }
            }
            Ok(r) => RawRow {
                malformed: Some(r.iter().collect::<Vec<_>>().join(",")),
                ..RawRow::default()
            },
            Err(e) => RawRow {
                malformed: Some(format!("unreadable CSV record: {e}")),
                ..RawRow::default()
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// A row that passed validation.
struct Valid {
    equipment: EquipmentId,
    sensor: hydrowatch_models::SensorId,
    db_id: i64,
    ts_ms: i64,
    value: f64,
}

impl Valid {
    fn stored(&self) -> StoredSample {
        StoredSample {
            sensor: self.db_id,
            ts_ms: self.ts_ms,
            value: Some(self.value),
            quality: Quality::Good,
        }
    }
}

struct Limits {
    latest_ms: i64,
    earliest_ms: i64,
}

/// A sensor's spec and database id, by sensor name.
type SensorIndex<'a> = HashMap<&'a str, (&'a SensorSpec, i64)>;

/// The plant's sensors by equipment and sensor name.
struct PlantIndex<'a> {
    sensors: HashMap<&'a str, (EquipmentId, SensorIndex<'a>)>,
}

impl<'a> PlantIndex<'a> {
    fn new(state: &'a AppState) -> PlantIndex<'a> {
        let mut sensors = HashMap::new();
        for spec in state.tree.equipment_specs.iter() {
            let ids = state.sensor_ids.get(&spec.id);
            let by_name = spec
                .sensors
                .iter()
                .filter_map(|s| {
                    let id = ids?.get(&s.id)?;
                    Some((s.id.as_str(), (s, *id)))
                })
                .collect();
            sensors.insert(spec.id.as_str(), (spec.id.clone(), by_name));
        }
        PlantIndex { sensors }
    }

    fn validate(&self, raw: &RawRow, limits: &Limits) -> Result<Valid, (&'static str, String)> {
        if let Some(what) = &raw.malformed {
            return Err((
                "malformed_row",
                format!("not a row of named fields: {what}"),
            ));
        }
        let need =
            |field: &'static str, v: &Option<String>| -> Result<String, (&'static str, String)> {
                v.clone()
                    .ok_or(("missing_field", format!("`{field}` is missing")))
            };
        let equipment = need("equipment", &raw.equipment)?;
        let sensor = need("sensor", &raw.sensor)?;
        let ts = need("ts", &raw.ts)?;
        let value_text = need("value", &raw.value)?;
        let (equipment_id, sensors) = self
            .sensors
            .get(equipment.as_str())
            .ok_or(("unknown_equipment", format!("no equipment {equipment:?}")))?;
        let (spec, db_id) = sensors.get(sensor.as_str()).ok_or((
            "unknown_sensor",
            format!("equipment {equipment} has no sensor {sensor:?}"),
        ))?;
        let ts_ms = parse_instant(&ts).map_err(|e| ("invalid_timestamp", e))?;
        if ts_ms > limits.latest_ms {
            return Err((
                "future_timestamp",
                format!("{ts} is more than ingest.max_future_secs ahead of the server's clock"),
            ));
        }
        if ts_ms < limits.earliest_ms {
            return Err((
                "too_old",
                format!("{ts} is older than the retention (storage.retention_days)"),
            ));
        }
        let value = match raw.number {
            Some(v) => v,
            None => value_text.parse::<f64>().map_err(|_| {
                (
                    "invalid_value",
                    format!("value {value_text:?} is not a number"),
                )
            })?,
        };
        if !value.is_finite() {
            return Err((
                "non_finite_value",
                format!("value {value_text} is not finite"),
            ));
        }
        let value = match &raw.unit {
            None => value,
            Some(unit) => convert(value, unit, &spec.unit).map_err(|e| match e {
                UnitError::Unknown(_) => ("unknown_unit", e.to_string()),
                UnitError::Incompatible { .. } => ("incompatible_unit", e.to_string()),
            })?,
        };
        if !value.is_finite() {
            return Err((
                "non_finite_value",
                format!("value {value_text} is not finite in {}", spec.unit),
            ));
        }
        Ok(Valid {
            equipment: equipment_id.clone(),
            sensor: spec.id.clone(),
            db_id: *db_id,
            ts_ms,
            value,
        })
    }
}

/// Hands the rows to their equipment actors, one batch per instant in time
/// order. An actor that is restarting misses them live; storage has them.
/// Rows stamped after `now_ms` are stored only: shown live, they would hide
/// the polled readings (older by then) until their time came.
fn send_live(state: &AppState, rows: &[Valid], now_ms: i64) {
    let mut by_instant: BTreeMap<(&EquipmentId, i64), Vec<Reading>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.ts_ms <= now_ms) {
        by_instant
            .entry((&r.equipment, r.ts_ms))
            .or_default()
            .push(Reading {
                sensor: r.sensor.clone(),
                value: Some(r.value),
                quality: Quality::Good,
                reason: None,
            });
    }
    for ((equipment, ts_ms), readings) in by_instant {
        if let Some(address) = state.tree.equipment.get(equipment) {
            let _ = address.cast(EquipmentMsg::Samples(SampleBatch {
                equipment: equipment.clone(),
                ts_ms,
                readings,
            }));
        }
    }
}

/// Drops the rows whose (sensor, instant) came earlier in the request or is
/// already stored (the first value stays); returns how many. When the store
/// cannot be asked (an outage), stored duplicates are left to the writer,
/// which drops them when it replays.
async fn drop_duplicates(state: &AppState, valid: &mut Vec<Valid>) -> usize {
    let before = valid.len();
    let mut seen = HashSet::new();
    valid.retain(|v| seen.insert((v.db_id, v.ts_ms)));
    let probe: Vec<StoredSample> = valid.iter().map(Valid::stored).collect();
    match state.store.stored_instants(&probe).await {
        Ok(stored) if !stored.is_empty() => {
            valid.retain(|v| !stored.contains(&(v.db_id, v.ts_ms)));
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %err, "duplicate check skipped; the writer deduplicates")
        }
    }
    before - valid.len()
}

/// Writes the rows through the storage writer; how durable they are.
async fn store_rows(state: &AppState, rows: &[Valid]) -> Result<&'static str, ApiError> {
    let storage = state
        .tree
        .storage
        .as_ref()
        .ok_or_else(|| ApiError::StorageUnavailable("no storage writer".into()))?;
    let (tx, rx) = oneshot::channel();
    let stored = rows.iter().map(Valid::stored).collect();
    storage
        .writer
        .cast(WriterMsg::Rows {
            rows: stored,
            ack: Some(tx),
        })
        .map_err(|_| ApiError::StorageUnavailable("the storage writer is restarting".into()))?;
    let wait = Duration::from_millis(state.settings.ingest.ack_timeout_ms);
    match tokio::time::timeout(wait, rx).await {
        // The counts are of the writer's whole batch, which may hold other
        // rows: this request's were counted before.
        Ok(Ok(Durability::Committed(_))) => Ok("committed"),
        Ok(Ok(Durability::Spooled)) => Ok("spooled"),
        Ok(Ok(Durability::Rejected(why))) => Err(ApiError::Internal(format!(
            "the database refused the rows: {why}"
        ))),
        Ok(Ok(Durability::Lost(why))) => Err(ApiError::StorageUnavailable(why)),
        Ok(Err(_)) => Err(ApiError::StorageUnavailable(
            "the storage writer stopped before acknowledging".into(),
        )),
        Err(_) => Err(ApiError::StorageUnavailable(format!(
            "rows not acknowledged within {} ms; retry with the same batch id",
            wait.as_millis()
        ))),
    }
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

    #[test]
    fn batch_ids_are_checked_and_must_agree() {
        let mut headers = HeaderMap::new();
        assert_eq!(batch_id(&headers, None, None).unwrap(), None);
        headers.insert("idempotency-key", HeaderValue::from_static("b-1"));
        assert_eq!(
            batch_id(&headers, Some("x=1&batch_id=b-1"), Some("b-1".into())).unwrap(),
            Some("b-1".into())
        );
        assert!(batch_id(&headers, Some("batch_id=b-2"), None).is_err());
        assert!(batch_id(&HeaderMap::new(), Some("batch_id=a%20b"), None).is_err());
        assert!(batch_id(&HeaderMap::new(), None, Some("x".repeat(129))).is_err());
    }

    #[test]
    fn csv_rows_keep_their_fields_and_short_rows_are_malformed() {
        let rows =
            parse_csv(b"ts,equipment,sensor,value,unit\n1000,rig-1,PS1,1.5,bar\n1,2\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].equipment.as_deref(), Some("rig-1"));
        assert_eq!(rows[0].ts.as_deref(), Some("1000"));
        assert_eq!(rows[0].unit.as_deref(), Some("bar"));
        assert!(rows[1].malformed.is_some());
        assert!(parse_csv(b"equipment,sensor,value\nrig-1,PS1,1\n").is_err());
    }
}
