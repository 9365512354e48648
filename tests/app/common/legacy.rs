//! Helpers of the tests not yet on [`super::TestApp`].
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use hydrowatch::config::Loaded;
use hydrowatch::App;

use super::{demo_config, WsClient, BREAK_GLASS, PASSWORD};

pub async fn admin_put(url: String, body: Value) -> reqwest::Response {
    http()
        .put(url)
        .bearer_auth(BREAK_GLASS)
        .json(&body)
        .send()
        .await
        .expect("admin request")
}

pub async fn spawn_app() -> App {
    spawn_with(demo_config(&[])).await
}

pub async fn spawn_with(loaded: Loaded) -> App {
    hydrowatch::telemetry::init_logging(hydrowatch::config::LogFormat::Text, "warn");
    App::start(loaded).await.expect("app starts")
}

pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {BREAK_GLASS}")
            .parse()
            .expect("header value"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .expect("client")
}

pub fn anonymous() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn legacy_send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn sign_in(app: &App, email: &str, role: &str) -> String {
    let user = super::new_user(email, role);
    app.state
        .auth
        .users
        .add(&user, None)
        .await
        .expect("user created");
    log_in(app, email).await
}

pub async fn user_id(app: &App, email: &str) -> i64 {
    app.state
        .store
        .user_by_email(email)
        .await
        .expect("store")
        .expect("user")
        .id
}

pub async fn log_in(app: &App, email: &str) -> String {
    let issued = app
        .state
        .auth
        .logins
        .login(email, PASSWORD, None, None)
        .await
        .expect("login");
    issued.access_token
}

pub async fn legacy_ws(app: &App) -> WsClient {
    legacy_ws_as(app, BREAK_GLASS).await
}

pub async fn legacy_ws_as(app: &App, token: &str) -> WsClient {
    WsClient::connect(&format!("ws://{}/api/v1/ws", app.addr), Some(token)).await
}

pub async fn legacy_ws_anonymous(app: &App) -> WsClient {
    WsClient::connect(&format!("ws://{}/api/v1/ws", app.addr), None).await
}

pub async fn admin_post(url: String) -> reqwest::Response {
    http()
        .post(url)
        .bearer_auth(BREAK_GLASS)
        .send()
        .await
        .expect("admin request")
}

pub async fn admin_get(url: String) -> Value {
    http()
        .get(url)
        .bearer_auth(BREAK_GLASS)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("JSON")
}

pub async fn next_close(
    ws: &mut WsClient,
    within: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    ws.next_close(within).await
}

pub async fn get_text(url: String) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

pub async fn get_json(url: String) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}
