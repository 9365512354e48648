//! The restart logic shared by every supervising actor.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use ractor::{
    ActorCell, ActorProcessingErr, ActorRef, Message, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use tokio::time::Instant;

use super::spec::{RestartType, Strategy, SupervisorSpec};
use crate::registry::{ActorKind, LifecycleStatus, MailboxGauge, Registry};

/// Starts one instance of a child, linked to the supervisor passed in.
pub type StartFn =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// How to start and treat one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique among its siblings; the last element of its path.
    pub id: String,
    /// Its role, for the registry.
    pub kind: ActorKind,
    /// When it is restarted.
    pub restart: RestartType,
    /// How to start it.
    pub start: StartFn,
    /// Its mailbox gauge, if the hot path counts its messages.
    pub mailbox: Option<Arc<MailboxGauge>>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// An operator's request about one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    /// Stop it (gracefully, then killed after the shutdown timeout) and keep it stopped.
    Stop,
    /// Start it if it is stopped.
    Start,
    /// Stop it if running, then start it.
    Restart,
}

/// Why an operator's request about a child was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The supervisor has no child of that id.
    #[error("no child {0:?}")]
    UnknownChild(String),
    /// Start was asked of a running child.
    #[error("child {0:?} is already running")]
    AlreadyRunning(String),
    /// The child could not be started.
    #[error("child {0:?} failed to start: {1}")]
    StartFailed(String, String),
    /// The supervisor did not answer.
    #[error("supervisor unavailable")]
    SupervisorUnavailable,
}

/// Commands every supervising actor accepts (its message type converts from them).
pub enum SupervisionCmd {
    /// A backoff delay is over: start the children of this restart round.
    RestartDue {
        /// Children to start, in order.
        children: Vec<String>,
        /// Round number: only children still waiting for this round start (an
        /// admin may have started or stopped them meanwhile).
        round: u64,
    },
    /// An operator's request.
    Admin {
        /// The child's id.
        child: String,
        /// What to do.
        op: AdminOp,
        /// Where to answer.
        reply: RpcReplyPort<Result<(), AdminError>>,
    },
    /// Adds and starts a dynamic child.
    AddChild {
        spec: ChildSpec,
        /// Where to answer.
        reply: Option<RpcReplyPort<Result<ActorCell, String>>>,
    },
    /// Stops a dynamic child and forgets it.
    RemoveChild {
        /// The child's id.
        child: String,
    },
}

/// Sends supervision commands to a supervising actor whatever its message type.
pub trait SupervisorControl: Send + Sync {
    /// Delivers `cmd`; false when the actor is gone.
    fn send(&self, cmd: SupervisionCmd) -> bool;
}

impl<M> SupervisorControl for ActorRef<M>
where
    M: Message + From<SupervisionCmd>,
{
    fn send(&self, cmd: SupervisionCmd) -> bool {
        self.cast(M::from(cmd)).is_ok()
    }
}

enum ChildState {
    Running(ActorCell),
    /// Waiting for the restart round of this number.
    Waiting(u64),
    Stopped,
}

struct Child {
    spec: ChildSpec,
    path: String,
    state: ChildState,
    /// Restart times of this child, for its backoff exponent.
    restarts: VecDeque<Instant>,
}

/// The supervision state of one supervising actor.
pub struct Supervision {
    spec: SupervisorSpec,
    path: String,
    registry: Registry,
    control: Arc<dyn SupervisorControl>,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
    round: u64,
}

impl Supervision {
    /// Supervision for the actor at `path`; `control` addresses that actor itself.
    pub fn new(
        path: impl Into<String>,
        spec: SupervisorSpec,
        registry: Registry,
        control: Arc<dyn SupervisorControl>,
    ) -> Self {
        Self {
            spec,
            path: path.into(),
            registry,
            control,
            children: Vec::new(),
            restarts: VecDeque::new(),
            round: 0,
        }
    }

    /// The path of the supervising actor.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Starts `specs` in order. If one fails to start, the ones already started
    /// are stopped again and the error is returned (like an OTP supervisor whose
    /// init fails).
    pub async fn start_children(
        &mut self,
        myself: &ActorCell,
        specs: Vec<ChildSpec>,
    ) -> Result<(), ActorProcessingErr> {
        for spec in specs {
            if let Err(err) = self.add_child(myself, spec).await {
                self.stop_all().await;
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// Adds a child and starts it.
    pub async fn add_child(
        &mut self,
        myself: &ActorCell,
        spec: ChildSpec,
    ) -> Result<ActorCell, String> {
        if self.children.iter().any(|c| c.spec.id == spec.id) {
            return Err(format!("{}: duplicate child id {:?}", self.path, spec.id));
        }
        let path = child_path(&self.path, &spec.id);
        self.children.push(Child {
            spec,
            path,
            state: ChildState::Stopped,
            restarts: VecDeque::new(),
        });
        let idx = self.children.len() - 1;
        match self.start_child(myself, idx).await {
            Ok(cell) => Ok(cell),
            Err(err) => {
                let child = self.children.remove(idx);
                self.registry.remove_subtree(&child.path);
                Err(err)
            }
        }
    }

    async fn start_child(&mut self, myself: &ActorCell, idx: usize) -> Result<ActorCell, String> {
        let child = &mut self.children[idx];
        match (child.spec.start)(myself.clone()).await {
            Ok(cell) => {
                self.registry.started(
                    &child.path,
                    child.spec.kind,
                    cell.clone(),
                    Some(&self.path),
                    Some(self.control.clone()),
                    child.spec.mailbox.clone(),
                );
                child.state = ChildState::Running(cell.clone());
                Ok(cell)
            }
            Err(err) => {
                let message = format!("{} failed to start: {err}", child.path);
                child.state = ChildState::Stopped;
                tracing::warn!(actor = %child.path, error = %err, "child failed to start");
                Err(message)
            }
        }
    }

    /// Handles a ractor supervision event. An `Err` means this supervisor gives
    /// up (restart intensity exceeded): the hosting actor must fail with it.
    pub async fn handle_event(
        &mut self,
        myself: &ActorCell,
        event: SupervisionEvent,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, abnormal, reason) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let abnormal = is_abnormal(reason.as_deref());
                (cell, abnormal, reason)
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, Some(err.to_string())),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some(idx) = self
            .children
            .iter()
            .position(|c| matches!(&c.state, ChildState::Running(r) if r.get_id() == id))
        else {
            // An instance we stopped ourselves, or one already replaced.
            return Ok(());
        };
        let child = &mut self.children[idx];
        child.state = ChildState::Stopped;
        let below = if abnormal {
            LifecycleStatus::Failed
        } else {
            LifecycleStatus::Stopped
        };
        self.registry.exited_below(&child.path, below);
        let restart = match child.spec.restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal,
            RestartType::Temporary => false,
        };
        if abnormal {
            tracing::warn!(actor = %child.path, reason = reason.as_deref().unwrap_or("-"), "child exited abnormally");
            metrics::counter!("hydrowatch_actor_failures_total", "kind" => child.spec.kind.as_str()).increment(1);
        } else {
            tracing::debug!(actor = %child.path, "child exited normally");
        }
        if !restart {
            if child.spec.restart == RestartType::Temporary {
                let child = self.children.remove(idx);
                self.registry.remove_subtree(&child.path);
            } else {
                self.registry
                    .exited(&child.path, LifecycleStatus::Stopped, reason);
            }
            return Ok(());
        }
        self.registry
            .exited(&child.path, LifecycleStatus::Restarting, reason);

        if let Err(err) = self.note_restart() {
            self.give_up(&err).await;
            return Err(err.into());
        }
        let group: Vec<usize> = match self.spec.strategy {
            Strategy::OneForOne => vec![idx],
            Strategy::OneForAll => (0..self.children.len()).collect(),
            Strategy::RestForOne => (idx..self.children.len()).collect(),
        };
        // Siblings go down in reverse start order, as in OTP.
        for &sibling in group.iter().rev() {
            if sibling != idx {
                self.stop_child(sibling, LifecycleStatus::Restarting).await;
            }
        }
        // Temporary siblings stopped on the way are not restarted.
        let mut ids = Vec::new();
        for &i in &group {
            let child = &mut self.children[i];
            if i != idx && child.spec.restart == RestartType::Temporary {
                continue;
            }
            if matches!(child.state, ChildState::Stopped) {
                child.state = ChildState::Waiting(0);
                ids.push(child.spec.id.clone());
            }
        }
        let failed_id = self.children[idx].spec.id.clone();
        self.children.retain(|c| {
            let drop =
                c.spec.restart == RestartType::Temporary && matches!(c.state, ChildState::Stopped);
            if drop {
                self.registry.remove_subtree(&c.path);
            }
            !drop
        });
        let attempt = match self.children.iter_mut().find(|c| c.spec.id == failed_id) {
            Some(child) => {
                let now = Instant::now();
                prune(&mut child.restarts, now, self.spec.intensity.within);
                child.restarts.push_back(now);
                child.restarts.len() as u32
            }
            None => 1,
        };
        self.schedule(myself, ids, attempt).await
    }

    /// Counts a restart against the intensity; `Err` when it is exceeded.
    fn note_restart(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let within = self.spec.intensity.within;
        prune(&mut self.restarts, now, within);
        self.restarts.push_back(now);
        if self.restarts.len() as u32 > self.spec.intensity.max_restarts {
            let message = format!(
                "{}: restart intensity exceeded ({} restarts within {:?}, at most {} allowed)",
                self.path,
                self.restarts.len(),
                within,
                self.spec.intensity.max_restarts
            );
            tracing::error!(supervisor = %self.path, "{message}");
            return Err(message);
        }
        Ok(())
    }

    /// Marks `children` as waiting for a new round and starts it after the
    /// backoff delay. Each child remembers its own round, so rounds of different
    /// failures never cancel each other.
    async fn schedule(
        &mut self,
        myself: &ActorCell,
        children: Vec<String>,
        attempt: u32,
    ) -> Result<(), ActorProcessingErr> {
        self.round += 1;
        let round = self.round;
        for child in self.children.iter_mut() {
            if children.contains(&child.spec.id) {
                child.state = ChildState::Waiting(round);
            }
        }
        let delay = self.spec.backoff.delay(attempt, rand::random::<f64>());
        if delay.is_zero() {
            return self.restart_round(myself, children, round).await;
        }
        tracing::info!(supervisor = %self.path, ?children, delay_ms = delay.as_millis() as u64, "restart scheduled");
        let control = self.control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            control.send(SupervisionCmd::RestartDue { children, round });
        });
        Ok(())
    }

    async fn restart_round(
        &mut self,
        myself: &ActorCell,
        children: Vec<String>,
        round: u64,
    ) -> Result<(), ActorProcessingErr> {
        for (pos, id) in children.iter().enumerate() {
            let Some(idx) = self.children.iter().position(|c| &c.spec.id == id) else {
                continue;
            };
            if !matches!(self.children[idx].state, ChildState::Waiting(r) if r == round) {
                continue;
            }
            match self.start_child(myself, idx).await {
                Ok(_) => {
                    let path = self.children[idx].path.clone();
                    self.registry.restarted(&path);
                    metrics::counter!("hydrowatch_actor_restarts_total", "kind" => self.children[idx].spec.kind.as_str()).increment(1);
                    tracing::info!(actor = %path, "child restarted");
                }
                Err(err) => {
                    // A failed start is one more restart: this child and the rest of
                    // its round try again after backoff.
                    let path = self.children[idx].path.clone();
                    self.registry
                        .exited(&path, LifecycleStatus::Restarting, Some(err));
                    if let Err(err) = self.note_restart() {
                        self.give_up(&err).await;
                        return Err(err.into());
                    }
                    let now = Instant::now();
                    let within = self.spec.intensity.within;
                    let child = &mut self.children[idx];
                    prune(&mut child.restarts, now, within);
                    child.restarts.push_back(now);
                    let attempt = child.restarts.len() as u32;
                    let rest: Vec<String> = children[pos..].to_vec();
                    return Box::pin(self.schedule(myself, rest, attempt)).await;
                }
            }
        }
        Ok(())
    }

    /// Handles a [`SupervisionCmd`] sent to the hosting actor. An `Err` means the
    /// supervisor gives up.
    pub async fn handle_cmd(
        &mut self,
        myself: &ActorCell,
        cmd: SupervisionCmd,
    ) -> Result<(), ActorProcessingErr> {
        match cmd {
            SupervisionCmd::RestartDue { children, round } => {
                self.restart_round(myself, children, round).await
            }
            SupervisionCmd::Admin { child, op, reply } => {
                let result = self.admin(myself, &child, op).await;
                let _ = reply.send(result);
                Ok(())
            }
            SupervisionCmd::AddChild { spec, reply } => {
                let result = self.add_child(myself, spec).await;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                Ok(())
            }
            SupervisionCmd::RemoveChild { child } => {
                if let Some(idx) = self.children.iter().position(|c| c.spec.id == child) {
                    self.stop_child(idx, LifecycleStatus::Stopped).await;
                    let child = self.children.remove(idx);
                    self.registry.remove_subtree(&child.path);
                }
                Ok(())
            }
        }
    }

    async fn admin(
        &mut self,
        myself: &ActorCell,
        child: &str,
        op: AdminOp,
    ) -> Result<(), AdminError> {
        let idx = self
            .children
            .iter()
            .position(|c| c.spec.id == child)
            .ok_or_else(|| AdminError::UnknownChild(child.to_owned()))?;
        let running = matches!(self.children[idx].state, ChildState::Running(_));
        match op {
            AdminOp::Stop => {
                self.stop_child(idx, LifecycleStatus::Stopped).await;
                Ok(())
            }
            AdminOp::Start if running => Err(AdminError::AlreadyRunning(child.to_owned())),
            AdminOp::Start | AdminOp::Restart => {
                self.stop_child(idx, LifecycleStatus::Stopped).await;
                self.start_child(myself, idx)
                    .await
                    .map(|_| {
                        if op == AdminOp::Restart {
                            self.registry.restarted(&self.children[idx].path);
                        }
                    })
                    .map_err(|e| AdminError::StartFailed(child.to_owned(), e))
            }
        }
    }

    /// Stops one child gracefully (killing it after the shutdown timeout); its
    /// exit event is then ignored. A child waiting for a restart stays down.
    async fn stop_child(&mut self, idx: usize, status: LifecycleStatus) {
        let timeout = self.spec.shutdown_timeout;
        let child = &mut self.children[idx];
        let previous = std::mem::replace(&mut child.state, ChildState::Stopped);
        if let ChildState::Running(cell) = previous {
            stop_cell(&cell, timeout, &child.path).await;
        }
        self.registry.exited(&child.path, status, None);
    }

    /// Stops every child in reverse start order. Called when the hosting actor
    /// stops.
    pub async fn stop_all(&mut self) {
        self.stop_every_child(LifecycleStatus::Stopped).await;
    }

    async fn give_up(&mut self, why: &str) {
        self.stop_every_child(LifecycleStatus::Failed).await;
        // The parent records this too; the root has no parent to do it.
        self.registry
            .exited(&self.path, LifecycleStatus::Failed, Some(why.to_owned()));
    }

    /// Under one_for_one the children are independent and are stopped all at
    /// once (as OTP's simple_one_for_one does): a thousand connections each
    /// finishing a poll must not take a thousand poll times. Otherwise they stop
    /// one by one in reverse start order, as their dependencies require.
    async fn stop_every_child(&mut self, status: LifecycleStatus) {
        if self.spec.strategy != Strategy::OneForOne {
            for idx in (0..self.children.len()).rev() {
                self.stop_child(idx, status).await;
            }
            return;
        }
        let timeout = self.spec.shutdown_timeout;
        let mut stopping = Vec::new();
        for child in &mut self.children {
            if let ChildState::Running(cell) =
                std::mem::replace(&mut child.state, ChildState::Stopped)
            {
                stopping.push((cell, child.path.clone()));
            }
        }
        futures::future::join_all(
            stopping
                .iter()
                .map(|(cell, path)| stop_cell(cell, timeout, path)),
        )
        .await;
        for child in &self.children {
            self.registry.exited(&child.path, status, None);
        }
    }

    /// Ids of the children that are running, in start order.
    pub fn running_children(&self) -> Vec<(String, ActorCell)> {
        self.children
            .iter()
            .filter_map(|c| match &c.state {
                ChildState::Running(cell) => Some((c.spec.id.clone(), cell.clone())),
                _ => None,
            })
            .collect()
    }
}

async fn stop_cell(cell: &ActorCell, timeout: std::time::Duration, path: &str) {
    if cell
        .stop_and_wait(Some("shutdown".into()), Some(timeout))
        .await
        .is_err()
    {
        tracing::warn!(actor = %path, "did not stop within the shutdown timeout; killing it");
        let _ = cell.kill_and_wait(Some(timeout)).await;
    }
}

/// The path of a child of the actor at `parent`.
pub fn child_path(parent: &str, id: &str) -> String {
    if parent.is_empty() || parent == "root" {
        id.to_owned()
    } else {
        format!("{parent}/{id}")
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, within: std::time::Duration) {
    while let Some(&first) = times.front() {
        if now.duration_since(first) >= within {
            times.pop_front();
        } else {
            break;
        }
    }
}

/// Exits that count as normal for transient children, as OTP's `normal` and
/// `shutdown`.
fn is_abnormal(reason: Option<&str>) -> bool {
    !matches!(reason, None | Some("normal") | Some("shutdown"))
}

/// A [`StartFn`] that spawns a fresh `A` built by `make` each time, linked to the
/// supervisor.
pub fn spawn_fn<A, F>(make: F) -> StartFn
where
    A: ractor::Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    Arc::new(move |supervisor: ActorCell| {
        let (actor, args) = make();
        Box::pin(async move {
            let (actor_ref, _) = ractor::Actor::spawn_linked(None, actor, args, supervisor).await?;
            Ok(actor_ref.get_cell())
        })
    })
}
