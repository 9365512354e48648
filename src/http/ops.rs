//! Health probes and Prometheus metrics.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use hydrowatch_actors::{ActorKind, LifecycleStatus};
use hydrowatch_protocols::modbus::LinkState;

use super::AppState;

/// Process-level health flags.
#[derive(Debug, Default)]
pub struct HealthFlags {
    /// The root supervisor gave up.
    pub root_failed: AtomicBool,
    /// Shutdown has begun.
    pub stopping: AtomicBool,
}

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub struct Live {
    /// Always `alive`.
    pub status: &'static str,
}

/// The process is running (no dependency checked).
#[utoipa::path(get, path = "/health/live", extensions(("x-access" = json!("public"))), tag = "ops", responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "alive" })
}

/// Readiness answer.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `unready`.
    pub status: &'static str,
    /// Why not ready.
    pub reasons: Vec<String>,
    /// Actors running, by kind.
    pub actors_running: serde_json::Value,
    /// Actors not running (restarting, stopped or failed).
    pub actors_down: Vec<String>,
    /// Connections with a working link / total.
    pub connections_up: usize,
    pub connections_total: usize,
    /// Every connection's health: link, last success, polls, errors by kind,
    /// reconnects, the last error. A device that is down does not make the
    /// process unready; it is shown here.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<hydrowatch_actors::connection::ConnectionStatus>,
    /// The storage writer: `state` (ok, replaying, spooling), `backpressure`,
    /// spool size, rows written, replayed and dropped, the last database error.
    #[schema(value_type = Object)]
    pub storage: serde_json::Value,
    /// The cycle models: `members` loaded (name → version), `unavailable`
    /// members (name → reason; the others are reweighted), member failures.
    #[schema(value_type = Object)]
    pub models: serde_json::Value,
}

/// Ready to serve: the supervision tree is up and the process is not stopping.
/// Devices that are down do not make the process unready; they are listed.
#[utoipa::path(get, path = "/health/ready", extensions(("x-access" = json!("public"))), tag = "ops",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    if state.health.root_failed.load(Ordering::Relaxed) {
        reasons.push("the supervision tree's root gave up".to_owned());
    }
    if state.health.stopping.load(Ordering::Relaxed) {
        reasons.push("shutting down".to_owned());
    }
    let tree = state.tree.registry.snapshot();
    let actors_down: Vec<String> = tree
        .iter()
        .filter(|a| a.status != LifecycleStatus::Running)
        .map(|a| format!("{} ({:?})", a.path, a.status).to_lowercase())
        .collect();
    for level in ["root", "plant", "connections", "sessions"] {
        if state.tree.registry.cell(level).is_none() {
            reasons.push(format!("supervisor {level} is not running"));
        }
    }
    // A database outage does not make us unready: samples are spooled and the
    // live view works. A writer that is not running does.
    let storage = match &state.tree.storage {
        Some(handle) => {
            if handle.writer.get().is_none()
                || state
                    .tree
                    .registry
                    .cell(hydrowatch_actors::tree::STORAGE)
                    .is_none()
            {
                reasons.push("the storage writer is not running".to_owned());
            }
            let mut report = serde_json::to_value(handle.status.report()).unwrap_or_default();
            report["backend"] = state.store.backend().into();
            report
        }
        None => serde_json::Value::Null,
    };
    let connections = super::admin::connection_statuses(&state);
    let up = connections
        .iter()
        .filter(|c| c.link == LinkState::Connected)
        .count();
    let running = serde_json::json!({
        "equipment": state.tree.registry.count_running(ActorKind::Equipment),
        "sensor": state.tree.registry.count_running(ActorKind::Sensor),
        "connection": state.tree.registry.count_running(ActorKind::Connection),
        "session": state.tree.registry.count_running(ActorKind::Session),
    });
    let ok = reasons.is_empty();
    let body = Ready {
        status: if ok { "ready" } else { "unready" },
        reasons,
        actors_running: running,
        actors_down,
        connections_up: up,
        connections_total: connections.len(),
        connections,
        models: serde_json::json!({
            "members": state.scorer.members().collect::<std::collections::BTreeMap<_, _>>(),
            "unavailable": state.scorer.unavailable().iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "member_failures": state.scorer.member_failures(),
        }),
        storage,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", extensions(("x-access" = json!("public"))), tag = "ops",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges that are cheaper to read at scrape time than to keep current.
    let registry = &state.tree.registry;
    let mut depth_by_kind: std::collections::BTreeMap<&'static str, (u64, u64)> =
        Default::default();
    for actor in registry.snapshot() {
        if let Some(depth) = actor.mailbox_depth {
            let entry = depth_by_kind.entry(actor.kind.as_str()).or_default();
            entry.0 += depth;
            entry.1 = entry.1.max(depth);
        }
    }
    for (kind, (sum, max)) in depth_by_kind {
        metrics::gauge!("hydrowatch_mailbox_depth_total", "kind" => kind).set(sum as f64);
        metrics::gauge!("hydrowatch_mailbox_depth_max", "kind" => kind).set(max as f64);
    }
    for kind in [
        ActorKind::Equipment,
        ActorKind::Sensor,
        ActorKind::Connection,
        ActorKind::Session,
        ActorKind::Login,
    ] {
        metrics::gauge!("hydrowatch_actors_running", "kind" => kind.as_str())
            .set(registry.count_running(kind) as f64);
    }
    let connections = super::admin::connection_statuses(&state);
    let up = connections
        .iter()
        .filter(|c| c.link == LinkState::Connected)
        .count();
    metrics::gauge!("hydrowatch_connections_up").set(up as f64);
    metrics::gauge!("hydrowatch_subscriptions").set(state.tree.hub.subscription_count() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
