//! Sign-in: log in with e-mail and password, trade a refresh token for a
//! new pair, log out, and who am I. The [`Principal`] extractor turns an
//! `Authorization: Bearer` access token into who is asking.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::AppState;
use crate::auth::roles::Role;
use crate::auth::{AuthError, Issued, Principal};

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let unauthenticated = |code, e: &AuthError| ApiError::Unauthenticated {
            code,
            message: e.to_string(),
        };
        match e {
            AuthError::InvalidCredentials => unauthenticated("invalid_credentials", &e),
            AuthError::InvalidToken(_) => unauthenticated("invalid_token", &e),
            AuthError::RefreshReused => unauthenticated("refresh_token_reused", &e),
            AuthError::RateLimited(wait) => ApiError::RateLimited(wait.as_secs().max(1)),
            AuthError::SetupRefused => ApiError::Forbidden {
                code: "setup_refused",
                message: e.to_string(),
                required: None,
            },
            AuthError::NotAUser => ApiError::Forbidden {
                code: "user_session_required",
                message: e.to_string(),
                required: None,
            },
            AuthError::Password(p) => ApiError::invalid("password", p.to_string()),
            AuthError::WrongPassword => ApiError::invalid("current_password", e.to_string()),
            AuthError::EmailTaken => ApiError::Refused {
                code: "already_exists",
                message: e.to_string(),
            },
            AuthError::Invalid { field, reason } => ApiError::invalid(field, reason),
            AuthError::Store(s) => s.into(),
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Who is asking, as [`super::access::authorize`] found them.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated {
                code: "invalid_token",
                message: "sign in: send Authorization: Bearer <access token>".into(),
            })
    }
}

/// E-mail and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A refresh token to trade.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

fn json<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(ApiError::from)
}

/// Logs in; starts a session. One answer (401 `invalid_credentials`) for an
/// unknown e-mail, a wrong password and a locked account.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = Issued),
        (status = 401, body = ErrorResponse, description = "`invalid_credentials`"),
        (status = 422, body = ErrorResponse),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Issued>, ApiError> {
    let body = json(body)?;
    let (ip, user_agent) = client(&headers, &extensions);
    Ok(Json(
        state
            .auth
            .login(&body.email, &body.password, ip, user_agent)
            .await?,
    ))
}

/// Where a request comes from: IP address and user agent.
fn client(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> (Option<String>, Option<String>) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(300).collect());
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    (ip, user_agent)
}

/// The first administrator, with the one-time setup code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The code from the link in the server log.
    pub code: String,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// Password: 12+ characters, not a common one.
    pub password: String,
}

/// Creates the first administrator of a fresh install and signs them in.
/// Works once, with the code printed (as a link) in the server log at
/// start, and only while no user exists; later users come from
/// `hydrowatch user add`.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth",
    request_body = SetupRequest,
    responses(
        (status = 200, body = Issued),
        (status = 403, body = ErrorResponse, description = "`setup_refused`: a wrong or used code, or users exist"),
        (status = 422, body = ErrorResponse, description = "`details.field`: `email`, `name` or `password`"),
    ))]
pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Json<SetupRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Issued>, ApiError> {
    let body = json(body)?;
    let (ip, user_agent) = client(&headers, &extensions);
    let admin = crate::auth::NewUser {
        email: body.email,
        name: body.name,
        role: Role::Admin,
        password: body.password,
        must_change_password: false,
    };
    Ok(Json(
        state
            .auth
            .set_up(&body.code, &admin, ip, user_agent)
            .await?,
    ))
}

/// Trades a refresh token for a new access and refresh token. Each refresh
/// token works once; using one again ends its session (401
/// `refresh_token_reused`).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = Issued),
        (status = 401, body = ErrorResponse, description = "`invalid_token` or `refresh_token_reused`"),
        (status = 503, body = ErrorResponse),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Issued>, ApiError> {
    let body = json(body)?;
    Ok(Json(state.auth.refresh(&body.refresh_token).await?))
}

/// Ends the caller's session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "logged out"), (status = 401, body = ErrorResponse)))]
pub async fn logout(State(state): State<AppState>, who: Principal) -> Result<StatusCode, ApiError> {
    state.auth.logout(&who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new one: 12+ characters, not a common one, not one of the last five.
    pub new_password: String,
}

/// Changes the caller's password; their other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "changed"),
        (status = 401, body = ErrorResponse),
        (status = 422, body = ErrorResponse, description = "`details.field`: `current_password` (wrong) or `password` (the policy)"),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let body = json(body)?;
    state
        .auth
        .change_password(&who, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Id.
    pub id: i64,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// What the role allows.
    pub permissions: Vec<&'static str>,
    /// This session.
    pub session_id: String,
    /// Must set a new password first.
    pub must_change_password: bool,
}

/// Who the access token stands for.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorResponse)))]
pub async fn me(State(state): State<AppState>, who: Principal) -> Result<Json<Me>, ApiError> {
    let (user_id, session_id) = who.user_session()?;
    let user = state
        .auth
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::Unauthenticated {
            code: "invalid_token",
            message: "the user no longer exists".into(),
        })?;
    Ok(Json(Me {
        id: user.id,
        email: user.email,
        name: user.name,
        role: who.role,
        permissions: who.role.permissions().iter().map(|p| p.as_str()).collect(),
        session_id: session_id.to_owned(),
        must_change_password: user.must_change_password,
    }))
}
