//! The wallboard page and the API docs, embedded in the binary.

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::Json;

const INDEX: &str = include_str!("../web/index.html");
const CSS: &str = include_str!("../web/wallboard.css");
const JS: &str = include_str!("../web/wallboard.js");
const DOCS: &str = include_str!("../web/docs.html");

/// The wallboard: a tile per equipment unit, live over the WebSocket API.
#[utoipa::path(get, path = "/", extensions(("x-access" = json!("public"))), tag = "web", responses((status = 200, content_type = "text/html", description = "The wallboard page")))]
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// Wallboard styles.
pub async fn css() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

/// Wallboard script.
pub async fn js() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], JS)
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", extensions(("x-access" = json!("public"))), tag = "web", responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi())
}

/// A self-contained page rendering the OpenAPI document (works offline).
#[utoipa::path(get, path = "/api/v1/docs", extensions(("x-access" = json!("public"))), tag = "web", responses((status = 200, content_type = "text/html", description = "API documentation page")))]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS)
}
