//! The alert book: every open alert by key, what signals, ticks,
//! acknowledgements and clears do to them, and which notifications fall due.
//!
//! Pure and synchronous, with the clock passed in, so the alerting actor is a
//! thin shell (mailbox, timer, storage, outbox) and every rule of the
//! lifecycle is tested without a runtime. The actor persists what the book
//! reports ([`Output`]) before acting on it; after a restart it rebuilds the
//! book from the stored open alerts and the notifications already written to
//! the outbox ([`AlertBook::restore`]), so nothing is sent twice and nothing
//! due is forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::escalation::EscalationPolicy;
use super::silence::{AlertLabels, Inhibition, Silence};
use super::{Alert, AlertError, AlertKey, Millis, Timing};
use crate::ensemble::Severity;

/// Where an alert comes from, for silences and inhibition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub site: String,
    /// The equipment unit, if any.
    pub equipment: Option<String>,
    /// The sensor, if any.
    pub sensor: Option<String>,
}

/// What a rule says about one source at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The alert it is about.
    pub key: AlertKey,
    /// Where it comes from.
    pub origin: Origin,
    /// Whether the rule's condition holds.
    pub firing: bool,
    /// Its severity when firing.
    pub severity: Severity,
    /// The value that decided it, if one did.
    pub value: Option<f64>,
    /// When, ms since the epoch.
    pub at: Millis,
    /// A restatement of the rule's state (after the alerting actor
    /// restarted), not a new observation: an alert already firing is left
    /// as it is rather than counted again.
    pub restated: bool,
}

/// How a rule's alerts behave: timing and escalation.
#[derive(Debug, Clone, PartialEq)]
pub struct Handling {
    /// Pending, keep-firing and flap detection.
    pub timing: Timing,
    /// Who is told when; `None`: recorded and shown only.
    pub policy: Option<EscalationPolicy>,
}

/// Why an alert is not notified although it is firing unacknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBack {
    /// A silence or maintenance window covers it (index into the silences).
    Silenced(usize),
    /// An alert of its equipment unit inhibits it.
    Inhibited,
    /// It changed state more than `flap_changes` times within the flap window.
    Flapping,
}

impl HeldBack {
    /// Its name in APIs and storage: `silenced`, `inhibited`, `flapping`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldBack::Silenced(_) => "silenced",
            HeldBack::Inhibited => "inhibited",
            HeldBack::Flapping => "flapping",
        }
    }
}

/// What the book tells its owner to persist or do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An alert changed: persist it (state, counters, the new history
    /// entries) and push it to subscribers.
    Changed(AlertKey),
    /// Notify these channels (write the outbox row first).
    Notify {
        key: AlertKey,
        /// The escalation step.
        step: usize,
        /// 0, or the repeat of the last step.
        repeat: u32,
        /// Channels and recipients.
        channels: Vec<String>,
        /// When it fell due.
        due_at: Millis,
    },
}

struct Tracked {
    alert: Alert,
    origin: Origin,
    handling: Handling,
    /// `(step, repeat)` notified in the current activation.
    sent: BTreeSet<(usize, u32)>,
    /// The activation `sent` belongs to.
    sent_for: Option<Millis>,
    /// Why it was held back when last looked at.
    held: Option<HeldBack>,
    /// When this alert next needs looking at, if ever (its own timers and
    /// its escalation); ticks skip alerts not yet due.
    wake_at: Option<Millis>,
}

/// The equipment unit an alert belongs to, for inhibition and for finding
/// the alerts a unit's alert affects.
type Unit = (String, String);

fn unit_of(origin: &Origin) -> Option<Unit> {
    origin
        .equipment
        .as_ref()
        .map(|e| (origin.site.clone(), e.clone()))
}

/// Every open alert, by key.
pub struct AlertBook {
    open: BTreeMap<AlertKey, Tracked>,
    /// Alerts that closed since the owner last took them.
    closed: Vec<(Alert, Origin)>,
    silences: Vec<Silence>,
    /// When a silence window next opens or closes: every alert is looked at then.
    silences_change: Option<Millis>,
    inhibition: Inhibition,
    /// Open alerts by equipment unit.
    by_unit: HashMap<Unit, BTreeSet<AlertKey>>,
}

impl AlertBook {
    /// An empty book.
    pub fn new(inhibition: Inhibition) -> AlertBook {
        AlertBook {
            open: BTreeMap::new(),
            closed: Vec::new(),
            silences: Vec::new(),
            silences_change: None,
            inhibition,
            by_unit: HashMap::new(),
        }
    }

    /// Replaces the silences in force (config and API); every alert is
    /// looked at on the next tick.
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
        self.silences_change = Some(Millis::MIN);
    }

    fn insert(&mut self, key: AlertKey, tracked: Tracked) {
        if let Some(unit) = unit_of(&tracked.origin) {
            self.by_unit.entry(unit).or_default().insert(key.clone());
        }
        self.open.insert(key, tracked);
    }

    /// The key, and when it is a unit's own alert (which inhibits or
    /// releases its sensors' alerts) the unit's other alerts too.
    fn affected(&self, key: &AlertKey) -> Vec<AlertKey> {
        let mut keys = vec![key.clone()];
        if let Some(t) = self.open.get(key) {
            if t.origin.sensor.is_none() {
                if let Some(siblings) = unit_of(&t.origin).and_then(|u| self.by_unit.get(&u)) {
                    keys.extend(siblings.iter().filter(|k| *k != key).cloned());
                }
            }
        }
        keys
    }

    /// Puts back an open alert read from storage after a restart, with the
    /// escalation steps already notified for its current activation.
    pub fn restore(
        &mut self,
        alert: Alert,
        origin: Origin,
        handling: Handling,
        sent: BTreeSet<(usize, u32)>,
    ) {
        if alert.state.is_open() {
            let sent_for = alert.activated_at;
            self.insert(
                alert.key.clone(),
                Tracked {
                    alert,
                    origin,
                    handling,
                    sent,
                    sent_for,
                    held: None,
                    // Looked at on the next tick.
                    wake_at: Some(Millis::MIN),
                },
            );
        }
    }

    /// The open alert for `key`, if any.
    pub fn get(&self, key: &AlertKey) -> Option<&Alert> {
        self.open.get(key).map(|t| &t.alert)
    }

    /// Why the open alert for `key` is held back, as of the last time the
    /// book looked at it (a silence starting or ending, its unit's alert
    /// changing, flapping): each change of it is reported as `Changed`.
    pub fn held(&self, key: &AlertKey) -> Option<HeldBack> {
        self.open.get(key).and_then(|t| t.held)
    }

    /// Where the open alert for `key` comes from.
    pub fn origin(&self, key: &AlertKey) -> Option<&Origin> {
        self.open.get(key).map(|t| &t.origin)
    }

    /// The alerts that closed (cleared and acknowledged, or cancelled) since
    /// the last call, in their final state, for the owner to store.
    pub fn take_closed(&mut self) -> Vec<(Alert, Origin)> {
        std::mem::take(&mut self.closed)
    }

    /// Every open alert.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.open.values().map(|t| &t.alert)
    }

    /// Applies what a rule says now; `handling` is the rule's.
    pub fn signal(&mut self, signal: Signal, handling: &Handling) -> Vec<Output> {
        let now = signal.at;
        let mut changed = false;
        match self.open.get_mut(&signal.key) {
            // A firing state restated (after a restart or a rule change)
            // is not a new trigger. An open alert keeps its handling until
            // its rule changes (`set_handling`).
            Some(tracked)
                if signal.restated
                    && signal.firing
                    && tracked.alert.state.is_active()
                    && tracked.alert.condition_gone_since.is_none() => {}
            Some(tracked) => {
                let before = tracked.alert.history.len();
                if signal.firing {
                    tracked.alert.trigger(
                        signal.severity,
                        signal.value,
                        now,
                        &tracked.handling.timing,
                    );
                    // A trigger always updates count and value.
                    changed = true;
                } else {
                    tracked.alert.condition_gone(now, &tracked.handling.timing);
                }
                changed |= tracked.alert.history.len() != before;
            }
            None if signal.firing => {
                let alert = Alert::new(
                    signal.key.clone(),
                    signal.severity,
                    signal.value,
                    now,
                    &handling.timing,
                );
                self.insert(
                    signal.key.clone(),
                    Tracked {
                        alert,
                        origin: signal.origin,
                        handling: handling.clone(),
                        sent: BTreeSet::new(),
                        sent_for: None,
                        held: None,
                        wake_at: None,
                    },
                );
                changed = true;
            }
            None => {}
        }
        let mut out = Vec::new();
        if changed {
            out.push(Output::Changed(signal.key.clone()));
        }
        let keys = self.affected(&signal.key);
        out.extend(self.settle(keys, now));
        out
    }

    /// Time has passed: pending alerts fire, keep-firing periods end,
    /// flapping ends, escalation steps fall due.
    pub fn tick(&mut self, now: Millis) -> Vec<Output> {
        let everything = self.silences_change.is_some_and(|t| t <= now);
        if everything {
            self.silences_change = self
                .silences
                .iter()
                .filter_map(|s| s.window.next_change(now))
                .min();
        }
        let due: Vec<AlertKey> = self
            .open
            .iter()
            .filter(|(_, t)| everything || t.wake_at.is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for key in due {
            let Some(tracked) = self.open.get_mut(&key) else {
                continue;
            };
            let before = tracked.alert.history.len();
            tracked.alert.tick(now, &tracked.handling.timing);
            if tracked.alert.history.len() != before {
                out.push(Output::Changed(key.clone()));
                keys.extend(self.affected(&key));
            } else {
                keys.push(key);
            }
        }
        out.extend(self.settle(keys, now));
        out
    }

    /// Someone acknowledges an open alert: its escalation stops.
    pub fn acknowledge(
        &mut self,
        key: &AlertKey,
        by: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<Vec<Output>, BookError> {
        let tracked = self.open.get_mut(key).ok_or(BookError::NotOpen)?;
        tracked.alert.acknowledge(by, comment, now)?;
        let mut out = vec![Output::Changed(key.clone())];
        let keys = self.affected(key);
        out.extend(self.settle(keys, now));
        Ok(out)
    }

    /// Someone clears an open alert by hand.
    pub fn clear(
        &mut self,
        key: &AlertKey,
        by: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<Vec<Output>, BookError> {
        let tracked = self.open.get_mut(key).ok_or(BookError::NotOpen)?;
        tracked.alert.clear(by, comment, now)?;
        let mut out = vec![Output::Changed(key.clone())];
        let keys = self.affected(key);
        out.extend(self.settle(keys, now));
        Ok(out)
    }

    /// Gives an open alert its rule's changed handling (pending,
    /// keep-firing and flap periods, escalation policy). Steps already
    /// notified for the current activation are not sent again (they are
    /// known by their index); those still to come follow the new policy.
    pub fn set_handling(&mut self, key: &AlertKey, handling: Handling, now: Millis) -> Vec<Output> {
        match self.open.get_mut(key) {
            Some(tracked) if tracked.handling != handling => tracked.handling = handling,
            _ => return Vec::new(),
        }
        let keys = self.affected(key);
        self.settle(keys, now)
    }

    /// Why a firing, unacknowledged alert is not notified at `now`, if it is
    /// held back.
    pub fn held_back(&self, key: &AlertKey, now: Millis) -> Option<HeldBack> {
        let tracked = self.open.get(key)?;
        let labels = labels(&tracked.origin, tracked.alert.severity);
        if let Some(i) = self.silences.iter().position(|s| s.silences(&labels, now)) {
            return Some(HeldBack::Silenced(i));
        }
        // Only the unit's own alerts can inhibit: look at those alone.
        let firing = unit_of(&tracked.origin)
            .and_then(|u| self.by_unit.get(&u))
            .into_iter()
            .flatten()
            .filter_map(|k| self.open.get(k))
            .filter(|t| t.origin.sensor.is_none() && t.alert.state.is_active())
            .map(labels_of);
        if self.inhibition.inhibits(&labels, firing) {
            return Some(HeldBack::Inhibited);
        }
        tracked.alert.flapping.then_some(HeldBack::Flapping)
    }

    /// When the book next has something to do without a new signal.
    pub fn next_deadline(&self, _now: Millis) -> Option<Millis> {
        self.open
            .values()
            .filter_map(|t| t.wake_at)
            .chain(self.silences_change)
            .min()
    }

    /// Looks at `keys` (each once): closed alerts leave the book (they stay
    /// in storage); notifications that are due and not held back are
    /// reported and counted as sent; each alert's next wake-up is set.
    fn settle(&mut self, mut keys: Vec<AlertKey>, now: Millis) -> Vec<Output> {
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for key in keys {
            let Some(tracked) = self.open.get(&key) else {
                continue;
            };
            if !tracked.alert.state.is_open() {
                if let Some(t) = self.open.remove(&key) {
                    if let Some(set) = unit_of(&t.origin).and_then(|u| self.by_unit.get_mut(&u)) {
                        set.remove(&key);
                    }
                    self.closed.push((t.alert, t.origin));
                }
                continue;
            }
            let why = self.held_back(&key, now);
            let held = why.is_some();
            let Some(tracked) = self.open.get_mut(&key) else {
                continue;
            };
            if tracked.held.map(HeldBack::as_str) != why.map(HeldBack::as_str) {
                // Shown with the alert: persisted and pushed like a change.
                out.push(Output::Changed(key.clone()));
            }
            tracked.held = why;
            let critical = tracked.alert.severity == Severity::Critical;
            let mut next_step = None;
            if let (true, Some(activated), Some(policy)) = (
                tracked.alert.wants_notification(),
                tracked.alert.activated_at,
                &tracked.handling.policy,
            ) {
                if tracked.sent_for != Some(activated) {
                    // A new activation escalates from the first step again.
                    tracked.sent.clear();
                    tracked.sent_for = Some(activated);
                }
                if !held {
                    for due in policy.due(activated, critical, now, &tracked.sent) {
                        tracked.sent.insert((due.step, due.repeat));
                        out.push(Output::Notify {
                            key: key.clone(),
                            step: due.step,
                            repeat: due.repeat,
                            channels: policy.steps[due.step].channels.clone(),
                            due_at: due.at,
                        });
                    }
                    next_step = policy.next_due(activated, critical, now, &tracked.sent);
                }
            }
            // Held back: the silence's end, the unit's alert changing or the
            // flapping ending looks at it again.
            tracked.wake_at = [
                tracked.alert.next_deadline(&tracked.handling.timing),
                next_step,
            ]
            .into_iter()
            .flatten()
            .min();
        }
        out
    }
}

fn labels(origin: &Origin, severity: Severity) -> AlertLabels<'_> {
    AlertLabels {
        site: &origin.site,
        equipment: origin.equipment.as_deref(),
        sensor: origin.sensor.as_deref(),
        severity,
    }
}

fn labels_of(tracked: &Tracked) -> AlertLabels<'_> {
    labels(&tracked.origin, tracked.alert.severity)
}

/// Why an operation on the book was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// No open alert has that key.
    #[error("no open alert with that key")]
    NotOpen,
    /// The alert refused.
    #[error(transparent)]
    Alert(#[from] AlertError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::escalation::EscalationStep;
    use crate::alert::silence::{Matchers, Window, WindowSpec};
    use crate::alert::{AlertState, EventKind};

    const MIN: Millis = 60_000;

    fn origin(sensor: Option<&str>) -> Origin {
        Origin {
            site: "demo".into(),
            equipment: Some("rig-1".into()),
            sensor: sensor.map(str::to_owned),
        }
    }

    fn key(source: &str, kind: &str) -> AlertKey {
        AlertKey {
            source: source.into(),
            kind: kind.into(),
        }
    }

    fn handling() -> Handling {
        Handling {
            timing: Timing {
                for_ms: MIN,
                keep_firing_ms: 2 * MIN,
                ..Timing::default()
            },
            policy: Some(EscalationPolicy {
                steps: vec![
                    EscalationStep {
                        after_ms: 0,
                        channels: vec!["wallboard".into(), "webhook:ops".into()],
                    },
                    EscalationStep {
                        after_ms: 5 * MIN,
                        channels: vec!["email:oncall@plant.example".into()],
                    },
                    EscalationStep {
                        after_ms: 15 * MIN,
                        channels: vec!["email:supervisor@plant.example".into()],
                    },
                ],
                repeat_critical_ms: Some(30 * MIN),
            }),
        }
    }

    fn hot(at: Millis, firing: bool, severity: Severity) -> Signal {
        Signal {
            key: key("plant/rig-1/TS1", "threshold:oil-hot"),
            origin: origin(Some("TS1")),
            firing,
            severity,
            value: Some(61.0),
            at,
            restated: false,
        }
    }

    fn notified(out: &[Output]) -> Vec<(usize, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Notify { step, repeat, .. } => Some((*step, *repeat)),
                Output::Changed(_) => None,
            })
            .collect()
    }

    /// Ticks every `step` ms from `from` to `to`, collecting notifications.
    fn run(
        book: &mut AlertBook,
        from: Millis,
        to: Millis,
        step: Millis,
    ) -> Vec<(Millis, usize, u32)> {
        let mut log = Vec::new();
        let mut now = from;
        while now <= to {
            for o in book.tick(now) {
                if let Output::Notify { step, repeat, .. } = o {
                    log.push((now, step, repeat));
                }
            }
            now += step;
        }
        log
    }

    #[test]
    fn the_whole_chain_escalates_by_time_and_acknowledge_stops_it() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        let out = book.signal(hot(0, true, Severity::Major), &h);
        assert_eq!(
            out,
            vec![Output::Changed(hot(0, true, Severity::Major).key)]
        );
        // Pending for a minute, then the wallboard and webhook at once, the
        // on-call after 5 min, the supervisor after 15 min; nothing repeats
        // for a MAJOR alert.
        let log = run(&mut book, 10_000, 60 * MIN, 10_000);
        assert_eq!(log, [(MIN, 0, 0), (6 * MIN, 1, 0), (16 * MIN, 2, 0)]);
        // A second chain, acknowledged after 3 minutes: no e-mail goes out.
        let mut book = AlertBook::new(Inhibition::default());
        book.signal(hot(0, true, Severity::Major), &h);
        assert_eq!(run(&mut book, 10_000, 4 * MIN, 10_000), [(MIN, 0, 0)]);
        let k = hot(0, true, Severity::Major).key;
        book.acknowledge(&k, "ana", Some("on it"), 4 * MIN).unwrap();
        assert!(run(&mut book, 4 * MIN, 60 * MIN, 10_000).is_empty());
        assert_eq!(book.get(&k).unwrap().state, AlertState::ActiveAck);
        assert_eq!(book.next_deadline(4 * MIN), None);
    }

    #[test]
    fn one_alert_per_key_however_often_it_triggers() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        for i in 0..100 {
            book.signal(hot(i * 1_000, true, Severity::Minor), &h);
        }
        book.signal(hot(100_000, true, Severity::Critical), &h);
        assert_eq!(book.alerts().count(), 1);
        let a = book.alerts().next().unwrap();
        assert_eq!(a.count, 101);
        assert_eq!(a.severity, Severity::Critical);
        assert!(a.history.iter().any(|e| e.kind == EventKind::Escalated));
    }

    #[test]
    fn a_silenced_alert_is_recorded_but_not_notified_until_the_window_ends() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        book.set_silences(vec![Silence {
            matchers: Matchers {
                equipment: Some("rig-1".into()),
                ..Matchers::default()
            },
            window: Window::try_from(&WindowSpec::Fixed {
                starts: 0,
                ends: 10 * MIN,
            })
            .unwrap(),
        }]);
        book.signal(hot(0, true, Severity::Major), &h);
        let k = hot(0, true, Severity::Major).key;
        assert!(run(&mut book, 10_000, 10 * MIN - 1, 10_000).is_empty());
        assert_eq!(book.get(&k).unwrap().state, AlertState::ActiveUnack);
        assert_eq!(book.held_back(&k, 5 * MIN), Some(HeldBack::Silenced(0)));
        // The window ends: what is due by then goes out once.
        assert_eq!(book.next_deadline(9 * MIN), Some(10 * MIN));
        assert_eq!(notified(&book.tick(10 * MIN)), [(0, 0), (1, 0)]);
        assert!(notified(&book.tick(10 * MIN + 1)).is_empty());
    }

    #[test]
    fn a_critical_equipment_alert_inhibits_its_sensors_warnings() {
        let h = Handling {
            timing: Timing::default(),
            ..handling()
        };
        let mut book = AlertBook::new(Inhibition::default());
        let unit = Signal {
            key: key("plant/rig-1", "model:accumulator"),
            origin: origin(None),
            firing: true,
            severity: Severity::Critical,
            value: None,
            at: 0,
            restated: false,
        };
        assert_eq!(notified(&book.signal(unit, &h)), [(0, 0)]);
        let out = book.signal(hot(1_000, true, Severity::Warning), &h);
        assert!(notified(&out).is_empty());
        let k = hot(0, true, Severity::Warning).key;
        assert_eq!(book.held_back(&k, 1_000), Some(HeldBack::Inhibited));
        assert!(book.get(&k).is_some(), "still recorded");
        // The unit's alert cleared: the sensor's warning goes out at once.
        let unit_key = key("plant/rig-1", "model:accumulator");
        let out = book.clear(&unit_key, "ana", None, 2_000).unwrap();
        assert_eq!(notified(&out), [(0, 0)]);
        assert_eq!(book.held_back(&k, 2_000), None);
    }

    #[test]
    fn a_flapping_alert_is_held_until_it_is_stable() {
        let h = Handling {
            timing: Timing {
                for_ms: 0,
                keep_firing_ms: 0,
                flap_changes: 3,
                flap_window_ms: 10 * MIN,
            },
            policy: handling().policy,
        };
        let mut book = AlertBook::new(Inhibition::default());
        let mut sent = notified(&book.signal(hot(0, true, Severity::Warning), &h));
        let mut now = 0;
        for _ in 0..3 {
            now += 10_000;
            sent.extend(notified(
                &book.signal(hot(now, false, Severity::Warning), &h),
            ));
            now += 10_000;
            sent.extend(notified(
                &book.signal(hot(now, true, Severity::Warning), &h),
            ));
        }
        // Notified on the first activation and the next; then it flaps.
        let k = hot(0, true, Severity::Warning).key;
        assert!(book.get(&k).unwrap().flapping);
        assert_eq!(book.held_back(&k, now), Some(HeldBack::Flapping));
        assert_eq!(sent, [(0, 0), (0, 0)]);
        // Quiet for the window: notified once, and as it has been firing
        // unacknowledged for 10 min, the on-call step is due too.
        let log = run(&mut book, now, now + 10 * MIN, 10_000);
        assert_eq!(log, [(now + 10 * MIN, 0, 0), (now + 10 * MIN, 1, 0)]);
    }

    #[test]
    fn a_restart_resumes_the_chain_without_repeating_or_forgetting() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        book.signal(hot(0, true, Severity::Critical), &h);
        let before = run(&mut book, 10_000, 7 * MIN, 10_000);
        assert_eq!(before, [(MIN, 0, 0), (6 * MIN, 1, 0)]);
        // The process stops at 7 min; what storage holds comes back at 40 min.
        let stored = book.alerts().next().unwrap().clone();
        let sent: BTreeSet<(usize, u32)> = before.iter().map(|(_, s, r)| (*s, *r)).collect();
        let mut book = AlertBook::new(Inhibition::default());
        book.restore(stored, origin(Some("TS1")), h.clone(), sent);
        // Step 2 (due at 16 min) is sent at once; the repeat of a CRITICAL
        // alert is due at 46 min (30 min after the last step).
        assert_eq!(notified(&book.tick(40 * MIN)), [(2, 0)]);
        assert!(notified(&book.tick(40 * MIN + 1)).is_empty());
        assert_eq!(book.next_deadline(40 * MIN + 1), Some(46 * MIN));
        assert_eq!(notified(&book.tick(46 * MIN)), [(2, 1)]);
    }

    #[test]
    fn cleared_alerts_leave_the_book_and_acknowledge_needs_an_open_alert() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        book.signal(hot(0, true, Severity::Warning), &h);
        let k = hot(0, true, Severity::Warning).key;
        book.tick(MIN);
        book.signal(hot(2 * MIN, false, Severity::Warning), &h);
        book.tick(4 * MIN);
        assert_eq!(book.get(&k).unwrap().state, AlertState::ClearedUnack);
        book.acknowledge(&k, "ana", None, 5 * MIN).unwrap();
        assert!(book.get(&k).is_none());
        let closed = book.take_closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0.state, AlertState::ClearedAck);
        assert!(book.take_closed().is_empty());
        assert_eq!(
            book.acknowledge(&k, "ana", None, 6 * MIN),
            Err(BookError::NotOpen)
        );
        // A new trigger opens a new alert.
        book.signal(hot(7 * MIN, true, Severity::Warning), &h);
        assert_eq!(book.get(&k).unwrap().first_seen, 7 * MIN);
    }

    #[test]
    fn an_edited_policy_applies_to_the_open_alert_without_resending() {
        let h = handling();
        let mut book = AlertBook::new(Inhibition::default());
        book.signal(hot(0, true, Severity::Major), &h);
        let k = hot(0, true, Severity::Major).key;
        // Fires at 1 min: step 0 goes out.
        assert_eq!(run(&mut book, 10_000, 2 * MIN, 10_000), [(MIN, 0, 0)]);
        // The on-call step moves from 5 min to 3 min and a new last step
        // comes at 10 min; step 0 is not sent again.
        let mut edited = h.clone();
        let policy = edited.policy.as_mut().unwrap();
        policy.steps[1].after_ms = 2 * MIN;
        policy.steps[2].after_ms = 9 * MIN;
        assert!(notified(&book.set_handling(&k, edited.clone(), 2 * MIN)).is_empty());
        assert!(book.set_handling(&k, edited, 2 * MIN).is_empty());
        assert_eq!(
            run(&mut book, 2 * MIN + 10_000, 20 * MIN, 10_000),
            [(3 * MIN, 1, 0), (10 * MIN, 2, 0)]
        );
        // A shorter keep-firing period applies to the condition ending now.
        let mut quick = handling();
        quick.timing.keep_firing_ms = 10_000;
        book.set_handling(&k, quick, 20 * MIN);
        book.signal(hot(21 * MIN, false, Severity::Major), &h);
        book.tick(21 * MIN + 20_000);
        assert_eq!(book.get(&k).unwrap().state, AlertState::ClearedUnack);
    }
}
