//! Every live actor by path (`plant/rig-1/PS1`), for the admin API and the façade.
//!
//! The registry is owned by one application instance (not global), so several
//! instances can run side by side in one process, as the tests do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use ractor::{ActorCell, ActorStatus};
use serde::Serialize;

use crate::supervision::SupervisorControl;

/// What role an actor plays in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A pure supervisor.
    Supervisor,
    /// A SCADA connection.
    Connection,
    /// An equipment unit (also the supervisor of its sensors).
    Equipment,
    Sensor,
    /// A client session (a WebSocket).
    Session,
    /// A signed-in user's session.
    Login,
    /// The storage writer.
    Storage,
    /// The alerting actor.
    Alerting,
}

impl ActorKind {
    /// The kind's name, as in the API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Supervisor => "supervisor",
            ActorKind::Connection => "connection",
            ActorKind::Equipment => "equipment",
            ActorKind::Sensor => "sensor",
            ActorKind::Session => "session",
            ActorKind::Login => "login",
            ActorKind::Storage => "storage",
            ActorKind::Alerting => "alerting",
        }
    }
}

/// Where an actor is in its lifecycle, as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    /// Running and handling messages.
    Running,
    /// Exited; its supervisor will start it again after the backoff delay.
    Restarting,
    /// Stopped on purpose (by an admin, or exited normally and not restarted).
    Stopped,
    /// Its supervisor gave up on it.
    Failed,
}

/// Counts messages sent to an actor and not yet handled.
///
/// ractor's mailboxes are unbounded and do not expose their length, so senders on
/// the hot paths increment this and the actor decrements it as it handles.
#[derive(Debug, Default)]
pub struct MailboxGauge(AtomicI64);

impl MailboxGauge {
    /// A message was enqueued.
    pub fn enqueued(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// A message was taken out.
    pub fn dequeued(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Messages waiting; never negative.
    pub fn depth(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
    /// Forget what was queued for an instance that is gone.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// A row of the actor tree as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActorInfo {
    /// Path of the actor, e.g. `plant/rig-1/PS1`.
    pub path: String,
    /// Role.
    pub kind: ActorKind,
    pub status: LifecycleStatus,
    /// Restarts since the process started.
    pub restart_count: u64,
    /// Why it last exited abnormally.
    pub last_error: Option<String>,
    /// Messages waiting in its mailbox (only for actors on the sample path).
    pub mailbox_depth: Option<u64>,
    /// Path of its supervisor.
    pub parent: Option<String>,
}

struct Entry {
    kind: ActorKind,
    status: LifecycleStatus,
    cell: Option<ActorCell>,
    restart_count: u64,
    last_error: Option<String>,
    mailbox: Option<Arc<MailboxGauge>>,
    parent: Option<String>,
    supervisor: Option<Arc<dyn SupervisorControl>>,
}

/// The actor registry of one application instance. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<DashMap<String, Entry>>,
}

/// The supervisor responsible for a path and the child id it knows it by.
pub struct Owner {
    pub supervisor: Arc<dyn SupervisorControl>,
    /// The child's id in that supervisor.
    pub child_id: String,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the actor at `path` has started as `cell`.
    pub(crate) fn started(
        &self,
        path: &str,
        kind: ActorKind,
        cell: ActorCell,
        parent: Option<&str>,
        supervisor: Option<Arc<dyn SupervisorControl>>,
        mailbox: Option<Arc<MailboxGauge>>,
    ) {
        let mut entry = self
            .entries
            .entry(path.to_owned())
            .or_insert_with(|| Entry {
                kind,
                status: LifecycleStatus::Running,
                cell: None,
                restart_count: 0,
                last_error: None,
                mailbox: None,
                parent: parent.map(str::to_owned),
                supervisor: None,
            });
        entry.kind = kind;
        entry.status = LifecycleStatus::Running;
        entry.cell = Some(cell);
        entry.mailbox = mailbox;
        entry.parent = parent.map(str::to_owned);
        if supervisor.is_some() {
            entry.supervisor = supervisor;
        }
    }

    /// Records that the actor at `path` exited and what becomes of it.
    pub(crate) fn exited(&self, path: &str, status: LifecycleStatus, error: Option<String>) {
        if let Some(mut entry) = self.entries.get_mut(path) {
            entry.status = status;
            entry.cell = None;
            if error.is_some() {
                entry.last_error = error;
            }
        }
    }

    /// Records that everything below `path` went down with it (ractor kills the
    /// children of an actor that exits; a crashed actor's `post_stop` never runs).
    pub(crate) fn exited_below(&self, path: &str, status: LifecycleStatus) {
        let prefix = format!("{path}/");
        for mut entry in self.entries.iter_mut() {
            if entry.key().starts_with(&prefix) && entry.status == LifecycleStatus::Running {
                entry.status = status;
                entry.cell = None;
            }
        }
    }

    /// Counts a restart of the actor at `path`.
    pub(crate) fn restarted(&self, path: &str) {
        if let Some(mut entry) = self.entries.get_mut(path) {
            entry.restart_count += 1;
        }
    }

    /// Forgets the actor at `path` and everything below it.
    pub(crate) fn remove_subtree(&self, path: &str) {
        let prefix = format!("{path}/");
        self.entries
            .retain(|key, _| key != path && !key.starts_with(&prefix));
    }

    /// The running actor at `path`, if any.
    pub fn cell(&self, path: &str) -> Option<ActorCell> {
        self.entries.get(path).and_then(|e| {
            e.cell
                .clone()
                .filter(|c| !matches!(c.get_status(), ActorStatus::Stopped))
        })
    }

    /// The supervisor owning `path`, to start, stop or restart it.
    pub fn owner(&self, path: &str) -> Option<Owner> {
        let entry = self.entries.get(path)?;
        let supervisor = entry.supervisor.clone()?;
        let child_id = path.rsplit('/').next().unwrap_or(path).to_owned();
        Some(Owner {
            supervisor,
            child_id,
        })
    }

    /// Whether anything is registered at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Information about one actor.
    pub fn info(&self, path: &str) -> Option<ActorInfo> {
        self.entries.get(path).map(|e| to_info(path, &e))
    }

    /// The whole tree, sorted by path.
    pub fn snapshot(&self) -> Vec<ActorInfo> {
        let sorted: BTreeMap<String, ActorInfo> = self
            .entries
            .iter()
            .map(|e| (e.key().clone(), to_info(e.key(), e.value())))
            .collect();
        sorted.into_values().collect()
    }

    /// Number of registered actors of `kind` currently running.
    pub fn count_running(&self, kind: ActorKind) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == kind && e.status == LifecycleStatus::Running)
            .count()
    }
}

fn to_info(path: &str, e: &Entry) -> ActorInfo {
    ActorInfo {
        path: path.to_owned(),
        kind: e.kind,
        status: e.status,
        restart_count: e.restart_count,
        last_error: e.last_error.clone(),
        mailbox_depth: e.mailbox.as_ref().map(|g| g.depth()),
        parent: e.parent.clone(),
    }
}
