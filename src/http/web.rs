//! The wallboard page and the API docs, embedded in the binary.

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::Json;
use utoipa::OpenApi;

const INDEX: &str = include_str!("../web/index.html");
const CSS: &str = include_str!("../web/wallboard.css");
const JS: &str = include_str!("../web/wallboard.js");
const DOCS: &str = include_str!("../web/docs.html");

/// The wallboard.
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

/// The OpenAPI document.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}

/// A self-contained page rendering the OpenAPI document (works offline).
pub async fn docs() -> Html<&'static str> {
    Html(DOCS)
}
