//! Setpoints: values operators write to a device, through the connection
//! actor that owns the link (so that a write never races a poll), read back
//! before the write counts as done, and audited like every change.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use hydrowatch_actors::connection::{ConnectionMsg, SetpointError, SetpointReading};
use hydrowatch_protocols::modbus::WriteError;

use super::error::{ApiError, ErrorResponse};
use super::{call_actor, equipment_id, AppState};

/// A setpoint with the value the device holds now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetpointView {
    /// Identifier within the equipment.
    pub id: String,
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Lowest value accepted.
    pub min: f64,
    /// Highest value accepted.
    pub max: f64,
    /// Read from the device just now; absent when the read failed.
    pub value: Option<f64>,
    /// Why it could not be read.
    pub error: Option<String>,
}

impl From<SetpointReading> for SetpointView {
    fn from(r: SetpointReading) -> Self {
        SetpointView {
            id: r.spec.id,
            name: r.spec.name,
            unit: r.spec.unit,
            min: r.spec.min,
            max: r.spec.max,
            value: r.value,
            error: r.error,
        }
    }
}

/// The setpoints of a unit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetpointList {
    /// In configuration order.
    pub setpoints: Vec<SetpointView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetpointWrite {
    /// Engineering value, within the setpoint's limits.
    pub value: f64,
}

/// A write the device confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetpointWritten {
    /// The setpoint's id.
    pub setpoint: String,
    /// The value asked for.
    pub requested: f64,
    /// The value read back from the device after the write.
    pub read_back: f64,
    /// The raw registers written (coils as 0/1).
    pub registers: Vec<u16>,
    /// Always true: an unconfirmed write is an error, not a result.
    pub verified: bool,
}

/// Live connection actor of `id`, or why there is none.
fn connection(state: &AppState, id: &str) -> Result<ractor::ActorRef<ConnectionMsg>, ApiError> {
    let equipment = equipment_id(id)?;
    let address = state
        .tree
        .connection_addresses
        .get(&equipment)
        .ok_or_else(|| ApiError::NotFound(format!("no equipment {id:?}")))?;
    address
        .get()
        .ok_or_else(|| ApiError::Unavailable(format!("connections/{id}")))
}

/// How long a setpoint call may take: the write and the read-back, each
/// within the device's request timeout, after a poll that may be running.
fn device_timeout(state: &AppState) -> std::time::Duration {
    state.settings.actor_timeout() * 4
}

/// Lists a unit's setpoints with the values its device holds now.
#[utoipa::path(get, path = "/api/v1/equipment/{id}/setpoints", extensions(("x-access" = json!("read"))), tag = "equipment",
    params(("id" = String, Path, description = "Equipment id")),
    responses(
        (status = 200, body = SetpointList),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 503, body = ErrorResponse, description = "the connection actor is restarting"),
        (status = 504, body = ErrorResponse, description = "the connection actor did not answer in time"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<SetpointList>, ApiError> {
    let Path(id) = path?;
    let actor = connection(&state, &id)?;
    let timeout = device_timeout(&state);
    let path = format!("connections/{id}");
    let readings = call_actor(&actor, ConnectionMsg::ReadSetpoints, &path, timeout).await?;
    Ok(Json(SetpointList {
        setpoints: readings.into_iter().map(SetpointView::from).collect(),
    }))
}

/// Writes a setpoint to the device and reads it back. Answers 200 only when
/// the device holds exactly what was written.
#[utoipa::path(put, path = "/api/v1/equipment/{id}/setpoints/{setpoint}", extensions(("x-access" = json!("setpoints:write"))), tag = "equipment",
    request_body = SetpointWrite,
    params(("id" = String, Path, description = "Equipment id"),
           ("setpoint" = String, Path, description = "Setpoint id")),
    responses(
        (status = 200, body = SetpointWritten),
        (status = 404, body = ErrorResponse, description = "unknown equipment or setpoint"),
        (status = 422, body = ErrorResponse, description = "`out_of_range`: outside the setpoint's limits or its type"),
        (status = 502, body = ErrorResponse, description = "`device_refused` (a Modbus exception), `device_unreachable`, or `write_not_verified` (read back other than written)"),
        (status = 503, body = ErrorResponse, description = "the connection actor is restarting"),
        (status = 504, body = ErrorResponse, description = "the connection actor did not answer in time"),
    ))]
pub async fn write(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    body: Result<Json<SetpointWrite>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SetpointWritten>, ApiError> {
    let Path((id, setpoint)) = path?;
    let Json(body) = body?;
    let actor = connection(&state, &id)?;
    let timeout = device_timeout(&state);
    let message = |reply| ConnectionMsg::WriteSetpoint {
        id: setpoint.clone(),
        value: body.value,
        reply,
    };
    let outcome = call_actor(&actor, message, &format!("connections/{id}"), timeout).await?;
    match outcome {
        Ok(done) => {
            // The connection actor logs the write; the audit log, who asked.
            Ok(Json(SetpointWritten {
                setpoint,
                requested: done.requested,
                read_back: done.read_back,
                registers: done.registers,
                verified: true,
            }))
        }
        Err(err) => Err(setpoint_error(err)),
    }
}

fn setpoint_error(err: SetpointError) -> ApiError {
    let message = err.to_string();
    match err {
        SetpointError::Unknown(_) => ApiError::NotFound(message),
        SetpointError::OutOfRange { min, max, .. } => ApiError::BadRequest {
            message,
            details: Some(
                serde_json::json!({ "field": "value", "code": "out_of_range", "min": min, "max": max }),
            ),
        },
        SetpointError::Device(WriteError::NotRepresentable { .. }) => ApiError::BadRequest {
            message,
            details: Some(serde_json::json!({ "field": "value", "code": "out_of_range" })),
        },
        SetpointError::Device(WriteError::NotWritable(_)) => ApiError::Internal(message),
        SetpointError::Device(WriteError::Exception(code)) => ApiError::Device {
            code: "device_refused",
            message,
            details: Some(serde_json::json!({ "exception": code })),
        },
        SetpointError::Device(WriteError::Link(_)) => ApiError::Device {
            code: "device_unreachable",
            message,
            details: None,
        },
        SetpointError::Device(WriteError::NotVerified { written, read_back }) => ApiError::Device {
            code: "write_not_verified",
            message,
            details: Some(serde_json::json!({ "written": written, "read_back": read_back })),
        },
    }
}
