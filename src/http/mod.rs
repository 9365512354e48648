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
pub mod rules;
pub mod setpoints;
pub mod silences;
pub mod storage;
pub mod users;
pub mod web;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};
use tokio::sync::{watch, Mutex};
use utoipa::OpenApi;

use crate::simulators::RigSimulator;
use hydrowatch_actors::Tree;
use hydrowatch_models::{EquipmentId, SensorId};

use crate::config::Settings;

/// In-process simulators by equipment.
pub type Simulators = Arc<HashMap<EquipmentId, Arc<Mutex<RigSimulator>>>>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The supervision tree.
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

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hydrowatch API", description = "Real-time supervision of hydraulic equipment."),
    paths(
        equipment::list, equipment::get, history::series, history::stats, ingest::ingest, ws::upgrade,
        detect::detect, detect::anomalies, detect::anomaly_trend,
        alerts::list, alerts::get, alerts::acknowledge, alerts::clear,
        silences::list, silences::create, silences::end,
        rules::list_rules, rules::get_rule, rules::create_rule, rules::replace_rule, rules::delete_rule,
        rules::list_policies, rules::get_policy, rules::create_policy, rules::replace_policy, rules::delete_policy,
        auth::login, auth::refresh, auth::setup, users::own_sessions, users::end_own_session,
        users::list, users::create, users::set_role, users::delete, users::sessions, users::force_logout, users::end_session,
        users::api_keys, users::create_api_key, users::revoke_api_key, users::mfa_reset, users::set_equipment,
        auth::mfa_enrol, auth::mfa_confirm, auth::mfa_disable, auth::password_reset, auth::password_reset_confirm,
        auth::verify_email, auth::verify_email_confirm, auth::logout, auth::me, auth::update_me, auth::change_password,
        ops::live, ops::ready, ops::metrics,
        admin::actors, admin::actor_command, admin::audit_log, admin::simulators, admin::set_condition, admin::simulator_power, admin::simulator_faults, admin::set_simulator_faults, setpoints::list, setpoints::write,
        storage::stats, storage::timescale, storage::ensure_partitions, storage::cleanup, storage::compress, storage::quarantine,
        web::index, web::openapi, web::docs,
    ),
    components(schemas(error::ErrorResponse)),
    modifiers(&Security),
    tags((name = "equipment", description = "Live equipment state"),
         (name = "history", description = "Stored samples: chart series and KPIs"),
         (name = "detect", description = "Cycle models: judge a cycle or a sample; anomalies found inline"),
         (name = "alerts", description = "Alerts: list, history, deliveries, acknowledge, clear; rules, escalation policies and silences"),
         (name = "auth", description = "Sign-in: login, token refresh, logout, who am I"),
         (name = "ingest", description = "Samples from clients (JSON or CSV), quarantine for invalid rows"),
         (name = "live", description = "WebSocket push"),
         (name = "ops", description = "Health and metrics"),
         (name = "admin", description = "Actor tree, simulators, storage, the audit log"),
         (name = "web", description = "Wallboard and documentation")),
)]
pub struct ApiDoc;

/// Documents what each operation needs, from the same table the
/// [`access::authorize`] middleware enforces.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let route = access::route_of_documented(path);
            let operations = [
                (axum::http::Method::GET, &mut item.get),
                (axum::http::Method::POST, &mut item.post),
                (axum::http::Method::PUT, &mut item.put),
                (axum::http::Method::DELETE, &mut item.delete),
                (axum::http::Method::PATCH, &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let Some(Some(needed)) = access::required(&method, route) else {
                    continue;
                };
                let (security, note) = match needed {
                    access::Access::Public => (SecurityRequirement::default(), None),
                    access::Access::InBand => (
                        SecurityRequirement::new("bearer", [""; 0]),
                        Some("Sign in with an `Authorization: Bearer` header on the upgrade or an `auth` frame first; needs `read`.".to_owned()),
                    ),
                    access::Access::SignedIn => (
                        SecurityRequirement::new("bearer", [""; 0]),
                        Some("Any signed-in user.".to_owned()),
                    ),
                    access::Access::Needs(p) => {
                        let roles = access::lowest_role(needed)
                            .map(|r| match r {
                                crate::auth::roles::Role::Viewer => "any role",
                                crate::auth::roles::Role::Engineer => "ENGINEER or ADMIN",
                                crate::auth::roles::Role::Admin => "ADMIN",
                            })
                            .unwrap_or("nobody");
                        (
                            SecurityRequirement::new("bearer", [p.as_str()]),
                            Some(format!("Needs `{}` ({roles}).", p.as_str())),
                        )
                    }
                };
                operation.security = Some(vec![security]);
                if let Some(note) = note {
                    let text = operation.description.take().unwrap_or_default();
                    operation.description = Some(if text.is_empty() {
                        note
                    } else {
                        format!("{text}\n\n{note}")
                    });
                }
            }
        }
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

/// All routes.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/actors", get(admin::actors))
        .route("/actors/{*rest}", post(admin::actor_command))
        .route("/simulators", get(admin::simulators))
        .route("/simulators/{id}/condition", put(admin::set_condition))
        .route(
            "/simulators/{id}/faults",
            get(admin::simulator_faults).put(admin::set_simulator_faults),
        )
        .route("/simulators/{id}/{action}", post(admin::simulator_power))
        .route("/storage/stats", get(storage::stats))
        .route("/storage/timescale", get(storage::timescale))
        .route("/storage/partitions", post(storage::ensure_partitions))
        .route("/storage/cleanup", post(storage::cleanup))
        .route("/storage/compress", post(storage::compress))
        .route("/quarantine", get(storage::quarantine))
        .route("/audit", get(admin::audit_log))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", delete(users::delete))
        .route("/users/{id}/role", put(users::set_role))
        .route("/users/{id}/equipment", put(users::set_equipment))
        .route("/users/{id}/sessions", get(users::sessions))
        .route("/users/{id}/logout", post(users::force_logout))
        .route("/sessions/{id}", delete(users::end_session))
        .route(
            "/api-keys",
            get(users::api_keys).post(users::create_api_key),
        )
        .route("/api-keys/{id}", delete(users::revoke_api_key))
        .route("/users/{id}/mfa/reset", post(users::mfa_reset));
    let api = Router::new()
        .route("/equipment", get(equipment::list))
        .route("/equipment/{id}", get(equipment::get))
        .route("/ingest", post(ingest::ingest))
        .route("/equipment/{id}/series", get(history::series))
        .route("/equipment/{id}/stats", get(history::stats))
        .route("/equipment/{id}/anomalies", get(detect::anomalies))
        .route("/equipment/{id}/anomaly-trend", get(detect::anomaly_trend))
        .route("/equipment/{id}/setpoints", get(setpoints::list))
        .route(
            "/equipment/{id}/setpoints/{setpoint}",
            put(setpoints::write),
        )
        .route("/detect", post(detect::detect))
        .route("/alerts", get(alerts::list))
        .route("/alerts/{id}", get(alerts::get))
        .route("/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/alerts/{id}/clear", post(alerts::clear))
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/{id}", delete(silences::end))
        .route(
            "/alert-rules",
            get(rules::list_rules).post(rules::create_rule),
        )
        .route(
            "/alert-rules/{id}",
            get(rules::get_rule)
                .put(rules::replace_rule)
                .delete(rules::delete_rule),
        )
        .route(
            "/escalation-policies",
            get(rules::list_policies).post(rules::create_policy),
        )
        .route(
            "/escalation-policies/{name}",
            get(rules::get_policy)
                .put(rules::replace_policy)
                .delete(rules::delete_policy),
        )
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/setup", post(auth::setup))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me).patch(auth::update_me))
        .route("/auth/password", post(auth::change_password))
        .route("/auth/mfa/enrol", post(auth::mfa_enrol))
        .route("/auth/mfa/confirm", post(auth::mfa_confirm))
        .route("/auth/mfa/disable", post(auth::mfa_disable))
        .route("/auth/password-reset", post(auth::password_reset))
        .route(
            "/auth/password-reset/confirm",
            post(auth::password_reset_confirm),
        )
        .route("/auth/verify-email", post(auth::verify_email))
        .route(
            "/auth/verify-email/confirm",
            post(auth::verify_email_confirm),
        )
        .route("/auth/sessions", get(users::own_sessions))
        .route("/auth/sessions/{id}", delete(users::end_own_session))
        .route("/ws", get(ws::upgrade))
        .route("/openapi.json", get(web::openapi))
        .route("/docs", get(web::docs))
        .nest("/admin", admin)
        // Outermost last: the audit log sees what authorisation decided.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::record_mutations,
        ))
        .method_not_allowed_fallback(error::method_not_allowed);
    Router::new()
        .route("/", get(web::index))
        .route("/wallboard.css", get(web::css))
        .route("/wallboard.js", get(web::js))
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
