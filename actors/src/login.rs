//! The login actor: one signed-in session of a user, alive under the
//! sessions supervisor as `sessions/login-…`. It knows the device (address,
//! user agent), when the session started and when it was last used; it ends
//! the session after `idle_timeout` without a request; and however the
//! session ends (logout, an admin's forced logout, the per-user limit, a
//! replayed refresh token, idleness) it closes every WebSocket signed in
//! with it, with the reason.
//!
//! Whether a session is valid is the ledger's to say (a database holds it
//! across restarts and nodes): the actor holds what is live about it, and is
//! started again on the session's next request after a restart.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::time::Instant;

use crate::session::Outbox;

/// Where sessions' ends and activity are recorded (the application's
/// session store).
pub trait SessionLedger: Send + Sync + 'static {
    /// The session ended for `reason`: its tokens stop working.
    fn end<'a>(&'a self, session_id: &'a str, reason: &'a str)
        -> BoxFuture<'a, Result<(), String>>;
    /// The session was last used at `at_ms` (ms since the epoch).
    fn touch<'a>(&'a self, session_id: &'a str, at_ms: i64) -> BoxFuture<'a, Result<(), String>>;
}

/// What the tree needs to run login actors.
#[derive(Clone)]
pub struct LoginSettings {
    /// Where ends and activity are recorded.
    pub ledger: Arc<dyn SessionLedger>,
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// Last activity is written at most this often.
    pub touch_every: Duration,
}

/// A session to run.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    pub session_id: String,
    pub user_id: i64,
    /// Client address.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
    /// Started, ms since the epoch.
    pub started_ms: i64,
}

/// What a login actor tells about its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginInfo {
    pub user_id: i64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client software.
    pub user_agent: Option<String>,
    /// Started, ms since the epoch.
    pub started_ms: i64,
    /// Last request, ms since the epoch.
    pub last_activity_ms: i64,
    /// WebSockets signed in with the session and still open.
    pub websockets: usize,
}

/// Messages of a login actor.
pub enum LoginMsg {
    /// A request of the session, at this instant (ms since the epoch).
    Touch(i64),
    /// A WebSocket signed in with the session.
    Attach(Weak<Outbox>),
    /// The session ended elsewhere (already recorded): close its WebSockets
    /// and stop.
    End {
        /// Why: `logout`, `forced_logout`, `session_limit`…
        reason: String,
    },
    /// User `user_id` changed (role, equipment scope): if this is their
    /// session, its WebSockets close, so that they sign in again under the
    /// new rules; the session goes on.
    Reauthorise {
        /// The user who changed.
        user_id: i64,
    },
    /// What the actor knows.
    Info(RpcReplyPort<LoginInfo>),
    /// Time to check for idleness and write the last activity.
    Tick,
}

/// What a login actor starts with.
pub struct LoginArgs {
    pub spec: LoginSpec,
    /// Ledger, idle timeout.
    pub settings: LoginSettings,
    /// Wall clock, ms since the epoch.
    pub now_ms: fn() -> i64,
}

/// The login actor.
pub struct Login;

pub struct LoginState {
    args: LoginArgs,
    last_activity_ms: i64,
    last_active: Instant,
    written_ms: i64,
    written_at: Option<Instant>,
    sockets: Vec<Weak<Outbox>>,
    ticker: Option<ractor::concurrency::JoinHandle<()>>,
}

impl LoginState {
    fn close_sockets(&mut self, why: &str) {
        for socket in self.sockets.drain(..) {
            if let Some(outbox) = socket.upgrade() {
                outbox.close(why);
            }
        }
    }

    async fn write_activity(&mut self) {
        if self.last_activity_ms <= self.written_ms {
            return;
        }
        let ledger = &self.args.settings.ledger;
        match ledger
            .touch(&self.args.spec.session_id, self.last_activity_ms)
            .await
        {
            Ok(()) => {
                self.written_ms = self.last_activity_ms;
                self.written_at = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "session activity not recorded"),
        }
    }
}

impl Actor for Login {
    type Msg = LoginMsg;
    type State = LoginState;
    type Arguments = LoginArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LoginMsg>,
        args: LoginArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let settings = &args.settings;
        // Often enough to end an idle session within a quarter of its timeout.
        let every = (settings.idle_timeout / 4)
            .min(settings.touch_every)
            .max(Duration::from_millis(50));
        let ticker = myself.send_interval(every, || LoginMsg::Tick);
        let now = (args.now_ms)();
        Ok(LoginState {
            last_activity_ms: now,
            last_active: Instant::now(),
            written_ms: 0,
            written_at: None,
            sockets: Vec::new(),
            ticker: Some(ticker),
            args,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LoginMsg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = st.ticker.take() {
            ticker.abort();
        }
        // Stopped without an end (shutdown, an admin stop): the session
        // itself goes on; its WebSockets are closed by their own shutdown.
        st.write_activity().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<LoginMsg>,
        msg: LoginMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LoginMsg::Touch(at_ms) => {
                st.last_activity_ms = st.last_activity_ms.max(at_ms);
                st.last_active = Instant::now();
            }
            LoginMsg::Attach(socket) => {
                st.sockets.retain(|s| s.strong_count() > 0);
                st.sockets.push(socket);
            }
            LoginMsg::End { reason } => {
                tracing::debug!(user = st.args.spec.user_id, %reason, "session ended");
                st.close_sockets(&format!("session ended: {reason}"));
                // An ended session is a normal end for its supervisor.
                myself.stop(None);
            }
            LoginMsg::Reauthorise { user_id } => {
                if user_id == st.args.spec.user_id {
                    st.close_sockets("permissions changed: connect again");
                }
            }
            LoginMsg::Info(reply) => {
                st.sockets.retain(|s| s.strong_count() > 0);
                let _ = reply.send(LoginInfo {
                    user_id: st.args.spec.user_id,
                    ip: st.args.spec.ip.clone(),
                    user_agent: st.args.spec.user_agent.clone(),
                    started_ms: st.args.spec.started_ms,
                    last_activity_ms: st.last_activity_ms,
                    websockets: st.sockets.len(),
                });
            }
            LoginMsg::Tick => {
                if st.last_active.elapsed() >= st.args.settings.idle_timeout {
                    let session = st.args.spec.session_id.clone();
                    if let Err(e) = st.args.settings.ledger.end(&session, "idle").await {
                        // Tried again on the next tick: an idle session must end.
                        tracing::warn!(error = %e, "idle session could not be ended");
                        return Ok(());
                    }
                    tracing::info!(
                        event = "session.end",
                        reason = "idle",
                        user = st.args.spec.user_id,
                        "idle session ended"
                    );
                    st.close_sockets("session ended: idle");
                    myself.stop(None);
                } else if st
                    .written_at
                    .is_none_or(|t| t.elapsed() >= st.args.settings.touch_every)
                {
                    st.write_activity().await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        ended: Mutex<Vec<(String, String)>>,
        touched: Mutex<Vec<i64>>,
    }

    impl SessionLedger for Recorder {
        fn end<'a>(
            &'a self,
            session_id: &'a str,
            reason: &'a str,
        ) -> BoxFuture<'a, Result<(), String>> {
            self.ended
                .lock()
                .unwrap()
                .push((session_id.to_owned(), reason.to_owned()));
            Box::pin(async { Ok(()) })
        }

        fn touch<'a>(&'a self, _: &'a str, at_ms: i64) -> BoxFuture<'a, Result<(), String>> {
            self.touched.lock().unwrap().push(at_ms);
            Box::pin(async { Ok(()) })
        }
    }

    fn args(ledger: Arc<Recorder>) -> LoginArgs {
        LoginArgs {
            spec: LoginSpec {
                session_id: "s1".into(),
                user_id: 7,
                ip: Some("10.0.0.1".into()),
                user_agent: Some("wallboard".into()),
                started_ms: 1,
            },
            settings: LoginSettings {
                ledger,
                idle_timeout: Duration::from_secs(60),
                touch_every: Duration::from_secs(10),
            },
            now_ms: || 1_000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_ends_and_closes_its_websockets_while_a_used_one_lives() {
        let ledger = Arc::new(Recorder::default());
        let (actor, handle) = Actor::spawn(None, Login, args(ledger.clone()))
            .await
            .unwrap();
        let socket = Arc::new(Outbox::new());
        actor
            .cast(LoginMsg::Attach(Arc::downgrade(&socket)))
            .unwrap();
        // Used every 40 s: never idle for 60.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            actor.cast(LoginMsg::Touch(2_000)).unwrap();
        }
        let info = ractor::call!(actor, LoginMsg::Info).unwrap();
        assert_eq!(info.websockets, 1);
        assert_eq!(info.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(info.last_activity_ms, 2_000);
        assert!(ledger.ended.lock().unwrap().is_empty());
        assert!(socket.closed().is_none());
        assert_eq!(ledger.touched.lock().unwrap().last(), Some(&2_000));
        // Then left alone.
        tokio::time::sleep(Duration::from_secs(80)).await;
        handle.await.unwrap();
        assert_eq!(
            *ledger.ended.lock().unwrap(),
            [("s1".to_owned(), "idle".to_owned())]
        );
        assert_eq!(socket.closed().as_deref(), Some("session ended: idle"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_end_from_outside_closes_the_websockets_without_recording_again() {
        let ledger = Arc::new(Recorder::default());
        let (actor, handle) = Actor::spawn(None, Login, args(ledger.clone()))
            .await
            .unwrap();
        let socket = Arc::new(Outbox::new());
        let gone = Arc::new(Outbox::new());
        actor
            .cast(LoginMsg::Attach(Arc::downgrade(&socket)))
            .unwrap();
        actor.cast(LoginMsg::Attach(Arc::downgrade(&gone))).unwrap();
        drop(gone);
        let info = ractor::call!(actor, LoginMsg::Info).unwrap();
        assert_eq!(info.websockets, 1, "a closed WebSocket is forgotten");
        actor
            .cast(LoginMsg::End {
                reason: "forced_logout".into(),
            })
            .unwrap();
        handle.await.unwrap();
        assert_eq!(
            socket.closed().as_deref(),
            Some("session ended: forced_logout")
        );
        assert!(ledger.ended.lock().unwrap().is_empty());
    }
}
