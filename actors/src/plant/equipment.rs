//! The equipment actor: the live picture of a unit, and the supervisor of its
//! sensors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use hydrowatch_models::cycle::{Assembled, CycleAssembler};
use hydrowatch_models::detect::Findings;
use hydrowatch_models::{
    ConditionView, EquipmentDelta, EquipmentId, EquipmentSnapshot, EquipmentSpec, Health, Quality,
    SampleBatch, SensorId, SensorState, SensorView,
};

use super::alerts::{AlertLink, UnitRules};
use super::scoring::CycleScoring;
use super::sensor::{Sensor, SensorArgs, SensorMsg};
use crate::address::Address;
use crate::clock::now_ms;
use crate::hub::{Hub, Subscriber};
use crate::registry::{ActorKind, Registry};
use crate::supervision::{
    spawn_fn, ChildSpec, RestartType, Supervision, SupervisionCmd, SupervisorSpec,
};

/// Messages of an equipment actor.
pub enum EquipmentMsg {
    /// One poll's readings, from the connection.
    Samples(SampleBatch),
    /// Periodic staleness check.
    Tick,
    /// A sensor's detectors changed their findings.
    Findings {
        /// The sensor's position.
        index: usize,
        /// What they say now.
        findings: Findings,
    },
    /// Sends the current snapshot to a new subscriber.
    Subscribe(Subscriber),
    /// The current snapshot.
    GetSnapshot(RpcReplyPort<EquipmentSnapshot>),
    /// Supervision of the sensors.
    Supervision(SupervisionCmd),
    /// Keeps the actor busy for a while, to exercise timeouts in tests (sent
    /// straight to the actor, not through its address).
    #[cfg(feature = "fault-injection")]
    Stall(Duration),
}

impl From<SupervisionCmd> for EquipmentMsg {
    fn from(cmd: SupervisionCmd) -> Self {
        EquipmentMsg::Supervision(cmd)
    }
}

/// What an equipment actor starts with.
#[derive(Clone)]
pub struct EquipmentArgs {
    /// Its description.
    pub spec: Arc<EquipmentSpec>,
    /// Its path, e.g. `plant/rig-1`.
    pub path: String,
    /// Its own address, filled in on start.
    pub address: Address<EquipmentMsg>,
    /// How it supervises its sensors.
    pub supervision: SupervisorSpec,
    /// Restart type of its sensors.
    pub sensor_restart: RestartType,
    /// Period of the staleness check.
    pub tick: Duration,
    /// Where subscribers are.
    pub hub: Hub,
    pub registry: Registry,
    /// Cycle models, for equipment whose spec has a cycle layout.
    pub scoring: Option<CycleScoring>,
    /// Alert rules and where their signals go; `None`: no alerting.
    pub alerts: Option<AlertLink>,
}

/// The equipment actor.
pub struct Equipment;

pub struct EquipmentState {
    args: EquipmentArgs,
    supervision: Supervision,
    sensors: Vec<Address<SensorMsg>>,
    index: HashMap<SensorId, usize>,
    states: Vec<SensorState>,
    findings: Vec<Option<Findings>>,
    health: Health,
    /// Changes not yet published.
    pending: EquipmentDelta,
    ticker: Option<tokio::task::JoinHandle<()>>,
    processed: metrics::Counter,
    cycles: Option<Cycles>,
    rules: Option<UnitRules>,
}

/// Cycle assembly and scoring of one unit.
struct Cycles {
    scoring: CycleScoring,
    assembler: CycleAssembler,
    /// This poll's usable values, by sensor index (reused).
    poll: Vec<Option<f64>>,
    latest: Option<ConditionView>,
    scored: u64,
    incomplete: u64,
    scored_total: metrics::Counter,
    incomplete_total: metrics::Counter,
    anomalies_total: metrics::Counter,
    scoring_seconds: metrics::Histogram,
}

impl Cycles {
    fn new(spec: &EquipmentSpec, scoring: Option<CycleScoring>) -> Option<Cycles> {
        let layout = spec.cycle.clone()?;
        let Some(scoring) = scoring else {
            tracing::warn!(equipment = %spec.id, "cycle layout configured but no cycle models loaded: cycles are not scored");
            return None;
        };
        Some(Cycles {
            scoring,
            assembler: CycleAssembler::new(layout),
            poll: vec![None; spec.sensors.len()],
            latest: None,
            scored: 0,
            incomplete: 0,
            scored_total: metrics::counter!("hydrowatch_cycles_scored_total"),
            incomplete_total: metrics::counter!("hydrowatch_cycles_incomplete_total"),
            anomalies_total: metrics::counter!("hydrowatch_cycle_anomalies_total"),
            scoring_seconds: metrics::histogram!("hydrowatch_cycle_scoring_seconds"),
        })
    }

    /// Feeds this poll's values; returns a verdict when a cycle completed.
    fn push(&mut self, equipment: &EquipmentId, ts_ms: i64) -> Option<ConditionView> {
        let assembled = self.assembler.push(ts_ms, &self.poll);
        self.poll.iter_mut().for_each(|v| *v = None);
        match assembled? {
            Assembled::Incomplete { start_ms, missing } => {
                self.incomplete += 1;
                self.incomplete_total.increment(1);
                tracing::debug!(%equipment, start_ms, missing, "incomplete cycle not scored");
                None
            }
            Assembled::Complete {
                cycle,
                start_ms,
                end_ms,
                filled,
            } => {
                let started = std::time::Instant::now();
                let verdict = match self.scoring.scorer.score(&cycle) {
                    Ok(v) => v,
                    Err(err) => {
                        // Values are checked finite on the way in; this
                        // would be a defect, not bad input.
                        tracing::warn!(%equipment, error = %err, "cycle could not be scored");
                        return None;
                    }
                };
                self.scoring_seconds.record(started.elapsed().as_secs_f64());
                self.scored += 1;
                self.scored_total.increment(1);
                if verdict.is_anomaly {
                    self.anomalies_total.increment(1);
                }
                let changed = self.latest.as_ref().map(|c| {
                    (
                        c.verdict.affected_component,
                        c.verdict.severity,
                        c.verdict.is_anomaly,
                    )
                }) != Some((
                    verdict.affected_component,
                    verdict.severity,
                    verdict.is_anomaly,
                ));
                if changed {
                    tracing::info!(%equipment, anomaly = verdict.is_anomaly, component = ?verdict.affected_component, severity = ?verdict.severity, score = verdict.score, filled, "cycle verdict changed");
                }
                let view = ConditionView {
                    cycle_start_ms: start_ms,
                    cycle_end_ms: end_ms,
                    verdict,
                    cycles_scored: self.scored,
                    cycles_incomplete: self.incomplete,
                };
                if let Some(sink) = &self.scoring.sink {
                    sink.record(equipment, &view);
                }
                self.latest = Some(view.clone());
                Some(view)
            }
        }
    }
}

impl Actor for Equipment {
    type Msg = EquipmentMsg;
    type State = EquipmentState;
    type Arguments = EquipmentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EquipmentMsg>,
        args: EquipmentArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut supervision = Supervision::new(
            args.path.clone(),
            args.supervision,
            args.registry.clone(),
            Arc::new(myself.clone()),
        );
        let mut sensors = Vec::new();
        let mut children = Vec::new();
        for (index, spec) in args.spec.sensors.iter().enumerate() {
            let address = Address::<SensorMsg>::new();
            let parent = args.address.clone();
            sensors.push(address.clone());
            let spec = Arc::new(spec.clone());
            let child_address = address.clone();
            children.push(ChildSpec {
                id: spec.id.to_string(),
                kind: ActorKind::Sensor,
                restart: args.sensor_restart,
                start: spawn_fn(move || {
                    (
                        Sensor,
                        SensorArgs {
                            spec: spec.clone(),
                            address: child_address.clone(),
                            parent: parent.clone(),
                            index,
                        },
                    )
                }),
                mailbox: Some(address.gauge()),
            });
        }
        supervision
            .start_children(&myself.get_cell(), children)
            .await?;
        let states = vec![SensorState::no_data(); args.spec.sensors.len()];
        let index = args
            .spec
            .sensors
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let health = health_of(&args.spec, &states);
        let cycles = Cycles::new(&args.spec, args.scoring.clone());
        let rules = args
            .alerts
            .clone()
            .map(|link| UnitRules::new(&args.spec, link));
        let findings = vec![None; args.spec.sensors.len()];
        // Staleness ticks start at a random phase so that a thousand units do not
        // all check at the same instant.
        let ticker = {
            let me = myself.clone();
            let period = args.tick;
            tokio::spawn(async move {
                tokio::time::sleep(period.mul_f64(rand::random::<f64>())).await;
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    interval.tick().await;
                    if me.cast(EquipmentMsg::Tick).is_err() {
                        break;
                    }
                }
            })
        };
        args.address.set(myself);
        let state = EquipmentState {
            args,
            supervision,
            sensors,
            index,
            states,
            findings,
            health,
            pending: EquipmentDelta::default(),
            ticker: Some(ticker),
            processed: metrics::counter!("hydrowatch_samples_processed_total"),
            cycles,
            rules,
        };
        // Subscribers that were listening to a previous instance get a fresh picture.
        let snapshot = snapshot_of(&state);
        state.args.hub.for_each(&state.args.spec.id, |s| {
            s.outbox.push_snapshot(snapshot.clone())
        });
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<EquipmentMsg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = st.ticker.take() {
            ticker.abort();
        }
        st.supervision.stop_all().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<EquipmentMsg>,
        msg: EquipmentMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Messages sent through the address are counted in its mailbox gauge.
        if matches!(
            msg,
            EquipmentMsg::Samples(_) | EquipmentMsg::Subscribe(_) | EquipmentMsg::Findings { .. }
        ) {
            st.args.address.handled();
        }
        match msg {
            EquipmentMsg::Samples(batch) => {
                st.processed.increment(batch.readings.len() as u64);
                for reading in batch.readings {
                    let Some(&i) = st.index.get(&reading.sensor) else {
                        tracing::warn!(equipment = %st.args.spec.id, sensor = %reading.sensor, "reading for unknown sensor dropped");
                        continue;
                    };
                    // The live picture applies the sensor's own pure checks at once,
                    // so publishing never waits for 17 actors; the sensor actor gets
                    // the reading for its state and the detectors that need history.
                    // Rows ingested late (backfill) are history: they are stored,
                    // but the live picture never goes back in time.
                    if batch.ts_ms <= st.states[i].ts_ms {
                        continue;
                    }
                    let state = st.args.spec.sensors[i].assess(&reading, batch.ts_ms);
                    if let Some(rules) = &mut st.rules {
                        rules.on_reading(i, &state);
                    }
                    if let Some(cycles) = &mut st.cycles {
                        cycles.poll[i] = state.value.filter(|_| state.quality != Quality::Bad);
                    }
                    st.pending
                        .sensors
                        .insert(reading.sensor.clone(), state.clone());
                    st.states[i] = state;
                    let _ = st.sensors[i].cast(SensorMsg::Reading {
                        reading,
                        ts_ms: batch.ts_ms,
                    });
                }
                if let Some(cycles) = &mut st.cycles {
                    if let Some(view) = cycles.push(&st.args.spec.id, batch.ts_ms) {
                        if let Some(rules) = &mut st.rules {
                            rules.on_verdict(&view.verdict, view.cycle_end_ms);
                        }
                        st.pending.condition = Some(view);
                    }
                }
                publish(st);
            }
            EquipmentMsg::Tick => {
                // The picture and the sensor actors apply the same staleness check;
                // in normal operation a tick changes and sends nothing.
                let now_ms = now_ms();
                let mut changed = false;
                for (i, spec) in st.args.spec.sensors.iter().enumerate() {
                    if let Some(stale) = spec.check_stale(&st.states[i], now_ms) {
                        st.pending.sensors.insert(spec.id.clone(), stale.clone());
                        st.states[i] = stale;
                        let _ = st.sensors[i].cast(SensorMsg::CheckStale { now_ms });
                        changed = true;
                    }
                }
                if let Some(rules) = &mut st.rules {
                    rules.refresh_if_changed(&st.args.spec, &st.states, now_ms);
                    rules.resync_if_restarted(now_ms);
                    rules.on_tick(now_ms, &st.states);
                }
                if changed {
                    publish(st);
                }
            }
            EquipmentMsg::Findings { index, findings } => {
                if let (Some(slot), Some(spec)) =
                    (st.findings.get_mut(index), st.args.spec.sensors.get(index))
                {
                    if findings.any() {
                        tracing::info!(equipment = %st.args.spec.id, sensor = %spec.id, stuck = findings.stuck, unusual = findings.unusual, z = ?findings.z, limits = ?findings.limits, "sensor findings");
                    }
                    st.pending
                        .findings
                        .insert(spec.id.clone(), findings.clone());
                    *slot = Some(findings);
                    publish(st);
                }
            }
            EquipmentMsg::Subscribe(subscriber) => {
                subscriber.outbox.push_snapshot(snapshot_of(st));
            }
            EquipmentMsg::GetSnapshot(reply) => {
                let _ = reply.send(snapshot_of(st));
            }
            EquipmentMsg::Supervision(cmd) => {
                st.supervision.handle_cmd(&myself.get_cell(), cmd).await?;
            }
            #[cfg(feature = "fault-injection")]
            EquipmentMsg::Stall(duration) => tokio::time::sleep(duration).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<EquipmentMsg>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        st.supervision.handle_event(&myself.get_cell(), event).await
    }
}

/// Publishes pending changes as one delta to every subscriber.
fn publish(st: &mut EquipmentState) {
    if st.pending.is_empty() {
        return;
    }
    let health = health_of(&st.args.spec, &st.states);
    if health != st.health {
        tracing::info!(equipment = %st.args.spec.id, status = ?health.status, reason = health.reason.as_deref().unwrap_or("-"), "health changed");
        st.health = health.clone();
        st.pending.health = Some(health);
    }
    let delta = std::mem::take(&mut st.pending);
    let id = &st.args.spec.id;
    st.args
        .hub
        .for_each(id, |s| s.outbox.push_delta(id, delta.clone()));
}

fn health_of(spec: &EquipmentSpec, states: &[SensorState]) -> Health {
    Health::from_sensors(spec.sensors.iter().map(|s| &s.id).zip(states))
}

fn snapshot_of(st: &EquipmentState) -> EquipmentSnapshot {
    let spec = &st.args.spec;
    EquipmentSnapshot {
        id: spec.id.clone(),
        name: spec.name.clone(),
        site: spec.site.clone(),
        health: st.health.clone(),
        sensors: spec
            .sensors
            .iter()
            .zip(&st.states)
            .zip(&st.findings)
            .map(|((s, state), findings)| SensorView {
                id: s.id.clone(),
                name: s.name.clone(),
                unit: s.unit.clone(),
                range: s.range,
                state: state.clone(),
                findings: findings.clone(),
            })
            .collect(),
        condition: st.cycles.as_ref().and_then(|c| c.latest.clone()),
    }
}
