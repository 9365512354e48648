//! Builds the supervision tree of a plant and hands the façade what it needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorRef, SpawnErr};

use hydrowatch_models::{EquipmentId, EquipmentSpec};
use hydrowatch_protocols::modbus::LinkState;

use crate::alerting::{
    AlertStore, Alerting, AlertingArgs, AlertingMsg, Clock, ConfigFeed, ALERTING,
};
use crate::config::SupervisionConfig;
use crate::connection::{
    Connection, ConnectionArgs, ConnectionMsg, ConnectionSpec, ConnectionStatus, SharedStatus,
    StorageLink,
};
use crate::hub::Hub;
use crate::plant::{AlertLink, Equipment, EquipmentArgs, EquipmentMsg};
use crate::registry::{ActorKind, Registry};
use crate::session::{Outbox, Session, SessionArgs};
use crate::storage::{
    SampleStore, StorageStatus, StorageWriter, WriterArgs, WriterConfig, WriterMsg,
};
use crate::supervision::{
    spawn_fn, AdminOp, ChildSpec, RestartType, SupervisionCmd, Supervisor, SupervisorArgs,
    SupervisorMsg,
};
use crate::Address;

/// What the tree is built from.
pub struct TreeConfig {
    /// Supervision of every level.
    pub supervision: SupervisionConfig,
    /// Equipment units, in display order.
    pub equipment: Vec<EquipmentSpec>,
    /// Connections to devices.
    pub connections: Vec<ConnectionSpec>,
    /// Period of the equipment's staleness check.
    pub stale_check: Duration,
    /// Where samples are persisted; `None` keeps them live only.
    pub storage: Option<TreeStorage>,
    /// Cycle models for the equipment with a cycle layout; `None`: no cycle
    /// scoring.
    pub scoring: Option<crate::plant::CycleScoring>,
    /// Alert rules and their storage; `None`: no alerting.
    pub alerting: Option<TreeAlerting>,
    /// Signed-in sessions as actors; `None`: none.
    pub logins: Option<crate::login::LoginSettings>,
}

/// The alerting actor's rules and storage.
pub struct TreeAlerting {
    /// Rules, policies, silences, as they change.
    pub config: ConfigFeed,
    /// Where alerts are kept.
    pub store: Arc<dyn AlertStore>,
    /// The clock it runs on.
    pub clock: Clock,
}

/// Persistence of the tree's samples.
pub struct TreeStorage {
    /// Batching, spooling and retries.
    pub config: WriterConfig,
    /// The database.
    pub store: Arc<dyn SampleStore>,
    /// Database id of every sensor, by equipment.
    pub sensors: HashMap<EquipmentId, HashMap<hydrowatch_models::SensorId, i64>>,
    /// Poll period multiplier while storage pushes back.
    pub poll_slowdown: u32,
}

/// The running storage writer.
#[derive(Clone)]
pub struct StorageHandle {
    /// Its stable address.
    pub writer: Address<WriterMsg>,
    /// Its status (shared across restarts).
    pub status: Arc<StorageStatus>,
}

/// Path of the storage writer.
pub const STORAGE: &str = "storage";

/// Handles into a running tree.
#[derive(Clone)]
pub struct Tree {
    /// The root supervisor.
    pub root: ActorRef<SupervisorMsg>,
    /// Every actor by path.
    pub registry: Registry,
    /// Subscriptions.
    pub hub: Hub,
    /// Equipment units in display order.
    pub equipment_specs: Arc<Vec<Arc<EquipmentSpec>>>,
    /// Equipment addresses.
    pub equipment: Arc<HashMap<EquipmentId, Address<EquipmentMsg>>>,
    /// Connection statuses, in config order.
    pub connections: Arc<Vec<SharedStatus>>,
    /// Connection addresses by the equipment they serve.
    pub connection_addresses: Arc<HashMap<EquipmentId, Address<ConnectionMsg>>>,
    /// The storage writer, when samples are persisted.
    pub storage: Option<StorageHandle>,
    /// The alerting actor, when alerting runs.
    pub alerting: Option<Address<AlertingMsg>>,
    /// How session actors are restarted (`[sessions] children`).
    session_restart: RestartType,
    /// How login actors run, if they do.
    logins: Option<crate::login::LoginSettings>,
}

/// Path of the sessions supervisor.
pub const SESSIONS: &str = "sessions";

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The sessions supervisor is not running (restarting, or the tree is going down).
    #[error("sessions supervisor unavailable")]
    Unavailable,
    /// The session actor failed to start.
    #[error("session failed to start: {0}")]
    StartFailed(String),
}

impl Tree {
    /// Starts the whole tree. The returned handle completes when the root stops.
    pub async fn start(config: TreeConfig) -> Result<(Tree, JoinHandle<()>), SpawnErr> {
        let registry = Registry::new();
        let hub = Hub::new();
        let sup = &config.supervision;
        let alerting = config.alerting.map(|a| AlertingPart::new(a, &hub));
        let plant = PlantPart::new(
            config.equipment,
            &EquipmentContext {
                supervision: sup,
                stale_check: config.stale_check,
                hub: &hub,
                registry: &registry,
                scoring: &config.scoring,
                alerts: alerting.as_ref().map(|a| a.link.clone()),
            },
        );
        let storage = config.storage.map(StoragePart::new);
        let connections = ConnectionsPart::new(
            config.connections,
            sup.connections.children,
            &plant.addresses,
            storage.as_ref(),
        );
        let (storage_child, storage_handle) = storage.map(|s| (s.child, s.handle)).unzip();
        let (alerting_child, alerting_address) = alerting.map(|a| (a.child, a.address)).unzip();
        // Storage and equipment before connections: a connection's batches need
        // somewhere to go.
        // Alerting before the plant, so the first signals find it.
        let mut root_children: Vec<ChildSpec> =
            storage_child.into_iter().chain(alerting_child).collect();
        root_children.extend([
            level("plant", &sup.plant, plant.children, &registry),
            level(
                "connections",
                &sup.connections,
                connections.children,
                &registry,
            ),
            level(SESSIONS, &sup.sessions, Vec::new(), &registry),
        ]);
        let (root, handle) = spawn_root(sup, &registry, root_children).await?;
        let tree = Tree {
            root,
            registry,
            hub,
            equipment_specs: Arc::new(plant.specs),
            equipment: Arc::new(plant.addresses),
            connections: Arc::new(connections.statuses),
            connection_addresses: Arc::new(connections.addresses),
            storage: storage_handle,
            alerting: alerting_address,
            session_restart: sup.sessions.children,
            logins: config.logins.clone(),
        };
        Ok((tree, handle))
    }

    /// Opens a session under the sessions supervisor; its frames go to `outbox`.
    pub async fn open_session(
        &self,
        id: &str,
        outbox: Arc<Outbox>,
    ) -> Result<ActorRef<crate::session::SessionMsg>, SessionError> {
        let sessions: ActorRef<SupervisorMsg> = self
            .registry
            .cell(SESSIONS)
            .map(ActorRef::from)
            .ok_or(SessionError::Unavailable)?;
        let args_id: Arc<str> = Arc::from(id);
        let hub = self.hub.clone();
        let equipment = self.equipment.clone();
        let spec = ChildSpec {
            id: id.to_owned(),
            kind: ActorKind::Session,
            restart: self.session_restart,
            start: spawn_fn(move || {
                (
                    Session,
                    SessionArgs {
                        id: args_id.clone(),
                        outbox: outbox.clone(),
                        hub: hub.clone(),
                        equipment: equipment.clone(),
                    },
                )
            }),
            mailbox: None,
        };
        let cell = ractor::call_t!(
            sessions,
            |reply| SupervisorMsg::Cmd(SupervisionCmd::AddChild {
                spec,
                reply: Some(reply)
            }),
            5000
        )
        .map_err(|_| SessionError::Unavailable)?
        .map_err(SessionError::StartFailed)?;
        Ok(ActorRef::from(cell))
    }

    /// The login actor of a signed-in session, if it runs.
    pub fn login(&self, session_id: &str) -> Option<ActorRef<crate::login::LoginMsg>> {
        self.registry
            .cell(&format!("{SESSIONS}/{}", login_child_id(session_id)))
            .map(ActorRef::from)
    }

    /// Tells session `session_id`'s login actor of a request at `at_ms`,
    /// starting the actor from `spec` first if it does not run (a new
    /// login, or the first request after a restart): the spec is built only
    /// then, not on every request.
    pub async fn touch_login(
        &self,
        session_id: &str,
        at_ms: i64,
        spec: impl FnOnce() -> crate::login::LoginSpec,
    ) -> Result<ActorRef<crate::login::LoginMsg>, SessionError> {
        let touch = crate::login::LoginMsg::Touch;
        if let Some(actor) = self.login(session_id) {
            let _ = actor.cast(touch(at_ms));
            return Ok(actor);
        }
        let spec = spec();
        let settings = self.logins.clone().ok_or(SessionError::Unavailable)?;
        let sessions: ActorRef<SupervisorMsg> = self
            .registry
            .cell(SESSIONS)
            .map(ActorRef::from)
            .ok_or(SessionError::Unavailable)?;
        let id = login_child_id(&spec.session_id);
        let child = ChildSpec {
            id: id.clone(),
            kind: ActorKind::Login,
            // Started again by the session's next request, not by the supervisor.
            restart: RestartType::Temporary,
            start: spawn_fn(move || {
                (
                    crate::login::Login,
                    crate::login::LoginArgs {
                        spec: spec.clone(),
                        settings: settings.clone(),
                        now_ms: crate::clock::now_ms,
                    },
                )
            }),
            mailbox: None,
        };
        let started = ractor::call_t!(
            sessions,
            |reply| SupervisorMsg::Cmd(SupervisionCmd::AddChild {
                spec: child,
                reply: Some(reply)
            }),
            5000
        )
        .map_err(|_| SessionError::Unavailable)?;
        let actor: ActorRef<crate::login::LoginMsg> = match started {
            Ok(cell) => ActorRef::from(cell),
            // Two first requests at once: the other one started it.
            Err(e) if e.contains("duplicate child id") => self
                .registry
                .cell(&format!("{SESSIONS}/{id}"))
                .map(ActorRef::from)
                .ok_or(SessionError::StartFailed(e))?,
            Err(e) => return Err(SessionError::StartFailed(e)),
        };
        let _ = actor.cast(touch(at_ms));
        Ok(actor)
    }

    /// A session ended (already recorded): its login actor closes its
    /// WebSockets with `reason` and stops.
    pub fn end_login(&self, session_id: &str, reason: &str) {
        if let Some(actor) = self.login(session_id) {
            let _ = actor.cast(crate::login::LoginMsg::End {
                reason: reason.to_owned(),
            });
        }
    }

    /// User `user_id` changed: the WebSockets of their sessions close, so
    /// that they connect again under the new rules.
    pub fn reauthorise_user(&self, user_id: i64) {
        let prefix = format!("{SESSIONS}/login-");
        for info in self.registry.snapshot() {
            if !info.path.starts_with(&prefix) {
                continue;
            }
            if let Some(cell) = self.registry.cell(&info.path) {
                let actor: ActorRef<crate::login::LoginMsg> = ActorRef::from(cell);
                let _ = actor.cast(crate::login::LoginMsg::Reauthorise { user_id });
            }
        }
    }

    /// Ends a session.
    pub fn close_session(&self, id: &str) {
        if let Some(cell) = self.registry.cell(SESSIONS) {
            let sessions: ActorRef<SupervisorMsg> = ActorRef::from(cell);
            let _ = sessions.cast(SupervisorMsg::Cmd(SupervisionCmd::RemoveChild {
                child: id.to_owned(),
            }));
        }
    }

    /// Stops every connection (no more polls); the rest of the tree runs on. The
    /// stop goes through the root supervisor so that it is not taken for a crash.
    pub async fn stop_polling(&self, timeout: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let cmd = SupervisionCmd::Admin {
            child: "connections".into(),
            op: AdminOp::Stop,
            reply: tx.into(),
        };
        if self.root.cast(SupervisorMsg::Cmd(cmd)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    /// Waits until the equipment actors have handled every batch sent to them,
    /// or `timeout`.
    pub async fn drain(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let queued: u64 = self.equipment.values().map(|a| a.gauge().depth()).sum();
            if queued == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the storage writer holds nothing only in memory (written
    /// or spooled), or `timeout`.
    pub async fn flush_storage(&self, timeout: Duration) {
        let Some(writer) = self.storage.as_ref().and_then(|s| s.writer.get()) else {
            return;
        };
        let _ = ractor::call_t!(writer, WriterMsg::Flush, timeout.as_millis() as u64);
    }

    /// Stops the whole tree gracefully: children in reverse order, each level
    /// waiting for its children.
    pub async fn shutdown(&self, timeout: Duration) {
        let _ = self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(timeout))
            .await;
    }
}

/// The child id of a session's login actor: `login-` and the start of the
/// session id (enough to be unique; the whole id stays out of the tree view).
pub fn login_child_id(session_id: &str) -> String {
    let prefix: String = session_id.chars().take(16).collect();
    format!("login-{prefix}")
}

/// The alerting actor's child, its address, and how equipment reaches it.
struct AlertingPart {
    child: ChildSpec,
    address: Address<AlertingMsg>,
    link: AlertLink,
}

impl AlertingPart {
    fn new(alerting: TreeAlerting, hub: &Hub) -> AlertingPart {
        let address = Address::<AlertingMsg>::new();
        let args = AlertingArgs {
            config: alerting.config.clone(),
            store: alerting.store,
            address: address.clone(),
            clock: alerting.clock,
            hub: hub.clone(),
        };
        AlertingPart {
            link: AlertLink {
                alerting: address.clone(),
                config: alerting.config,
            },
            child: ChildSpec {
                id: ALERTING.to_owned(),
                kind: ActorKind::Alerting,
                restart: RestartType::Permanent,
                start: spawn_fn(move || (Alerting, args.clone())),
                mailbox: Some(address.gauge()),
            },
            address,
        }
    }
}

/// What every equipment actor is started with besides its spec.
struct EquipmentContext<'a> {
    supervision: &'a SupervisionConfig,
    stale_check: Duration,
    hub: &'a Hub,
    registry: &'a Registry,
    scoring: &'a Option<crate::plant::CycleScoring>,
    alerts: Option<AlertLink>,
}

/// The plant supervisor's children: one equipment actor per unit, in
/// display order, with their addresses.
struct PlantPart {
    children: Vec<ChildSpec>,
    addresses: HashMap<EquipmentId, Address<EquipmentMsg>>,
    specs: Vec<Arc<EquipmentSpec>>,
}

impl PlantPart {
    fn new(equipment: Vec<EquipmentSpec>, ctx: &EquipmentContext<'_>) -> PlantPart {
        let mut part = PlantPart {
            children: Vec::new(),
            addresses: HashMap::new(),
            specs: Vec::new(),
        };
        for spec in equipment {
            let spec = Arc::new(spec);
            let address = Address::<EquipmentMsg>::new();
            part.addresses.insert(spec.id.clone(), address.clone());
            part.specs.push(spec.clone());
            let args = EquipmentArgs {
                path: format!("plant/{}", spec.id),
                spec: spec.clone(),
                address: address.clone(),
                supervision: ctx.supervision.equipment.spec(),
                sensor_restart: ctx.supervision.equipment.children,
                tick: ctx.stale_check,
                hub: ctx.hub.clone(),
                registry: ctx.registry.clone(),
                scoring: ctx.scoring.clone(),
                alerts: ctx.alerts.clone(),
            };
            part.children.push(ChildSpec {
                id: spec.id.to_string(),
                kind: ActorKind::Equipment,
                restart: ctx.supervision.plant.children,
                start: spawn_fn(move || (Equipment, args.clone())),
                mailbox: Some(address.gauge()),
            });
        }
        part
    }
}

/// The storage writer's child, what connections hand their samples to, and
/// the handle the façade keeps.
struct StoragePart {
    child: ChildSpec,
    link: StorageLink,
    sensors: HashMap<EquipmentId, HashMap<hydrowatch_models::SensorId, i64>>,
    handle: StorageHandle,
}

impl StoragePart {
    fn new(storage: TreeStorage) -> StoragePart {
        let status = Arc::new(StorageStatus::default());
        let address = Address::<WriterMsg>::new();
        let args = WriterArgs {
            config: Arc::new(storage.config),
            store: storage.store,
            status: status.clone(),
            address: address.clone(),
        };
        StoragePart {
            link: StorageLink {
                writer: address.clone(),
                status: status.clone(),
                slowdown: storage.poll_slowdown,
                sensors: Arc::default(),
            },
            sensors: storage.sensors,
            handle: StorageHandle {
                writer: address.clone(),
                status,
            },
            child: ChildSpec {
                id: STORAGE.to_owned(),
                kind: ActorKind::Storage,
                restart: RestartType::Permanent,
                start: spawn_fn(move || (StorageWriter, args.clone())),
                mailbox: Some(address.gauge()),
            },
        }
    }

    /// The link a connection to `equipment` stores through: its sensors' ids.
    fn link_for(&self, equipment: &EquipmentId) -> StorageLink {
        StorageLink {
            sensors: Arc::new(self.sensors.get(equipment).cloned().unwrap_or_default()),
            ..self.link.clone()
        }
    }
}

/// The connections supervisor's children, their statuses in config order
/// and their addresses by the equipment they serve.
struct ConnectionsPart {
    children: Vec<ChildSpec>,
    statuses: Vec<SharedStatus>,
    addresses: HashMap<EquipmentId, Address<ConnectionMsg>>,
}

impl ConnectionsPart {
    fn new(
        connections: Vec<ConnectionSpec>,
        restart: RestartType,
        equipment: &HashMap<EquipmentId, Address<EquipmentMsg>>,
        storage: Option<&StoragePart>,
    ) -> ConnectionsPart {
        let mut part = ConnectionsPart {
            children: Vec::new(),
            statuses: Vec::new(),
            addresses: HashMap::new(),
        };
        for spec in connections {
            let status = initial_status(&spec);
            part.statuses.push(status.clone());
            let address = Address::<ConnectionMsg>::new();
            part.addresses
                .insert(spec.equipment.clone(), address.clone());
            let target = equipment.get(&spec.equipment).cloned().unwrap_or_default();
            let storage_link = storage.map(|s| s.link_for(&spec.equipment));
            let id = spec.id.clone();
            part.children.push(ChildSpec {
                id,
                kind: ActorKind::Connection,
                restart,
                start: spawn_fn(move || {
                    (
                        Connection,
                        ConnectionArgs {
                            spec: spec.clone(),
                            equipment: target.clone(),
                            status: status.clone(),
                            storage: storage_link.clone(),
                            address: address.clone(),
                        },
                    )
                }),
                mailbox: None,
            });
        }
        part
    }
}

/// A connection's status before its first poll.
fn initial_status(spec: &ConnectionSpec) -> SharedStatus {
    Arc::new(Mutex::new(ConnectionStatus {
        id: spec.id.clone(),
        endpoint: spec.device.endpoint(),
        protocol: spec.device.protocol(),
        link: LinkState::Disconnected,
        last_success_ms: None,
        polls: 0,
        errors: 0,
        reconnects: 0,
        error_counts: Default::default(),
        last_error: None,
        throttled: false,
        opcua: None,
    }))
}

/// A supervisor at `id` over `children`, supervised as `cfg` says.
fn level(
    id: &str,
    cfg: &crate::config::LevelConfig,
    children: Vec<ChildSpec>,
    registry: &Registry,
) -> ChildSpec {
    let registry = registry.clone();
    let path = id.to_owned();
    let spec = cfg.spec();
    ChildSpec {
        id: id.to_owned(),
        kind: ActorKind::Supervisor,
        restart: cfg.restart,
        start: spawn_fn(move || {
            (
                Supervisor,
                SupervisorArgs {
                    path: path.clone(),
                    spec,
                    registry: registry.clone(),
                    children: children.clone(),
                },
            )
        }),
        mailbox: None,
    }
}

/// Spawns the root supervisor over `children` and registers it.
async fn spawn_root(
    sup: &SupervisionConfig,
    registry: &Registry,
    children: Vec<ChildSpec>,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    let (root, handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            path: "root".into(),
            spec: sup.root.spec(),
            registry: registry.clone(),
            children,
        },
    )
    .await?;
    registry.started(
        "root",
        ActorKind::Supervisor,
        root.get_cell(),
        None,
        None,
        None,
    );
    Ok((root, handle))
}
