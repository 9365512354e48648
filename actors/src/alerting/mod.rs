//! The alerting actor: owns every open alert ([`AlertBook`]), turns the
//! rules' signals into alerts, runs escalation on its own timer, and persists
//! each change with the notifications it makes due through the
//! [`AlertStore`] port (one transaction: the outbox row is written with the
//! alert, so a notification is never lost and never sent twice).
//!
//! After a restart (of the actor or the process) it rebuilds the book from
//! the open alerts in storage and the notifications already in the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use hydrowatch_models::alert::engine::{AlertBook, BookError, Handling, Origin, Output, Signal};
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::RuleSpec;
use hydrowatch_models::alert::silence::{Inhibition, Matchers, Silence, Window, WindowSpec};
use hydrowatch_models::alert::{Alert, AlertKey, Millis};

use crate::hub::Hub;
use crate::session::ServerFrame;
use crate::storage::StoreFailure;
use crate::Address;
use hydrowatch_models::alert::engine::HeldBack;
use hydrowatch_models::alert::AlertState;
use hydrowatch_models::ensemble::Severity;
use hydrowatch_models::EquipmentId;

/// An alert as WebSocket subscribers of its equipment receive it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertFrame {
    /// Its id in storage.
    pub id: i64,
    /// The actor path it comes from.
    pub source: String,
    /// Its type: `<rule kind>:<rule id>`.
    pub kind: String,
    /// Equipment unit, if any.
    pub equipment: Option<String>,
    /// Sensor, if any.
    pub sensor: Option<String>,
    /// Where it is in its lifecycle.
    pub state: AlertState,
    /// Severity now.
    pub severity: Severity,
    /// Triggers while open.
    pub count: u64,
    /// The last value that triggered it.
    pub last_value: Option<f64>,
    /// First seen, ms since the epoch.
    pub first_seen_ms: Millis,
    /// When it (last) started firing.
    pub activated_at_ms: Option<Millis>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// Why it is not notified although firing: `silenced`, `inhibited` or
    /// `flapping`.
    pub held_back: Option<&'static str>,
}

/// Path of the alerting actor in the tree.
pub const ALERTING: &str = "alerting";

/// An open alert as stored, to rebuild the book after a restart.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    /// Its id in storage.
    pub id: i64,
    /// The rule that raised it.
    pub rule: String,
    /// The alert, whole.
    pub alert: Alert,
    /// Where it comes from.
    pub origin: Origin,
    /// History entries already stored.
    pub events_stored: usize,
    /// `(step, repeat)` already in the outbox for its current activation.
    pub notified: BTreeSet<(usize, u32)>,
}

/// A notification to put in the outbox: one row per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The activation it belongs to (the alert's `activated_at`).
    pub activation: Millis,
    /// The escalation step.
    pub step: usize,
    /// 0, or the repeat of the last step.
    pub repeat: u32,
    /// The channel and recipient, e.g. `email:oncall@plant.example`.
    pub channel: String,
    /// When it fell due.
    pub due_at: Millis,
}

/// One alert's change to persist.
#[derive(Debug, Clone)]
pub struct AlertWrite {
    /// Its id, once stored.
    pub id: Option<i64>,
    /// The rule that raised it.
    pub rule: String,
    /// The alert now.
    pub alert: Alert,
    /// Where it comes from.
    pub origin: Origin,
    /// History entries stored so far: those after are new.
    pub events_stored: usize,
    /// Notifications it made due.
    pub notifications: Vec<NewNotification>,
    /// Why it is not notified although firing (`silenced`, `inhibited`,
    /// `flapping`), if it is held back.
    pub held_back: Option<&'static str>,
}

/// The port the alert database implements. `save` is one transaction and
/// idempotent: a history entry or notification already stored (same alert,
/// sequence number, or activation, step, repeat and channel) is kept once.
pub trait AlertStore: Send + Sync + 'static {
    /// Every open alert.
    fn load_open(&self) -> BoxFuture<'_, Result<Vec<StoredAlert>, StoreFailure>>;
    /// Stores alerts' changes, all in one transaction (all or nothing);
    /// returns their ids in order.
    fn save<'a>(
        &'a self,
        writes: &'a [AlertWrite],
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFailure>>;
    /// The silences created through the API and still in force.
    fn silences(&self) -> BoxFuture<'_, Result<Vec<(Matchers, WindowSpec)>, StoreFailure>>;
}

/// The rules and policies as they stand: a change of a rule or policy
/// through the API publishes a new [`AlertingConfig`]; the alerting actor
/// and the equipment units pick it up.
pub type ConfigFeed = tokio::sync::watch::Receiver<Arc<AlertingConfig>>;

/// Rules, policies, silences and inhibition, checked.
#[derive(Clone, Debug, Default)]
pub struct AlertingConfig {
    /// Rules by id.
    pub rules: BTreeMap<String, RuleSpec>,
    /// Escalation policies by name.
    pub policies: BTreeMap<String, EscalationPolicy>,
    /// Silences and maintenance windows from config.
    pub silences: Vec<Silence>,
    /// The inhibition rule.
    pub inhibition: Inhibition,
    /// How often the actor looks at its timers.
    pub tick: Duration,
}

impl AlertingConfig {
    /// How a rule's alerts behave; `None` for an unknown rule.
    pub fn handling(&self, rule: &str) -> Option<Handling> {
        let spec = self.rules.get(rule)?;
        let policy = spec.policy.as_ref().and_then(|p| self.policies.get(p));
        Some(Handling {
            timing: spec.timing(),
            policy: spec.escalation(policy),
        })
    }
}

/// The wall clock as tokio sees it: real time in production, paused and
/// advanced by tests (`tokio::time::pause`).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_ms: Millis,
    base: tokio::time::Instant,
}

impl Clock {
    /// Starts now.
    pub fn start() -> Clock {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        Clock {
            base_ms,
            base: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> Millis {
        self.base_ms + self.base.elapsed().as_millis() as Millis
    }
}

/// Why an acknowledge or clear was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertingError {
    /// No open alert has that id.
    #[error("no open alert {0}")]
    NotOpen(i64),
    /// The alert's state does not allow it.
    #[error("{0}")]
    Refused(String),
    /// It could not be stored; nothing changed.
    #[error("alert storage unavailable: {0}")]
    Storage(String),
}

/// Messages of the alerting actor.
pub enum AlertingMsg {
    /// What a rule says about a source now.
    Signal {
        /// The rule's id.
        rule: Arc<str>,
        /// What it says.
        signal: Signal,
    },
    /// Time to look at timers and retry unsaved changes.
    Tick,
    /// Someone acknowledges an open alert.
    Acknowledge {
        id: i64,
        /// Who.
        by: String,
        comment: Option<String>,
        /// The alert after it.
        reply: RpcReplyPort<Result<Alert, AlertingError>>,
    },
    /// Someone clears an open alert by hand.
    Clear {
        id: i64,
        /// Who.
        by: String,
        comment: Option<String>,
        /// The alert after it.
        reply: RpcReplyPort<Result<Alert, AlertingError>>,
    },
    /// The stored silences changed: read them again.
    ReloadSilences(RpcReplyPort<Result<usize, AlertingError>>),
    /// Answers once the rules published before it are in force (each
    /// message first picks up a change of the rules).
    Sync(RpcReplyPort<()>),
}

/// What the alerting actor starts with.
#[derive(Clone)]
pub struct AlertingArgs {
    /// Rules and policies, as they change.
    pub config: ConfigFeed,
    /// Where alerts are kept.
    pub store: Arc<dyn AlertStore>,
    /// Its own address, filled in on start.
    pub address: Address<AlertingMsg>,
    pub clock: Clock,
    /// Where WebSocket subscribers are.
    pub hub: Hub,
}

/// The alerting actor.
pub struct Alerting;

struct Entry {
    id: Option<i64>,
    rule: String,
    events_stored: usize,
    /// Notifications due but not yet stored.
    pending: Vec<NewNotification>,
}

pub struct AlertingState {
    args: AlertingArgs,
    /// The rules in force.
    config: Arc<AlertingConfig>,
    book: AlertBook,
    entries: HashMap<AlertKey, Entry>,
    /// Open alerts with a change not stored yet (kept after a failed save,
    /// to retry): persisting looks at these only, not at every open alert.
    dirty: HashSet<AlertKey>,
    /// Alerts that closed but whose last change is not stored yet.
    closing: Vec<(Alert, Origin, Entry)>,
}

impl Actor for Alerting {
    type Msg = AlertingMsg;
    type State = AlertingState;
    type Arguments = AlertingArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AlertingMsg>,
        args: AlertingArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut args = args;
        let config = args.config.borrow_and_update().clone();
        let mut book = AlertBook::new(config.inhibition);
        let silences = all_silences(&config, &*args.store)
            .await
            .map_err(|e| format!("alerting: cannot load the silences: {e}"))?;
        book.set_silences(silences);
        let mut entries = HashMap::new();
        // Without the stored alerts the book would open duplicates and
        // repeat notifications: fail, and let the supervisor retry.
        let stored = args
            .store
            .load_open()
            .await
            .map_err(|e| format!("alerting: cannot load the open alerts: {e}"))?;
        for s in stored {
            let Some(handling) = config.handling(&s.rule) else {
                tracing::warn!(rule = %s.rule, id = s.id, "an open alert's rule is gone; it is kept as it is");
                continue;
            };
            entries.insert(
                s.alert.key.clone(),
                Entry {
                    id: Some(s.id),
                    rule: s.rule.clone(),
                    events_stored: s.events_stored,
                    pending: Vec::new(),
                },
            );
            book.restore(s.alert, s.origin, handling, s.notified);
        }
        tracing::info!(open = entries.len(), "alerting started");
        args.address.set(myself.clone());
        myself.send_interval(config.tick, || AlertingMsg::Tick);
        let mut state = AlertingState {
            args,
            config,
            book,
            entries,
            dirty: HashSet::new(),
            closing: Vec::new(),
        };
        // Whatever fell due while the process was down.
        let now = state.args.clock.now_ms();
        let out = state.book.tick(now);
        apply(&mut state, out);
        persist(&mut state).await;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<AlertingMsg>,
        msg: AlertingMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        refresh_rules(st).await;
        match msg {
            AlertingMsg::Signal { rule, signal } => {
                st.args.address.handled();
                let Some(handling) = st.config.handling(&rule) else {
                    tracing::warn!(%rule, "signal of an unknown rule dropped");
                    return Ok(());
                };
                if signal.firing && !st.entries.contains_key(&signal.key) {
                    st.entries.insert(
                        signal.key.clone(),
                        Entry {
                            id: None,
                            rule: rule.to_string(),
                            events_stored: 0,
                            pending: Vec::new(),
                        },
                    );
                }
                let out = st.book.signal(signal, &handling);
                apply(st, out);
                persist(st).await;
            }
            AlertingMsg::Tick => {
                let now = st.args.clock.now_ms();
                let out = st.book.tick(now);
                apply(st, out);
                persist(st).await;
            }
            AlertingMsg::Acknowledge {
                id,
                by,
                comment,
                reply,
            } => {
                let result = act(st, id, |book, key, now| {
                    book.acknowledge(key, &by, comment.as_deref(), now)
                })
                .await;
                let _ = reply.send(result);
            }
            AlertingMsg::Clear {
                id,
                by,
                comment,
                reply,
            } => {
                let result = act(st, id, |book, key, now| {
                    book.clear(key, &by, comment.as_deref(), now)
                })
                .await;
                let _ = reply.send(result);
            }
            AlertingMsg::Sync(reply) => {
                let _ = reply.send(());
            }
            AlertingMsg::ReloadSilences(reply) => {
                let result = match all_silences(&st.config, &*st.args.store).await {
                    Ok(silences) => {
                        let n = silences.len();
                        st.book.set_silences(silences);
                        // Held or released alerts are looked at on the next tick.
                        let now = st.args.clock.now_ms();
                        let out = st.book.tick(now);
                        apply(st, out);
                        persist(st).await;
                        Ok(n)
                    }
                    Err(e) => Err(AlertingError::Storage(e.to_string())),
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// The silences in force: those of the configuration and those stored. A
/// stored one that no longer parses is skipped (and logged), not fatal.
async fn all_silences(
    config: &AlertingConfig,
    store: &dyn AlertStore,
) -> Result<Vec<Silence>, StoreFailure> {
    let mut silences = config.silences.clone();
    for (matchers, spec) in store.silences().await? {
        match Window::try_from(&spec) {
            Ok(window) => silences.push(Silence { matchers, window }),
            Err(e) => tracing::warn!(error = %e, "a stored silence is not usable; skipped"),
        }
    }
    Ok(silences)
}

/// Puts rules changed through the API in force: alerts of a deleted rule
/// are cleared (by "hydrowatch", with the reason in the history); open
/// alerts of an edited rule take its new timing and policy.
async fn refresh_rules(st: &mut AlertingState) {
    let feed = &mut st.args.config;
    if !feed.has_changed().unwrap_or(false) {
        return;
    }
    st.config = feed.borrow_and_update().clone();
    let now = st.args.clock.now_ms();
    let mut out = Vec::new();
    for (key, entry) in &st.entries {
        match st.config.handling(&entry.rule) {
            Some(handling) => out.extend(st.book.set_handling(key, handling, now)),
            None => {
                let why = format!("rule `{}` was deleted", entry.rule);
                // A cleared alert waiting for acknowledgement stays so.
                if let Ok(o) = st.book.clear(key, "hydrowatch", Some(&why), now) {
                    out.extend(o);
                }
            }
        }
    }
    apply(st, out);
    persist(st).await;
    tracing::info!(rules = st.config.rules.len(), "alert rules changed");
}

/// Applies an operation on one open alert by id, then stores it.
async fn act(
    st: &mut AlertingState,
    id: i64,
    op: impl FnOnce(&mut AlertBook, &AlertKey, Millis) -> Result<Vec<Output>, BookError>,
) -> Result<Alert, AlertingError> {
    let key = st
        .entries
        .iter()
        .find(|(_, e)| e.id == Some(id))
        .map(|(k, _)| k.clone())
        .ok_or(AlertingError::NotOpen(id))?;
    let now = st.args.clock.now_ms();
    // The alert as it will be after the operation (it may leave the book).
    let out = op(&mut st.book, &key, now).map_err(|e| match e {
        BookError::NotOpen => AlertingError::NotOpen(id),
        BookError::Alert(e) => AlertingError::Refused(e.to_string()),
    })?;
    apply(st, out);
    let after = st
        .book
        .get(&key)
        .cloned()
        .or_else(|| {
            st.closing
                .iter()
                .rev()
                .find(|(a, _, _)| a.key == key)
                .map(|(a, _, _)| a.clone())
        })
        .ok_or(AlertingError::NotOpen(id))?;
    persist(st).await;
    Ok(after)
}

/// Marks what the book reported: changed alerts to store, notifications to
/// put in the outbox; alerts that left the book are kept until stored.
fn apply(st: &mut AlertingState, out: Vec<Output>) {
    for o in out {
        match o {
            Output::Changed(key) => {
                if st.entries.contains_key(&key) {
                    st.dirty.insert(key);
                }
            }
            Output::Notify {
                key,
                step,
                repeat,
                channels,
                due_at,
            } => {
                let activation = st.book.get(&key).and_then(|a| a.activated_at);
                if let (Some(e), Some(activation)) = (st.entries.get_mut(&key), activation) {
                    st.dirty.insert(key);
                    e.pending
                        .extend(channels.into_iter().map(|channel| NewNotification {
                            activation,
                            step,
                            repeat,
                            channel,
                            due_at,
                        }));
                }
            }
        }
    }
    // Alerts no longer open: their final state is kept until stored.
    for (alert, origin) in st.book.take_closed() {
        if let Some(entry) = st.entries.remove(&alert.key) {
            st.closing.push((alert, origin, entry));
        }
    }
}

/// Stores every changed alert, all in one transaction; when that fails,
/// one by one, so that one alert the database refuses does not hold back
/// the others. What fails stays marked and is retried on the next tick.
async fn persist(st: &mut AlertingState) {
    let closing = std::mem::take(&mut st.closing);
    let mut open = Vec::with_capacity(st.dirty.len());
    let mut writes = Vec::with_capacity(closing.len() + st.dirty.len());
    for (alert, origin, entry) in &closing {
        writes.push(write_of(entry, alert, origin, None));
    }
    for key in std::mem::take(&mut st.dirty) {
        let (Some(entry), Some(alert), Some(origin)) = (
            st.entries.get(&key),
            st.book.get(&key),
            st.book.origin(&key),
        ) else {
            continue;
        };
        writes.push(write_of(entry, alert, origin, st.book.held(&key)));
        open.push(key);
    }
    if writes.is_empty() {
        return;
    }
    let store = st.args.store.clone();
    let ids: Vec<Option<i64>> = match store.save(&writes).await {
        Ok(ids) if ids.len() == writes.len() => ids.into_iter().map(Some).collect(),
        first => {
            if let Err(e) = &first {
                tracing::warn!(error = %e, alerts = writes.len(), "alert changes not stored together; one by one");
            }
            let mut each = Vec::with_capacity(writes.len());
            for w in &writes {
                let saved = store.save(std::slice::from_ref(w)).await;
                if let Err(e) = &saved {
                    tracing::warn!(error = %e, key = ?w.alert.key, "alert not stored; retrying");
                    metrics::counter!("hydrowatch_alert_write_failures_total").increment(1);
                }
                each.push(saved.ok().and_then(|ids| ids.first().copied()));
            }
            each
        }
    };
    drop(writes);
    let mut ids = ids.into_iter();
    for (alert, origin, mut entry) in closing {
        match ids.next().flatten() {
            Some(id) => {
                stored(&mut entry, id, &alert);
                publish(&st.args.hub, id, &alert, &origin, None);
            }
            None => st.closing.push((alert, origin, entry)),
        }
    }
    for key in open {
        let (Some(id), Some(entry), Some(alert), Some(origin)) = (
            ids.next().flatten(),
            st.entries.get_mut(&key),
            st.book.get(&key),
            st.book.origin(&key),
        ) else {
            st.dirty.insert(key);
            continue;
        };
        stored(entry, id, alert);
        publish(&st.args.hub, id, alert, origin, st.book.held(&key));
    }
}

/// An alert's change as the store takes it: what `entry` has not stored yet.
fn write_of(entry: &Entry, alert: &Alert, origin: &Origin, held: Option<HeldBack>) -> AlertWrite {
    AlertWrite {
        id: entry.id,
        held_back: held.map(HeldBack::as_str),
        rule: entry.rule.clone(),
        alert: alert.clone(),
        origin: origin.clone(),
        events_stored: entry.events_stored,
        notifications: entry.pending.clone(),
    }
}

/// Notes that an alert's change is stored under `id`.
fn stored(entry: &mut Entry, id: i64, alert: &Alert) {
    entry.id = Some(id);
    entry.events_stored = alert.history.len();
    entry.pending.clear();
    metrics::counter!("hydrowatch_alert_writes_total").increment(1);
}

/// Sends an alert's state to the WebSocket subscribers of its equipment.
fn publish(hub: &Hub, id: i64, alert: &Alert, origin: &Origin, held: Option<HeldBack>) {
    let Some(equipment) = origin
        .equipment
        .as_deref()
        .and_then(|e| EquipmentId::parse(e).ok())
    else {
        return;
    };
    let frame = AlertFrame {
        id,
        source: alert.key.source.clone(),
        kind: alert.key.kind.clone(),
        equipment: origin.equipment.clone(),
        sensor: origin.sensor.clone(),
        state: alert.state,
        severity: alert.severity,
        count: alert.count,
        last_value: alert.last_value.filter(|v| v.is_finite()),
        first_seen_ms: alert.first_seen,
        activated_at_ms: alert.activated_at,
        acknowledged_by: alert.acknowledged.as_ref().map(|(by, _)| by.clone()),
        held_back: held.map(HeldBack::as_str),
    };
    hub.for_each(&equipment, |s| {
        s.outbox.push_control(ServerFrame::Alert {
            alert: frame.clone(),
        })
    });
}
