//! The alerting actor on paused time: the whole escalation chain over an
//! hour in milliseconds, acknowledge stopping it, a maintenance window and
//! inhibition holding notifications back while the alert is recorded,
//! flapping, one alert per (source, type) under concurrent triggers, and a
//! restart in the middle of an escalation.
//!
//! Storage here is an in-memory implementation of the `AlertStore` port
//! that keeps the database's guarantees (one open alert per source and type,
//! history and outbox rows idempotent). The real stores are not used on
//! purpose: with tokio's clock paused, time jumps forward whenever the
//! runtime waits on a database thread or socket, so the actor's timers
//! would run ahead of the test. The SQLite and PostgreSQL stores are
//! exercised by the application's tests (`tests/app/alerts.rs`,
//! `tests/app/notify.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorRef};
use tokio::sync::watch;

use hydrowatch_actors::alerting::{
    AlertStore, AlertWrite, Alerting, AlertingArgs, AlertingConfig, AlertingMsg, Clock, StoredAlert,
};
use hydrowatch_actors::hub::Hub;
use hydrowatch_actors::storage::StoreFailure;
use hydrowatch_actors::Address;
use hydrowatch_models::alert::engine::{Origin, Signal};
use hydrowatch_models::alert::escalation::EscalationPolicy;
use hydrowatch_models::alert::rules::RuleSpec;
use hydrowatch_models::alert::silence::{Inhibition, Matchers, WindowSpec};
use hydrowatch_models::alert::{Alert, AlertKey, AlertState, Millis};
use hydrowatch_models::ensemble::Severity;

const SEC: Millis = 1_000;
const MIN: Millis = 60 * SEC;

/// One notification row: alert id, activation, step, repeat, channel.
type Outbox = (i64, Millis, usize, u32, String);

#[derive(Default, Clone)]
struct Rows {
    next_id: i64,
    alerts: BTreeMap<i64, (String, Alert, Origin)>,
    /// Why each alert is held back, as last written.
    held: BTreeMap<i64, Option<&'static str>>,
    events: BTreeSet<(i64, usize)>,
    /// Notification rows and when each fell due.
    outbox: BTreeMap<Outbox, Millis>,
    silences: Vec<(Matchers, WindowSpec)>,
    /// Writes of this source fail, as if the database refused them.
    refuse: Option<String>,
}

/// The `AlertStore` port in memory, with the database's constraints.
#[derive(Default)]
struct MemoryStore {
    rows: Mutex<Rows>,
}

impl MemoryStore {
    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().expect("store lock")
    }

    /// Every alert of `source`.
    fn alerts_of(&self, source: &str) -> Vec<(i64, Alert)> {
        self.rows()
            .alerts
            .iter()
            .filter(|(_, (_, a, _))| a.key.source == source)
            .map(|(id, (_, a, _))| (*id, a.clone()))
            .collect()
    }

    /// The one alert of `source`.
    fn alert_of(&self, source: &str) -> (i64, Alert) {
        let all = self.alerts_of(source);
        assert_eq!(all.len(), 1, "alerts of {source}: {all:?}");
        all.into_iter().next().expect("one alert")
    }

    /// Why an alert is held back, as stored.
    fn held(&self, id: i64) -> Option<&'static str> {
        self.rows().held.get(&id).copied().flatten()
    }

    /// `(step, repeat, channel, due_at - activation)` of an alert, in order.
    fn notified(&self, id: i64) -> Vec<(usize, u32, String, Millis)> {
        let mut rows: Vec<_> = self
            .rows()
            .outbox
            .iter()
            .filter(|((a, ..), _)| *a == id)
            .map(|((_, act, step, rep, ch), due)| (*step, *rep, ch.clone(), due - act))
            .collect();
        rows.sort_by_key(|r| (r.3, r.0, r.1, r.2.clone()));
        rows
    }
}

impl AlertStore for MemoryStore {
    fn load_open(&self) -> BoxFuture<'_, Result<Vec<StoredAlert>, StoreFailure>> {
        let rows = self.rows();
        let open = rows
            .alerts
            .iter()
            .filter(|(_, (_, a, _))| a.state.is_open())
            .map(|(id, (rule, alert, origin))| StoredAlert {
                id: *id,
                rule: rule.clone(),
                alert: alert.clone(),
                origin: origin.clone(),
                events_stored: alert.history.len(),
                notified: rows
                    .outbox
                    .keys()
                    .filter(|(a, act, ..)| a == id && Some(*act) == alert.activated_at)
                    .map(|(_, _, step, rep, _)| (*step, *rep))
                    .collect(),
            })
            .collect();
        Box::pin(async move { Ok(open) })
    }

    fn save<'a>(
        &'a self,
        writes: &'a [AlertWrite],
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreFailure>> {
        // All or nothing, like the database's transaction.
        let mut rows = self.rows();
        let mut next = rows.clone();
        let result = writes
            .iter()
            .map(|w| save_one(&mut next, w))
            .collect::<Result<Vec<i64>, StoreFailure>>();
        if result.is_ok() {
            *rows = next;
        }
        Box::pin(async move { result })
    }

    fn silences(&self) -> BoxFuture<'_, Result<Vec<(Matchers, WindowSpec)>, StoreFailure>> {
        let silences = self.rows().silences.clone();
        Box::pin(async move { Ok(silences) })
    }
}

fn save_one(rows: &mut Rows, write: &AlertWrite) -> Result<i64, StoreFailure> {
    if rows.refuse.as_ref() == Some(&write.alert.key.source) {
        return Err(StoreFailure::Unavailable("refused".into()));
    }
    let id = match write.id {
        Some(id) => id,
        None => {
            // The partial unique index: one open alert per source and type.
            let clash = rows
                .alerts
                .values()
                .any(|(_, a, _)| a.key == write.alert.key && a.state.is_open());
            if clash {
                return Err(StoreFailure::Rejected(format!(
                    "an open alert for {:?} exists",
                    write.alert.key
                )));
            }
            rows.next_id += 1;
            rows.next_id
        }
    };
    for seq in write.events_stored..write.alert.history.len() {
        rows.events.insert((id, seq));
    }
    for n in &write.notifications {
        rows.outbox
            .entry((id, n.activation, n.step, n.repeat, n.channel.clone()))
            .or_insert(n.due_at);
    }
    rows.held.insert(id, write.held_back);
    let row = (
        write.rule.clone(),
        write.alert.clone(),
        write.origin.clone(),
    );
    rows.alerts.insert(id, row);
    Ok(id)
}

fn rule(json: serde_json::Value) -> RuleSpec {
    serde_json::from_value(json).expect("rule")
}

/// `oil-hot` on TS sensors (pending 1 min, keep firing 2 min, the default
/// policy), `unit-down` on the unit (critical, no pending), and `flappy`
/// (flapping after more than 2 changes in 10 min).
fn config() -> AlertingConfig {
    let policy: EscalationPolicy = serde_json::from_value(serde_json::json!({
        "steps": [
            {"after_ms": 0, "channels": ["wallboard", "webhook:ops"]},
            {"after_ms": 5 * MIN, "channels": ["email:oncall@plant.example"]},
            {"after_ms": 15 * MIN, "channels": ["email:supervisor@plant.example"]},
            {"after_ms": 60 * MIN, "channels": ["email:manager@plant.example"]}
        ],
        "repeat_critical_ms": 30 * MIN
    }))
    .expect("policy");
    let rules = [
        rule(serde_json::json!({
            "id": "oil-hot", "severity": "warning", "for_ms": MIN, "keep_firing_ms": 2 * MIN,
            "policy": "default",
            "when": {"threshold": {"sensor_type": "TS", "max": 65.0}}
        })),
        rule(serde_json::json!({
            "id": "unit-down", "severity": "critical", "policy": "default",
            "when": {"model": {"at_least": "major"}}
        })),
        rule(serde_json::json!({
            "id": "flappy", "severity": "major", "policy": "default",
            "flap_changes": 2, "flap_window_ms": 10 * MIN,
            "when": {"threshold": {"sensor": "PS1", "max": 200.0}}
        })),
    ];
    AlertingConfig {
        rules: rules.into_iter().map(|r| (r.id.clone(), r)).collect(),
        policies: [("default".to_owned(), policy)].into_iter().collect(),
        silences: Vec::new(),
        inhibition: Inhibition::default(),
        tick: Duration::from_secs(1),
    }
}

/// The alerting actor on a paused clock, and what it writes.
struct Bench {
    store: Arc<MemoryStore>,
    clock: Clock,
    address: Address<AlertingMsg>,
    _rules: watch::Sender<Arc<AlertingConfig>>,
    feed: watch::Receiver<Arc<AlertingConfig>>,
    actor: Option<ActorRef<AlertingMsg>>,
}

impl Bench {
    async fn start(store: Arc<MemoryStore>) -> Bench {
        let (rules, feed) = watch::channel(Arc::new(config()));
        let mut bench = Bench {
            store,
            clock: Clock::start(),
            address: Address::new(),
            _rules: rules,
            feed,
            actor: None,
        };
        bench.spawn().await;
        bench
    }

    async fn spawn(&mut self) {
        let args = AlertingArgs {
            config: self.feed.clone(),
            store: self.store.clone(),
            address: self.address.clone(),
            clock: self.clock,
            hub: Hub::new(),
        };
        let (actor, _) = Actor::spawn(None, Alerting, args)
            .await
            .expect("alerting starts");
        self.actor = Some(actor);
    }

    async fn stop(&mut self) {
        if let Some(actor) = self.actor.take() {
            actor
                .stop_and_wait(None, None)
                .await
                .expect("alerting stops");
        }
    }

    fn actor(&self) -> &ActorRef<AlertingMsg> {
        self.actor.as_ref().expect("alerting runs")
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// What `rule` says about `sensor` of rig-1 (the unit itself for `None`).
    fn signal(
        &self,
        rule: &str,
        kind: &str,
        sensor: Option<&str>,
        firing: bool,
        severity: Severity,
    ) {
        let source = match sensor {
            Some(s) => format!("plant/rig-1/{s}"),
            None => "plant/rig-1".to_owned(),
        };
        let signal = Signal {
            key: AlertKey {
                source,
                kind: kind.to_owned(),
            },
            origin: Origin {
                site: "demo".into(),
                equipment: Some("rig-1".into()),
                sensor: sensor.map(str::to_owned),
            },
            firing,
            severity,
            value: Some(70.0),
            at: self.now(),
            restated: false,
        };
        self.actor()
            .cast(AlertingMsg::Signal {
                rule: Arc::from(rule),
                signal,
            })
            .expect("alerting takes signals");
    }

    fn oil(&self, sensor: &str, firing: bool) {
        self.signal(
            "oil-hot",
            "threshold:oil-hot",
            Some(sensor),
            firing,
            Severity::Warning,
        );
    }

    /// Waits until the actor has handled everything sent before.
    async fn settled(&self) {
        self.actor()
            .call(AlertingMsg::Sync, None)
            .await
            .expect("alerting answers");
    }

    /// Lets `d` of (paused) time pass, the actor ticking through it.
    async fn pass(&self, d: Millis) {
        tokio::time::sleep(Duration::from_millis(d as u64)).await;
        self.settled().await;
    }

    async fn acknowledge(&self, id: i64) {
        let result = self
            .actor()
            .call(
                |reply| AlertingMsg::Acknowledge {
                    id,
                    by: "ana".into(),
                    comment: Some("on it".into()),
                    reply,
                },
                None,
            )
            .await
            .expect("alerting answers");
        assert!(
            matches!(result, ractor::rpc::CallResult::Success(Ok(_))),
            "{result:?}"
        );
    }
}

fn row(step: usize, repeat: u32, channel: &str, after: Millis) -> (usize, u32, String, Millis) {
    (step, repeat, channel.to_owned(), after)
}

#[tokio::test(start_paused = true)]
async fn the_whole_chain_escalates_by_time_and_acknowledge_stops_it() {
    let bench = Bench::start(Arc::default()).await;
    // TS1 runs hot for good; TS2 too, but someone acknowledges it at 7 min.
    bench.oil("TS1", true);
    bench.oil("TS2", true);
    bench.pass(30 * SEC).await;
    let (ts1, alert) = bench.store.alert_of("plant/rig-1/TS1");
    assert_eq!(alert.state, AlertState::Pending);
    assert!(bench.store.notified(ts1).is_empty());

    // Fires after its pending minute: the first step at once.
    bench.pass(31 * SEC).await;
    let (_, alert) = bench.store.alert_of("plant/rig-1/TS1");
    assert_eq!(alert.state, AlertState::ActiveUnack);
    let first = [row(0, 0, "wallboard", 0), row(0, 0, "webhook:ops", 0)];
    assert_eq!(bench.store.notified(ts1), first);

    bench.pass(6 * MIN).await; // 7 min
    let (ts2, _) = bench.store.alert_of("plant/rig-1/TS2");
    assert_eq!(bench.store.notified(ts2).len(), 3);
    bench.acknowledge(ts2).await;

    bench.pass(70 * MIN).await; // 77 min
    let mut whole = first.to_vec();
    whole.push(row(1, 0, "email:oncall@plant.example", 5 * MIN));
    whole.push(row(2, 0, "email:supervisor@plant.example", 15 * MIN));
    whole.push(row(3, 0, "email:manager@plant.example", 60 * MIN));
    assert_eq!(bench.store.notified(ts1), whole);
    // Acknowledged at 7 min: nobody further up hears of TS2.
    assert_eq!(
        bench.store.notified(ts2),
        [
            row(0, 0, "wallboard", 0),
            row(0, 0, "webhook:ops", 0),
            row(1, 0, "email:oncall@plant.example", 5 * MIN)
        ]
    );
    let (_, acked) = bench.store.alert_of("plant/rig-1/TS2");
    assert_eq!(acked.state, AlertState::ActiveAck);
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_critical_alert_repeats_its_last_step() {
    let bench = Bench::start(Arc::default()).await;
    bench.signal(
        "unit-down",
        "model:unit-down",
        None,
        true,
        Severity::Critical,
    );
    bench.pass(125 * MIN).await;
    let (id, _) = bench.store.alert_of("plant/rig-1");
    let repeats: Vec<_> = bench
        .store
        .notified(id)
        .into_iter()
        .filter(|r| r.0 == 3)
        .map(|r| (r.1, r.3))
        .collect();
    // The last step at 60 min, then every 30 min while nobody acknowledges.
    assert_eq!(repeats, [(0, 60 * MIN), (1, 90 * MIN), (2, 120 * MIN)]);
    bench.acknowledge(id).await;
    bench.pass(60 * MIN).await;
    assert_eq!(
        bench.store.notified(id).iter().filter(|r| r.0 == 3).count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn a_maintenance_window_holds_notifications_but_keeps_the_record() {
    let store = Arc::new(MemoryStore::default());
    let bench = Bench::start(store.clone()).await;
    // rig-1 is in maintenance for the next 10 minutes.
    let now = bench.now();
    store.rows().silences.push((
        Matchers {
            equipment: Some("rig-1".into()),
            ..Matchers::default()
        },
        WindowSpec::Fixed {
            starts: now,
            ends: now + 10 * MIN,
        },
    ));
    let reloaded = bench
        .actor()
        .call(AlertingMsg::ReloadSilences, None)
        .await
        .expect("alerting answers");
    assert!(matches!(reloaded, ractor::rpc::CallResult::Success(Ok(1))));
    bench.oil("TS1", true);
    bench.pass(8 * MIN).await;
    // Recorded and firing, but nobody is told.
    let (id, alert) = store.alert_of("plant/rig-1/TS1");
    assert_eq!(alert.state, AlertState::ActiveUnack);
    assert!(store.notified(id).is_empty());
    assert_eq!(store.held(id), Some("silenced"));
    // The window ends at 10 min: what is due by then goes out at once,
    // stamped with when it fell due.
    bench.pass(2 * MIN + SEC).await;
    assert_eq!(
        store.notified(id),
        [
            row(0, 0, "wallboard", 0),
            row(0, 0, "webhook:ops", 0),
            row(1, 0, "email:oncall@plant.example", 5 * MIN)
        ]
    );
    assert_eq!(store.held(id), None);
}

#[tokio::test(start_paused = true)]
async fn a_critical_unit_alert_holds_back_its_sensors_warnings_until_it_clears() {
    let bench = Bench::start(Arc::default()).await;
    bench.signal(
        "unit-down",
        "model:unit-down",
        None,
        true,
        Severity::Critical,
    );
    bench.settled().await;
    bench.oil("TS1", true);
    bench.pass(3 * MIN).await;
    let (ts1, alert) = bench.store.alert_of("plant/rig-1/TS1");
    assert_eq!(alert.state, AlertState::ActiveUnack);
    assert!(bench.store.notified(ts1).is_empty(), "inhibited");
    assert_eq!(bench.store.held(ts1), Some("inhibited"));
    let (unit, _) = bench.store.alert_of("plant/rig-1");
    assert_eq!(bench.store.notified(unit).len(), 2);
    // The unit recovers (no keep-firing period): the warning is told.
    bench.signal(
        "unit-down",
        "model:unit-down",
        None,
        false,
        Severity::Critical,
    );
    bench.pass(2 * SEC).await;
    let (_, unit_alert) = bench.store.alert_of("plant/rig-1");
    assert_eq!(unit_alert.state, AlertState::ClearedUnack);
    assert_eq!(bench.store.held(ts1), None);
    assert_eq!(
        bench.store.notified(ts1),
        [row(0, 0, "wallboard", 0), row(0, 0, "webhook:ops", 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_flapping_alert_is_held_until_it_is_stable() {
    let bench = Bench::start(Arc::default()).await;
    let flap = |firing| {
        bench.signal(
            "flappy",
            "threshold:flappy",
            Some("PS1"),
            firing,
            Severity::Major,
        )
    };
    // Fires, clears, fires, clears, fires: the second clearing is the third
    // change between active and cleared in 10 min, more than 2.
    for firing in [true, false, true, false, true] {
        flap(firing);
        bench.pass(20 * SEC).await;
    }
    let (id, alert) = bench.store.alert_of("plant/rig-1/PS1");
    assert!(alert.flapping, "{alert:?}");
    assert_eq!(bench.store.held(id), Some("flapping"));
    // The first two activations were told (each escalates from its first
    // step); the third, flapping, is not.
    let told = bench.store.notified(id);
    assert_eq!(told.len(), 4, "{told:?}");
    // Stable (firing) for a whole window: notifications resume.
    bench.pass(11 * MIN).await;
    let (_, alert) = bench.store.alert_of("plant/rig-1/PS1");
    assert!(!alert.flapping);
    assert_eq!(bench.store.held(id), None);
    assert!(bench.store.notified(id).len() > 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_triggers_make_one_alert_per_source_and_type() {
    let bench = Bench::start(Arc::default()).await;
    let mut senders = Vec::new();
    for _ in 0..8 {
        let actor = bench.actor().clone();
        let at = bench.now();
        senders.push(tokio::spawn(async move {
            for _ in 0..25 {
                let signal = Signal {
                    key: AlertKey {
                        source: "plant/rig-1/TS3".into(),
                        kind: "threshold:oil-hot".into(),
                    },
                    origin: Origin {
                        site: "demo".into(),
                        equipment: Some("rig-1".into()),
                        sensor: Some("TS3".into()),
                    },
                    firing: true,
                    severity: Severity::Warning,
                    value: Some(66.0),
                    at,
                    restated: false,
                };
                actor
                    .cast(AlertingMsg::Signal {
                        rule: Arc::from("oil-hot"),
                        signal,
                    })
                    .expect("cast");
                tokio::task::yield_now().await;
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    bench.pass(2 * MIN).await;
    let (_, alert) = bench.store.alert_of("plant/rig-1/TS3");
    assert_eq!(alert.count, 200);
    assert_eq!(alert.state, AlertState::ActiveUnack);
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_escalation_sends_nothing_twice_and_misses_nothing() {
    let store = Arc::new(MemoryStore::default());
    let mut bench = Bench::start(store.clone()).await;
    bench.oil("TS1", true);
    bench.pass(7 * MIN).await;
    let (id, _) = store.alert_of("plant/rig-1/TS1");
    assert_eq!(store.notified(id).len(), 3);
    // Alerting is down from 7 to 20 min: the 16 min step falls due meanwhile.
    bench.stop().await;
    tokio::time::sleep(Duration::from_millis((13 * MIN) as u64)).await;
    bench.spawn().await;
    bench.settled().await;
    assert_eq!(
        store.notified(id),
        [
            row(0, 0, "wallboard", 0),
            row(0, 0, "webhook:ops", 0),
            row(1, 0, "email:oncall@plant.example", 5 * MIN),
            row(2, 0, "email:supervisor@plant.example", 15 * MIN)
        ]
    );
    // The same alert goes on; the next step comes at its time.
    bench.oil("TS1", true);
    bench.pass(45 * MIN).await;
    assert_eq!(store.alerts_of("plant/rig-1/TS1").len(), 1);
    let steps: Vec<usize> = store.notified(id).iter().map(|r| r.0).collect();
    assert_eq!(steps, [0, 0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn an_alert_the_store_refuses_holds_back_no_other_and_loses_nothing() {
    let store = Arc::new(MemoryStore::default());
    store.rows().refuse = Some("plant/rig-1/TS2".into());
    let bench = Bench::start(store.clone()).await;
    bench.oil("TS1", true);
    bench.oil("TS2", true);
    // Both fire on the same tick; TS2's writes fail, TS1's go through.
    bench.pass(2 * MIN).await;
    let (ts1, alert) = store.alert_of("plant/rig-1/TS1");
    assert_eq!(alert.state, AlertState::ActiveUnack);
    assert_eq!(store.notified(ts1).len(), 2);
    assert!(store.alerts_of("plant/rig-1/TS2").is_empty());
    // The database takes it again: TS2 is stored whole, with what fell due.
    store.rows().refuse = None;
    bench.pass(2 * SEC).await;
    let (ts2, alert) = store.alert_of("plant/rig-1/TS2");
    assert_eq!(alert.state, AlertState::ActiveUnack);
    assert_eq!(
        alert.history.len(),
        store
            .rows()
            .events
            .iter()
            .filter(|(id, _)| *id == ts2)
            .count()
    );
    assert_eq!(
        store.notified(ts2),
        [row(0, 0, "wallboard", 0), row(0, 0, "webhook:ops", 0)]
    );
}
