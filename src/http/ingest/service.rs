//! Applying a batch's rows: each validated against the plant, the invalid
//! ones quarantined before anything else (so that a request keeps all its
//! rows or fails whole), duplicates dropped, the rest shown live and stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::sync::oneshot;

use hydrowatch_actors::clock::now_ms;
use hydrowatch_actors::plant::EquipmentMsg;
use hydrowatch_actors::storage::{Durability, StoredSample, WriterMsg};
use hydrowatch_models::units::{convert, UnitError};
use hydrowatch_models::{EquipmentId, Quality, Reading, SampleBatch, SensorSpec};

use super::parse::RawRow;
use super::{IngestResponse, RowError, MAX_LISTED_ERRORS};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::instant::parse_instant;
use crate::store::ingest::QuarantinedRow;

/// Applies `rows` of batch `batch_id`, received at `received_ms`.
pub(super) async fn apply(
    state: &AppState,
    batch_id: Option<String>,
    rows: Vec<RawRow>,
    received_ms: i64,
) -> Result<IngestResponse, ApiError> {
    let Sorted {
        mut valid,
        quarantine,
        errors,
    } = sort(state, &batch_id, rows, received_ms);
    // Quarantine first: if it cannot be kept, nothing of the request is applied.
    state.store.quarantine(&quarantine).await?;
    let duplicates = drop_duplicates(state, &mut valid).await;
    let durability = if valid.is_empty() {
        "committed"
    } else {
        send_live(state, &valid, now_ms());
        store_rows(state, &valid).await?
    };
    let response = IngestResponse {
        batch_id,
        accepted: valid.len(),
        quarantined: quarantine.len(),
        duplicates,
        durability: durability.into(),
        errors_truncated: quarantine.len() > errors.len(),
        errors,
    };
    count(&response, durability);
    Ok(response)
}

/// A request's rows, sorted into those to apply and those to quarantine.
struct Sorted {
    valid: Vec<Valid>,
    quarantine: Vec<QuarantinedRow>,
    /// The first [`MAX_LISTED_ERRORS`] reasons, for the answer.
    errors: Vec<RowError>,
}

fn sort(
    state: &AppState,
    batch_id: &Option<String>,
    rows: Vec<RawRow>,
    received_ms: i64,
) -> Sorted {
    let plant = PlantIndex::new(state);
    let limits = Limits {
        latest_ms: received_ms + state.settings.ingest.max_future_secs as i64 * 1000,
        earliest_ms: received_ms - i64::from(state.settings.storage.retention_days) * 86_400_000,
    };
    let mut sorted = Sorted {
        valid: Vec::new(),
        quarantine: Vec::new(),
        errors: Vec::new(),
    };
    for (i, raw) in rows.into_iter().enumerate() {
        match plant.validate(&raw, &limits) {
            Ok(v) => sorted.valid.push(v),
            Err((code, message)) => {
                if sorted.errors.len() < MAX_LISTED_ERRORS {
                    sorted.errors.push(RowError {
                        row: i,
                        code: code.into(),
                        message: message.clone(),
                    });
                }
                sorted.quarantine.push(QuarantinedRow {
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
    sorted
}

fn count(response: &IngestResponse, durability: &'static str) {
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "accepted")
        .increment(response.accepted as u64);
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "quarantined")
        .increment(response.quarantined as u64);
    metrics::counter!("hydrowatch_ingest_rows_total", "outcome" => "duplicate")
        .increment(response.duplicates as u64);
    metrics::counter!("hydrowatch_ingest_requests_total", "outcome" => durability).increment(1);
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
