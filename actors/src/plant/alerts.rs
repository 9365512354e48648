//! The alert rules of one equipment unit, evaluated inside its actor: the
//! unit sees every reading of its sensors, ticks for staleness and scores its
//! cycles, so threshold, quality, model and novelty rules all run here and
//! only their changes travel to the alerting actor as signals.

use std::sync::Arc;

use hydrowatch_models::alert::engine::{Origin, Signal};
use hydrowatch_models::alert::rules::{
    Condition, CycleEvaluator, QualityEvaluator, RuleSpec, ThresholdEvaluator,
};
use hydrowatch_models::alert::{AlertKey, Millis};
use hydrowatch_models::ensemble::Verdict;
use hydrowatch_models::{EquipmentSpec, Quality, SensorState, SensorStatus};

use crate::alerting::{AlertingConfig, AlertingMsg};
use crate::Address;

/// Where an equipment unit's rules send their signals.
#[derive(Clone)]
pub struct AlertLink {
    /// The alerting actor.
    pub alerting: Address<AlertingMsg>,
    /// The rules.
    pub config: Arc<AlertingConfig>,
}

enum SampleRule {
    Threshold(ThresholdEvaluator),
    Quality(QualityEvaluator, bool),
}

struct Watched<E> {
    rule: Arc<str>,
    kind: String,
    severity: hydrowatch_models::ensemble::Severity,
    eval: E,
}

/// Who a unit's signals come from and where they go.
struct Unit {
    link: AlertLink,
    site: String,
    equipment: String,
}

impl Unit {
    /// A signal about `sensor` (or, for `None`, the unit itself).
    fn signal<E>(&self, sensor: Option<&str>, w: &Watched<E>, firing: bool, at: Millis) -> Signal {
        let source = match sensor {
            Some(s) => format!("plant/{}/{s}", self.equipment),
            None => format!("plant/{}", self.equipment),
        };
        Signal {
            key: AlertKey {
                source,
                kind: w.kind.clone(),
            },
            origin: Origin {
                site: self.site.clone(),
                equipment: Some(self.equipment.clone()),
                sensor: sensor.map(str::to_owned),
            },
            firing,
            severity: w.severity,
            value: None,
            at,
            restated: false,
        }
    }

    /// Restates a rule's state to a new alerting instance (right after the
    /// unit started, only what does not fire: what fires was just sent).
    fn restate<E>(
        &self,
        first: bool,
        sensor: Option<&str>,
        w: &Watched<E>,
        firing: bool,
        at: Millis,
    ) {
        if !(first && firing) {
            let mut signal = self.signal(sensor, w, firing, at);
            signal.restated = true;
            self.send(&w.rule, signal);
        }
    }

    fn send(&self, rule: &Arc<str>, signal: Signal) {
        // Lost while the alerting actor restarts: `resync_if_restarted`
        // tells the new instance every rule's state.
        let _ = self.link.alerting.cast(AlertingMsg::Signal {
            rule: rule.clone(),
            signal,
        });
    }
}

/// The evaluators of one unit's rules.
pub struct UnitRules {
    unit: Unit,
    /// Per sensor (by index): its name and the rules watching it.
    sensors: Vec<(String, Vec<Watched<SampleRule>>)>,
    cycles: Vec<Watched<CycleEvaluator>>,
    /// Whether each cycle rule fired on the last cycle.
    cycle_firing: Vec<bool>,
    /// The alerting actor's instance last told every rule's state.
    synced: u64,
}

fn watched<E>(rule: &RuleSpec, eval: E) -> Watched<E> {
    Watched {
        rule: Arc::from(rule.id.as_str()),
        kind: rule.alert_kind(),
        severity: rule.severity,
        eval,
    }
}

impl UnitRules {
    /// The rules of `link` that cover `spec`; `None` when none do.
    pub fn new(spec: &EquipmentSpec, link: AlertLink) -> Option<UnitRules> {
        let rules: Vec<&RuleSpec> = link
            .config
            .rules
            .values()
            .filter(|r| r.covers_equipment(spec.id.as_str()))
            .collect();
        if rules.is_empty() {
            return None;
        }
        let sensors = spec
            .sensors
            .iter()
            .map(|s| {
                let id = s.id.as_str();
                let evals = rules
                    .iter()
                    .filter_map(|r| match &r.when {
                        Condition::Threshold(t) if t.covers_sensor(id) => Some(watched(
                            r,
                            SampleRule::Threshold(ThresholdEvaluator::new(t.clone())),
                        )),
                        Condition::Quality(q) if q.covers_sensor(id) => Some(watched(
                            r,
                            SampleRule::Quality(QualityEvaluator::new(q), false),
                        )),
                        _ => None,
                    })
                    .collect();
                (id.to_owned(), evals)
            })
            .collect();
        let cycles: Vec<Watched<CycleEvaluator>> = if spec.cycle.is_some() {
            rules
                .iter()
                .filter_map(|r| CycleEvaluator::new(&r.when).map(|e| watched(r, e)))
                .collect()
        } else {
            Vec::new()
        };
        Some(UnitRules {
            cycle_firing: vec![false; cycles.len()],
            unit: Unit {
                link,
                site: spec.site.clone(),
                equipment: spec.id.to_string(),
            },
            sensors,
            cycles,
            synced: 0,
        })
    }

    /// When the alerting actor has (re)started since this unit last told it
    /// every rule's state, tells it again: signals sent while it was down
    /// are lost, and an alert whose condition ended meanwhile would stay
    /// open until the next change. Called on the unit's staleness tick.
    pub fn resync_if_restarted(&mut self, now: Millis) {
        let alerting = &self.unit.link.alerting;
        let generation = alerting.generation();
        if generation == self.synced || alerting.get().is_none() {
            return;
        }
        // Right after this unit started, what fires has just been sent;
        // what does not fire clears alerts restored from before a restart
        // of the process whose condition ended meanwhile.
        let first = self.synced == 0;
        self.synced = generation;
        for (sensor, evals) in &self.sensors {
            for w in evals {
                let firing = match &w.eval {
                    SampleRule::Threshold(t) => t.firing(),
                    SampleRule::Quality(_, firing) => *firing,
                };
                self.unit.restate(first, Some(sensor), w, firing, now);
            }
        }
        for (w, firing) in self.cycles.iter().zip(&self.cycle_firing) {
            self.unit.restate(first, None, w, *firing, now);
        }
    }

    /// A fresh reading of sensor `index`, as the unit assessed it; signals
    /// only the rules whose state it changed.
    pub fn on_reading(&mut self, index: usize, state: &SensorState) {
        let Some((sensor, evals)) = self.sensors.get_mut(index) else {
            return;
        };
        let good = state.quality != Quality::Bad && state.status == SensorStatus::Ok;
        let value = state.value.filter(|_| state.quality != Quality::Bad);
        for w in evals.iter_mut() {
            let (before, after) = match &mut w.eval {
                SampleRule::Threshold(t) => (t.firing(), t.observe(value)),
                SampleRule::Quality(q, firing) => {
                    let before = *firing;
                    *firing = q.observe(state.ts_ms, good);
                    (before, *firing)
                }
            };
            if before != after {
                let mut signal = self.unit.signal(Some(sensor), w, after, state.ts_ms);
                signal.value = value;
                self.unit.send(&w.rule, signal);
            }
        }
    }

    /// The staleness tick: sensors silent past their limit count as offline
    /// since their last reading.
    pub fn on_tick(&mut self, now: Millis, states: &[SensorState]) {
        for ((sensor, evals), state) in self.sensors.iter_mut().zip(states) {
            let silent = matches!(state.status, SensorStatus::Stale | SensorStatus::NoData);
            for w in evals.iter_mut() {
                let SampleRule::Quality(q, firing) = &mut w.eval else {
                    continue;
                };
                if silent {
                    q.offline_since(state.ts_ms);
                }
                let now_firing = q.check(now);
                if now_firing != *firing {
                    *firing = now_firing;
                    let signal = self.unit.signal(Some(sensor), w, now_firing, now);
                    self.unit.send(&w.rule, signal);
                }
            }
        }
    }

    /// The verdict on a completed cycle: a firing rule is signalled every
    /// cycle (a re-trigger, counted), a rule that stops firing once.
    pub fn on_verdict(&mut self, verdict: &Verdict, at: Millis) {
        for (w, was_firing) in self.cycles.iter_mut().zip(self.cycle_firing.iter_mut()) {
            let finding = w.eval.observe(verdict);
            if finding.firing || *was_firing {
                let mut signal = self.unit.signal(None, w, finding.firing, at);
                // The component's level may be graver than the rule's floor.
                signal.severity = finding.severity.map_or(w.severity, |s| s.max(w.severity));
                signal.value = finding.value;
                self.unit.send(&w.rule, signal);
            }
            *was_firing = finding.firing;
        }
    }
}
