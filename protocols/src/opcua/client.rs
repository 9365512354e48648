//! Reads one OPC-UA server: discovers its endpoints, opens a session with the
//! configured security and identity, and keeps the sensors' variables in
//! monitored items (sampling interval, queue size, absolute deadband),
//! grouped into as few subscriptions as the server allows. A server that
//! refuses subscriptions, or items it will not monitor, are read with the
//! Read service on every poll instead.
//!
//! The session reconnects by itself with backoff; after a reconnect the
//! subscriptions are re-created (by the stack, or here when it could not),
//! and every value from before the outage is forgotten, so that the gap
//! shows as bad quality until fresh values arrive. A poll never waits for the
//! network longer than the request timeout.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use opcua::client::{
    Client, ClientBuilder, DataChangeCallback, IdentityToken, Session, SessionPollResult,
    SubscriptionActivity,
};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType, ExtensionObject,
    MessageSecurityMode, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId,
    ReadValueId, StatusCode, TimestampsToReturn,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use hydrowatch_models::{Quality, Reading, SensorId};

use crate::poll::{ErrorCounts, LinkState, PollOutcome, ReconnectPolicy};

/// Algorithms that sign and encrypt messages; `None` exactly when the mode
/// is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpcUaSecurityPolicy {
    /// No security (the mode must be `none`).
    #[default]
    None,
    Basic256Sha256,
    /// Aes128_Sha256_RsaOaep.
    Aes128Sha256RsaOaep,
}

/// An OPC-UA message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpcUaSecurityMode {
    /// Neither signed nor encrypted.
    #[default]
    None,
    Sign,
    SignAndEncrypt,
}

impl OpcUaSecurityPolicy {
    fn stack(self) -> SecurityPolicy {
        match self {
            OpcUaSecurityPolicy::None => SecurityPolicy::None,
            OpcUaSecurityPolicy::Basic256Sha256 => SecurityPolicy::Basic256Sha256,
            OpcUaSecurityPolicy::Aes128Sha256RsaOaep => SecurityPolicy::Aes128Sha256RsaOaep,
        }
    }
}

impl OpcUaSecurityMode {
    fn stack(self) -> MessageSecurityMode {
        match self {
            OpcUaSecurityMode::None => MessageSecurityMode::None,
            OpcUaSecurityMode::Sign => MessageSecurityMode::Sign,
            OpcUaSecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        }
    }
}

/// How to reach one server.
#[derive(Debug, Clone)]
pub struct OpcUaConfig {
    /// `opc.tcp://host:port/path`. The session goes to this address even
    /// when the server advertises another (NAT, port mapping, a proxy).
    pub endpoint_url: String,
    /// Security policy of the endpoint to use.
    pub security_policy: OpcUaSecurityPolicy,
    /// Message security mode of the endpoint to use.
    pub security_mode: OpcUaSecurityMode,
    /// User name and password; anonymous when absent.
    pub user: Option<(String, String)>,
    /// The client's certificate store: `own/`, `private/`, `trusted/`,
    /// `rejected/`. A server certificate not in `trusted/` lands in
    /// `rejected/` until someone trusts it (`hydrowatch opcua-trust`).
    pub pki_dir: PathBuf,
    /// Trust any server certificate (tests and demos only).
    pub trust_server_certs: bool,
    /// Limit for discovering the endpoints and opening the session.
    pub connect_timeout: Duration,
    /// Limit for each request (and each poll's reads).
    pub request_timeout: Duration,
    /// How often the server sends changes.
    pub publishing_interval: Duration,
    pub reconnect: ReconnectPolicy,
    /// Most monitored items asked for in one subscription.
    pub max_items_per_subscription: usize,
    /// Use subscriptions (otherwise every poll reads).
    pub subscribe: bool,
}

/// One sensor's variable.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcUaPoint {
    pub sensor: SensorId,
    /// Its variable, e.g. `ns=2;s=Rig.PS1`.
    pub node_id: String,
    /// How often the server samples it, ms.
    pub sampling_interval_ms: f64,
    /// Values the server queues between publishes.
    pub queue_size: u32,
    /// Changes smaller than this are not sent (absolute deadband).
    pub deadband: Option<f64>,
}

/// How values are acquired at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Acquisition {
    /// Not connected yet.
    Connecting,
    /// Monitored items in this many subscriptions (items the server would
    /// not monitor are read instead).
    Subscriptions(usize),
    /// Every value is read on each poll.
    Polling,
}

/// What an OPC-UA reader tells of itself beside its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpcUaStatus {
    /// How values are acquired at the moment.
    pub acquisition: Acquisition,
    /// Data changes the subscriptions delivered.
    pub notifications: u64,
    /// Times the server was found to have dropped the subscriptions, which
    /// were then made again.
    pub subscriptions_lost: u64,
}

#[derive(Debug, Clone, Default)]
struct Latest {
    value: Option<f64>,
    status: Option<StatusCode>,
}

struct Shared {
    link: LinkState,
    acquisition: Acquisition,
    latest: Vec<Latest>,
    /// Points read with the Read service on each poll.
    polled: Vec<usize>,
    session: Option<Arc<Session>>,
    counts: ErrorCounts,
    reconnected: bool,
    error: Option<String>,
    last_error: Option<String>,
    /// Data changes the subscriptions delivered.
    notifications: u64,
    /// Times the server was found to have dropped our subscriptions.
    subscriptions_lost: u64,
    /// When a publish response (data or keep-alive) last came.
    last_publish: Instant,
    /// The longest time the server may stay silent on any subscription, as
    /// it revised it: publishing interval × keep-alive count.
    keep_alive_period: Duration,
}

impl Shared {
    fn fail(&mut self, message: String) {
        tracing::warn!(error = %message, "OPC-UA");
        self.error.get_or_insert_with(|| message.clone());
        self.last_error = Some(message);
    }

    /// Forgets every value: what comes next is after a gap.
    fn forget(&mut self) {
        self.latest.iter_mut().for_each(|l| *l = Latest::default());
    }
}

/// Why the reader could not be started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpcUaError {
    /// A node id does not parse.
    #[error("sensor {sensor}: node id {node_id:?} does not parse")]
    NodeId {
        sensor: String,
        /// What was given.
        node_id: String,
    },
    /// Policy and mode contradict each other.
    #[error("security policy {0:?} with mode {1:?}: none goes with none only")]
    Security(OpcUaSecurityPolicy, OpcUaSecurityMode),
}

/// Whether `node_id` is a node id the reader can use (`ns=2;s=Rig.PS1`,
/// `i=2258`, …), and why not.
pub fn check_node_id(node_id: &str) -> Result<(), String> {
    NodeId::from_str(node_id)
        .map(|_| ())
        .map_err(|_| format!("{node_id:?} is not a node id (e.g. \"ns=2;s=Rig.PS1\")"))
}

/// Reads one OPC-UA server; owns the session (run by a task of its own).
pub struct OpcUaReader {
    config: OpcUaConfig,
    points: Vec<OpcUaPoint>,
    node_ids: Vec<NodeId>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for OpcUaReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OpcUaReader {
    /// Starts connecting in the background.
    pub fn start(config: OpcUaConfig, points: Vec<OpcUaPoint>) -> Result<Self, OpcUaError> {
        let node_ids = points
            .iter()
            .map(|p| {
                NodeId::from_str(&p.node_id).map_err(|_| OpcUaError::NodeId {
                    sensor: p.sensor.to_string(),
                    node_id: p.node_id.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if (config.security_policy == OpcUaSecurityPolicy::None)
            != (config.security_mode == OpcUaSecurityMode::None)
        {
            return Err(OpcUaError::Security(
                config.security_policy,
                config.security_mode,
            ));
        }
        let shared = Arc::new(Mutex::new(Shared {
            link: LinkState::Disconnected,
            acquisition: Acquisition::Connecting,
            latest: vec![Latest::default(); points.len()],
            polled: Vec::new(),
            session: None,
            counts: ErrorCounts::default(),
            reconnected: false,
            error: None,
            last_error: None,
            notifications: 0,
            subscriptions_lost: 0,
            last_publish: Instant::now(),
            keep_alive_period: Duration::ZERO,
        }));
        let task = tokio::spawn(run(
            config.clone(),
            points.clone(),
            node_ids.clone(),
            shared.clone(),
        ));
        Ok(Self {
            config,
            points,
            node_ids,
            shared,
            task,
        })
    }

    /// Acquisition and subscription counters together.
    pub fn status(&self) -> OpcUaStatus {
        self.shared
            .lock()
            .map(|s| OpcUaStatus {
                acquisition: s.acquisition,
                notifications: s.notifications,
                subscriptions_lost: s.subscriptions_lost,
            })
            .unwrap_or(OpcUaStatus {
                acquisition: Acquisition::Connecting,
                notifications: 0,
                subscriptions_lost: 0,
            })
    }

    /// The last error, if any (kept after a poll has reported it).
    pub fn last_error(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|s| s.last_error.clone())
    }

    /// One reading per point: the latest value each subscription delivered,
    /// and a Read of the points that are polled. Never fails: problems
    /// become quality.
    pub async fn poll(&mut self) -> PollOutcome {
        let to_read = self.shared.lock().ok().and_then(|s| {
            let session = s.session.clone()?;
            (s.link == LinkState::Connected && !s.polled.is_empty())
                .then(|| (session, s.polled.clone()))
        });
        if let Some((session, indices)) = to_read {
            let ids: Vec<ReadValueId> = indices
                .iter()
                .map(|&i| ReadValueId::from(self.node_ids[i].clone()))
                .collect();
            let read = tokio::time::timeout(
                self.config.request_timeout,
                session.read(&ids, TimestampsToReturn::Both, 0.0),
            )
            .await;
            if let Ok(mut s) = self.shared.lock() {
                match read {
                    Ok(Ok(values)) if values.len() == indices.len() => {
                        for (&i, value) in indices.iter().zip(values) {
                            s.latest[i] = latest_of(&value);
                        }
                    }
                    Ok(Ok(values)) => {
                        s.counts.malformed += 1;
                        s.fail(format!(
                            "read returned {} values for {} nodes",
                            values.len(),
                            indices.len()
                        ));
                        for &i in &indices {
                            s.latest[i] = Latest::default();
                        }
                    }
                    Ok(Err(err)) => {
                        s.counts.exception += 1;
                        s.fail(format!("read failed: {err}"));
                        for &i in &indices {
                            s.latest[i] = Latest::default();
                        }
                    }
                    Err(_) => {
                        s.counts.timeout += 1;
                        s.fail(format!(
                            "read timed out after {} ms",
                            self.config.request_timeout.as_millis()
                        ));
                        for &i in &indices {
                            s.latest[i] = Latest::default();
                        }
                    }
                }
            }
        }
        let Ok(mut s) = self.shared.lock() else {
            return PollOutcome {
                readings: Vec::new(),
                link: LinkState::Disconnected,
                counts: ErrorCounts::default(),
                reconnected: false,
                error: Some("reader state poisoned".into()),
            };
        };
        let down = s.link != LinkState::Connected;
        // Subscriptions answer every publish request within a keep-alive
        // period; twice that (and a request's transit) without one, what they
        // delivered last is no longer known to be current.
        let silent = s.last_publish.elapsed();
        let stale = matches!(s.acquisition, Acquisition::Subscriptions(_))
            && silent > s.keep_alive_period * 2 + self.config.request_timeout;
        let why_stale = format!(
            "stale: no publish response (data or keep-alive) for {} ms; the server owes one every {} ms",
            silent.as_millis(),
            s.keep_alive_period.as_millis()
        );
        let why_down = s
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        let readings = self
            .points
            .iter()
            .zip(&s.latest)
            .enumerate()
            .map(|(i, (p, latest))| {
                let (value, quality, reason) = if down {
                    (
                        None,
                        Quality::Bad,
                        Some(format!("disconnected: {why_down}")),
                    )
                } else if stale && !s.polled.contains(&i) {
                    (None, Quality::Bad, Some(why_stale.clone()))
                } else {
                    match (latest.value, latest.status) {
                        (Some(v), Some(status)) if status.is_good() => {
                            (Some(v), Quality::Good, None)
                        }
                        (Some(v), Some(status)) if status.is_uncertain() => {
                            (Some(v), Quality::Uncertain, Some(status.to_string()))
                        }
                        (_, Some(status)) if !status.is_good() => {
                            (None, Quality::Bad, Some(status.to_string()))
                        }
                        (None, None) => (None, Quality::Bad, Some("no value yet".into())),
                        _ => (None, Quality::Bad, Some("not a number".into())),
                    }
                };
                Reading {
                    sensor: p.sensor.clone(),
                    value,
                    quality,
                    reason,
                }
            })
            .collect();
        let counts = std::mem::take(&mut s.counts);
        PollOutcome {
            readings,
            link: s.link,
            counts,
            reconnected: std::mem::take(&mut s.reconnected),
            error: s.error.take(),
        }
    }
}

fn latest_of(value: &DataValue) -> Latest {
    Latest {
        value: value.value.as_ref().and_then(|v| v.as_f64()),
        status: Some(value.status()),
    }
}

/// Keeps a session to the server for as long as the reader lives.
async fn run(
    config: OpcUaConfig,
    points: Vec<OpcUaPoint>,
    node_ids: Vec<NodeId>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut attempt: u32 = 0;
    let mut client = None;
    loop {
        if client.is_none() {
            // Key generation on first use is slow and synchronous.
            let built = {
                let config = config.clone();
                tokio::task::spawn_blocking(move || build_client(&config))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|built| built)
            };
            match built {
                Ok(c) => client = Some(c),
                Err(err) => {
                    let message = format!("client setup failed: {err}");
                    if let Ok(mut s) = shared.lock() {
                        s.fail(message);
                    }
                    tokio::time::sleep(config.reconnect.max).await;
                    continue;
                }
            }
        }
        let Some(client) = client.as_mut() else {
            continue;
        };
        let mut connected = false;
        let ended = session(client, &config, &points, &node_ids, &shared, &mut connected).await;
        if let Ok(mut s) = shared.lock() {
            s.link = LinkState::Disconnected;
            s.session = None;
            s.acquisition = Acquisition::Connecting;
            s.forget();
            s.fail(ended);
        }
        // A session that worked starts the backoff afresh.
        attempt = if connected { 1 } else { attempt + 1 };
        tokio::time::sleep(config.reconnect.delay(attempt)).await;
    }
}

fn build_client(config: &OpcUaConfig) -> Result<Client, String> {
    ClientBuilder::new()
        .application_name("hydrowatch")
        .application_uri("urn:hydrowatch:client")
        .product_uri("urn:hydrowatch:client")
        .pki_dir(&config.pki_dir)
        .create_sample_keypair(true)
        .trust_server_certs(config.trust_server_certs)
        .verify_server_certs(true)
        .session_retry_limit(-1)
        .session_retry_initial(config.reconnect.initial)
        .session_retry_max(config.reconnect.max)
        .session_timeout(60_000)
        .keep_alive_interval(Duration::from_secs(2))
        .max_failed_keep_alive_count(2)
        .request_timeout(config.request_timeout)
        .recreate_subscriptions(true)
        .client()
        .map_err(|errors| errors.join("; "))
}

/// One session from discovery to its end; returns why it ended, and sets
/// `connected_once` if it ever came up.
async fn session(
    client: &mut Client,
    config: &OpcUaConfig,
    points: &[OpcUaPoint],
    node_ids: &[NodeId],
    shared: &Arc<Mutex<Shared>>,
    connected_once: &mut bool,
) -> String {
    let url = config.endpoint_url.as_str();
    let endpoints = match tokio::time::timeout(
        config.connect_timeout,
        client.get_server_endpoints_from_url(url),
    )
    .await
    {
        Ok(Ok(endpoints)) => endpoints,
        Ok(Err(err)) => {
            count(shared, |c| c.connect += 1);
            return format!("endpoint discovery at {url} failed: {err}");
        }
        Err(_) => {
            count(shared, |c| c.connect += 1);
            return format!(
                "endpoint discovery at {url} timed out after {} ms",
                config.connect_timeout.as_millis()
            );
        }
    };
    let policy = config.security_policy.stack();
    let mode = config.security_mode.stack();
    let Some(mut endpoint) = Client::find_matching_endpoint(&endpoints, url, policy, mode) else {
        count(shared, |c| c.connect += 1);
        let offered: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{} {:?}", e.security_policy_uri, e.security_mode))
            .collect();
        return format!(
            "the server offers no endpoint with {policy:?} / {mode:?} (it offers: {})",
            offered.join(", ")
        );
    };
    // Connect where we were told to, whatever the server advertises.
    endpoint.endpoint_url = url.into();
    let identity = match &config.user {
        Some((user, password)) => IdentityToken::new_user_name(user.as_str(), password.as_str()),
        None => IdentityToken::Anonymous,
    };
    let (session, event_loop) = match client.connect_to_endpoint_directly(endpoint, identity) {
        Ok(pair) => pair,
        Err(err) => {
            count(shared, |c| c.connect += 1);
            return format!("session setup failed: {err}");
        }
    };
    // The event loop drives the session; it must keep running while requests
    // (creating subscriptions, reads) wait for answers, so it gets a task and
    // its events come here.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        let stream = event_loop.enter();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if events_tx.send((Instant::now(), event)).is_err() {
                return;
            }
        }
    });
    let _pump = AbortOnDrop(pump);
    // When the subscriptions were last made: a failure the stack saw before
    // then answered a request about the ones they replaced.
    let mut subscribed_at = Instant::now();
    while let Some((at, event)) = events.recv().await {
        match event {
            Ok(SessionPollResult::Reconnected(how)) => {
                tracing::info!(endpoint = url, ?how, "OPC-UA session up");
                if let Ok(mut s) = shared.lock() {
                    s.link = LinkState::Connected;
                    s.session = Some(session.clone());
                    s.last_publish = Instant::now();
                    if *connected_once {
                        s.reconnected = true;
                    }
                }
                let lost = match shared.lock().map(|s| s.acquisition) {
                    Ok(Acquisition::Subscriptions(n)) => {
                        let held = session
                            .subscription_state()
                            .lock()
                            .subscription_ids()
                            .map(|ids| ids.len())
                            .unwrap_or(0);
                        held < n
                    }
                    _ => false,
                };
                if lost {
                    forget_subscriptions(&session, url, shared).await;
                }
                if *connected_once && !lost {
                    // The stack re-created the subscriptions, but its publish
                    // loop starts idle on a new connection and would wait for
                    // a trigger that never comes: the server then lets the
                    // subscriptions time out.
                    session.trigger_publish_now();
                }
                if !*connected_once || lost {
                    acquire(&session, config, points, node_ids, shared).await;
                    subscribed_at = Instant::now();
                }
                *connected_once = true;
            }
            Ok(SessionPollResult::ConnectionLost(status)) => {
                if let Ok(mut s) = shared.lock() {
                    s.link = LinkState::Disconnected;
                    s.counts.link += 1;
                    s.forget();
                    s.fail(format!("connection lost: {status}"));
                }
            }
            Ok(SessionPollResult::Subscription(SubscriptionActivity::PublishFailed(
                StatusCode::BadNoSubscription,
            ))) if at > subscribed_at
                && matches!(
                    shared.lock().map(|s| s.acquisition),
                    Ok(Acquisition::Subscriptions(_))
                ) =>
            {
                // The session lived through an outage (or came back) but the
                // server let its subscriptions expire meanwhile: make them
                // again. Every publish request held in the outage is answered
                // so, but only those after the new ones count.
                if let Ok(mut s) = shared.lock() {
                    s.forget();
                }
                forget_subscriptions(&session, url, shared).await;
                acquire(&session, config, points, node_ids, shared).await;
                subscribed_at = Instant::now();
            }
            Ok(SessionPollResult::ReconnectFailed(status)) => {
                if let Ok(mut s) = shared.lock() {
                    s.counts.connect += 1;
                    s.fail(format!("reconnect failed: {status}"));
                }
            }
            Ok(SessionPollResult::Subscription(SubscriptionActivity::Publish)) => {
                if let Ok(mut s) = shared.lock() {
                    s.last_publish = s.last_publish.max(at);
                }
            }
            Ok(_) => {}
            Err(status) => return format!("session ended: {status}"),
        }
    }
    "session ended".into()
}

/// Drops the subscriptions the client still holds for this session (the
/// server may no longer have them).
async fn forget_subscriptions(session: &Arc<Session>, url: &str, shared: &Arc<Mutex<Shared>>) {
    tracing::warn!(
        endpoint = url,
        "the server no longer has our subscriptions; creating them again"
    );
    if let Ok(mut s) = shared.lock() {
        s.subscriptions_lost += 1;
    }
    let ids = session
        .subscription_state()
        .lock()
        .subscription_ids()
        .unwrap_or_default();
    for id in ids {
        let _ = session.delete_subscription(id).await;
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn count(shared: &Arc<Mutex<Shared>>, f: impl FnOnce(&mut ErrorCounts)) {
    if let Ok(mut s) = shared.lock() {
        f(&mut s.counts);
    }
}

/// Creates the subscriptions (or settles for polling) on a fresh session.
async fn acquire(
    session: &Arc<Session>,
    config: &OpcUaConfig,
    points: &[OpcUaPoint],
    node_ids: &[NodeId],
    shared: &Arc<Mutex<Shared>>,
) {
    let mut waiting: Vec<usize> = (0..points.len()).collect();
    let mut subscriptions = 0usize;
    if let Ok(mut s) = shared.lock() {
        s.keep_alive_period = Duration::ZERO;
    }
    // Halved each time the server says a subscription cannot hold that many.
    let mut per_subscription = config.max_items_per_subscription.max(1);
    if config.subscribe {
        while !waiting.is_empty() {
            let batch: Vec<usize> = waiting.iter().copied().take(per_subscription).collect();
            let callback_shared = shared.clone();
            // Keep-alives at least every 2 s; the server keeps the
            // subscription through a minute without the client (an outage,
            // a reconnect), and at least three keep-alive periods.
            let interval_ms = config.publishing_interval.as_millis().max(1) as u32;
            let keep_alive = (2_000 / interval_ms).clamp(1, 1_000);
            let lifetime = (60_000 / interval_ms).clamp(3 * keep_alive, 90_000);
            let created = session
                .create_subscription(
                    config.publishing_interval,
                    lifetime,
                    keep_alive,
                    // Unlimited, a publish of thousands of changes exceeds the
                    // message size and none arrive (seen in the benchmark at
                    // 5,000 items); the server sends the rest in the next ones.
                    1_000,
                    0,
                    true,
                    DataChangeCallback::new(move |value, item| {
                        let Some(i) = (item.client_handle() as usize).checked_sub(1) else {
                            return;
                        };
                        if let Ok(mut s) = callback_shared.lock() {
                            s.notifications += 1;
                            if let Some(slot) = s.latest.get_mut(i) {
                                *slot = latest_of(&value);
                            }
                        }
                    }),
                )
                .await;
            let subscription = match created {
                Ok(id) => {
                    let revised = session
                        .subscription_state()
                        .lock()
                        .get(id)
                        .map(|sub| sub.publishing_interval() * sub.max_keep_alive_count());
                    if let Ok(mut s) = shared.lock() {
                        s.keep_alive_period =
                            s.keep_alive_period
                                .max(revised.unwrap_or(Duration::from_millis(
                                    u64::from(interval_ms) * u64::from(keep_alive),
                                )));
                    }
                    id
                }
                Err(err) => {
                    tracing::warn!(endpoint = %config.endpoint_url, error = %err, "the server refuses subscriptions; polling instead");
                    break;
                }
            };
            let requests: Vec<MonitoredItemCreateRequest> = batch
                .iter()
                .map(|&i| monitored_item(&points[i], &node_ids[i], i))
                .collect();
            let results = match session
                .create_monitored_items(subscription, TimestampsToReturn::Both, requests)
                .await
            {
                Ok(results) => results,
                Err(err)
                    if err.status() == StatusCode::BadTooManyMonitoredItems && batch.len() > 1 =>
                {
                    let _ = session.delete_subscription(subscription).await;
                    per_subscription = batch.len() / 2;
                    tracing::info!(endpoint = %config.endpoint_url, per_subscription, "the server limits items per subscription; splitting");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(endpoint = %config.endpoint_url, error = %err, "monitored items refused; polling them");
                    let _ = session.delete_subscription(subscription).await;
                    break;
                }
            };
            let mut too_many = Vec::new();
            let mut accepted = 0;
            for (&i, result) in batch.iter().zip(&results) {
                let status = result.result.status_code;
                if status.is_good() {
                    accepted += 1;
                } else if status == StatusCode::BadTooManyMonitoredItems {
                    too_many.push(i);
                } else if let Ok(mut s) = shared.lock() {
                    // The server will not monitor it (unknown node…): say why.
                    s.latest[i] = Latest {
                        value: None,
                        status: Some(status),
                    };
                }
            }
            if accepted == 0 {
                let _ = session.delete_subscription(subscription).await;
                break;
            }
            subscriptions += 1;
            waiting.retain(|i| !batch.contains(i) || too_many.contains(i));
        }
    } else {
        tracing::info!(endpoint = %config.endpoint_url, "subscriptions off; polling");
    }
    if let Ok(mut s) = shared.lock() {
        // The new subscriptions owe nothing yet.
        s.last_publish = Instant::now();
        s.acquisition = if subscriptions > 0 {
            Acquisition::Subscriptions(subscriptions)
        } else {
            Acquisition::Polling
        };
        s.polled = waiting;
    }
}

fn monitored_item(
    point: &OpcUaPoint,
    node_id: &NodeId,
    index: usize,
) -> MonitoredItemCreateRequest {
    let filter = match point.deadband {
        Some(deadband) => ExtensionObject::from_message(DataChangeFilter {
            // The default trigger (status only) would never report a value.
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: DeadbandType::Absolute as u32,
            deadband_value: deadband,
        }),
        None => ExtensionObject::null(),
    };
    MonitoredItemCreateRequest {
        item_to_monitor: ReadValueId::from(node_id.clone()),
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            // Handles start at 1: 0 asks the stack to pick one.
            client_handle: index as u32 + 1,
            sampling_interval: point.sampling_interval_ms,
            queue_size: point.queue_size,
            discard_oldest: true,
            filter,
        },
    }
}
