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
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if route.is_empty() || NOT_AUDITED.iter().any(|p| route.starts_with(p)) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    // Inside `/api/v1` the URI is stripped of the prefix; the original is whole.
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path(), |u| u.0.path())
        .to_owned();
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string());
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let user_agent: Option<String> =
        text(header::USER_AGENT).map(|ua| ua.chars().take(300).collect());
    // What was asked for: the JSON body, secrets redacted (the request
    // goes on with the same bytes).
    let (parts, body) = request.into_parts();
    let (request, asked) = match axum::body::to_bytes(body, MAX_RECORDED_BODY).await {
        Ok(bytes) => {
            let asked = if bytes.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_slice::<serde_json::Value>(&bytes)
                        .map(redacted)
                        .unwrap_or_else(|_| serde_json::json!({"bytes": bytes.len()})),
                )
            };
            (
                Request::from_parts(parts, axum::body::Body::from(bytes)),
                asked,
            )
        }
        // Too large (or unreadable): the handler sees the same failure.
        Err(_) => {
            let response = super::error::ApiError::PayloadTooLarge(format!(
                "a request body here may have at most {MAX_RECORDED_BODY} bytes"
            ));
            return axum::response::IntoResponse::into_response(response);
        }
    };
    let response = next.run(request).await;
    let who = response.extensions().get::<Principal>();
    let user_id = who.and_then(|w| w.user_id);
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
    let event = AuditEvent {
        user_id,
        action: format!("{method} {route}"),
        resource_type,
        resource_id: Some(path),
        changes,
        ip,
        user_agent,
    };
    if let Err(e) = state.audit.record(event, now_ms()).await {
        metrics::counter!("hydrowatch_audit_failures_total").increment(1);
        tracing::error!(error = %e, %route, "audit event not recorded");
    }
    response
}
