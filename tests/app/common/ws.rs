//! A WebSocket client speaking the live protocol.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `url`, with `token` in an `Authorization` header when
    /// there is one (a browser sends none: it sends an `auth` frame first).
    pub async fn connect(url: &str, token: Option<&str>) -> WsClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("ws request");
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header value"),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connects");
        WsClient { stream }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

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

    /// The close frame the server sends next (other frames skipped), within
    /// `within`; panics on a connection dropped without one.
    pub async fn next_close(&mut self, within: Duration) -> CloseFrame {
        tokio::time::timeout(within, async {
            while let Some(Ok(message)) = self.stream.next().await {
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
