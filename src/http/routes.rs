//! Every route, declared once: a handler's `#[utoipa::path]` gives its
//! method, path, documentation and, as the `x-access` extension, what it
//! needs. The router, the OpenAPI document and the access table the
//! [`access::authorize`] middleware checks are all built from those.

use std::sync::OnceLock;

use axum::routing::post;
use axum::{middleware, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    access, admin, alerts, audit, auth, detect, equipment, error, history, ingest, ops, rules,
    setpoints, silences, storage, users, web, ws, AppState,
};

/// The wildcard route of actor commands (an actor's path has slashes).
pub const ACTOR_COMMAND_ROUTE: &str = "/api/v1/admin/actors/{*rest}";

/// The routes of `/api/v1`, behind authorisation and the audit log.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(equipment::list))
        .routes(routes!(equipment::get))
        .routes(routes!(history::series))
        .routes(routes!(history::stats))
        .routes(routes!(detect::anomalies))
        .routes(routes!(detect::anomaly_trend))
        .routes(routes!(setpoints::list))
        .routes(routes!(setpoints::write))
        .routes(routes!(ingest::ingest))
        .routes(routes!(detect::detect))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::get))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::clear))
        .routes(routes!(silences::list, silences::create))
        .routes(routes!(silences::end))
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(
            rules::get_rule,
            rules::replace_rule,
            rules::delete_rule
        ))
        .routes(routes!(rules::list_policies, rules::create_policy))
        .routes(routes!(
            rules::get_policy,
            rules::replace_policy,
            rules::delete_policy
        ))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::setup))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me, auth::update_me))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::mfa_enrol))
        .routes(routes!(auth::mfa_confirm))
        .routes(routes!(auth::mfa_disable))
        .routes(routes!(auth::password_reset))
        .routes(routes!(auth::password_reset_confirm))
        .routes(routes!(auth::verify_email))
        .routes(routes!(auth::verify_email_confirm))
        .routes(routes!(users::own_sessions))
        .routes(routes!(users::end_own_session))
        .routes(routes!(ws::upgrade))
        .routes(routes!(web::openapi))
        .routes(routes!(web::docs))
        .merge(admin_api())
}

/// The routes of `/api/v1/admin`.
fn admin_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin::actors))
        .route(ACTOR_COMMAND_ROUTE, post(admin::actor_command))
        .routes(routes!(admin::simulators))
        .routes(routes!(admin::set_condition))
        .routes(routes!(
            admin::simulator_faults,
            admin::set_simulator_faults
        ))
        .routes(routes!(admin::simulator_power))
        .routes(routes!(storage::stats))
        .routes(routes!(storage::timescale))
        .routes(routes!(storage::ensure_partitions))
        .routes(routes!(storage::cleanup))
        .routes(routes!(storage::compress))
        .routes(routes!(storage::quarantine))
        .routes(routes!(admin::audit_log))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::delete))
        .routes(routes!(users::set_role))
        .routes(routes!(users::set_equipment))
        .routes(routes!(users::sessions))
        .routes(routes!(users::force_logout))
        .routes(routes!(users::end_session))
        .routes(routes!(users::api_keys, users::create_api_key))
        .routes(routes!(users::revoke_api_key))
        .routes(routes!(users::mfa_reset))
}

/// The wallboard, health and metrics, outside `/api/v1`.
fn outside_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(web::index))
        .routes(routes!(ops::live))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
}

fn everything() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    outside_api().merge(api()).split_for_parts()
}

/// The OpenAPI document: every operation, with what it needs.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = everything();
        utoipa::Modify::modify(&Security, &mut doc);
        doc
    })
}

/// All routes.
pub fn router(state: AppState) -> Router {
    let (api, _) = api().split_for_parts();
    let api = api
        // Outermost last: the audit log sees what authorisation decided.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::record_mutations,
        ));
    let (outside, _) = outside_api().split_for_parts();
    Router::new()
        .route("/wallboard.css", axum::routing::get(web::css))
        .route("/wallboard.js", axum::routing::get(web::js))
        .merge(outside)
        .merge(api)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// What the OpenAPI document says besides its operations: title, tags,
/// shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(title = "hydrowatch API", description = "Real-time supervision of hydraulic equipment."),
    // Only what the router cannot document itself: the actor commands are
    // one wildcard route, documented as the path and action it takes.
    paths(admin::actor_command),
    components(schemas(error::ErrorResponse)),
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

/// Documents what each operation needs (its `x-access`) as its security
/// requirement and a line of its description.
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
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let Some(needed) = access::of_operation(operation) else {
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
