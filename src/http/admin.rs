//! The admin API: the actor tree, actor control, simulated rigs, the
//! audit log. What each route needs is in [`super::access::ROUTES`].

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::simulators::RigSimulator;
use hydrowatch_actors::connection::ConnectionStatus;
use hydrowatch_actors::supervision::{AdminError, AdminOp, SupervisionCmd};
use hydrowatch_actors::ActorInfo;
use hydrowatch_models::EquipmentId;
use hydrowatch_protocols::rig::RigCondition;

use super::error::{ApiError, ErrorResponse};
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct ActorTree {
    /// Every actor, sorted by path.
    #[schema(value_type = Vec<Object>)]
    pub actors: Vec<ActorInfo>,
    /// Every connection's link health.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<ConnectionStatus>,
}

/// Lists every actor with its status, restarts, last error and mailbox depth.
#[utoipa::path(get, path = "/api/v1/admin/actors", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    responses((status = 200, body = ActorTree), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn actors(State(state): State<AppState>) -> Json<ActorTree> {
    Json(ActorTree {
        actors: state.tree.registry.snapshot(),
        connections: connection_statuses(&state),
    })
}

/// The link health of every connection.
pub fn connection_statuses(state: &AppState) -> Vec<ConnectionStatus> {
    state
        .tree
        .connections
        .iter()
        .filter_map(|s| s.lock().ok().map(|s| s.clone()))
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct ActorCommandResult {
    /// Path of the actor, e.g. `plant/rig-1/PS1`.
    pub path: String,
    /// What was done.
    pub action: String,
    /// Its status afterwards.
    #[schema(value_type = Object)]
    pub actor: Option<ActorInfo>,
}

/// Restarts, stops or starts an actor: `POST /api/v1/admin/actors/plant/rig-1/PS1/restart`.
#[utoipa::path(post, path = "/api/v1/admin/actors/{path}/{action}", extensions(("x-access" = json!("actors:manage"))), tag = "admin",
    params(("path" = String, Path, description = "Actor path, e.g. plant/rig-1/PS1 (slashes literal or %2F)"),
           ("action" = String, Path, description = "restart | stop | start")),
    responses((status = 200, body = ActorCommandResult), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn actor_command(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ActorCommandResult>, ApiError> {
    let Path(rest) = path?;
    let rest = rest.trim_matches('/');
    let (path, action) = rest.rsplit_once('/').ok_or_else(|| ApiError::BadRequest {
        message: "expected /api/v1/admin/actors/{path}/{restart|stop|start}".into(),
        details: None,
    })?;
    let op = match action {
        "restart" => AdminOp::Restart,
        "stop" => AdminOp::Stop,
        "start" => AdminOp::Start,
        other => {
            return Err(ApiError::BadRequest {
                message: format!("unknown action {other:?}; expected restart, stop or start"),
                details: Some(serde_json::json!({ "field": "action" })),
            })
        }
    };
    let owner = state.tree.registry.owner(path).ok_or_else(|| {
        if path == "root" {
            ApiError::Conflict(
                "the root supervisor cannot be controlled; restart the process".into(),
            )
        } else {
            ApiError::NotFound(format!("no actor {path:?}"))
        }
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reply: ractor::RpcReplyPort<Result<(), AdminError>> = tx.into();
    let cmd = SupervisionCmd::Admin {
        child: owner.child_id,
        op,
        reply,
    };
    if !owner.supervisor.send(cmd) {
        return Err(ApiError::Unavailable(format!("supervisor of {path}")));
    }
    let timeout = state.settings.actor_timeout() * 5;
    let result = tokio::time::timeout(timeout, rx)
        .await
        .map_err(|_| {
            ApiError::Timeout(format!("supervisor of {path}"), timeout.as_millis() as u64)
        })?
        .map_err(|_| ApiError::Unavailable(format!("supervisor of {path}")))?;
    match result {
        Ok(()) => {}
        Err(AdminError::AlreadyRunning(_)) => {
            return Err(ApiError::Conflict(format!("{path} is already running")))
        }
        Err(AdminError::UnknownChild(_)) => {
            return Err(ApiError::NotFound(format!("no actor {path:?}")))
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    }
    tracing::info!(actor = %path, action, "admin actor command");
    Ok(Json(ActorCommandResult {
        path: path.to_owned(),
        action: action.to_owned(),
        actor: state.tree.registry.info(path),
    }))
}

/// A simulated rig.
#[derive(Serialize, ToSchema)]
pub struct SimulatorInfo {
    /// Equipment it simulates.
    pub equipment: String,
    /// Where it listens.
    pub address: String,
    /// What a connection points at (`host:port`, or an `opc.tcp://` URL).
    pub endpoint: String,
    /// Whether it serves.
    pub running: bool,
    /// Condition replayed.
    pub condition: String,
    /// `modbus_tcp`, `modbus_rtu_over_tcp` or `opcua`.
    pub protocol: &'static str,
    /// Whether any fault is being injected.
    pub faulty: bool,
}

impl SimulatorInfo {
    fn of(equipment: String, sim: &RigSimulator) -> Self {
        SimulatorInfo {
            equipment,
            address: sim.addr().to_string(),
            endpoint: sim.endpoint(),
            running: sim.is_running(),
            condition: sim.condition().to_string(),
            protocol: sim.protocol(),
            faulty: sim.faulty(),
        }
    }
}

/// The faults a simulated rig injects, and what it has served.
#[derive(Serialize, ToSchema)]
pub struct SimulatorFaults {
    /// Equipment it simulates.
    pub equipment: String,
    /// Modbus: `probability`, `latency_ms`, `drop_connection`,
    /// `no_response`, `exception`, `garbage`, `truncated`,
    /// `short_response`, `stale_transaction`. OPC-UA: `latency_ms`,
    /// `no_response`, `drop_connections`, `stall`.
    #[schema(value_type = Object)]
    pub faults: serde_json::Value,
    /// Modbus: connections, requests, and requests hit by a fault. OPC-UA:
    /// connections and restarts.
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
}

impl SimulatorFaults {
    fn of(equipment: String, sim: &RigSimulator) -> Self {
        SimulatorFaults {
            equipment,
            faults: sim.faults(),
            stats: sim.stats(),
        }
    }
}

/// The faults a simulated rig injects.
#[utoipa::path(get, path = "/api/v1/admin/simulators/{id}/faults", extensions(("x-access" = json!("simulators:manage"))), tag = "admin",
    params(("id" = String, Path, description = "Equipment id")),
    responses((status = 200, body = SimulatorFaults), (status = 404, body = ErrorResponse)))]
pub async fn simulator_faults(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<SimulatorFaults>, ApiError> {
    let Path(id) = path?;
    let sim = find_simulator(&state, &id)?;
    let sim = sim.lock().await;
    Ok(Json(SimulatorFaults::of(id, &sim)))
}

/// Sets the faults a simulated rig injects (replacing the ones before; `{}`
/// clears them). Modbus: latency, missing answers, dropped connections,
/// exception codes, garbage, truncated or short frames, stale transaction
/// ids, each on a share `probability` of the requests. OPC-UA: latency, a
/// hung server, dropped connections, a stalled path (a server restart is
/// `POST …/{id}/restart`).
#[utoipa::path(put, path = "/api/v1/admin/simulators/{id}/faults", extensions(("x-access" = json!("simulators:manage"))), tag = "admin",
    request_body(content = Object, description = "The faults (unknown fields are refused)"),
    params(("id" = String, Path, description = "Equipment id")),
    responses((status = 200, body = SimulatorFaults), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn set_simulator_faults(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SimulatorFaults>, ApiError> {
    let Path(id) = path?;
    let Json(faults) = body?;
    let sim = find_simulator(&state, &id)?;
    let sim = sim.lock().await;
    sim.set_faults(faults).map_err(|m| ApiError::BadRequest {
        message: m,
        details: None,
    })?;
    let now = SimulatorFaults::of(id, &sim);
    tracing::warn!(equipment = %now.equipment, faults = %now.faults, "simulator faults changed");
    Ok(Json(now))
}

/// Lists the in-process simulators.
#[utoipa::path(get, path = "/api/v1/admin/simulators", extensions(("x-access" = json!("simulators:manage"))), tag = "admin",
    responses((status = 200, body = Vec<SimulatorInfo>)))]
pub async fn simulators(State(state): State<AppState>) -> Json<Vec<SimulatorInfo>> {
    let mut out = Vec::new();
    for (id, sim) in state.simulators.iter() {
        let sim = sim.lock().await;
        out.push(SimulatorInfo::of(id.to_string(), &sim));
    }
    Json(out)
}

/// A condition to replay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionRequest {
    /// healthy | cooler_degraded | valve_lag | pump_leakage | accumulator_low
    pub condition: String,
}

/// Switches the recorded condition a simulated rig replays.
#[utoipa::path(put, path = "/api/v1/admin/simulators/{id}/condition", extensions(("x-access" = json!("simulators:manage"))), tag = "admin",
    request_body = ConditionRequest,
    params(("id" = String, Path, description = "Equipment id")),
    responses((status = 200, body = SimulatorInfo), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn set_condition(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Json<ConditionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SimulatorInfo>, ApiError> {
    let Path(id) = path?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest {
        message: e.body_text(),
        details: None,
    })?;
    let condition: RigCondition = body.condition.parse().map_err(|m| ApiError::BadRequest {
        message: m,
        details: Some(serde_json::json!({ "field": "condition" })),
    })?;
    let sim = find_simulator(&state, &id)?;
    let sim = sim.lock().await;
    sim.set_condition(condition);
    tracing::info!(equipment = %id, %condition, "simulated condition switched");
    Ok(Json(SimulatorInfo::of(id, &sim)))
}

/// Stops or starts a simulated rig (as if its PLC lost or regained power).
#[utoipa::path(post, path = "/api/v1/admin/simulators/{id}/{action}", extensions(("x-access" = json!("simulators:manage"))), tag = "admin",
    params(("id" = String, Path, description = "Equipment id"), ("action" = String, Path, description = "stop | start | restart")),
    responses((status = 200, body = SimulatorInfo), (status = 404, body = ErrorResponse)))]
pub async fn simulator_power(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<SimulatorInfo>, ApiError> {
    let Path((id, action)) = path?;
    let sim = find_simulator(&state, &id)?;
    let mut sim = sim.lock().await;
    let start_failed =
        |e: String| ApiError::Conflict(format!("simulator could not start again: {e}"));
    match action.as_str() {
        "stop" => sim.stop().await,
        "start" => sim.start().await.map_err(start_failed)?,
        "restart" => {
            sim.stop().await;
            sim.start().await.map_err(start_failed)?
        }
        other => {
            return Err(ApiError::BadRequest {
                message: format!("unknown action {other:?}; expected stop, start or restart"),
                details: Some(serde_json::json!({ "field": "action" })),
            })
        }
    }
    tracing::info!(equipment = %id, action, "simulator power");
    Ok(Json(SimulatorInfo::of(id, &sim)))
}

fn find_simulator(
    state: &AppState,
    id: &str,
) -> Result<std::sync::Arc<tokio::sync::Mutex<RigSimulator>>, ApiError> {
    EquipmentId::parse(id)
        .ok()
        .and_then(|id| state.simulators.get(&id).cloned())
        .ok_or_else(|| ApiError::NotFound(format!("no simulator for equipment {id:?}")))
}

/// `GET /api/v1/admin/audit` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Rows after this sequence number (0: from the first).
    #[serde(default)]
    pub after: i64,
    /// At most this many rows, 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Rows in sequence order, as stored and hashed (`changes` is the JSON
    /// text the hash covers), so that a copy can be checked elsewhere.
    pub rows: Vec<crate::audit::AuditRow>,
    /// Pass as `after` for the next page (`None`: this was the last).
    pub next_after: Option<i64>,
}

/// The audit log, oldest first, a page at a time. `hydrowatch audit
/// verify` checks the chain.
#[utoipa::path(get, path = "/api/v1/admin/audit", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit: 1 to 1000"));
    }
    if q.after < 0 {
        return Err(ApiError::invalid("after", "after: 0 or more"));
    }
    let rows = state.audit.rows(q.after, limit).await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditPage { rows, next_after }))
}
