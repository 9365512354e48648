//! The live WebSocket API: one session actor per client.
//!
//! Sign-in comes first: an `Authorization: Bearer` header on the upgrade
//! request (refused with 401/403 before upgrading), or, from browsers that
//! cannot set headers, an `auth {token}` frame as the first frame within
//! [`AUTH_TIMEOUT`] (refused with close code 4401 or 4403). Never a token in
//! the URL: URLs end up in logs. Reading needs the `read` permission.
//!
//! Protocol (JSON text frames, each with a `type`):
//! - client → server: `auth {token}` (first), `subscribe {equipment: [id…]}`,
//!   `unsubscribe {equipment: [id…]}`, `ping`;
//! - server → client: `hello`, `subscribed`, `snapshot` (full picture, once per
//!   subscription and after an equipment restart), `delta` (changes since the
//!   previous frame for that equipment), `pong`, `error {error: {code, message, details}}`.
//!
//! A slow client is sent the latest state: the session's outbox merges updates
//! per equipment instead of queueing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::time::Duration;

use tokio::time::Instant;

use hydrowatch_actors::session::{ErrorBody, Outbox, ServerFrame, SessionMsg};

use super::error::ApiError;
use super::AppState;
use crate::auth::roles::Permission;
use crate::auth::Principal;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Close code for "server going away" (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for "try again later".
const CLOSE_TRY_LATER: u16 = 1013;
/// Close code (private range) for an idle client.
const CLOSE_IDLE: u16 = 4000;
/// Close code (private range) for a session ended by the server.
const CLOSE_SESSION_ENDED: u16 = 4001;
/// Close code (private range, after HTTP 401) for missing or bad credentials.
const CLOSE_UNAUTHENTICATED: u16 = 4401;
/// Close code (private range, after HTTP 403) for a caller without `read`.
const CLOSE_FORBIDDEN: u16 = 4403;
/// How long a client has to send its `auth` frame.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Auth { token: String },
    Subscribe { equipment: Vec<String> },
    Unsubscribe { equipment: Vec<String> },
    Ping,
}

/// Upgrades to the live WebSocket protocol.
#[utoipa::path(get, path = "/api/v1/ws", extensions(("x-access" = json!("in_band"))), tag = "live",
    description = "WebSocket upgrade. See the README section 'Live WebSocket protocol'.",
    responses((status = 101, description = "Switching protocols")))]
pub async fn upgrade(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    // A header is checked before upgrading, so a bad one is a plain 401/403.
    let signed_in = match super::auth::bearer(&headers) {
        None => None,
        Some(token) => match authorised(&state, token).await {
            Ok(who) => Some(who),
            Err(e) => return e.into_response(),
        },
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return super::error::ApiError::Protocol(format!(
                "{} (connect with a WebSocket client)",
                rejection.body_text()
            ))
            .into_response()
        }
    };

    let max = state.settings.websocket.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| run(socket, state, signed_in))
}

/// The principal of `token` if it may read.
async fn authorised(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let who = state.auth.sessions.authenticate(token).await?;
    super::access::check(&who, Some(Permission::Read))?;
    Ok(who)
}

/// Waits for the `auth` frame; closes the socket and returns `None` when it
/// does not come in time or does not hold.
async fn sign_in(
    state: &AppState,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<Principal> {
    let refuse = |code: u16, message: &str| close(code, message);
    let first = tokio::time::timeout(AUTH_TIMEOUT, async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Text(text))) => return Some(text),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    let text = match first {
        Ok(Some(text)) => text,
        Ok(None) => return None,
        Err(_) => {
            let _ = send(tx, refuse(CLOSE_UNAUTHENTICATED, "no auth frame in time")).await;
            return None;
        }
    };
    let Ok(ClientFrame::Auth { token }) = serde_json::from_str::<ClientFrame>(&text) else {
        let _ = send(
            tx,
            refuse(
                CLOSE_UNAUTHENTICATED,
                "sign in first: {\"type\":\"auth\",\"token\":\"<access token>\"}",
            ),
        )
        .await;
        return None;
    };
    match authorised(state, &token).await {
        Ok(who) => Some(who),
        Err(e) => {
            let code = if e.code() == "forbidden" || e.code() == "password_change_required" {
                CLOSE_FORBIDDEN
            } else {
                CLOSE_UNAUTHENTICATED
            };
            // A close reason is at most 123 bytes.
            let reason: String = e.code().chars().take(120).collect();
            let _ = send(tx, refuse(code, &reason)).await;
            None
        }
    }
}

/// Longest a single write to a client may take; a client that stops reading is
/// dropped instead of holding its task (and its session) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Sink = futures::stream::SplitSink<WebSocket, Message>;
type Stream = futures::stream::SplitStream<WebSocket>;

async fn run(socket: WebSocket, state: AppState, signed_in: Option<Principal>) {
    let id = format!("ws-{}", NEXT_SESSION.fetch_add(1, Ordering::Relaxed));
    let outbox = Arc::new(Outbox::new());
    let (mut tx, mut rx) = socket.split();
    let who = match signed_in {
        Some(who) => who,
        None => match sign_in(&state, &mut tx, &mut rx).await {
            Some(who) => who,
            None => return,
        },
    };
    tracing::debug!(session = %id, user = ?who.user_id, "websocket signed in");
    attach_to_login(&state, &who, &outbox);
    let actor = match state.tree.open_session(&id, outbox.clone()).await {
        Ok(actor) => actor,
        Err(err) => {
            tracing::warn!(session = %id, error = %err, "could not open session");
            // A start that timed out may still complete later: make sure it ends.
            state.tree.close_session(&id);
            let _ = send(&mut tx, close(CLOSE_TRY_LATER, "sessions unavailable")).await;
            return;
        }
    };
    metrics::gauge!("hydrowatch_websocket_clients").increment(1.0);
    tracing::debug!(session = %id, "websocket session opened");
    let session = Live {
        state: &state,
        outbox: &outbox,
        actor: &actor,
        who: &who,
    };
    session.serve(&mut tx, &mut rx).await;
    state.tree.close_session(&id);
    // Also when the session actor died without its cleanup (killed).
    state.tree.hub.remove_session(&id);
    metrics::gauge!("hydrowatch_websocket_clients").decrement(1.0);
    tracing::debug!(session = %id, "websocket session closed");
}

/// The signed-in session closes this socket when it ends (logout, a forced
/// logout, idleness): its login actor holds a weak reference to the outbox.
fn attach_to_login(state: &AppState, who: &Principal, outbox: &Arc<Outbox>) {
    if let crate::auth::Credential::Session(sid) = &who.credential {
        if let Some(login) = state.tree.login(sid) {
            let _ = login.cast(hydrowatch_actors::login::LoginMsg::Attach(Arc::downgrade(
                outbox,
            )));
        }
    }
}

/// An open WebSocket session: its outbox, its session actor and who signed in.
struct Live<'a> {
    state: &'a AppState,
    outbox: &'a Outbox,
    actor: &'a ractor::ActorRef<SessionMsg>,
    who: &'a Principal,
}

impl Live<'_> {
    /// Moves frames both ways until the client, the session or the server
    /// ends, pinging the client and closing it when idle.
    async fn serve(&self, tx: &mut Sink, rx: &mut Stream) {
        let mut shutdown = self.state.shutdown.clone();
        let idle_timeout = self.state.settings.idle_timeout();
        let mut ping = tokio::time::interval(self.state.settings.ping_interval());
        ping.reset();
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                // Shutdown first: its close code (1001) must win over the session
                // ending, which the tree's shutdown causes right after.
                biased;
                _ = stopping(&mut shutdown) => {
                    let _ = flush(tx, self.outbox).await;
                    let _ = send(tx, close(CLOSE_GOING_AWAY, "server shutting down")).await;
                    break;
                }
                _ = self.outbox.ready() => {
                    if !self.deliver(tx, &shutdown).await {
                        break;
                    }
                }
                incoming = rx.next() => {
                    let Some(Ok(message)) = incoming else { break };
                    last_seen = Instant::now();
                    if !self.receive(message) {
                        break;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() >= idle_timeout {
                        let _ = send(tx, close(CLOSE_IDLE, "idle timeout")).await;
                        break;
                    }
                    if !send(tx, Message::Ping(Default::default())).await {
                        break;
                    }
                }
            }
        }
    }

    /// Sends what the outbox holds, and the close frame once the session
    /// ended; false when the socket is done.
    async fn deliver(&self, tx: &mut Sink, shutdown: &tokio::sync::watch::Receiver<bool>) -> bool {
        if !flush(tx, self.outbox).await {
            return false;
        }
        let Some(reason) = self.outbox.closed() else {
            return true;
        };
        let (code, reason) = if *shutdown.borrow() {
            (CLOSE_GOING_AWAY, "server shutting down".to_owned())
        } else {
            (CLOSE_SESSION_ENDED, reason)
        };
        let _ = send(tx, close(code, &reason)).await;
        false
    }

    /// Handles a client frame; false when the client closed.
    fn receive(&self, message: Message) -> bool {
        match message {
            Message::Text(text) => handle_text(&text, self.actor, self.outbox, self.who),
            Message::Binary(_) => self.outbox.push_control(error_frame(
                "unsupported_frame",
                "binary frames are not supported; send JSON text frames".into(),
                None,
            )),
            Message::Close(_) => return false,
            Message::Ping(_) | Message::Pong(_) => {}
        }
        true
    }
}

/// Sends one message within [`WRITE_TIMEOUT`]; false when it failed or timed out.
async fn send(tx: &mut Sink, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, tx.send(message)).await,
        Ok(Ok(()))
    )
}

/// Completes once shutdown begins (the watch guard is not held across awaits).
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// Writes every ready frame, then flushes once: one write for a burst. False
/// when the client is gone or does not read within [`WRITE_TIMEOUT`].
async fn flush(tx: &mut Sink, outbox: &Outbox) -> bool {
    let write = async {
        for frame in outbox.drain() {
            let text = match serde_json::to_string(&frame) {
                Ok(text) => text,
                Err(err) => {
                    tracing::error!(error = %err, "frame not serialisable");
                    continue;
                }
            };
            tx.feed(Message::Text(text.into())).await?;
        }
        tx.flush().await
    };
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

fn handle_text(text: &str, actor: &ractor::ActorRef<SessionMsg>, outbox: &Outbox, who: &Principal) {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(err) => {
            outbox.push_control(error_frame(
                "invalid_frame",
                format!("could not read frame: {err}"),
                Some(serde_json::json!({
                    "expected": "{\"type\":\"subscribe\"|\"unsubscribe\",\"equipment\":[\"<id>\"]} or {\"type\":\"ping\"}"
                })),
            ));
            return;
        }
    };
    let sent = match frame {
        ClientFrame::Subscribe { equipment } => {
            // Only the units the caller may see; the others are named.
            let (seen, refused): (Vec<String>, Vec<String>) =
                equipment.into_iter().partition(|id| who.sees(id));
            if !refused.is_empty() {
                outbox.push_control(error_frame(
                    "forbidden_equipment",
                    format!(
                        "not among the equipment you may see: {}",
                        refused.join(", ")
                    ),
                    Some(serde_json::json!({ "equipment": refused })),
                ));
            }
            actor.cast(SessionMsg::Subscribe(seen))
        }
        ClientFrame::Unsubscribe { equipment } => actor.cast(SessionMsg::Unsubscribe(equipment)),
        ClientFrame::Ping => {
            outbox.push_control(ServerFrame::Pong);
            Ok(())
        }
        ClientFrame::Auth { .. } => {
            outbox.push_control(error_frame(
                "already_signed_in",
                "this connection is signed in; auth comes once, first".into(),
                None,
            ));
            Ok(())
        }
    };
    if sent.is_err() {
        outbox.close("session ended");
    }
}

fn error_frame(code: &str, message: String, details: Option<serde_json::Value>) -> ServerFrame {
    ServerFrame::Error {
        error: ErrorBody {
            code: code.into(),
            message,
            details,
        },
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    }))
}

/// `[websocket]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Server ping period, s.
    pub ping_interval_secs: u64,
    /// A client silent for this long is disconnected, s.
    pub idle_timeout_secs: u64,
    /// Largest client frame accepted, bytes.
    pub max_message_bytes: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            ping_interval_secs: 15,
            idle_timeout_secs: 60,
            max_message_bytes: 64 * 1024,
        }
    }
}
