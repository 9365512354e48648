//! Alert rules and escalation policies: list, read, create, replace,
//! delete. Those of `plant.toml` are listed but read-only (409
//! `provisioned`). A change is in force when the call returns: the alerting
//! actor has it, and every equipment unit has it from its next staleness
//! tick.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use hydrowatch_actors::alerting::AlertingMsg;
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::RuleSpec;

use super::alerts::call_alerting;
use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::alert_rules::{PolicyRow, RuleRow, RulesError};
use crate::auth::Principal;
use hydrowatch_actors::clock::now_ms;

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> ApiError {
        let refused = |code, e: &RulesError| ApiError::Refused {
            code,
            message: e.to_string(),
        };
        match e {
            RulesError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RulesError::Provisioned(_) => refused("provisioned", &e),
            RulesError::Exists(_) => refused("already_exists", &e),
            RulesError::Stale { .. } => refused("version_conflict", &e),
            RulesError::InUse { .. } => refused("in_use", &e),
            RulesError::Invalid { field, reason } => ApiError::invalid(&field, reason),
            RulesError::Store(e) => e.into(),
        }
    }
}

/// A new alert rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// The rule, as in `[[alerting.rules]]` of `plant.toml`: `id`,
    /// `equipment`, `severity`, `for_ms`, `keep_firing_ms`, `policy`,
    /// `flap_changes`, `flap_window_ms`, `when` (`{"threshold": {...}}`,
    /// `{"model": {...}}`, `{"novelty": {...}}` or `{"quality": {...}}`).
    #[schema(value_type = Object)]
    pub rule: RuleSpec,
}

/// A rule's replacement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleReplacement {
    /// The rule; its `id` must be the one in the path.
    #[schema(value_type = Object)]
    pub rule: RuleSpec,
    /// The version replaced: refused with 409 `version_conflict` if it
    /// changed since (left out: whatever is stored).
    pub version: Option<i64>,
}

/// A new escalation policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// Its name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// `steps` (each `after_ms` and `channels`: `wallboard`,
    /// `email:ADDRESS`, `webhook:NAME`, `slack:NAME`) and
    /// `repeat_critical_ms`.
    #[schema(value_type = Object)]
    pub policy: EscalationPolicy,
}

/// A policy's replacement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyReplacement {
    /// Steps and repeat interval.
    #[schema(value_type = Object)]
    pub policy: EscalationPolicy,
    /// The version replaced (left out: whatever is stored).
    pub version: Option<i64>,
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        details: None,
    })
}

fn version(v: Option<i64>) -> Result<i64, ApiError> {
    match v {
        None => Ok(0),
        Some(v) if v >= 1 => Ok(v),
        Some(_) => Err(ApiError::invalid("version", "version: 1 or more")),
    }
}

/// Waits until the alerting actor has the change. If it is restarting, the
/// change is stored and published all the same: the next instance starts
/// with it.
async fn in_force(state: &AppState) {
    if let Err(e) = call_alerting(state, AlertingMsg::Sync).await {
        tracing::warn!(error = %e, "alerting did not confirm the rule change; it applies when alerting is back");
    }
}

/// Every alert rule, by id: those of `plant.toml` and those created here.
#[utoipa::path(get, path = "/api/v1/alert-rules", extensions(("x-access" = json!("read"))), tag = "alerts",
    responses((status = 200, body = [RuleRow])))]
pub async fn list_rules(State(state): State<AppState>) -> Json<Vec<RuleRow>> {
    Json(state.alert_rules.rules().await)
}

/// One alert rule.
#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", extensions(("x-access" = json!("read"))), tag = "alerts",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, body = RuleRow), (status = 404, body = ErrorResponse)))]
pub async fn get_rule(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RuleRow>, ApiError> {
    let Path(id) = path?;
    Ok(Json(state.alert_rules.rule(&id).await?))
}

/// Creates an alert rule; it is in force when this returns.
#[utoipa::path(post, path = "/api/v1/alert-rules", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    request_body = NewRule,
    responses(
        (status = 201, body = RuleRow),
        (status = 409, body = ErrorResponse, description = "`already_exists`, or `provisioned` (the id is a rule of plant.toml)"),
        (status = 422, body = ErrorResponse, description = "a bad rule: `details.field` names the field (e.g. `when.threshold.min`, `policy`, `equipment`)"),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn create_rule(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewRule>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RuleRow>), ApiError> {
    let body = json_body(body)?;
    let by = who.label.as_str();
    let row = state
        .alert_rules
        .put_rule(body.rule, by, None, now_ms())
        .await?;
    in_force(&state).await;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Replaces an alert rule created through the API. Its open alerts take
/// the new severity floor, timing and policy; a changed condition is
/// evaluated afresh from each sensor's last reading.
#[utoipa::path(put, path = "/api/v1/alert-rules/{id}", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    params(("id" = String, Path, description = "Rule id")),
    request_body = RuleReplacement,
    responses(
        (status = 200, body = RuleRow),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "`provisioned` or `version_conflict`"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn replace_rule(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<RuleReplacement>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RuleRow>, ApiError> {
    let Path(id) = path?;
    let body = json_body(body)?;
    let by = who.label.as_str();
    if body.rule.id != id {
        return Err(ApiError::invalid(
            "rule.id",
            format!(
                "rule.id {:?} is not the id in the path ({id:?})",
                body.rule.id
            ),
        ));
    }
    let expected = version(body.version)?;
    let row = state
        .alert_rules
        .put_rule(body.rule, by, Some(expected), now_ms())
        .await?;
    in_force(&state).await;
    Ok(Json(row))
}

/// Deletes an alert rule created through the API; its open alerts are
/// cleared, with the reason in their history.
#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "`provisioned`"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn delete_rule(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let by = who.label.as_str();
    state.alert_rules.delete_rule(&id, by).await?;
    in_force(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every escalation policy, by name.
#[utoipa::path(get, path = "/api/v1/escalation-policies", extensions(("x-access" = json!("read"))), tag = "alerts",
    responses((status = 200, body = [PolicyRow])))]
pub async fn list_policies(State(state): State<AppState>) -> Json<Vec<PolicyRow>> {
    Json(state.alert_rules.policies().await)
}

/// One escalation policy.
#[utoipa::path(get, path = "/api/v1/escalation-policies/{name}", extensions(("x-access" = json!("read"))), tag = "alerts",
    params(("name" = String, Path, description = "Policy name")),
    responses((status = 200, body = PolicyRow), (status = 404, body = ErrorResponse)))]
pub async fn get_policy(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<PolicyRow>, ApiError> {
    let Path(name) = path?;
    Ok(Json(state.alert_rules.policy(&name).await?))
}

/// Creates an escalation policy. Every channel must be configured in
/// `[notify]`.
#[utoipa::path(post, path = "/api/v1/escalation-policies", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    request_body = NewPolicy,
    responses(
        (status = 201, body = PolicyRow),
        (status = 409, body = ErrorResponse, description = "`already_exists` or `provisioned`"),
        (status = 422, body = ErrorResponse, description = "a bad name, step or channel: `details.field` names it (e.g. `policy.steps[1].channels[0]`)"),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn create_policy(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewPolicy>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<PolicyRow>), ApiError> {
    let body = json_body(body)?;
    let by = who.label.as_str();
    let row = state
        .alert_rules
        .put_policy(&body.name, body.policy, by, None, now_ms())
        .await?;
    in_force(&state).await;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Replaces an escalation policy created through the API. Open alerts
/// that use it follow the new steps; steps already notified are not sent
/// again.
#[utoipa::path(put, path = "/api/v1/escalation-policies/{name}", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    params(("name" = String, Path, description = "Policy name")),
    request_body = PolicyReplacement,
    responses(
        (status = 200, body = PolicyRow),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "`provisioned` or `version_conflict`"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn replace_policy(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<PolicyReplacement>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PolicyRow>, ApiError> {
    let Path(name) = path?;
    let body = json_body(body)?;
    let by = who.label.as_str();
    let expected = version(body.version)?;
    let row = state
        .alert_rules
        .put_policy(&name, body.policy, by, Some(expected), now_ms())
        .await?;
    in_force(&state).await;
    Ok(Json(row))
}

/// Deletes an escalation policy created through the API that no rule uses.
#[utoipa::path(delete, path = "/api/v1/escalation-policies/{name}", extensions(("x-access" = json!("rules:manage"))), tag = "alerts",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "`provisioned`, or `in_use` by rules"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn delete_policy(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(name) = path?;
    let by = who.label.as_str();
    state.alert_rules.delete_policy(&name, by).await?;
    in_force(&state).await;
    Ok(StatusCode::NO_CONTENT)
}
