//! Silences and maintenance windows: list, create, end early. Silenced
//! alerts are still recorded and shown (as silenced), just not notified.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use hydrowatch_actors::alerting::AlertingMsg;
use hydrowatch_models::alert::silence::{Matchers, Window, WindowSpec};

use super::alerts::call_alerting;
use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::auth::Principal;
use crate::store::silences::SilenceRow;
use hydrowatch_actors::clock::now_ms;

/// `GET /api/v1/silences` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SilencesQuery {
    /// Also the silences ended early (default: only those in force).
    pub all: Option<bool>,
}

/// The silences created through the API.
#[utoipa::path(get, path = "/api/v1/silences", extensions(("x-access" = json!("read"))), tag = "alerts",
    params(SilencesQuery),
    responses((status = 200, body = [SilenceRow]), (status = 503, body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<SilencesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SilenceRow>>, ApiError> {
    let Query(q) = query?;
    Ok(Json(state.store.silences(q.all.unwrap_or(false)).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Which alerts: `site`, `equipment`, `sensor`, `severities` (left out:
    /// any).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub matchers: Matchers,
    /// When: `{"type": "fixed", "starts": ms, "ends": ms}` or
    /// `{"type": "recurring", "cron": "0 0 2 * * Sun", "duration_ms": 14400000,
    /// "timezone": "Europe/Berlin"}`.
    #[schema(value_type = Object)]
    pub window: WindowSpec,
    /// Why (shown with the silenced alerts).
    pub comment: String,
}

/// Creates a silence or maintenance window; it applies at once.
#[utoipa::path(post, path = "/api/v1/silences", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    request_body = NewSilence,
    responses(
        (status = 201, body = SilenceRow),
        (status = 422, body = ErrorResponse, description = "a bad window or matcher; `details.field` names it"),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SilenceRow>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        details: None,
    })?;
    Window::try_from(&body.window).map_err(|e| ApiError::invalid("window", e.to_string()))?;
    if let Some(e) = &body.matchers.equipment {
        if !state.has_equipment(e) {
            return Err(ApiError::invalid(
                "matchers.equipment",
                format!("no equipment {e:?}"),
            ));
        }
    }
    let by = who.label.as_str();
    if body.comment.trim().is_empty() || body.comment.len() > 2_000 {
        return Err(ApiError::invalid(
            "comment",
            "comment: why the alerts are silenced, 1 to 2000 characters",
        ));
    }
    let now = now_ms();
    let id = state
        .store
        .create_silence(&body.matchers, &body.window, body.comment.trim(), by, now)
        .await?;
    reload(&state).await?;
    tracing::info!(id, by, "silence created");
    Ok((
        StatusCode::CREATED,
        Json(SilenceRow {
            id,
            matchers: body.matchers,
            window: body.window,
            comment: body.comment.trim().to_owned(),
            created_by: by.to_owned(),
            created_at_ms: now,
            ended_at_ms: None,
            ended_by: None,
        }),
    ))
}

/// Ends a silence early; what it held back is notified if still due.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    params(("id" = i64, Path, description = "Silence id")),
    responses(
        (status = 204, description = "ended"),
        (status = 404, body = ErrorResponse, description = "no silence in force with that id"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn end(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let by = who.label.as_str();
    if !state.store.end_silence(id, by, now_ms()).await? {
        return Err(ApiError::NotFound(format!("no silence {id} in force")));
    }
    reload(&state).await?;
    tracing::info!(id, by, "silence ended");
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the alerting actor to read the silences again.
async fn reload(state: &AppState) -> Result<(), ApiError> {
    call_alerting(state, AlertingMsg::ReloadSilences).await??;
    Ok(())
}
