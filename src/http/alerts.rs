//! Alerts: list and filter (from the database, open and closed), one alert
//! with its history and deliveries, and acknowledge or clear (through the
//! alerting actor, which owns open alerts).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use hydrowatch_actors::alerting::{AlertingError, AlertingMsg};
use hydrowatch_models::alert::AlertState;

use super::error::{ApiError, ErrorResponse};
use super::history::{min_severity, paging, window};
use super::AppState;
use crate::auth::Principal;
use crate::store::alerts::{AlertDetail, AlertFilter, AlertPage};
use hydrowatch_actors::clock::now_ms;

/// `GET /api/v1/alerts` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// States, comma-separated: pending, active_unack, active_ack,
    /// cleared_unack, cleared_ack, cancelled; `open` for the first four
    /// (default: all).
    pub state: Option<String>,
    /// Least severity: info, warning, minor, major, critical.
    pub severity: Option<String>,
    /// Only alerts of this equipment unit (its id).
    pub equipment: Option<String>,
    /// First seen from, RFC 3339 or ms since the epoch (default: 30 days
    /// before `to`).
    pub from: Option<String>,
    /// First seen before (default: now).
    pub to: Option<String>,
    /// Page, from 1 (default 1).
    pub page: Option<i64>,
    /// Rows per page, 1–500 (default 50).
    pub page_size: Option<i64>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", extensions(("x-access" = json!("read"))), tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, body = AlertPage),
        (status = 422, body = ErrorResponse, description = "bad state, severity, instant or page; `details.field` names it"),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let Query(q) = query?;
    if let Some(e) = &q.equipment {
        super::access::check_equipment(&who, e)?;
    }
    let (from_ms, to_ms) = window(
        q.from.as_deref(),
        q.to.as_deref(),
        now_ms() + 1,
        30 * 86_400_000,
    )?;
    let mut states = Vec::new();
    for name in q.state.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if name.eq_ignore_ascii_case("open") {
            states.extend(AlertState::ALL.into_iter().filter(|s| s.is_open()));
            continue;
        }
        states.push(AlertState::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "state",
                format!("state {name:?}: expected open, pending, active_unack, active_ack, cleared_unack, cleared_ack or cancelled"),
            )
        })?);
    }
    let min_severity = min_severity(q.severity.as_deref())?;
    if let Some(e) = &q.equipment {
        if !state.has_equipment(e) {
            return Err(ApiError::invalid(
                "equipment",
                format!("no equipment {e:?}"),
            ));
        }
    }
    let (page, page_size) = paging(q.page, q.page_size)?;
    let filter = AlertFilter {
        states,
        min_severity,
        equipment: q.equipment,
        // The plant's own ids that the caller may see.
        within: who.equipment.as_ref().map(|_| {
            state
                .tree
                .equipment_specs
                .iter()
                .map(|spec| spec.id.as_str().to_owned())
                .filter(|id| who.sees(id))
                .collect()
        }),
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        page,
        page_size,
    };
    Ok(Json(state.store.alerts(&filter).await?))
}

/// One alert with its history and its notifications' delivery.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", extensions(("x-access" = json!("read"))), tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    responses(
        (status = 200, body = AlertDetail),
        (status = 404, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "the database is unavailable"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<Json<AlertDetail>, ApiError> {
    let Path(id) = path?;
    let detail = state
        .store
        .alert(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    if let Some(e) = &detail.alert.equipment {
        super::access::check_equipment(&who, e)?;
    }
    Ok(Json(detail))
}

/// For a caller limited to some equipment: alert `id` must be of one of
/// those units (or plant-wide).
async fn check_alert_scope(state: &AppState, who: &Principal, id: i64) -> Result<(), ApiError> {
    if who.equipment.is_none() {
        return Ok(());
    }
    match state.store.alert_equipment(id).await?.flatten() {
        Some(e) => super::access::check_equipment(who, &e),
        None => Ok(()),
    }
}

/// Why one acts on an alert (who is the signed-in caller).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertAction {
    /// Why, or what was done.
    #[serde(default)]
    pub comment: Option<String>,
}

/// What an acknowledge or clear did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertActionResult {
    pub id: i64,
    /// The state after it.
    pub state: String,
}

/// Acknowledges an open alert: its escalation stops.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", extensions(("x-access" = json!("alerts:act"))), tag = "alerts",
    request_body = AlertAction,
    params(("id" = i64, Path, description = "Alert id")),
    responses(
        (status = 200, body = AlertActionResult),
        (status = 404, body = ErrorResponse, description = "no open alert with that id"),
        (status = 409, body = ErrorResponse, description = "already acknowledged, or pending"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "alerting or its database unavailable"),
    ))]
pub async fn acknowledge(
    state: State<AppState>,
    who: Principal,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<AlertAction>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AlertActionResult>, ApiError> {
    act(state, who, path, body, true).await
}

/// Clears an open alert by hand.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/clear", extensions(("x-access" = json!("alerts:act"))), tag = "alerts",
    request_body = AlertAction,
    params(("id" = i64, Path, description = "Alert id")),
    responses(
        (status = 200, body = AlertActionResult),
        (status = 404, body = ErrorResponse, description = "no open alert with that id"),
        (status = 409, body = ErrorResponse, description = "already cleared"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "alerting or its database unavailable"),
    ))]
pub async fn clear(
    state: State<AppState>,
    who: Principal,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<AlertAction>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AlertActionResult>, ApiError> {
    act(state, who, path, body, false).await
}

async fn act(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
    body: Result<Json<AlertAction>, axum::extract::rejection::JsonRejection>,
    acknowledge: bool,
) -> Result<Json<AlertActionResult>, ApiError> {
    let Path(id) = path?;
    check_alert_scope(&state, &who, id).await?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        details: None,
    })?;
    if body.comment.as_ref().is_some_and(|c| c.len() > 2_000) {
        return Err(ApiError::invalid(
            "comment",
            "comment: at most 2000 characters",
        ));
    }
    let (by, comment) = (who.label, body.comment);
    let alert = if acknowledge {
        call_alerting(&state, |reply| AlertingMsg::Acknowledge {
            id,
            by,
            comment,
            reply,
        })
        .await??
    } else {
        call_alerting(&state, |reply| AlertingMsg::Clear {
            id,
            by,
            comment,
            reply,
        })
        .await??
    };
    Ok(Json(AlertActionResult {
        id,
        state: alert.state.as_str().to_owned(),
    }))
}

impl From<AlertingError> for ApiError {
    fn from(e: AlertingError) -> ApiError {
        match e {
            AlertingError::NotOpen(id) => ApiError::NotFound(format!("no open alert {id}")),
            AlertingError::Refused(why) => ApiError::Conflict(why),
            AlertingError::Storage(why) => ApiError::Unavailable(why),
        }
    }
}

/// Asks the alerting actor, within `live.actor_timeout_ms`.
pub(super) async fn call_alerting<T: Send + 'static>(
    state: &AppState,
    message: impl FnOnce(ractor::RpcReplyPort<T>) -> AlertingMsg,
) -> Result<T, ApiError> {
    let actor = state
        .tree
        .alerting
        .as_ref()
        .and_then(|a| a.get())
        .ok_or_else(|| ApiError::Unavailable("alerting".into()))?;
    super::call_actor(&actor, message, "alerting", state.settings.actor_timeout()).await
}
