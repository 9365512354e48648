//! Users and sessions: everyone lists and ends their own sessions; admins
//! manage users (create, role, delete) and end anyone's sessions (a forced
//! logout closes the user's WebSockets at once).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::auth::roles::Role;
use crate::auth::{IssuedKey, NewKey, NewUser, Principal, SessionView};
use crate::store::api_keys::ApiKeyRecord;
use crate::store::users::UserRecord;

type PathRejection = axum::extract::rejection::PathRejection;
type JsonRejection = axum::extract::rejection::JsonRejection;

fn json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(ApiError::from)
}

/// The caller's sessions not ended, oldest first; `current` marks this one.
#[utoipa::path(get, path = "/api/v1/auth/sessions", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    responses((status = 200, body = [SessionView]), (status = 401, body = ErrorResponse)))]
pub async fn own_sessions(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let (user_id, current) = who.user_session()?;
    let mut sessions = state.auth.sessions.list(user_id).await?;
    for s in &mut sessions {
        s.current = s.id == current;
    }
    Ok(Json(sessions))
}

/// Ends one of the caller's sessions (another device, or this one): its
/// tokens stop working and its WebSockets close (code 4001).
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "ended"), (status = 401, body = ErrorResponse),
        (status = 404, body = ErrorResponse, description = "no live session of yours with that id")))]
pub async fn end_own_session(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let (user_id, _) = who.user_session()?;
    if !state.auth.sessions.end(&id, Some(user_id), &who).await? {
        return Err(ApiError::NotFound(format!("no live session {id} of yours")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every user not deleted.
#[utoipa::path(get, path = "/api/v1/admin/users", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    responses((status = 200, body = [UserRecord]), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<UserRecord>>, ApiError> {
    Ok(Json(state.auth.users.list().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// E-mail (unique among users not deleted).
    pub email: String,
    pub name: String,
    /// `ADMIN`, `ENGINEER` or `VIEWER`.
    pub role: String,
    /// A first password under the policy (12+ characters, not a common one).
    pub password: String,
    /// Must set their own at the first sign-in (default true).
    pub must_change_password: Option<bool>,
}

/// Who was created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The new user's id.
    pub id: i64,
}

fn role_of(name: &str) -> Result<Role, ApiError> {
    Role::parse(name).ok_or_else(|| ApiError::invalid("role", "role: ADMIN, ENGINEER or VIEWER"))
}

/// Creates a user; by default they must set their own password at the
/// first sign-in.
#[utoipa::path(post, path = "/api/v1/admin/users", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    request_body = CreateUser,
    responses((status = 201, body = Created), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "`already_exists`"),
        (status = 422, body = ErrorResponse, description = "`details.field`: `email`, `name`, `role` or `password`")))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let body = json(body)?;
    let user = NewUser {
        email: body.email,
        name: body.name,
        role: role_of(&body.role)?,
        password: body.password,
        must_change_password: body.must_change_password.unwrap_or(true),
    };
    let id = state.auth.users.add(&user, who.user_id).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `ADMIN`, `ENGINEER` or `VIEWER`.
    pub role: String,
}

/// Gives a user another role; it holds from their next request.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/role", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    request_body = RoleChange,
    responses((status = 204, description = "changed"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn set_role(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<RoleChange>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let role = role_of(&json(body)?.role)?;
    if !state.auth.users.set_role(id, role, &who).await? {
        return Err(ApiError::NotFound(format!("no user {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a user: their sessions end; the user is kept, marked deleted,
/// so that the audit log still names them.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse, description = "deleting yourself")))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    if !state.auth.users.delete(id, &who).await? {
        return Err(ApiError::NotFound(format!("no user {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A user's sessions not ended.
#[utoipa::path(get, path = "/api/v1/admin/users/{id}/sessions", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = [SessionView]), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn sessions(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let Path(id) = path?;
    Ok(Json(state.auth.sessions.list(id).await?))
}

/// How many sessions a forced logout ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    pub sessions_ended: usize,
}

/// Forced logout: every session of the user ends, their tokens stop
/// working and their WebSockets close (code 4001).
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/logout", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = Ended), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn force_logout(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Ended>, ApiError> {
    let Path(id) = path?;
    let sessions_ended = state.auth.sessions.end_all_of(id, &who).await?;
    Ok(Json(Ended { sessions_ended }))
}

/// Forced logout of one session.
#[utoipa::path(delete, path = "/api/v1/admin/sessions/{id}", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204, description = "ended"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn end_session(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    if !state.auth.sessions.end(&id, None, &who).await? {
        return Err(ApiError::NotFound(format!("no live session {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every API key, newest first (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/admin/api-keys", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    responses((status = 200, body = [ApiKeyRecord]), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn api_keys(State(state): State<AppState>) -> Result<Json<Vec<ApiKeyRecord>>, ApiError> {
    Ok(Json(state.auth.keys.list().await?))
}

/// An API key to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What it is for.
    pub name: String,
    /// Permissions it may use, within your role's: `read`, `ingest`,
    /// `alerts:act`, `rules:manage`, `simulators:manage`, `setpoints:write`,
    /// `actors:manage`.
    pub scopes: Vec<String>,
    /// It stops working after this many days (left out: never).
    pub expires_in_days: Option<u32>,
    /// Its rate limit, `{"burst": 60, "per_min": 600}` when left out.
    #[schema(value_type = Option<Object>)]
    pub rate: Option<crate::cross_node::Rate>,
}

/// Makes an API key that acts as you within its scopes. The key is in
/// this answer only: store it now; only its hash is kept.
#[utoipa::path(post, path = "/api/v1/admin/api-keys", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    request_body = CreateKey,
    responses((status = 201, body = IssuedKey), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 422, body = ErrorResponse, description = "`details.field`: `name`, `scopes`, `expires_in_days` or `rate`")))]
pub async fn create_api_key(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<CreateKey>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let body = json(body)?;
    let key = NewKey {
        name: body.name,
        scopes: body.scopes,
        expires_in_days: body.expires_in_days,
        rate: body.rate,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.auth.keys.create(&key, &who).await?),
    ))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(delete, path = "/api/v1/admin/api-keys/{id}", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "Key id")),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    if !state.auth.keys.revoke(id, &who).await? {
        return Err(ApiError::NotFound(format!("no API key {id} in use")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Turns a user's second factor off (a lost phone and no backup codes):
/// they sign in with their password alone until they enrol again.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/mfa/reset", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "off"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn mfa_reset(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    if !state.auth.mfa.reset(id, &who).await? {
        return Err(ApiError::NotFound(format!("no user {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The equipment a user may see.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EquipmentScope {
    /// Equipment ids; `null`: all of it.
    pub equipment: Option<Vec<String>>,
}

/// Limits the equipment a user sees: the list, the routes of a unit and
/// WebSocket subscriptions (others answer 403 `forbidden_equipment`).
/// Holds from their next request; their open WebSockets close (4001) and
/// connect again under it.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/equipment", extensions(("x-access" = json!("users:manage"))), tag = "admin",
    params(("id" = i64, Path, description = "User id")),
    request_body = EquipmentScope,
    responses((status = 204, description = "set"), (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse, description = "an unknown equipment id")))]
pub async fn set_equipment(
    State(state): State<AppState>,
    who: Principal,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<EquipmentScope>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let scope = json(body)?.equipment;
    for (i, e) in scope.iter().flatten().enumerate() {
        if !state.has_equipment(e) {
            return Err(ApiError::invalid(
                "equipment",
                format!("equipment[{i}]: no equipment {e:?}"),
            ));
        }
    }
    if !state
        .auth
        .users
        .set_equipment_scope(id, scope, &who)
        .await?
    {
        return Err(ApiError::NotFound(format!("no user {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
