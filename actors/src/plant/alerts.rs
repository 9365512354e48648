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

use crate::alerting::{AlertingConfig, AlertingMsg, ConfigFeed};
use crate::Address;

/// Where an equipment unit's rules send their signals.
#[derive(Clone)]
pub struct AlertLink {
    /// The alerting actor.
    pub alerting: Address<AlertingMsg>,
    /// The rules as they stand; a change (through the API) is picked up on
    /// the unit's next staleness tick.
    pub config: ConfigFeed,
}

enum SampleRule {
    Threshold(ThresholdEvaluator),
    Quality(QualityEvaluator, bool),
}

impl SampleRule {
    fn firing(&self) -> bool {
        match self {
            SampleRule::Threshold(t) => t.firing(),
            SampleRule::Quality(_, firing) => *firing,
        }
    }

    /// Feeds a reading; returns whether it fired before and after.
    fn observe(&mut self, at: Millis, good: bool, value: Option<f64>) -> (bool, bool) {
        match self {
            SampleRule::Threshold(t) => (t.firing(), t.observe(value)),
            SampleRule::Quality(q, firing) => {
                let before = *firing;
                *firing = q.observe(at, good);
                (before, *firing)
            }
        }
    }
}

/// Whether a reading counts as good, and its value when usable.
fn reading(state: &SensorState) -> (bool, Option<f64>) {
    let good = state.quality != Quality::Bad && state.status == SensorStatus::Ok;
    (good, state.value.filter(|_| state.quality != Quality::Bad))
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
    /// The rules they were built from.
    config: Arc<AlertingConfig>,
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

type SensorRules = Vec<(String, Vec<Watched<SampleRule>>)>;

/// Fresh evaluators of the rules of `config` that cover `spec`.
fn evaluators(
    config: &AlertingConfig,
    spec: &EquipmentSpec,
) -> (SensorRules, Vec<Watched<CycleEvaluator>>) {
    let rules: Vec<&RuleSpec> = config
        .rules
        .values()
        .filter(|r| r.covers_equipment(spec.id.as_str()))
        .collect();
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
    let cycles = if spec.cycle.is_some() {
        rules
            .iter()
            .filter_map(|r| CycleEvaluator::new(&r.when).map(|e| watched(r, e)))
            .collect()
    } else {
        Vec::new()
    };
    (sensors, cycles)
}

impl UnitRules {
    /// The rules of `link` that cover `spec` (none yet is fine: rules added
    /// later through the API are picked up).
    pub fn new(spec: &EquipmentSpec, mut link: AlertLink) -> UnitRules {
        let config = link.config.borrow_and_update().clone();
        let (sensors, cycles) = evaluators(&config, spec);
        UnitRules {
            cycle_firing: vec![false; cycles.len()],
            unit: Unit {
                link,
                site: spec.site.clone(),
                equipment: spec.id.to_string(),
            },
            config,
            sensors,
            cycles,
            synced: 0,
        }
    }

    /// When the rules changed (through the API), rebuilds the evaluators.
    /// A rule whose condition is unchanged keeps its evaluator's state (a
    /// new severity or policy changes nothing here). A new or changed one
    /// starts from the sensor's last reading and tells the alerting actor
    /// where it stands, so an alert whose condition no longer holds clears;
    /// one that no longer covers a sensor ends its alert there. Alerts of
    /// deleted rules are cleared by the alerting actor itself.
    pub fn refresh_if_changed(
        &mut self,
        spec: &EquipmentSpec,
        states: &[SensorState],
        now: Millis,
    ) {
        if !self.unit.link.config.has_changed().unwrap_or(false) {
            return;
        }
        let new = self.unit.link.config.borrow_and_update().clone();
        let old = std::mem::replace(&mut self.config, new.clone());
        let same = |id: &str| {
            matches!((old.rules.get(id), new.rules.get(id)),
                (Some(a), Some(b)) if a.when == b.when)
        };
        let (mut sensors, mut cycles) = evaluators(&new, spec);
        let old_sensors = std::mem::take(&mut self.sensors);
        for (((sensor, fresh), (_, before)), state) in
            sensors.iter_mut().zip(old_sensors).zip(states)
        {
            let mut before: Vec<Option<Watched<SampleRule>>> =
                before.into_iter().map(Some).collect();
            for w in fresh.iter_mut() {
                let kept = same(&w.rule)
                    .then(|| {
                        before
                            .iter_mut()
                            .find(|o| o.as_ref().is_some_and(|o| o.rule == w.rule))
                            .and_then(Option::take)
                    })
                    .flatten();
                match kept {
                    Some(o) => w.eval = o.eval,
                    None => {
                        if state.status != SensorStatus::NoData {
                            let (good, value) = reading(state);
                            w.eval.observe(state.ts_ms, good, value);
                        }
                        let mut signal = self.unit.signal(Some(sensor), w, w.eval.firing(), now);
                        signal.restated = true;
                        self.unit.send(&w.rule, signal);
                    }
                }
            }
            let dropped = before.into_iter().flatten().map(|w| {
                let firing = w.eval.firing();
                (w, firing)
            });
            self.end_dropped(Some(sensor), dropped, fresh, &new, now);
        }
        self.sensors = sensors;
        // A cycle rule's evaluator counts cycles in a row: a changed one
        // starts counting again, and the next verdict settles its alert.
        let mut before: Vec<Option<(Watched<CycleEvaluator>, bool)>> =
            std::mem::take(&mut self.cycles)
                .into_iter()
                .zip(std::mem::take(&mut self.cycle_firing))
                .map(Some)
                .collect();
        let mut cycle_firing = Vec::with_capacity(cycles.len());
        for w in cycles.iter_mut() {
            let old = before
                .iter_mut()
                .find(|o| {
                    o.as_ref()
                        .is_some_and(|(o, _)| o.rule == w.rule && o.kind == w.kind)
                })
                .and_then(Option::take);
            cycle_firing.push(old.as_ref().is_some_and(|(_, firing)| *firing));
            if let Some((o, _)) = old.filter(|_| same(&w.rule)) {
                w.eval = o.eval;
            }
        }
        self.end_dropped(None, before.into_iter().flatten(), &cycles, &new, now);
        self.cycles = cycles;
        self.cycle_firing = cycle_firing;
    }

    /// Ends the alerts of evaluators that were dropped while their rule
    /// still exists (it no longer covers this source, or its alert type
    /// changed): nothing else would ever tell the alerting actor.
    fn end_dropped<E>(
        &self,
        sensor: Option<&str>,
        dropped: impl Iterator<Item = (Watched<E>, bool)>,
        fresh: &[Watched<E>],
        config: &AlertingConfig,
        now: Millis,
    ) {
        for (o, was_firing) in dropped {
            let replaced = fresh.iter().any(|w| w.rule == o.rule && w.kind == o.kind);
            if was_firing && !replaced && config.rules.contains_key(&*o.rule) {
                let mut signal = self.unit.signal(sensor, &o, false, now);
                signal.restated = true;
                self.unit.send(&o.rule, signal);
            }
        }
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
                self.unit
                    .restate(first, Some(sensor), w, w.eval.firing(), now);
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
        let (good, value) = reading(state);
        for w in evals.iter_mut() {
            let (before, after) = w.eval.observe(state.ts_ms, good, value);
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
