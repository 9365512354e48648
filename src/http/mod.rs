//! The HTTP/WebSocket façade: routes each request to the actor that owns the answer.

pub mod access;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod detect;
pub mod equipment;
pub mod error;
pub mod history;
pub mod ingest;
pub mod ops;
pub mod routes;
pub mod rules;
pub mod setpoints;
pub mod silences;
pub mod storage;
pub mod users;
pub mod web;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::simulators::RigSimulator;
use hydrowatch_actors::Tree;
use hydrowatch_models::{EquipmentId, SensorId};

use crate::config::Settings;

pub use routes::{openapi, router, ApiDoc};

/// In-process simulators by equipment.
pub type Simulators = Arc<HashMap<EquipmentId, Arc<Mutex<RigSimulator>>>>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub tree: Tree,
    /// The database.
    pub store: crate::store::Store,
    /// Rate limits and batch ids in flight of the ingest API.
    pub ingest: Arc<ingest::IngestState>,
    /// Database id of each sensor, by equipment.
    pub sensor_ids: Arc<HashMap<EquipmentId, HashMap<SensorId, i64>>>,
    /// The in-process simulators.
    pub simulators: Simulators,
    /// Becomes `true` when the process is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Process health (root alive, not shutting down).
    pub health: Arc<ops::HealthFlags>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The cycle models (inline in the equipment actors, and `/detect`).
    pub scorer: Arc<hydrowatch_models::scoring::Scorer>,
    /// Alert rules and escalation policies, and the way to change them.
    pub alert_rules: Arc<crate::alert_rules::AlertRules>,
    /// Logins, tokens and sessions.
    pub auth: Arc<crate::auth::Auth>,
    /// The hash-chained audit log.
    pub audit: Arc<crate::audit::AuditLog>,
}

impl AppState {
    /// Whether the plant has equipment `id`.
    pub fn has_equipment(&self, id: &str) -> bool {
        self.tree
            .equipment_specs
            .iter()
            .any(|spec| spec.id.as_str() == id)
    }
}

/// `id` as an equipment id, or 404 `not_found` (an id that does not parse
/// names no equipment).
pub(crate) fn equipment_id(id: &str) -> Result<EquipmentId, error::ApiError> {
    EquipmentId::parse(id).map_err(|_| error::ApiError::NotFound(format!("no equipment {id:?}")))
}

/// Asks `actor` within `timeout`: its answer, or 504 `actor_timeout` / 503
/// `actor_unavailable` naming `path`.
pub(crate) async fn call_actor<M: ractor::Message, T: Send + 'static>(
    actor: &ractor::ActorRef<M>,
    message: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
    path: &str,
    timeout: std::time::Duration,
) -> Result<T, error::ApiError> {
    match actor.call(message, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(answer)) => Ok(answer),
        Ok(ractor::rpc::CallResult::Timeout) => Err(error::ApiError::Timeout(
            path.to_owned(),
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        )),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            Err(error::ApiError::Unavailable(path.to_owned()))
        }
    }
}
