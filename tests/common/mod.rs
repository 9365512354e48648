//! Test helpers: an application on port 0 with the demo plant, and a WebSocket
//! client.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use hydrowatch::config::{self, Loaded};
use hydrowatch::App;

/// The admin token the test apps use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The embedded demo configuration on port 0 with the admin API on, plus `env`
/// overrides (`HYDROWATCH_*` pairs).
pub fn demo_config(env: &[(&str, &str)]) -> Loaded {
    let mut pairs: Vec<(String, String)> = vec![
        ("HYDROWATCH_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("HYDROWATCH_ADMIN__TOKEN".into(), ADMIN_TOKEN.into()),
        ("HYDROWATCH_SERVER__SHUTDOWN_GRACE_MS".into(), "2000".into()),
    ];
    pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load(None, &pairs).expect("demo config loads")
}

/// Starts the demo application on a free port.
pub async fn spawn_app() -> App {
    spawn_with(demo_config(&[])).await
}

/// Starts an application from `loaded`.
pub async fn spawn_with(loaded: Loaded) -> App {
    hydrowatch::telemetry::init_logging(config::LogFormat::Text, "warn");
    App::start(loaded).await.expect("app starts")
}

/// An HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A WebSocket client speaking the live protocol.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `/api/v1/ws` of `app`.
    pub async fn connect(app: &App) -> WsClient {
        let url = format!("ws://{}/api/v1/ws", app.addr);
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        WsClient { stream }
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame, or `None` on close or after `within`.
    pub async fn next_json(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next frame of `kind` (others are skipped), within `within`.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
            let frame = self.next_json(left).await?;
            if frame["type"] == kind {
                return Some(frame);
            }
        }
    }
}

/// The value of `sensor` in a snapshot or delta frame for its equipment.
pub fn sensor_state<'a>(frame: &'a Value, sensor: &str) -> Option<&'a Value> {
    match frame["type"].as_str()? {
        "snapshot" => frame["snapshot"]["sensors"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == sensor)
            .map(|s| &s["state"]),
        "delta" => frame["sensors"].get(sensor),
        _ => None,
    }
}

/// `POST url` with the admin token.
pub async fn admin_post(url: String) -> reqwest::Response {
    http()
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request")
}

/// `GET url` with the admin token, as JSON.
pub async fn admin_get(url: String) -> Value {
    http()
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("JSON")
}

/// The close frame the server sends next (other frames skipped), within `within`.
pub async fn next_close(
    ws: &mut WsClient,
    within: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio::time::timeout(within, async {
        while let Some(Ok(message)) = ws.stream.next().await {
            if let Message::Close(frame) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed in time")
    .expect("with a close frame, not a dropped connection")
}

/// `GET url` as text.
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

/// `GET url` as JSON.
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
