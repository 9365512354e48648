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

/// The evaluators of one unit's rules.
pub struct UnitRules {
    link: AlertLink,
    site: String,
    equipment: String,
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
            link,
            site: spec.site.clone(),
            equipment: spec.id.to_string(),
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
        let generation = self.link.alerting.generation();
        if generation == self.synced || self.link.alerting.get().is_none() {
            return;
        }
        // Right after this unit started, what fires has just been sent;
        // what does not fire clears alerts restored from before a restart
        // of the process whose condition ended meanwhile.
        let first = self.synced == 0;
        self.synced = generation;
        let mut signals = Vec::new();
        for (sensor, evals) in &self.sensors {
            for w in evals {
                let firing = match &w.eval {
                    SampleRule::Threshold(t) => t.firing(),
                    SampleRule::Quality(_, firing) => *firing,
                };
                let mut signal = self.sensor_signal(sensor, &w.kind, firing, now);
                signal.severity = w.severity;
                signal.restated = true;
                signals.push((w.rule.clone(), signal));
            }
        }
        for (w, firing) in self.cycles.iter().zip(&self.cycle_firing) {
            signals.push((
                w.rule.clone(),
                Signal {
                    key: AlertKey {
                        source: format!("plant/{}", self.equipment),
                        kind: w.kind.clone(),
                    },
                    origin: Origin {
                        site: self.site.clone(),
                        equipment: Some(self.equipment.clone()),
                        sensor: None,
                    },
                    firing: *firing,
                    severity: w.severity,
                    value: None,
                    at: now,
                    restated: true,
                },
            ));
        }
        for (rule, signal) in signals {
            if !(first && signal.firing) {
                self.send(&rule, signal);
            }
        }
    }

    fn send(&self, rule: &Arc<str>, signal: Signal) {
        // The alerting actor restarting drops a signal; the next change (or,
        // for cycle rules, the next cycle) is sent again.
        let _ = self.link.alerting.cast(AlertingMsg::Signal {
            rule: rule.clone(),
            signal,
        });
    }

    fn sensor_signal(&self, sensor: &str, kind: &str, firing: bool, at: Millis) -> Signal {
        Signal {
            key: AlertKey {
                source: format!("plant/{}/{sensor}", self.equipment),
                kind: kind.to_owned(),
            },
            origin: Origin {
                site: self.site.clone(),
                equipment: Some(self.equipment.clone()),
                sensor: Some(sensor.to_owned()),
            },
            firing,
            severity: hydrowatch_models::ensemble::Severity::Info,
            value: None,
            at,
            restated: false,
        }
    }

    /// A fresh reading of sensor `index`, as the unit assessed it.
    pub fn on_reading(&mut self, index: usize, state: &SensorState) {
        let Some((sensor, evals)) = self.sensors.get_mut(index) else {
            return;
        };
        let good = state.quality != Quality::Bad && state.status == SensorStatus::Ok;
        let value = state.value.filter(|_| state.quality != Quality::Bad);
        let mut changes = Vec::new();
        for w in evals.iter_mut() {
            let (before, after) = match &mut w.eval {
                SampleRule::Threshold(t) => {
                    let before = t.firing();
                    (before, t.observe(value))
                }
                SampleRule::Quality(q, firing) => {
                    let before = *firing;
                    *firing = q.observe(state.ts_ms, good);
                    (before, *firing)
                }
            };
            if before != after {
                changes.push((w.rule.clone(), w.kind.clone(), w.severity, after));
            }
        }
        let sensor = sensor.clone();
        for (rule, kind, severity, firing) in changes {
            let mut signal = self.sensor_signal(&sensor, &kind, firing, state.ts_ms);
            signal.severity = severity;
            signal.value = value;
            self.send(&rule, signal);
        }
    }

    /// The staleness tick: sensors silent past their limit count as offline
    /// since their last reading.
    pub fn on_tick(&mut self, now: Millis, states: &[SensorState]) {
        let mut changes = Vec::new();
        for (i, (sensor, evals)) in self.sensors.iter_mut().enumerate() {
            let Some(state) = states.get(i) else { continue };
            let silent = matches!(state.status, SensorStatus::Stale | SensorStatus::NoData);
            for w in evals.iter_mut() {
                if let SampleRule::Quality(q, firing) = &mut w.eval {
                    if silent {
                        q.offline_since(state.ts_ms);
                    }
                    let now_firing = q.check(now);
                    if now_firing != *firing {
                        *firing = now_firing;
                        changes.push((
                            sensor.clone(),
                            w.rule.clone(),
                            w.kind.clone(),
                            w.severity,
                            now_firing,
                        ));
                    }
                }
            }
        }
        for (sensor, rule, kind, severity, firing) in changes {
            let mut signal = self.sensor_signal(&sensor, &kind, firing, now);
            signal.severity = severity;
            self.send(&rule, signal);
        }
    }

    /// The verdict on a completed cycle: a firing rule is signalled every
    /// cycle (a re-trigger, counted), a rule that stops firing once.
    pub fn on_verdict(&mut self, verdict: &Verdict, at: Millis) {
        let mut signals = Vec::new();
        for (i, w) in self.cycles.iter_mut().enumerate() {
            let finding = w.eval.observe(verdict);
            if finding.firing || self.cycle_firing[i] {
                signals.push((
                    w.rule.clone(),
                    Signal {
                        key: AlertKey {
                            source: format!("plant/{}", self.equipment),
                            kind: w.kind.clone(),
                        },
                        origin: Origin {
                            site: self.site.clone(),
                            equipment: Some(self.equipment.clone()),
                            sensor: None,
                        },
                        firing: finding.firing,
                        // The component's level may be graver than the rule's floor.
                        severity: finding.severity.map_or(w.severity, |s| s.max(w.severity)),
                        value: finding.value,
                        at,
                        restated: false,
                    },
                ));
            }
            self.cycle_firing[i] = finding.firing;
        }
        for (rule, signal) in signals {
            self.send(&rule, signal);
        }
    }
}
