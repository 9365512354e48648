//! Live equipment state, asked from the actor that owns it.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use hydrowatch_actors::plant::EquipmentMsg;
use hydrowatch_models::{EquipmentId, EquipmentSnapshot, Health, HealthStatus};

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::auth::Principal;

/// One row of the equipment list.
#[derive(Debug, Serialize, ToSchema)]
pub struct EquipmentSummary {
    pub id: EquipmentId,
    pub name: String,
    /// Site name.
    pub site: String,
    /// Current health (`unknown` when the actor does not answer in time).
    pub health: Health,
    /// Number of sensors.
    pub sensor_count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EquipmentList {
    /// Units in display order.
    pub equipment: Vec<EquipmentSummary>,
}

/// Lists the equipment units with their health: those the caller may see.
#[utoipa::path(get, path = "/api/v1/equipment", extensions(("x-access" = json!("read"))), tag = "equipment",
    responses((status = 200, body = EquipmentList)))]
pub async fn list(State(state): State<AppState>, who: Principal) -> Json<EquipmentList> {
    let seen = state
        .tree
        .equipment_specs
        .iter()
        .filter(|spec| who.sees(spec.id.as_str()));
    let asks = seen.map(|spec| {
        let state = state.clone();
        let spec = spec.clone();
        async move {
            let health = match snapshot(&state, &spec.id).await {
                Ok(s) => s.health,
                Err(e) => Health {
                    status: HealthStatus::Unknown,
                    reason: Some(e.to_string()),
                },
            };
            EquipmentSummary {
                id: spec.id.clone(),
                name: spec.name.clone(),
                site: spec.site.clone(),
                health,
                sensor_count: spec.sensors.len(),
            }
        }
    });
    Json(EquipmentList {
        equipment: futures::future::join_all(asks).await,
    })
}

/// The live snapshot of one equipment unit.
#[utoipa::path(get, path = "/api/v1/equipment/{id}", extensions(("x-access" = json!("read"))), tag = "equipment",
    params(("id" = String, Path, description = "Equipment id")),
    responses(
        (status = 200, body = EquipmentSnapshot),
        (status = 404, body = ErrorResponse, description = "unknown equipment"),
        (status = 503, body = ErrorResponse, description = "the equipment actor is restarting"),
        (status = 504, body = ErrorResponse, description = "the equipment actor did not answer in time"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<EquipmentSnapshot>, ApiError> {
    let Path(id) = path?;
    let id = super::equipment_id(&id)?;
    snapshot(&state, &id).await.map(Json)
}

/// Asks the equipment actor for its snapshot, within the configured timeout.
pub async fn snapshot(state: &AppState, id: &EquipmentId) -> Result<EquipmentSnapshot, ApiError> {
    let address = state
        .tree
        .equipment
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no equipment {:?}", id.as_str())))?;
    let path = format!("plant/{id}");
    let actor = address
        .get()
        .filter(|a| {
            state
                .tree
                .registry
                .cell(&path)
                .is_some_and(|c| c.get_id() == a.get_id())
        })
        .ok_or_else(|| ApiError::Unavailable(path.clone()))?;
    super::call_actor(
        &actor,
        EquipmentMsg::GetSnapshot,
        &path,
        state.settings.actor_timeout(),
    )
    .await
}
