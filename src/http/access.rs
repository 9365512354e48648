//! Who may call what. Every route of the API is in [`ROUTES`] with what it
//! needs; the [`authorize`] middleware checks it before the handler runs.
//! A route missing from the table is refused (it fails closed), and a unit
//! test holds the table and the OpenAPI document to each other.
//!
//! VIEWER reads; ENGINEER also sends samples, acts on alerts and manages
//! rules, policies, silences and simulated conditions; ADMIN also manages
//! actors, storage, users and the audit log (see [`Role::permissions`]).

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::auth::roles::{Permission, Role};
use crate::auth::{Credential, Principal};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in itself, the documentation).
    Public,
    /// The WebSocket: it authenticates in band (an `Authorization` header on
    /// the upgrade, or an `auth` frame first), since browsers cannot set
    /// headers on a WebSocket.
    InBand,
    /// Any signed-in user, also one who must change their password first
    /// (not the break-glass token: these routes are about one's own user).
    SignedIn,
    /// A signed-in user whose role has this permission.
    Needs(Permission),
}

use Access::*;
use Permission::*;

/// Every route of `/api/v1`: method, route as matched, what it needs.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("POST", "/api/v1/auth/setup", Public),
    ("POST", "/api/v1/auth/logout", SignedIn),
    ("GET", "/api/v1/auth/me", SignedIn),
    ("PATCH", "/api/v1/auth/me", SignedIn),
    ("POST", "/api/v1/auth/password", SignedIn),
    ("GET", "/api/v1/auth/sessions", SignedIn),
    ("POST", "/api/v1/auth/mfa/enrol", SignedIn),
    ("POST", "/api/v1/auth/mfa/confirm", SignedIn),
    ("POST", "/api/v1/auth/mfa/disable", SignedIn),
    ("POST", "/api/v1/auth/password-reset", Public),
    ("POST", "/api/v1/auth/password-reset/confirm", Public),
    ("POST", "/api/v1/auth/verify-email", SignedIn),
    ("POST", "/api/v1/auth/verify-email/confirm", Public),
    ("DELETE", "/api/v1/auth/sessions/{id}", SignedIn),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/docs", Public),
    ("GET", "/api/v1/ws", InBand),
    ("GET", "/api/v1/equipment", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}/series", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}/stats", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}/anomalies", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}/anomaly-trend", Needs(Read)),
    ("GET", "/api/v1/equipment/{id}/setpoints", Needs(Read)),
    (
        "PUT",
        "/api/v1/equipment/{id}/setpoints/{setpoint}",
        Needs(SetpointsWrite),
    ),
    ("POST", "/api/v1/ingest", Needs(Ingest)),
    ("POST", "/api/v1/detect", Needs(Ingest)),
    ("GET", "/api/v1/alerts", Needs(Read)),
    ("GET", "/api/v1/alerts/{id}", Needs(Read)),
    ("POST", "/api/v1/alerts/{id}/acknowledge", Needs(AlertsAct)),
    ("POST", "/api/v1/alerts/{id}/clear", Needs(AlertsAct)),
    ("GET", "/api/v1/silences", Needs(Read)),
    ("POST", "/api/v1/silences", Needs(RulesManage)),
    ("DELETE", "/api/v1/silences/{id}", Needs(RulesManage)),
    ("GET", "/api/v1/alert-rules", Needs(Read)),
    ("POST", "/api/v1/alert-rules", Needs(RulesManage)),
    ("GET", "/api/v1/alert-rules/{id}", Needs(Read)),
    ("PUT", "/api/v1/alert-rules/{id}", Needs(RulesManage)),
    ("DELETE", "/api/v1/alert-rules/{id}", Needs(RulesManage)),
    ("GET", "/api/v1/escalation-policies", Needs(Read)),
    ("POST", "/api/v1/escalation-policies", Needs(RulesManage)),
    ("GET", "/api/v1/escalation-policies/{name}", Needs(Read)),
    (
        "PUT",
        "/api/v1/escalation-policies/{name}",
        Needs(RulesManage),
    ),
    (
        "DELETE",
        "/api/v1/escalation-policies/{name}",
        Needs(RulesManage),
    ),
    ("GET", "/api/v1/admin/simulators", Needs(SimulatorsManage)),
    (
        "PUT",
        "/api/v1/admin/simulators/{id}/condition",
        Needs(SimulatorsManage),
    ),
    (
        "POST",
        "/api/v1/admin/simulators/{id}/{action}",
        Needs(SimulatorsManage),
    ),
    (
        "GET",
        "/api/v1/admin/simulators/{id}/faults",
        Needs(SimulatorsManage),
    ),
    (
        "PUT",
        "/api/v1/admin/simulators/{id}/faults",
        Needs(SimulatorsManage),
    ),
    ("GET", "/api/v1/admin/actors", Needs(ActorsManage)),
    ("POST", "/api/v1/admin/actors/{*rest}", Needs(ActorsManage)),
    ("GET", "/api/v1/admin/storage/stats", Needs(ActorsManage)),
    (
        "GET",
        "/api/v1/admin/storage/timescale",
        Needs(ActorsManage),
    ),
    (
        "POST",
        "/api/v1/admin/storage/partitions",
        Needs(ActorsManage),
    ),
    ("POST", "/api/v1/admin/storage/cleanup", Needs(ActorsManage)),
    (
        "POST",
        "/api/v1/admin/storage/compress",
        Needs(ActorsManage),
    ),
    ("GET", "/api/v1/admin/quarantine", Needs(ActorsManage)),
    ("GET", "/api/v1/admin/audit", Needs(UsersManage)),
    ("GET", "/api/v1/admin/api-keys", Needs(UsersManage)),
    ("POST", "/api/v1/admin/api-keys", Needs(UsersManage)),
    ("DELETE", "/api/v1/admin/api-keys/{id}", Needs(UsersManage)),
    (
        "POST",
        "/api/v1/admin/users/{id}/mfa/reset",
        Needs(UsersManage),
    ),
    ("GET", "/api/v1/admin/users", Needs(UsersManage)),
    ("POST", "/api/v1/admin/users", Needs(UsersManage)),
    ("DELETE", "/api/v1/admin/users/{id}", Needs(UsersManage)),
    ("PUT", "/api/v1/admin/users/{id}/role", Needs(UsersManage)),
    (
        "PUT",
        "/api/v1/admin/users/{id}/equipment",
        Needs(UsersManage),
    ),
    (
        "GET",
        "/api/v1/admin/users/{id}/sessions",
        Needs(UsersManage),
    ),
    (
        "POST",
        "/api/v1/admin/users/{id}/logout",
        Needs(UsersManage),
    ),
    ("DELETE", "/api/v1/admin/sessions/{id}", Needs(UsersManage)),
];

/// The route a path of the OpenAPI document is served by: the document
/// spells out what a wildcard route takes.
pub fn route_of_documented(path: &str) -> &str {
    match path {
        "/api/v1/admin/actors/{path}/{action}" => "/api/v1/admin/actors/{*rest}",
        other => other,
    }
}

/// What `method route` needs: `None` when the route is not in the table
/// (refused), `Some(None)` when the route is there with other methods only
/// (405, whether or not a handler would answer: nothing unlisted runs).
pub fn required(method: &Method, route: &str) -> Option<Option<Access>> {
    // HEAD is answered by the GET handler.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut known = false;
    for (m, r, access) in ROUTES {
        if *r == route {
            if *m == method {
                return Some(Some(*access));
            }
            known = true;
        }
    }
    known.then_some(None)
}

/// The lowest role that may call a route needing `access` (`None`: no
/// sign-in needed).
pub fn lowest_role(access: Access) -> Option<Role> {
    match access {
        Public | InBand => None,
        SignedIn => Some(Role::Viewer),
        Needs(p) => [Role::Viewer, Role::Engineer, Role::Admin]
            .into_iter()
            .find(|r| r.allows(p)),
    }
}

/// The middleware: authenticates the bearer token when the route needs it,
/// checks the permission, and hands the [`Principal`] to the handler (in
/// the request) and to the audit log (in the response).
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // No matched route: the router's 404.
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let access = match required(request.method(), &route) {
        Some(Some(access)) => access,
        // Another method of a known route: refused here, so that a handler
        // added without an access rule cannot answer.
        Some(None) => {
            return ApiError::MethodNotAllowed(request.method().to_string()).into_response()
        }
        None => {
            tracing::error!(%route, "route without an access rule refused");
            return ApiError::Internal(format!("{route} has no access rule")).into_response();
        }
    };
    let needed = match access {
        Public | InBand => return next.run(request).await,
        SignedIn => None,
        Needs(p) => Some(p),
    };
    let who = match super::auth::bearer(request.headers()) {
        Some(token) => match state.auth.sessions.authenticate(token).await {
            Ok(who) => who,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => {
            return ApiError::Unauthenticated {
                code: "invalid_token",
                message: "sign in: send Authorization: Bearer <access token>".into(),
            }
            .into_response()
        }
    };
    let refused = check(&who, needed).and_then(|()| {
        // Routes of one unit: only for those who may see it.
        let path = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| request.uri().path(), |u| u.0.path());
        match route.strip_prefix("/api/v1/equipment/{id}") {
            Some(_) => check_equipment(&who, path.split('/').nth(4).unwrap_or_default()),
            None => Ok(()),
        }
    });
    if let Err(refused) = refused {
        let mut response = refused.into_response();
        response.extensions_mut().insert(who);
        return response;
    }
    request.extensions_mut().insert(who.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(who);
    response
}

/// Whether `who` may call a route needing `needed` (`None`: only signed in).
pub fn check(who: &Principal, needed: Option<Permission>) -> Result<(), ApiError> {
    let Some(permission) = needed else {
        // Routes of one's own user and session.
        return who.user_session().map(|_| ()).map_err(ApiError::from);
    };
    if who.must_change_password {
        return Err(ApiError::Forbidden {
            code: "password_change_required",
            message: "set a new password first (POST /api/v1/auth/password)".into(),
            required: None,
        });
    }
    if !who.allows(permission) {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: format!(
                "the {} role may not do this: it needs {}",
                who.role.as_str(),
                permission.as_str()
            ),
            required: Some(permission.as_str()),
        });
    }
    Ok(())
}

/// Whether `who` may see equipment `id` (403 `forbidden_equipment` if not).
pub fn check_equipment(who: &Principal, id: &str) -> Result<(), ApiError> {
    if who.sees(id) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        code: "forbidden_equipment",
        message: format!("{id} is not among the equipment you may see"),
        required: None,
    })
}

/// How the caller signed in, for the audit log.
pub fn credential_name(who: &Principal) -> &'static str {
    match who.credential {
        Credential::Session(_) => "session",
        Credential::BreakGlass => "break_glass",
        Credential::ApiKey(_) => "api_key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_an_access_rule_and_every_rule_a_route() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(super::super::ApiDoc::openapi()).unwrap();
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                if path.starts_with("/api/v1/") {
                    documented.push((method, path.clone()));
                }
            }
        }
        for (method, path) in &documented {
            let route = route_of_documented(path);
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(
                matches!(required(&method, route), Some(Some(_))),
                "{method} {path} has no access rule"
            );
        }
        for (m, r, _) in ROUTES {
            assert!(
                documented
                    .iter()
                    .any(|(dm, dp)| dm == m && route_of_documented(dp) == *r),
                "{m} {r} is in the access table but not in the OpenAPI document"
            );
        }
    }

    #[test]
    fn roles_get_what_they_need() {
        let route = |m: &str, r: &str| required(&Method::from_bytes(m.as_bytes()).unwrap(), r);
        assert_eq!(route("GET", "/api/v1/alerts"), Some(Some(Needs(Read))));
        assert_eq!(route("HEAD", "/api/v1/alerts"), Some(Some(Needs(Read))));
        assert_eq!(route("PATCH", "/api/v1/alerts"), Some(None));
        assert_eq!(route("GET", "/api/v1/nowhere"), None);
        assert_eq!(lowest_role(Needs(Read)), Some(Role::Viewer));
        assert_eq!(lowest_role(Needs(AlertsAct)), Some(Role::Engineer));
        assert_eq!(lowest_role(Needs(ActorsManage)), Some(Role::Admin));
        assert_eq!(lowest_role(Public), None);
    }
}
