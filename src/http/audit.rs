//! Every request that changes something goes to the audit log: who (as
//! authorisation found them; none when the credentials were refused), the
//! route, the path, the outcome, from where. Sign-in records its own events (with reasons);
//! samples (`/ingest`) and model questions (`/detect`) are data, not
//! changes, and would drown the log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::access::credential_name;
use super::AppState;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use hydrowatch_actors::clock::now_ms;

/// Routes left out: sign-in audits itself; the others are data.
const NOT_AUDITED: [&str; 3] = ["/api/v1/auth/", "/api/v1/ingest", "/api/v1/detect"];

/// Largest request body kept in the log, bytes; a larger one is noted by
/// its size.
const MAX_RECORDED_BODY: usize = 64 * 1024;

/// Fields whose values never go into the log.
const SECRET_FIELDS: [&str; 8] = [
    "password",
    "new_password",
    "current_password",
    "token",
    "code",
    "secret",
    "key",
    "refresh_token",
];

/// A JSON body as the log keeps it: secrets replaced, at any depth.
fn redacted(mut value: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if SECRET_FIELDS.contains(&k.as_str()) {
                        *v = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// Records each mutating request to an audited route in the audit log,
/// with its JSON body, secrets redacted.
pub async fn record_mutations(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = audited_route(&request) else {
        return next.run(request).await;
    };
    let method = request.method().to_string();
    let caller = Caller::of(&request);
    let (request, asked) = match with_body_read(request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let response = next.run(request).await;
    let event = event_of(&method, &route, caller, asked, &response);
    if let Err(e) = state.audit.record(event, now_ms()).await {
        metrics::counter!("hydrowatch_audit_failures_total").increment(1);
        tracing::error!(error = %e, %route, "audit event not recorded");
    }
    response
}

/// The route of a mutating request that is audited, if it is one.
fn audited_route(request: &Request) -> Option<String> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return None;
    }
    let route = request.extensions().get::<MatchedPath>()?.as_str();
    (!NOT_AUDITED.iter().any(|p| route.starts_with(p))).then(|| route.to_owned())
}

/// Who sent a request, as far as the connection and headers tell.
struct Caller {
    path: String,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Caller {
    fn of(request: &Request) -> Caller {
        // Inside a nested router the URI is stripped of its prefix; the
        // original is whole.
        let path = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().path(), |u| u.0.path())
            .to_owned();
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string());
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect());
        Caller {
            path,
            ip,
            user_agent,
        }
    }
}

/// The request with its body read, and what was asked for: the JSON body,
/// secrets redacted (the request goes on with the same bytes). A body too
/// large to read is refused as the handler would refuse it.
async fn with_body_read(
    request: Request,
) -> Result<(Request, Option<serde_json::Value>), Response> {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_RECORDED_BODY).await else {
        let response = super::error::ApiError::PayloadTooLarge(format!(
            "a request body here may have at most {MAX_RECORDED_BODY} bytes"
        ));
        return Err(axum::response::IntoResponse::into_response(response));
    };
    let asked = (!bytes.is_empty()).then(|| {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(redacted)
            .unwrap_or_else(|_| serde_json::json!({"bytes": bytes.len()}))
    });
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        asked,
    ))
}

/// The audit event of `method route` answered with `response`.
fn event_of(
    method: &str,
    route: &str,
    caller: Caller,
    asked: Option<serde_json::Value>,
    response: &Response,
) -> AuditEvent {
    let who = response.extensions().get::<Principal>();
    let mut changes = serde_json::json!({"status": response.status().as_u16()});
    if let Some(asked) = asked {
        changes["request"] = asked;
    }
    if let Some(who) = who {
        changes["credential"] = credential_name(who).into();
        if let crate::auth::Credential::ApiKey(id) = who.credential {
            changes["api_key"] = id.into();
        }
    }
    // `alert-rules`, `silences`, `admin/actors`…
    let resource_type = route
        .trim_start_matches("/api/v1/")
        .split('/')
        .take_while(|s| !s.starts_with('{'))
        .take(2)
        .collect::<Vec<_>>()
        .join("/");
    AuditEvent {
        user_id: who.and_then(|w| w.user_id),
        action: format!("{method} {route}"),
        resource_type,
        resource_id: Some(caller.path),
        changes,
        ip: caller.ip,
        user_agent: caller.user_agent,
    }
}
