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
            AuthError::MfaRequired => unauthenticated("mfa_required", &e),
            AuthError::InvalidMfaCode => unauthenticated("invalid_mfa_code", &e),
            AuthError::Unsupported(why) => ApiError::Unsupported(why),
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
    pub email: String,
    pub password: String,
    /// For an account with a second factor: the authenticator app's code,
    /// or a backup code (asked for with 401 `mfa_required`).
    #[serde(default)]
    pub code: Option<String>,
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
#[utoipa::path(post, path = "/api/v1/auth/login", extensions(("x-access" = json!("public"))), tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = Issued),
        (status = 401, body = ErrorResponse, description = "`invalid_credentials`; `mfa_required` (send `code`) or `invalid_mfa_code` once the password was right"),
        (status = 429, body = ErrorResponse, description = "`rate_limited`: too many attempts from this address or for this e-mail"),
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
            .logins
            .login_with(
                &body.email,
                &body.password,
                body.code.as_deref(),
                ip,
                user_agent,
            )
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
    pub email: String,
    pub name: String,
    /// Password: 12+ characters, not a common one.
    pub password: String,
}

/// Creates the first administrator of a fresh install and signs them in.
/// Works once, with the code printed (as a link) in the server log at
/// start, and only while no user exists; later users come from
/// `hydrowatch user add`.
#[utoipa::path(post, path = "/api/v1/auth/setup", extensions(("x-access" = json!("public"))), tag = "auth",
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
            .logins
            .set_up(&body.code, &admin, ip, user_agent)
            .await?,
    ))
}

/// Trades a refresh token for a new access and refresh token. Each refresh
/// token works once; using one again ends its session (401
/// `refresh_token_reused`).
#[utoipa::path(post, path = "/api/v1/auth/refresh", extensions(("x-access" = json!("public"))), tag = "auth",
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
    Ok(Json(state.auth.logins.refresh(&body.refresh_token).await?))
}

/// Ends the caller's session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    responses((status = 204, description = "logged out"), (status = 401, body = ErrorResponse)))]
pub async fn logout(State(state): State<AppState>, who: Principal) -> Result<StatusCode, ApiError> {
    state.auth.logins.logout(&who).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new one: 12+ characters, not a common one, not one of the last five.
    pub new_password: String,
}

/// Changes the caller's password; their other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", extensions(("x-access" = json!("signed_in"))), tag = "auth",
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
        .logins
        .change_password(&who, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// What the role allows.
    pub permissions: Vec<&'static str>,
    /// The session this request was made in.
    pub session_id: String,
    /// Must set a new password first.
    pub must_change_password: bool,
}

/// Who the access token stands for.
#[utoipa::path(get, path = "/api/v1/auth/me", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorResponse)))]
pub async fn me(State(state): State<AppState>, who: Principal) -> Result<Json<Me>, ApiError> {
    let (user_id, session_id) = who.user_session()?;
    let user = state
        .auth
        .users
        .get(user_id)
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

/// A code from the authenticator app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// Six digits (or, to turn the factor off, a backup code).
    pub code: String,
}

/// Password and code, to turn the second factor off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaDisable {
    /// The current password.
    pub password: String,
    /// A current code or a backup code.
    pub code: String,
}

/// The backup codes, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodes {
    /// Each works once instead of a code from the app.
    pub backup_codes: Vec<String>,
}

/// Starts enrolling a second factor (TOTP): a new secret for an
/// authenticator app, in force once confirmed.
#[utoipa::path(post, path = "/api/v1/auth/mfa/enrol", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    responses((status = 200, body = crate::auth::Enrolment), (status = 401, body = ErrorResponse)))]
pub async fn mfa_enrol(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<crate::auth::Enrolment>, ApiError> {
    Ok(Json(state.auth.mfa.enrol(&who).await?))
}

/// Confirms the enrolled secret with a current code: from now on sign-in
/// needs a code; the backup codes are in this answer only.
#[utoipa::path(post, path = "/api/v1/auth/mfa/confirm", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    request_body = MfaCode,
    responses((status = 200, body = BackupCodes), (status = 401, body = ErrorResponse),
        (status = 422, body = ErrorResponse, description = "`details.field` = `code`: not enrolled, or not the current code")))]
pub async fn mfa_confirm(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<MfaCode>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<BackupCodes>, ApiError> {
    let body = json(body)?;
    let backup_codes = state.auth.mfa.confirm(&who, &body.code).await?;
    Ok(Json(BackupCodes { backup_codes }))
}

/// Turns the caller's second factor off (password and a code needed).
#[utoipa::path(post, path = "/api/v1/auth/mfa/disable", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    request_body = MfaDisable,
    responses((status = 204, description = "off"), (status = 401, body = ErrorResponse, description = "`invalid_mfa_code`"),
        (status = 422, body = ErrorResponse, description = "`details.field` = `current_password`")))]
pub async fn mfa_disable(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<MfaDisable>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let body = json(body)?;
    state
        .auth
        .mfa
        .disable(&who, &body.password, &body.code)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An e-mail address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's e-mail.
    pub email: String,
}

/// What a reset request says, whoever asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The same for every address.
    pub message: &'static str,
}

/// Asks for a password-reset link by e-mail. The answer is the same for
/// every address, a user's or not; rate-limited like sign-in.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", extensions(("x-access" = json!("public"))), tag = "auth",
    request_body = ResetRequest,
    responses((status = 202, body = Accepted), (status = 429, body = ErrorResponse),
        (status = 501, body = ErrorResponse, description = "`unsupported`: no [notify.email]")))]
pub async fn password_reset(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    body: Result<Json<ResetRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = json(body)?;
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    state
        .auth
        .account
        .request_password_reset(&body.email, ip)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: "if the address belongs to an account, a reset link is on its way",
        }),
    ))
}

/// A reset link's token and the new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the link (after `#reset=`).
    pub token: String,
    /// The new password (the policy applies, the last five included).
    pub new_password: String,
}

/// Sets a new password with a reset link (once); every session of the
/// user ends.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", extensions(("x-access" = json!("public"))), tag = "auth",
    request_body = ResetConfirm,
    responses((status = 204, description = "changed"), (status = 401, body = ErrorResponse, description = "`invalid_token`: not valid, expired or used"),
        (status = 422, body = ErrorResponse, description = "`details.field` = `password`")))]
pub async fn password_reset_confirm(
    State(state): State<AppState>,
    body: Result<Json<ResetConfirm>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let body = json(body)?;
    state
        .auth
        .account
        .reset_password(&body.token, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the caller a link that confirms their e-mail address.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    responses((status = 202, description = "sent"), (status = 401, body = ErrorResponse),
        (status = 501, body = ErrorResponse, description = "`unsupported`: no [notify.email]")))]
pub async fn verify_email(
    State(state): State<AppState>,
    who: Principal,
) -> Result<StatusCode, ApiError> {
    state.auth.account.request_verification(&who).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A verification link's token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfirm {
    /// The token from the link (after `#verify=`).
    pub token: String,
}

/// Confirms an e-mail address with the link's token (once).
#[utoipa::path(post, path = "/api/v1/auth/verify-email/confirm", extensions(("x-access" = json!("public"))), tag = "auth",
    request_body = VerifyConfirm,
    responses((status = 204, description = "confirmed"), (status = 401, body = ErrorResponse, description = "`invalid_token`")))]
pub async fn verify_email_confirm(
    State(state): State<AppState>,
    body: Result<Json<VerifyConfirm>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let body = json(body)?;
    state.auth.account.verify_email(&body.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's profile (name, company, phone, time zone,
/// attributes): the fields given replace theirs; the user as it now is.
#[utoipa::path(patch, path = "/api/v1/auth/me", extensions(("x-access" = json!("signed_in"))), tag = "auth",
    request_body = crate::auth::ProfileChange,
    responses((status = 200, body = crate::store::users::UserRecord), (status = 401, body = ErrorResponse),
        (status = 422, body = ErrorResponse, description = "`details.field` names the field")))]
pub async fn update_me(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<crate::auth::ProfileChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::store::users::UserRecord>, ApiError> {
    let change = json(body)?;
    Ok(Json(state.auth.users.update_profile(&who, change).await?))
}
