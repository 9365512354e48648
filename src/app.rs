//! Wiring: simulators, the supervision tree and the HTTP server, started and
//! stopped as one.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use hydrowatch_actors::connection::ConnectionSpec;
use hydrowatch_actors::connection::DeviceSpec;
use hydrowatch_actors::{Tree, TreeConfig, TreeStorage};
use hydrowatch_protocols::modbus::{PollerConfig, SimulatorHandle, SimulatorOptions};
use hydrowatch_protocols::opcua::{OpcUaSimulatorHandle, OpcUaSimulatorOptions};

use crate::config::Protocol;
use crate::simulators::RigSimulator;
use hydrowatch_protocols::rig::RigRecording;

use crate::config::{Loaded, Plant};
use crate::http::{self, ops::HealthFlags, AppState, Simulators};
use crate::store::StorageSettings;
use crate::store::{PlantIds, Store};

/// Database id of every sensor, by equipment and sensor.
type SensorIds = HashMap<hydrowatch_models::EquipmentId, HashMap<hydrowatch_models::SensorId, i64>>;
use crate::telemetry;

/// How the application ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (signal); exit code 0.
    Stopped,
    /// The supervision tree's root gave up; exit code 1 so a process manager
    /// restarts the process.
    RootFailed(String),
}

/// A running application.
pub struct App {
    /// Where HTTP listens.
    pub addr: SocketAddr,
    /// Shared state (tree, simulators, settings).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    root_failure: watch::Receiver<Option<String>>,
}

/// Starts the simulators for the plant's simulated devices on loopback ports
/// (`port = 0` picks free ones) and returns them by equipment.
pub async fn start_simulators(
    plant: &Plant,
    fixed_ports: bool,
) -> anyhow::Result<HashMap<hydrowatch_models::EquipmentId, Arc<Mutex<RigSimulator>>>> {
    let recording = Arc::new(RigRecording::embedded());
    let mut out = HashMap::new();
    for sim in &plant.simulators {
        let port = if fixed_ports { sim.port } else { 0 };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let handle = if sim.protocol == Protocol::Opcua {
            let mut options = OpcUaSimulatorOptions::new(&sim.pki_dir);
            options.condition = sim.condition;
            options.phase_secs = sim.phase_secs;
            options.speed = sim.speed;
            options.subscriptions = sim.subscriptions;
            options.faults = sim.opcua_faults.clone();
            let handle = OpcUaSimulatorHandle::start(addr, recording.clone(), options)
                .await
                .with_context(|| {
                    format!(
                        "OPC-UA simulator for {} could not start on {addr}",
                        sim.equipment
                    )
                })?;
            RigSimulator::OpcUa(Box::new(handle))
        } else {
            let options = SimulatorOptions {
                framing: sim.framing,
                units: sim.units.clone(),
                condition: sim.condition,
                phase_secs: sim.phase_secs,
                speed: sim.speed,
                faults: sim.faults.clone(),
            };
            let handle = SimulatorHandle::start_with(addr, recording.clone(), options)
                .await
                .with_context(|| {
                    format!("simulator for {} could not listen on {addr}", sim.equipment)
                })?;
            RigSimulator::Modbus(handle)
        };
        out.insert(sim.equipment.clone(), Arc::new(Mutex::new(handle)));
    }
    Ok(out)
}

/// Opens the database of `storage.url` (waiting up to `connect_timeout_secs`
/// for it), applies the migrations and records the plant.
pub async fn open_storage(loaded: &Loaded) -> anyhow::Result<(Store, PlantIds)> {
    let settings = &loaded.settings.storage;
    let url = &settings.url;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(settings.connect_timeout_secs);
    let mut delay = Duration::from_millis(200);
    let store = loop {
        match Store::connect_with(url, settings.layout()).await {
            Ok(store) => break store,
            Err(err) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %err, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                return Err(err).with_context(|| {
                    format!(
                        "cannot open storage.url {} (waited {} s)",
                        redact(url),
                        settings.connect_timeout_secs
                    )
                })
            }
        }
    };
    store.migrate().await.context("migrations failed")?;
    let ids = store
        .sync_plant(
            &loaded.plant.site.id,
            &loaded.plant.site.name,
            &loaded.plant.equipment,
            &loaded.plant.poll_periods_ms(),
        )
        .await
        .context("recording the plant failed")?;
    Ok((store, ids))
}

/// Keeps partitions ahead of time and applies retention, every
/// `maintenance_interval_secs` (the first round at start-up), until shutdown.
/// A failed round is logged and retried at the next; the writer creates any
/// partition it needs itself, so nothing waits on this.
async fn maintain_storage(
    store: Store,
    settings: StorageSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let layout = settings.layout();
    let mut every = tokio::time::interval(Duration::from_secs(settings.maintenance_interval_secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match store.maintain(&layout).await {
            Ok(done) => {
                metrics::counter!("hydrowatch_storage_maintenance_runs_total", "outcome" => "ok")
                    .increment(1);
                if !done.created.is_empty() || !done.dropped.is_empty() {
                    tracing::info!(created = ?done.created, dropped = ?done.dropped, "storage maintenance");
                }
            }
            Err(err) => {
                metrics::counter!("hydrowatch_storage_maintenance_runs_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(error = %err, "storage maintenance failed; retrying next round");
            }
        }
    }
}

/// Blocks compacted per call, so one round never holds the writers' lock long.
const COMPACT_BATCH: i64 = 2000;

/// Merges the fragments of closed minutes, every `every`, until shutdown. Each
/// round covers the minutes closed since the previous one (and ten before, for
/// writes that arrived late); the first round looks a day back. Older
/// fragments (a backfill) stay as written: `hydrowatch storage compact`.
async fn compact_storage(store: Store, every: Duration, mut shutdown: watch::Receiver<bool>) {
    use crate::store::blocks::{bucket_start, BLOCK_MS};
    let mut since = hydrowatch_actors::clock::now_ms() - 86_400_000;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // A minute is closed once the flush after its end is done.
        let until = bucket_start(hydrowatch_actors::clock::now_ms() - 2 * BLOCK_MS, BLOCK_MS);
        let from = since - 10 * BLOCK_MS;
        let mut merged = crate::store::samples::Compaction::default();
        let outcome = loop {
            match store.compact_blocks(from, until, COMPACT_BATCH).await {
                Ok(round) if round.blocks > 0 => {
                    merged.blocks += round.blocks;
                    merged.fragments += round.fragments;
                    if *shutdown.borrow() {
                        break Ok(());
                    }
                }
                Ok(_) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        match outcome {
            Ok(()) => {
                since = until;
                metrics::counter!("hydrowatch_storage_compacted_fragments_total")
                    .increment(merged.fragments);
                tracing::debug!(
                    blocks = merged.blocks,
                    fragments = merged.fragments,
                    "blocks compacted"
                );
            }
            Err(err) => tracing::warn!(error = %err, "compaction failed; retrying next round"),
        }
    }
}

/// What each connection actor is started with: the device behind it (its
/// simulator's address for a simulated one) and its schedule.
async fn connection_specs(
    plant: &Plant,
    simulators: &HashMap<hydrowatch_models::EquipmentId, Arc<Mutex<RigSimulator>>>,
) -> anyhow::Result<Vec<ConnectionSpec>> {
    let mut connections = Vec::new();
    for planned in &plant.connections {
        let c = &planned.config;
        let simulated = match simulators.get(&planned.equipment) {
            Some(sim) if c.endpoint == "simulator" => Some(sim.lock().await.endpoint()),
            _ => None,
        };
        let device = match c.protocol.framing() {
            None => DeviceSpec::OpcUa {
                config: planned.opcua_config(simulated.unwrap_or_else(|| c.endpoint.clone())),
                points: planned.opcua_points.clone(),
            },
            Some(framing) => {
                let addr = match (planned.endpoint, simulated) {
                    (Some(addr), _) => addr,
                    (None, Some(endpoint)) => endpoint
                        .parse()
                        .context("a simulator's address is host:port")?,
                    (None, None) => anyhow::bail!("simulated device without simulator"),
                };
                DeviceSpec::Modbus {
                    poller: PollerConfig {
                        addr,
                        framing,
                        unit_id: c.unit_id,
                        connect_timeout: Duration::from_millis(c.connect_timeout_ms),
                        request_timeout: Duration::from_millis(c.request_timeout_ms),
                        max_registers_per_read: c.max_registers_per_read,
                        max_bits_per_read: c.max_bits_per_read,
                        max_gap: c.max_gap,
                        reconnect: planned.reconnect_policy(),
                    },
                    map: planned.map.clone(),
                }
            }
        };
        connections.push(ConnectionSpec {
            id: planned.equipment.to_string(),
            equipment: planned.equipment.clone(),
            device,
            period: Duration::from_millis(c.period_ms),
            setpoints: planned.setpoints.clone(),
        });
    }
    Ok(connections)
}

/// Sign-in and its state shared across nodes (through Redis when
/// `redis.url` is set), with account mail when `[notify.email]` is.
async fn start_auth(
    loaded: &Loaded,
    store: &Store,
    audit: &Arc<crate::audit::AuditLog>,
) -> anyhow::Result<Arc<crate::auth::Auth>> {
    let settings = &loaded.settings;
    let redis = if settings.redis.url.is_empty() {
        None
    } else {
        let redis = crate::cross_node::Redis::connect(&settings.redis)
            .await
            .map_err(|e| {
                anyhow::anyhow!("redis.url {}: cannot connect: {e}", settings.redis.url)
            })?;
        tracing::info!(url = %settings.redis.url, "sessions and rate limits shared through Redis");
        Some(redis)
    };
    let cross_node = Arc::new(crate::cross_node::CrossNode::new(redis));
    let mut core = crate::auth::AuthCore::new(
        settings.auth.clone(),
        store.clone(),
        audit.clone(),
        cross_node,
    )
    .map_err(|e| anyhow::anyhow!("auth: {e}"))?;
    if let Some(email) = &settings.notify.email {
        let mailer = crate::notify::email::Mailer::new(email.clone())?;
        core.set_mail(Arc::new(mailer), &settings.notify.base_url);
    }
    Ok(Arc::new(crate::auth::Auth::new(core)))
}

/// What the supervision tree needs besides the configuration.
struct TreeParts<'a> {
    store: &'a Store,
    sensor_ids: &'a SensorIds,
    scorer: &'a Arc<hydrowatch_models::scoring::Scorer>,
    rule_feed: hydrowatch_actors::alerting::ConfigFeed,
    auth: &'a crate::auth::Auth,
}

async fn start_tree(
    loaded: &Loaded,
    connections: Vec<ConnectionSpec>,
    parts: TreeParts<'_>,
) -> anyhow::Result<(Tree, JoinHandle<()>)> {
    let store = parts.store;
    let recorder: Arc<dyn hydrowatch_actors::plant::VerdictSink> =
        crate::scoring::AnomalyRecorder::start(store.clone());
    Tree::start(TreeConfig {
        supervision: loaded.supervision,
        equipment: loaded.plant.equipment.clone(),
        connections,
        stale_check: Duration::from_millis(loaded.settings.live.stale_check_ms),
        storage: Some(TreeStorage {
            config: loaded.settings.storage.writer(),
            store: Arc::new(store.clone()),
            sensors: parts.sensor_ids.clone(),
            poll_slowdown: loaded.settings.storage.poll_slowdown,
        }),
        scoring: Some(hydrowatch_actors::plant::CycleScoring {
            scorer: parts.scorer.clone(),
            sink: Some(recorder),
        }),
        alerting: Some(hydrowatch_actors::TreeAlerting {
            config: parts.rule_feed,
            store: Arc::new(store.clone()),
            clock: hydrowatch_actors::alerting::Clock::start(),
        }),
        logins: Some(parts.auth.sessions.login_settings()),
    })
    .await
    .context("supervision tree failed to start")
}

/// Serves the API and the wallboard on `listener` until `shutdown` turns true.
fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let router = http::router(state);
    // Live frames are small and latency matters: no Nagle delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set");
        }
    });
    tokio::spawn(async move {
        // The peer address identifies a client for the ingest rate limit.
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
    })
}

/// The background work beside the tree: the notification outbox, storage
/// upkeep and compaction.
fn spawn_workers(state: &AppState, shutdown: &watch::Receiver<bool>) -> anyhow::Result<()> {
    let notifier = Arc::new(
        crate::notify::Notifier::new(state.settings.notify.clone(), state.store.clone())
            .context("notification channels could not be set up")?,
    );
    tokio::spawn(notifier.run(shutdown.clone()));
    tokio::spawn(maintain_storage(
        state.store.clone(),
        state.settings.storage.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(compact_storage(
        state.store.clone(),
        Duration::from_secs(state.settings.storage.compact_interval_secs),
        shutdown.clone(),
    ));
    Ok(())
}

/// Reports, through the returned channel, why the tree's root gave up, unless
/// it stopped because we are stopping.
fn watch_root(
    root_handle: JoinHandle<()>,
    state: &AppState,
    health: Arc<HealthFlags>,
) -> watch::Receiver<Option<String>> {
    let (failure_tx, root_failure) = watch::channel(None);
    let registry = state.tree.registry.clone();
    tokio::spawn(async move {
        let _ = root_handle.await;
        if health.stopping.load(Ordering::Relaxed) {
            return;
        }
        health.root_failed.store(true, Ordering::Relaxed);
        // The root records why it gave up (its restart intensity was exceeded).
        let why = registry
            .info("root")
            .and_then(|root| root.last_error)
            .unwrap_or_else(|| "root supervisor stopped".into());
        tracing::error!(reason = %why, "the supervision tree's root gave up; exiting so the process manager can restart us");
        let _ = failure_tx.send(Some(why));
    });
    root_failure
}

/// Logs where we listen and, on a fresh install, the link that creates the
/// first administrator.
async fn announce(state: &AppState, addr: SocketAddr) {
    tracing::info!(%addr, "hydrowatch listening; wallboard at http://{addr}/");
    match state.auth.logins.setup_code().await {
        Ok(Some(code)) => tracing::warn!(
            "no users yet: create the first administrator at http://{addr}/#setup={code} \
             (works once), or with `hydrowatch user add --role admin`"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not check for users"),
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl App {
    /// Starts everything; the HTTP server is accepting when this returns.
    pub async fn start(loaded: Loaded) -> anyhow::Result<App> {
        let metrics = telemetry::metrics_handle();
        let (store, plant_ids) = open_storage(&loaded).await?;
        // The database id of every sensor, for the writer and for ingest.
        let sensor_ids = plant_ids.by_equipment();
        tracing::info!(backend = store.backend(), url = %redact(&loaded.settings.storage.url), "storage open");
        let scorer = Arc::new(
            crate::scoring::load_scorer(&loaded.settings.models)
                .context("the cycle models could not be loaded")?,
        );
        let simulators = start_simulators(&loaded.plant, false).await?;
        let connections = connection_specs(&loaded.plant, &simulators).await?;
        let audit = Arc::new(crate::audit::AuditLog::new(
            store.clone(),
            &loaded.settings.audit,
        ));
        let auth = start_auth(&loaded, &store, &audit).await?;
        // Rules and policies of plant.toml and those stored through the API.
        let (alert_rules, rule_feed) = crate::alert_rules::AlertRules::load(
            loaded.plant.alerting.clone(),
            loaded.plant.equipment.clone(),
            loaded.settings.notify.clone(),
            store.clone(),
        )
        .await
        .context("the stored alert rules could not be read")?;
        let parts = TreeParts {
            store: &store,
            sensor_ids: &sensor_ids,
            scorer: &scorer,
            rule_feed,
            auth: &auth,
        };
        let (tree, root_handle) = start_tree(&loaded, connections, parts).await?;
        auth.sessions.attach_tree(tree.clone());

        let listener = TcpListener::bind(loaded.settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", loaded.settings.server.listen))?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let health = Arc::new(HealthFlags::default());
        let state = AppState {
            settings: Arc::new(loaded.settings),
            tree,
            store,
            sensor_ids: Arc::new(sensor_ids),
            ingest: Arc::default(),
            simulators: Simulators::new(simulators),
            shutdown: shutdown_rx.clone(),
            health: health.clone(),
            metrics,
            scorer,
            alert_rules: Arc::new(alert_rules),
            auth,
            audit,
        };
        let server = serve(listener, state.clone(), shutdown_rx.clone());
        spawn_workers(&state, &shutdown_rx)?;
        let root_failure = watch_root(root_handle, &state, health);
        announce(&state, addr).await;
        Ok(App {
            addr,
            state,
            shutdown,
            server,
            root_failure,
        })
    }

    /// Runs until `signal` completes or the root gives up, then shuts down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Exit {
        let exit = tokio::select! {
            _ = signal => Exit::Stopped,
            failure = self.root_failure.wait_for(|f| f.is_some()) => {
                let why = failure.ok().and_then(|f| f.clone()).unwrap_or_default();
                Exit::RootFailed(why)
            }
        };
        self.shutdown().await;
        exit
    }

    /// Graceful shutdown: stop polling and the tree, close WebSockets with a
    /// close frame, finish in-flight requests, stop the simulators.
    pub async fn shutdown(&mut self) {
        let grace = Duration::from_millis(self.state.settings.server.shutdown_grace_ms);
        self.state.health.stopping.store(true, Ordering::Relaxed);
        // 1. Stop polling; 2. let the equipment actors drain what was polled and
        // the storage writer write (or spool) what it holds; 3. WebSockets flush
        // their outboxes and close with 1001; 4. stop the tree (the writer spools
        // anything still in memory as it stops).
        self.state.tree.stop_polling(grace).await;
        self.state
            .tree
            .drain(grace.min(Duration::from_secs(1)))
            .await;
        self.state.tree.flush_storage(grace).await;
        let _ = self.shutdown.send(true);
        self.state.tree.shutdown(grace).await;
        for sim in self.state.simulators.values() {
            sim.lock().await.stop().await;
        }
        if tokio::time::timeout(grace, &mut self.server).await.is_err() {
            tracing::warn!("HTTP server did not finish within the grace period");
            self.server.abort();
        }
        tracing::info!("hydrowatch stopped");
    }
}
