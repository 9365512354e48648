//! An OPC-UA server that behaves like the hydraulic rig's controller: the
//! same 17 sensors and cycle timer as the Modbus simulator, as variables
//! (`ns=<rig namespace>;s=Rig.PS1` …, `Double`; `Rig.CYC`, `UInt16`), replaying
//! the same recorded cycles once per recorded second.
//!
//! Endpoints: security policy None, Basic256Sha256 and Aes128Sha256RsaOaep,
//! each with Sign and SignAndEncrypt; anonymous and user name / password
//! tokens. It can refuse subscriptions (a server that only serves Read, so
//! that clients fall back to polling), and misbehave on demand: clients reach
//! it through a proxy in front of it that adds latency, swallows traffic (a
//! hung server: requests time out) or drops every connection; and it can be
//! restarted, as a real server would be, on the same port with the same
//! certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::server::address_space::Variable;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{DataValue, MessageSecurityMode, NodeId};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::rig::{Replay, RigCondition, RigRecording, SENSORS};

/// Namespace URI of the rig's variables.
pub const RIG_NAMESPACE: &str = "urn:hydrowatch:rig";

/// Name of the cycle timer variable (`Rig.CYC`).
pub const CYCLE_TIMER_VARIABLE: &str = "CYC";

/// The string id of a rig variable: `Rig.PS1`, …, `Rig.CYC`.
pub fn rig_variable(sensor: &str) -> String {
    format!("Rig.{sensor}")
}

/// Misbehaviour of the network path to the server, all off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpcUaFaults {
    /// Delay added to every chunk of bytes each way, ms.
    pub latency_ms: u64,
    /// Forward nothing (connections stay open): requests time out.
    pub no_response: bool,
    /// Close every connection and refuse new ones.
    pub drop_connections: bool,
    /// Hold every byte both ways without closing anything (a frozen network
    /// path); what was held arrives, in order, once the stall is cleared.
    pub stall: bool,
}

impl OpcUaFaults {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.latency_ms > 60_000 {
            return Err("latency_ms: at most 60000".into());
        }
        Ok(())
    }

    /// Whether any fault is set.
    pub fn any(&self) -> bool {
        self.latency_ms > 0 || self.no_response || self.drop_connections || self.stall
    }
}

/// How the simulator is started.
#[derive(Debug, Clone)]
pub struct OpcUaSimulatorOptions {
    /// Recorded condition replayed at start.
    pub condition: RigCondition,
    /// Seconds into the recording to start at.
    pub phase_secs: f64,
    /// Recorded seconds replayed per second (> 0).
    pub speed: f64,
    /// Where its certificate and key live (created on first start) and where
    /// client certificates are trusted or rejected.
    pub pki_dir: PathBuf,
    /// Accept client certificates it does not know (tests, demos).
    pub trust_client_certs: bool,
    /// Whether the anonymous token is accepted.
    pub anonymous: bool,
    /// User names and passwords accepted.
    pub users: Vec<(String, String)>,
    /// Whether it serves subscriptions (otherwise only Read: clients poll).
    pub subscriptions: bool,
    /// Most monitored items it accepts in one subscription (0: the stack's
    /// default, 1,000).
    pub max_items_per_subscription: usize,
    /// Most publishing intervals a subscription outlives its client's
    /// silence by (0: the stack's default, 90,000); a small one makes
    /// subscriptions expire in a short outage while the session lives on.
    pub max_lifetime_count: u32,
    /// Faults injected from the start.
    pub faults: OpcUaFaults,
}

impl OpcUaSimulatorOptions {
    /// Anonymous and `operator`/`operator-password`, subscriptions on, the
    /// healthy condition in real time, certificates kept in `pki_dir`.
    pub fn new(pki_dir: impl Into<PathBuf>) -> Self {
        Self {
            condition: RigCondition::Healthy,
            phase_secs: 0.0,
            speed: 1.0,
            pki_dir: pki_dir.into(),
            trust_client_certs: true,
            anonymous: true,
            users: vec![("operator".into(), "operator-password".into())],
            subscriptions: true,
            max_items_per_subscription: 0,
            max_lifetime_count: 0,
            faults: OpcUaFaults::default(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpcUaSimulatorError {
    /// A socket could not be bound.
    #[error("OPC-UA simulator: {0}")]
    Io(#[from] std::io::Error),
    /// The server refused its configuration.
    #[error("OPC-UA simulator: {0}")]
    Server(String),
}

/// One running incarnation of the server.
struct Running {
    handle: ServerHandle,
    server: JoinHandle<Result<(), String>>,
    updater: JoinHandle<()>,
}

/// A running OPC-UA rig simulator; dropping the handle stops it.
pub struct OpcUaSimulatorHandle {
    addr: SocketAddr,
    server_addr: SocketAddr,
    options: OpcUaSimulatorOptions,
    replay: Arc<Replay>,
    faults: watch::Sender<OpcUaFaults>,
    connections: Arc<AtomicU64>,
    proxy: JoinHandle<()>,
    running: Option<Running>,
    restarts: u64,
}

impl OpcUaSimulatorHandle {
    /// Starts the simulator; clients connect to `addr` (port 0 picks one).
    pub async fn start(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        options: OpcUaSimulatorOptions,
    ) -> Result<Self, OpcUaSimulatorError> {
        if !(options.speed.is_finite() && options.speed > 0.0) {
            return Err(OpcUaSimulatorError::Server(format!(
                "speed {}: must be a number > 0",
                options.speed
            )));
        }
        options
            .faults
            .validate()
            .map_err(OpcUaSimulatorError::Server)?;
        let public = TcpListener::bind(addr).await?;
        let addr = public.local_addr()?;
        // The server itself listens on a port of its own; clients reach it
        // through the fault proxy on `addr`.
        let inner = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let server_addr = inner.local_addr()?;
        // One replay for every incarnation of the server: a restart goes on
        // where the recording was.
        let replay = Arc::new(Replay::new(
            recording,
            options.condition,
            options.phase_secs,
            options.speed,
        ));
        let (faults, faults_rx) = watch::channel(options.faults.clone());
        let connections = Arc::new(AtomicU64::new(0));
        let proxy = tokio::spawn(proxy(public, server_addr, faults_rx, connections.clone()));
        let mut handle = Self {
            addr,
            server_addr,
            options,
            replay,
            faults,
            connections,
            proxy,
            running: None,
            restarts: 0,
        };
        handle.serve(inner).await?;
        Ok(handle)
    }

    async fn serve(&mut self, listener: TcpListener) -> Result<(), OpcUaSimulatorError> {
        let options = self.options.clone();
        let port = self.server_addr.port();
        // Key generation (first start only) is slow and synchronous.
        let (server, handle) = tokio::task::spawn_blocking(move || build_server(&options, port))
            .await
            .map_err(|e| OpcUaSimulatorError::Server(e.to_string()))??;
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .ok_or_else(|| OpcUaSimulatorError::Server("no rig node manager".into()))?;
        let ns = handle
            .get_namespace_index(RIG_NAMESPACE)
            .ok_or_else(|| OpcUaSimulatorError::Server("no rig namespace".into()))?;
        let folder = NodeId::new(ns, "Rig");
        let names: Vec<&str> = SENSORS
            .iter()
            .copied()
            .chain(std::iter::once(CYCLE_TIMER_VARIABLE))
            .collect();
        let ids: Vec<NodeId> = names
            .iter()
            .map(|name| NodeId::new(ns, rig_variable(name)))
            .collect();
        {
            let now = self.replay.now();
            let (values, timer) = (now.values, now.timer);
            let mut space = manager.address_space().write();
            space.add_folder(&folder, "Rig", "Rig", &NodeId::objects_folder_id());
            let variables: Vec<Variable> = ids
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(i, (id, name))| match values.get(i) {
                    Some(v) => Variable::new(id, *name, *name, *v),
                    None => Variable::new(id, *name, *name, timer),
                })
                .collect();
            space.add_variables(variables, &folder);
        }
        let subscriptions = handle.subscriptions().clone();
        let replay = self.replay.clone();
        let updater = tokio::spawn(async move {
            let mut last_second = f64::NAN;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = replay.now();
                if now.second == last_second {
                    continue;
                }
                last_second = now.second;
                let (values, timer) = (now.values, now.timer);
                let updates: Vec<DataValue> = (0..ids.len())
                    .map(|i| match values.get(i) {
                        Some(v) => DataValue::new_now(*v),
                        None => DataValue::new_now(timer),
                    })
                    .collect();
                if let Err(status) = manager.set_values(
                    &subscriptions,
                    ids.iter().zip(updates).map(|(id, v)| (id, None, v)),
                ) {
                    tracing::warn!(%status, "OPC-UA simulator could not update its variables");
                }
            }
        });
        let server = tokio::spawn(server.run_with(listener));
        self.running = Some(Running {
            handle,
            server,
            updater,
        });
        tracing::info!(simulator = %self.addr, server = %self.server_addr, "OPC-UA rig simulator listening");
        Ok(())
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `opc.tcp://127.0.0.1:<port>/`.
    pub fn endpoint_url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.addr.port())
    }

    /// The namespace index of the rig's variables (2 on this server).
    pub fn namespace(&self) -> u16 {
        self.running
            .as_ref()
            .and_then(|r| r.handle.get_namespace_index(RIG_NAMESPACE))
            .unwrap_or(2)
    }

    /// Whether the server runs.
    pub fn is_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| !r.server.is_finished())
    }

    /// Connections accepted by the proxy so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Times the server was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The condition replayed.
    pub fn condition(&self) -> RigCondition {
        self.replay.condition()
    }

    /// Switches the replayed condition.
    pub fn set_condition(&self, condition: RigCondition) {
        self.replay.set_condition(condition);
    }

    /// The faults being injected.
    pub fn faults(&self) -> OpcUaFaults {
        self.faults.borrow().clone()
    }

    /// Replaces the faults being injected.
    pub fn set_faults(&self, faults: OpcUaFaults) -> Result<(), String> {
        faults.validate()?;
        tracing::info!(simulator = %self.addr, ?faults, "OPC-UA simulator faults set");
        self.faults.send_replace(faults);
        Ok(())
    }

    /// Stops the server: every session and subscription on it is gone, as in
    /// a power-off (the proxy stays, so connections are refused upstream).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.handle.cancel();
            running.updater.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), running.server).await;
        }
    }

    /// Starts the server again on the same port with the same certificate,
    /// with no memory of earlier sessions or subscriptions.
    pub async fn restart(&mut self) -> Result<(), OpcUaSimulatorError> {
        self.stop().await;
        let listener = bind_again(self.server_addr).await?;
        self.serve(listener).await?;
        self.restarts += 1;
        Ok(())
    }
}

/// Binds `addr` again, retrying briefly while the old listener is let go.
async fn bind_again(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) if tries < 50 => {
                tries += 1;
                tracing::debug!(%addr, error = %err, "waiting to bind again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

impl Drop for OpcUaSimulatorHandle {
    fn drop(&mut self) {
        self.proxy.abort();
        if let Some(running) = self.running.take() {
            running.handle.cancel();
            running.updater.abort();
            running.server.abort();
        }
    }
}

fn build_server(
    options: &OpcUaSimulatorOptions,
    port: u16,
) -> Result<(opcua::server::Server, ServerHandle), OpcUaSimulatorError> {
    let mut ids: Vec<&str> = Vec::new();
    if options.anonymous {
        ids.push(ANONYMOUS_USER_TOKEN_ID);
    }
    let user_ids: Vec<String> = (0..options.users.len())
        .map(|i| format!("user-{i}"))
        .collect();
    ids.extend(user_ids.iter().map(String::as_str));
    let mut builder = ServerBuilder::new()
        .application_name("hydrowatch rig simulator")
        .application_uri("urn:hydrowatch:rig-simulator")
        .product_uri("urn:hydrowatch:rig-simulator")
        .host("127.0.0.1")
        .port(port)
        .pki_dir(&options.pki_dir)
        .create_sample_keypair(true)
        .trust_client_certs(options.trust_client_certs)
        .discovery_urls(vec![format!("opc.tcp://127.0.0.1:{port}/")])
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: RIG_NAMESPACE.into(),
                ..Default::default()
            },
            "rig",
        ));
    for (id, (user, password)) in user_ids.iter().zip(&options.users) {
        builder = builder.add_user_token(id, ServerUserToken::user_pass(user, password));
    }
    let endpoints = [
        ("none", SecurityPolicy::None, MessageSecurityMode::None),
        (
            "basic256sha256-sign",
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::Sign,
        ),
        (
            "basic256sha256-sign-encrypt",
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::SignAndEncrypt,
        ),
        (
            "aes128-sign",
            SecurityPolicy::Aes128Sha256RsaOaep,
            MessageSecurityMode::Sign,
        ),
        (
            "aes128-sign-encrypt",
            SecurityPolicy::Aes128Sha256RsaOaep,
            MessageSecurityMode::SignAndEncrypt,
        ),
    ];
    for (name, policy, mode) in endpoints {
        builder = builder.add_endpoint(name, ("/", policy, mode, ids.as_slice()));
    }
    if !options.subscriptions {
        builder
            .limits_mut()
            .subscriptions
            .max_subscriptions_per_session = 0;
    }
    if options.max_items_per_subscription > 0 {
        builder
            .limits_mut()
            .subscriptions
            .max_monitored_items_per_sub = options.max_items_per_subscription;
    }
    if options.max_lifetime_count > 0 {
        let limits = &mut builder.limits_mut().subscriptions;
        limits.max_lifetime_count = options.max_lifetime_count;
        // The lifetime is at least three keep-alive periods.
        limits.max_keep_alive_count = (options.max_lifetime_count / 3).max(1);
        limits.default_keep_alive_count = limits
            .default_keep_alive_count
            .min(limits.max_keep_alive_count);
    }
    builder.build().map_err(OpcUaSimulatorError::Server)
}

/// Forwards connections from `public` to the server, applying the faults.
async fn proxy(
    public: TcpListener,
    server: SocketAddr,
    faults: watch::Receiver<OpcUaFaults>,
    accepted: Arc<AtomicU64>,
) {
    let mut connections = JoinSet::new();
    let mut watch_drops = faults.clone();
    loop {
        tokio::select! {
            incoming = public.accept() => {
                let Ok((client, _)) = incoming else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if faults.borrow().drop_connections {
                    continue;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(forward(client, server, faults.clone()));
            }
            changed = watch_drops.changed() => {
                if changed.is_err() {
                    return;
                }
                if watch_drops.borrow().drop_connections {
                    connections.abort_all();
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One proxied connection: bytes both ways, late or not at all as the faults say.
async fn forward(client: TcpStream, server: SocketAddr, faults: watch::Receiver<OpcUaFaults>) {
    let Ok(upstream) = TcpStream::connect(server).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = upstream.into_split();
    let up = pipe(client_read, server_write, faults.clone());
    let down = pipe(server_read, client_write, faults);
    // Either side closing ends both.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<OpcUaFaults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A stall holds what was read (and, as nothing more is read, what
        // follows it fills the sender's buffers) until it is cleared.
        if faults.wait_for(|f| !f.stall).await.is_err() {
            return;
        }
        let current = faults.borrow().clone();
        if current.no_response {
            // Swallowed: the peer waits for an answer that never comes.
            continue;
        }
        if current.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(current.latency_ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
