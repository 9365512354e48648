//! History for charts and KPIs, answered by the store (raw blocks or the rollup
//! that suits the range).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use hydrowatch_models::EquipmentSpec;

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::instant::parse_instant;
use crate::store::history::{Level, Point};
use hydrowatch_actors::clock::now_ms;

/// Most points a series may ask for per sensor.
pub const MAX_POINTS: u32 = 5000;

/// `GET …/series` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Comma-separated sensor ids (default: all of the unit's sensors).
    pub sensors: Option<String>,
    /// Start, RFC 3339 or ms since the epoch (default: an hour before `to`).
    pub from: Option<String>,
    /// End, exclusive (default: now).
    pub to: Option<String>,
    /// Most points per sensor, 1–5000 (default 1000).
    pub max_points: Option<u32>,
}

/// One sensor's downsampled series.
#[derive(Debug, Serialize, ToSchema)]
pub struct SensorSeries {
    pub sensor: String,
    pub unit: String,
    /// Buckets oldest first; empty buckets are left out. Each keeps the
    /// bucket's min and max, so peaks survive downsampling.
    pub points: Vec<Point>,
}

/// Downsampled history of an equipment unit's sensors.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    pub equipment: String,
    /// Start asked for, ms since the epoch.
    pub from: i64,
    /// End asked for (exclusive), ms since the epoch.
    pub to: i64,
    /// Where the points come from: `raw`, `1m`, `1h` or `1d`. Rollup buckets
    /// start at `from` rounded down to their width.
    pub level: Level,
    /// Width of a bucket, ms.
    pub bucket_ms: i64,
    /// One series per sensor asked for, in that order.
    pub series: Vec<SensorSeries>,
}

/// Downsampled series of an equipment unit's sensors for charts: raw samples
/// for short ranges, the 1 min / 1 h / 1 day rollups for longer ones; min, max,
/// mean, last and count per bucket.
#[utoipa::path(get, path = "/api/v1/equipment/{id}/series", extensions(("x-access" = json!("read"))), tag = "history",
    params(("id" = String, Path, description = "Equipment id"), SeriesQuery),
    responses(
        (status = 200, body = SeriesResponse),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 422, body = ErrorResponse, description = "unknown sensor, bad instant or range; `details.field` names the parameter"),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn series(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let Path(id) = path?;
    let Query(q) = query?;
    let spec = equipment(&state, &id)?;
    let sensors = pick_sensors(&state, &spec, q.sensors.as_deref())?;
    let (from, to) = window(q.from.as_deref(), q.to.as_deref(), now_ms(), 3_600_000)?;
    let max_points = q.max_points.unwrap_or(1000);
    if !(1..=MAX_POINTS).contains(&max_points) {
        return Err(ApiError::invalid(
            "max_points",
            format!("max_points must be 1 to {MAX_POINTS}"),
        ));
    }
    let ids: Vec<i64> = sensors.iter().map(|(_, _, id)| *id).collect();
    let found = state.store.series(&ids, from, to, max_points).await?;
    Ok(Json(SeriesResponse {
        equipment: spec.id.to_string(),
        from,
        to,
        level: found.level,
        bucket_ms: found.bucket_ms,
        series: sensors
            .into_iter()
            .zip(found.points)
            .map(|((sensor, unit, _), points)| SensorSeries {
                sensor,
                unit,
                points,
            })
            .collect(),
    }))
}

/// `GET …/stats` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `1h`, `24h`, `7d` or `30d` (default `24h`).
    pub range: Option<String>,
}

/// One sensor's KPIs over the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct SensorStats {
    pub sensor: String,
    pub unit: String,
    /// Good and uncertain values in the range (0: none).
    pub count: i64,
    /// `null` when `count` is 0, like `max`, `avg` and `last`.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub last: Option<f64>,
}

/// KPIs of an equipment unit's sensors.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub equipment: String,
    /// The range asked for.
    pub range: String,
    /// Start of the window (rounded down to the rollup's bucket), ms.
    pub from: i64,
    /// End of the window (now), ms.
    pub to: i64,
    /// One entry per sensor, in display order.
    pub sensors: Vec<SensorStats>,
}

/// Per-sensor KPIs (count, min, max, mean, last) over the last hour, day, week
/// or 30 days, from the 1-minute rollup up to a day and the hourly one beyond.
#[utoipa::path(get, path = "/api/v1/equipment/{id}/stats", extensions(("x-access" = json!("read"))), tag = "history",
    params(("id" = String, Path, description = "Equipment id"), StatsQuery),
    responses(
        (status = 200, body = StatsResponse),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 422, body = ErrorResponse, description = "unknown range"),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StatsResponse>, ApiError> {
    let Path(id) = path?;
    let Query(q) = query?;
    let spec = equipment(&state, &id)?;
    let range = q.range.unwrap_or_else(|| "24h".into());
    let range_ms = range_ms(&range)?;
    let sensors = pick_sensors(&state, &spec, None)?;
    let ids: Vec<i64> = sensors.iter().map(|(_, _, id)| *id).collect();
    let now = now_ms();
    let found = state.store.stats(&ids, now, range_ms).await?;
    let width = if range_ms <= 86_400_000 {
        60_000
    } else {
        3_600_000
    };
    Ok(Json(StatsResponse {
        equipment: spec.id.to_string(),
        range,
        from: (now - range_ms) - (now - range_ms).rem_euclid(width),
        to: now,
        sensors: sensors
            .into_iter()
            .zip(found)
            .map(|((sensor, unit, _), p)| SensorStats {
                sensor,
                unit,
                count: p.map_or(0, |p| p.count),
                min: p.map(|p| p.min),
                max: p.map(|p| p.max),
                avg: p.map(|p| p.avg),
                last: p.map(|p| p.last),
            })
            .collect(),
    }))
}

/// The `[from, to)` of a request: RFC 3339 or ms since the epoch; `to`
/// defaults to `now`, `from` to `default_span_ms` before `to`.
pub(super) fn window(
    from: Option<&str>,
    to: Option<&str>,
    now: i64,
    default_span_ms: i64,
) -> Result<(i64, i64), ApiError> {
    let to = match to {
        Some(t) => parse_instant(t).map_err(|e| ApiError::invalid("to", e))?,
        None => now,
    };
    let from = match from {
        Some(t) => parse_instant(t).map_err(|e| ApiError::invalid("from", e))?,
        None => to - default_span_ms,
    };
    if from >= to {
        return Err(ApiError::invalid("from", "`from` must be before `to`"));
    }
    Ok((from, to))
}

/// The length of a named `range` (1h, 24h, 7d, 30d), ms.
pub(super) fn range_ms(range: &str) -> Result<i64, ApiError> {
    match range {
        "1h" => Ok(3_600_000),
        "24h" => Ok(86_400_000),
        "7d" => Ok(7 * 86_400_000),
        "30d" => Ok(30 * 86_400_000),
        other => Err(ApiError::invalid(
            "range",
            format!("range {other:?}: expected 1h, 24h, 7d or 30d"),
        )),
    }
}

pub(super) fn equipment(state: &AppState, id: &str) -> Result<Arc<EquipmentSpec>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no equipment {id:?}"));
    let id = super::equipment_id(id)?;
    state
        .tree
        .equipment_specs
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or_else(not_found)
}

/// (sensor id, unit, database id) of the sensors named in `list` (all when
/// `None`), in the order named.
fn pick_sensors(
    state: &AppState,
    spec: &EquipmentSpec,
    list: Option<&str>,
) -> Result<Vec<(String, String, i64)>, ApiError> {
    let ids = state.sensor_ids.get(&spec.id);
    let db_id = |sensor: &hydrowatch_models::SensorSpec| {
        ids.and_then(|m| m.get(&sensor.id))
            .copied()
            .ok_or_else(|| ApiError::Internal(format!("sensor {} has no database id", sensor.id)))
    };
    let row = |s: &hydrowatch_models::SensorSpec| -> Result<(String, String, i64), ApiError> {
        Ok((s.id.to_string(), s.unit.clone(), db_id(s)?))
    };
    match list {
        None => spec.sensors.iter().map(row).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let sensor = spec
                    .sensors
                    .iter()
                    .find(|s| s.id.as_str() == name)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "sensors",
                            format!("equipment {} has no sensor {name:?}", spec.id),
                        )
                    })?;
                if !out.iter().any(|(n, _, _)| n == name) {
                    out.push(row(sensor)?);
                }
            }
            if out.is_empty() {
                return Err(ApiError::invalid("sensors", "no sensor named"));
            }
            Ok(out)
        }
    }
}

/// `severity=`: the least severity a list shows; `None` when not given.
pub(super) fn min_severity(
    raw: Option<&str>,
) -> Result<Option<hydrowatch_models::ensemble::Severity>, ApiError> {
    raw.map(|s| {
        hydrowatch_models::ensemble::Severity::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "severity",
                format!("severity {s:?}: expected info, warning, minor, major or critical"),
            )
        })
    })
    .transpose()
}

/// `page=` (from 1, default 1) and `page_size=` (1–500, default 50).
pub(super) fn paging(page: Option<i64>, page_size: Option<i64>) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    if !(1..=1_000_000).contains(&page) {
        return Err(ApiError::invalid("page", "page: from 1"));
    }
    let page_size = page_size.unwrap_or(50);
    if !(1..=500).contains(&page_size) {
        return Err(ApiError::invalid("page_size", "page_size: 1 to 500"));
    }
    Ok((page, page_size))
}
