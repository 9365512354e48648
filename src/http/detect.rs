//! The cycle models on demand (`POST /api/v1/detect`) and the anomalies they
//! found inline (`GET …/anomalies`, `GET …/anomaly-trend`).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use hydrowatch_models::cycle::{Cycle, CYCLE_SECONDS, SENSORS};
use hydrowatch_models::ensemble::{Severity, Verdict};
use hydrowatch_models::EquipmentId;

use super::error::{ApiError, ErrorResponse};
use super::history::{equipment, min_severity, paging, range_ms, window};
use super::AppState;
use crate::store::anomalies::{AnomalyFilter, AnomalyPage, TrendBucket};
use hydrowatch_actors::clock::now_ms;

/// `POST /api/v1/detect` body: exactly one of `cycle` or `sample`.
///
/// - `cycle`: one load cycle, an object with each of the rig's 17 sensors
///   (`PS1` … `PS6`, `EPS1`, `FS1`, `FS2`, `TS1` … `TS4`, `VS1`, `CE`, `CP`,
///   `SE`) mapped to its 60 values, one per second from the cycle's start
///   (the 1-second means the rig's PLC records). Judged by the ensemble of
///   cycle models: per-component classifiers and the novelty detector.
/// - `sample`: one instant, an object with each of the 17 sensors mapped to
///   one value. Judged by the sample novelty detector (is this combination
///   of values plausible for the rig?) and, when `equipment` is given,
///   against its sensors' physical ranges. One instant cannot tell which
///   component degrades: `affected_component` is always null.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    /// Optional: the equipment the data comes from (must exist).
    pub equipment: Option<String>,
    /// One cycle: sensor → 60 numbers.
    #[schema(value_type = Option<Object>)]
    pub cycle: Option<Value>,
    /// One sample vector: sensor → number.
    #[schema(value_type = Option<Object>)]
    pub sample: Option<Value>,
}

/// The verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectResponse {
    /// `cycle` or `sample`.
    pub shape: &'static str,
    /// The ensemble's verdict: `is_anomaly`, `score`, `affected_component`,
    /// `confidence`, `model_version`, `per_model`, health per component,
    /// severity.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Sample shape with `equipment`: sensors outside their physical range.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub out_of_range: Vec<String>,
}

fn number(field: &str, v: &Value) -> Result<f64, ApiError> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(ApiError::invalid(
            field,
            format!("{field}: expected a finite number, got {v}"),
        )),
    }
}

fn sensors_object<'a>(
    field: &str,
    v: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, ApiError> {
    let map = v.as_object().ok_or_else(|| {
        ApiError::invalid(
            field,
            format!(
                "{field}: expected an object of the 17 sensors ({})",
                SENSORS.join(", ")
            ),
        )
    })?;
    if let Some(unknown) = map.keys().find(|k| !SENSORS.contains(&k.as_str())) {
        let field = format!("{field}.{unknown}");
        return Err(ApiError::invalid(
            &field,
            format!(
                "{field}: not a sensor of the rig (known: {})",
                SENSORS.join(", ")
            ),
        ));
    }
    if let Some(missing) = SENSORS.iter().find(|s| !map.contains_key(**s)) {
        let field = format!("{field}.{missing}");
        return Err(ApiError::invalid(&field, format!("{field}: missing")));
    }
    Ok(map)
}

/// Parses the `cycle` shape.
fn parse_cycle(v: &Value) -> Result<Cycle, ApiError> {
    let map = sensors_object("cycle", v)?;
    let mut values = Vec::with_capacity(SENSORS.len());
    for sensor in SENSORS {
        let field = format!("cycle.{sensor}");
        let row = map[sensor].as_array().ok_or_else(|| {
            ApiError::invalid(
                &field,
                format!("{field}: expected an array of {CYCLE_SECONDS} numbers"),
            )
        })?;
        if row.len() != CYCLE_SECONDS {
            return Err(ApiError::invalid(
                &field,
                format!(
                    "{field}: has {} values; a cycle has {CYCLE_SECONDS} (one per second)",
                    row.len()
                ),
            ));
        }
        values.push(
            row.iter()
                .enumerate()
                .map(|(t, x)| number(&format!("{field}[{t}]"), x))
                .collect::<Result<Vec<f64>, _>>()?,
        );
    }
    Ok(Cycle { values })
}

/// Parses the `sample` shape.
fn parse_sample(v: &Value) -> Result<[f64; 17], ApiError> {
    let map = sensors_object("sample", v)?;
    let mut out = [0.0; 17];
    for (slot, sensor) in out.iter_mut().zip(SENSORS) {
        *slot = number(&format!("sample.{sensor}"), &map[sensor])?;
    }
    Ok(out)
}

/// Judges one cycle or one sample vector with the cycle models (see
/// [`DetectRequest`] for the two shapes).
#[utoipa::path(post, path = "/api/v1/detect", extensions(("x-access" = json!("ingest"))), tag = "detect",
    request_body = DetectRequest,
    responses(
        (status = 200, body = DetectResponse),
        (status = 422, body = ErrorResponse, description = "malformed body, unknown equipment, a missing or unknown sensor, a wrong number of values, a value that is not a finite number; `details.field` names it (e.g. `cycle.PS3[7]`)"),
        (status = 503, body = ErrorResponse, description = "the sample model is switched off"),
    ))]
pub async fn detect(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<DetectResponse>, ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if !json {
        return Err(ApiError::BadRequest {
            message: "Expected request with `Content-Type: application/json`".into(),
            details: None,
        });
    }
    // Well-formed requests parse straight into numbers; anything else takes
    // the slow path, which names what is wrong.
    let (equipment_id, data) = match serde_json::from_slice::<FastRequest>(&body)
        .ok()
        .and_then(FastRequest::parsed)
    {
        Some(parsed) => parsed,
        None => parse_slowly(&body)?,
    };
    let spec = match equipment_id.as_deref() {
        None => None,
        Some(id) => Some(equipment(&state, id).map_err(|_| {
            ApiError::invalid("equipment", format!("equipment: no equipment {id:?}"))
        })?),
    };
    match data {
        Data::Cycle(cycle) => {
            let verdict = state
                .scorer
                .score(&cycle)
                .map_err(|e| ApiError::invalid("cycle", e.to_string()))?;
            Ok(Json(DetectResponse {
                shape: "cycle",
                verdict,
                out_of_range: Vec::new(),
            }))
        }
        Data::Sample(values) => {
            let mut verdict = state.scorer.score_sample(&values).ok_or_else(|| {
                ApiError::Unavailable(
                    "the sample model (models.ensemble.members.sample_novelty)".into(),
                )
            })?;
            let out_of_range: Vec<String> = spec
                .iter()
                .flat_map(|spec| {
                    SENSORS.iter().zip(values).filter_map(move |(name, v)| {
                        let s = spec.sensors.iter().find(|s| s.id.as_str() == *name)?;
                        (v < s.range.min || v > s.range.max).then(|| name.to_string())
                    })
                })
                .collect();
            if !out_of_range.is_empty() {
                verdict.is_anomaly = true;
                verdict.severity = verdict.severity.max(Some(Severity::Warning));
                verdict.score = verdict.score.max(1.0);
            }
            Ok(Json(DetectResponse {
                shape: "sample",
                verdict,
                out_of_range,
            }))
        }
    }
}

/// What a valid request carries.
enum Data {
    Cycle(Cycle),
    Sample([f64; 17]),
}

/// A valid request, typed (numbers parsed straight from the body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastRequest {
    equipment: Option<String>,
    cycle: Option<std::collections::HashMap<String, Vec<f64>>>,
    sample: Option<std::collections::HashMap<String, f64>>,
}

impl FastRequest {
    /// The request's data when it is complete and well-formed.
    fn parsed(self) -> Option<(Option<String>, Data)> {
        let data = match (self.cycle, self.sample) {
            (Some(mut cycle), None) => {
                if cycle.len() != SENSORS.len() {
                    return None;
                }
                let values = SENSORS
                    .iter()
                    .map(|s| cycle.remove(*s).filter(|v| v.len() == CYCLE_SECONDS))
                    .collect::<Option<Vec<Vec<f64>>>>()?;
                Data::Cycle(Cycle { values })
            }
            (None, Some(sample)) => {
                if sample.len() != SENSORS.len() {
                    return None;
                }
                let mut out = [0.0; 17];
                for (slot, s) in out.iter_mut().zip(SENSORS) {
                    *slot = *sample.get(s)?;
                }
                Data::Sample(out)
            }
            _ => return None,
        };
        Some((self.equipment, data))
    }
}

/// Parses a request that is not well-formed far enough to say which field
/// is wrong.
fn parse_slowly(body: &[u8]) -> Result<(Option<String>, Data), ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
    let request: DetectRequest = serde_json::from_value(body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("expected {{\"cycle\": {{…}}}} or {{\"sample\": {{…}}}}: {e}"),
        )
    })?;
    let data = match (&request.cycle, &request.sample) {
        (Some(cycle), None) => Data::Cycle(parse_cycle(cycle)?),
        (None, Some(sample)) => Data::Sample(parse_sample(sample)?),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "body",
                "give either `cycle` or `sample`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "cycle",
                "missing: give `cycle` (17 sensors × 60 values) or `sample` (17 values)",
            ))
        }
    };
    Ok((request.equipment, data))
}

/// `GET …/anomalies` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnomaliesQuery {
    /// Start, RFC 3339 or ms since the epoch (default: 24 h before `to`).
    pub from: Option<String>,
    /// End, exclusive (default: now).
    pub to: Option<String>,
    /// Least severity shown: info, warning, minor, major, critical (default: all).
    pub severity: Option<String>,
    /// Page, from 1 (default 1).
    pub page: Option<i64>,
    /// Rows per page, 1–500 (default 50).
    pub page_size: Option<i64>,
}

/// The anomalies the cycle models found on an equipment unit, newest first.
#[utoipa::path(get, path = "/api/v1/equipment/{id}/anomalies", extensions(("x-access" = json!("read"))), tag = "detect",
    params(("id" = String, Path, description = "Equipment id"), AnomaliesQuery),
    responses(
        (status = 200, body = AnomalyPage),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 422, body = ErrorResponse, description = "bad instant, severity or page; `details.field` names it"),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn anomalies(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<AnomaliesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AnomalyPage>, ApiError> {
    let Path(id) = path?;
    let Query(q) = query?;
    let spec = equipment(&state, &id)?;
    // `to` includes a verdict stamped this very millisecond.
    let (from_ms, to_ms) = window(q.from.as_deref(), q.to.as_deref(), now_ms() + 1, 86_400_000)?;
    let min_severity = min_severity(q.severity.as_deref())?.unwrap_or(Severity::Info);
    let (page, page_size) = paging(q.page, q.page_size)?;
    let filter = AnomalyFilter {
        from_ms,
        to_ms,
        min_severity,
        page,
        page_size,
    };
    Ok(Json(state.store.anomalies(&spec.id, &filter).await?))
}

/// `GET …/anomaly-trend` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// 1h (1-minute buckets), 24h (hourly), 7d (6-hourly) or 30d (daily); default 24h.
    pub range: Option<String>,
}

/// The anomaly trend of an equipment unit.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendResponse {
    #[schema(value_type = String)]
    pub equipment: EquipmentId,
    /// The range asked for.
    pub range: String,
    /// Width of a bucket, ms.
    pub bucket_ms: i64,
    /// Every bucket of the range, oldest first (empty ones with zeros); the
    /// last one is the current, still open bucket.
    pub buckets: Vec<TrendBucket>,
}

/// How many anomalies the cycle models found per time bucket, by severity
/// and component, with the highest score: is a unit getting worse?
#[utoipa::path(get, path = "/api/v1/equipment/{id}/anomaly-trend", extensions(("x-access" = json!("read"))), tag = "detect",
    params(("id" = String, Path, description = "Equipment id"), TrendQuery),
    responses(
        (status = 200, body = TrendResponse),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 422, body = ErrorResponse, description = "unknown range"),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn anomaly_trend(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<TrendQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TrendResponse>, ApiError> {
    let Path(id) = path?;
    let Query(q) = query?;
    let spec = equipment(&state, &id)?;
    let range = q.range.unwrap_or_else(|| "24h".into());
    let range_ms = range_ms(&range)?;
    // 60 buckets for 1 h, 24 for 24 h, 28 for 7 d, 30 for 30 d.
    let bucket_ms = match range_ms {
        r if r <= 3_600_000 => 60_000,
        r if r <= 86_400_000 => 3_600_000,
        r if r <= 7 * 86_400_000 => 6 * 3_600_000,
        _ => 86_400_000,
    };
    // Whole buckets: the range ends where the current bucket ends.
    let to = (now_ms() / bucket_ms + 1) * bucket_ms;
    let buckets = state
        .store
        .anomaly_trend(&spec.id, to - range_ms, to, bucket_ms)
        .await?;
    Ok(Json(TrendResponse {
        equipment: spec.id.clone(),
        range,
        bucket_ms,
        buckets,
    }))
}
