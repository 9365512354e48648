//! Who may call what. Each route declares what it needs once, as the
//! `x-access` extension of its `#[utoipa::path]` (see [`super::routes`]);
//! the [`authorize`] middleware checks it, from the [`AccessTable`] read off
//! the OpenAPI document, before the handler runs. A route without an access
//! rule is refused (it fails closed).
//!
//! VIEWER reads; ENGINEER also sends samples, acts on alerts and manages
//! rules, policies, silences and simulated conditions; ADMIN also manages
//! actors, storage, users and the audit log (see [`Role::permissions`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;

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

impl Access {
    /// Its `x-access` name: `public`, `in_band`, `signed_in` or the
    /// permission's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Public => "public",
            InBand => "in_band",
            SignedIn => "signed_in",
            Needs(p) => p.as_str(),
        }
    }

    /// The access of that `x-access` name.
    pub fn parse(name: &str) -> Option<Access> {
        match name {
            "public" => Some(Public),
            "in_band" => Some(InBand),
            "signed_in" => Some(SignedIn),
            other => Permission::parse(other).map(Needs),
        }
    }
}

/// What an operation of the OpenAPI document needs: its `x-access`.
pub fn of_operation(operation: &utoipa::openapi::path::Operation) -> Option<Access> {
    let name = operation.extensions.as_ref()?.get("x-access")?.as_str()?;
    Access::parse(name)
}

/// What each route needs, by the route as matched and the method.
#[derive(Debug, Default)]
pub struct AccessTable {
    routes: HashMap<String, Vec<(Method, Access)>>,
}

impl AccessTable {
    /// The table of every operation of `doc` with an `x-access`.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> AccessTable {
        let mut table = AccessTable::default();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                if let Some(access) = operation.as_ref().and_then(of_operation) {
                    table
                        .routes
                        .entry(route_of_documented(path).to_owned())
                        .or_default()
                        .push((method, access));
                }
            }
        }
        table
    }

    /// Every rule: method, route, access.
    pub fn rules(&self) -> impl Iterator<Item = (&Method, &str, Access)> + '_ {
        self.routes
            .iter()
            .flat_map(|(route, rules)| rules.iter().map(move |(m, a)| (m, route.as_str(), *a)))
    }

    /// What `method route` needs: `None` when the route is not in the table
    /// (refused), `Some(None)` when the route is there with other methods
    /// only (405, whether or not a handler would answer: nothing unlisted
    /// runs).
    pub fn required(&self, method: &Method, route: &str) -> Option<Option<Access>> {
        // HEAD is answered by the GET handler.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let rules = self.routes.get(route)?;
        Some(rules.iter().find(|(m, _)| m == method).map(|(_, a)| *a))
    }
}

/// The access table of the application's routes.
pub fn table() -> &'static AccessTable {
    static TABLE: OnceLock<AccessTable> = OnceLock::new();
    TABLE.get_or_init(|| AccessTable::from_openapi(super::openapi()))
}

/// The route a path of the OpenAPI document is served by: the document
/// spells out what a wildcard route takes.
pub fn route_of_documented(path: &str) -> &str {
    match path {
        "/api/v1/admin/actors/{path}/{action}" => super::routes::ACTOR_COMMAND_ROUTE,
        other => other,
    }
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
    let access = match table().required(request.method(), &route) {
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
    let mut refused = check(&who, needed);
    // Routes of one unit: only for those who may see it.
    if refused.is_ok() && route.starts_with("/api/v1/equipment/{id}") {
        let params = request.extract_parts::<RawPathParams>().await;
        let id = params
            .as_ref()
            .ok()
            .and_then(|p| p.iter().find(|(name, _)| *name == "id").map(|(_, v)| v))
            .unwrap_or_default();
        refused = check_equipment(&who, id);
    }
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
    use crate::auth::roles::Permission::*;

    #[test]
    fn every_documented_operation_has_an_access_rule() {
        let doc = serde_json::to_value(super::super::openapi()).unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                let access = operation["x-access"].as_str();
                assert!(
                    access.and_then(Access::parse).is_some(),
                    "{method} {path} has no valid x-access: {access:?}"
                );
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                if path.starts_with("/api/v1/") {
                    let route = route_of_documented(path);
                    assert!(
                        matches!(table().required(&method, route), Some(Some(_))),
                        "{method} {path} is not in the access table"
                    );
                }
            }
        }
        // Every operation is in the table once: 72 of /api/v1 and the
        // wallboard, health and metrics outside it.
        assert_eq!(table().rules().count(), operations);
        assert_eq!(operations, 76);
    }

    #[test]
    fn roles_get_what_they_need() {
        let route =
            |m: &str, r: &str| table().required(&Method::from_bytes(m.as_bytes()).unwrap(), r);
        assert_eq!(route("GET", "/api/v1/alerts"), Some(Some(Needs(Read))));
        assert_eq!(route("HEAD", "/api/v1/alerts"), Some(Some(Needs(Read))));
        assert_eq!(route("PATCH", "/api/v1/alerts"), Some(None));
        assert_eq!(route("GET", "/api/v1/nowhere"), None);
        assert_eq!(lowest_role(Needs(Read)), Some(Role::Viewer));
        assert_eq!(lowest_role(Needs(AlertsAct)), Some(Role::Engineer));
        assert_eq!(lowest_role(Needs(ActorsManage)), Some(Role::Admin));
        assert_eq!(lowest_role(Public), None);
        for access in [Public, InBand, SignedIn, Needs(AlertsAct)] {
            assert_eq!(Access::parse(access.as_str()), Some(access));
        }
    }
}
