//! Alerts: the lifecycle of one alert and the escalation schedule of a policy,
//! as pure state machines over a clock the caller passes in (milliseconds
//! since the epoch). The alerting actor owns the timers and the storage; this
//! module decides what a trigger, a tick, an acknowledgement or a clear does.
//!
//! Lifecycle (Grafana's pending and keep-firing periods, ThingsBoard's
//! acknowledged/cleared states):
//!
//! ```text
//! trigger ─▶ Pending ──for-duration over──▶ ActiveUnack ──ack──▶ ActiveAck
//!              │ condition gone                 │ condition gone for keep-firing (or manual clear)
//!              ▼                                ▼                    ▼
//!           Cancelled                      ClearedUnack ──ack──▶ ClearedAck
//! ```
//!
//! One open alert per [`AlertKey`] (source and type): a trigger while open
//! updates it — count, last value, peak severity — and a higher severity
//! escalates it in place. A cleared alert that is not yet acknowledged is
//! still open; a trigger re-activates it. Every transition is an
//! [`AlertEvent`] in the alert's history. An alert that changes between
//! active and cleared too often is marked flapping and its notifications are
//! held until it has been stable for the flap window.

pub mod engine;
pub mod escalation;
pub mod rules;
pub mod silence;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::ensemble::Severity;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// What an alert is about: at most one open alert exists per key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// The actor path it comes from, e.g. `plant/rig-1/TS1` or `plant/rig-1`.
    pub source: String,
    /// The rule that raised it, e.g. `threshold:oil-hot`.
    pub kind: String,
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    /// The condition holds, its for-duration is not over yet: not notified.
    Pending,
    /// Firing, nobody has acknowledged it.
    ActiveUnack,
    /// Firing, acknowledged.
    ActiveAck,
    /// The condition is gone (or it was cleared by hand), not acknowledged.
    ClearedUnack,
    /// Over: cleared and acknowledged.
    ClearedAck,
    /// Over: the condition went away before its for-duration was over.
    Cancelled,
}

impl AlertState {
    /// Every state, in lifecycle order.
    pub const ALL: [AlertState; 6] = [
        AlertState::Pending,
        AlertState::ActiveUnack,
        AlertState::ActiveAck,
        AlertState::ClearedUnack,
        AlertState::ClearedAck,
        AlertState::Cancelled,
    ];

    /// The name used in APIs and storage (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "PENDING",
            AlertState::ActiveUnack => "ACTIVE_UNACK",
            AlertState::ActiveAck => "ACTIVE_ACK",
            AlertState::ClearedUnack => "CLEARED_UNACK",
            AlertState::ClearedAck => "CLEARED_ACK",
            AlertState::Cancelled => "CANCELLED",
        }
    }

    /// Parses a name, in any case.
    pub fn parse(name: &str) -> Option<AlertState> {
        AlertState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Still open: a trigger updates this alert rather than raising another.
    pub fn is_open(self) -> bool {
        !matches!(self, AlertState::ClearedAck | AlertState::Cancelled)
    }

    /// Firing (notified or to be notified).
    pub fn is_active(self) -> bool {
        matches!(self, AlertState::ActiveUnack | AlertState::ActiveAck)
    }
}

/// The timing a rule gives its alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// How long the condition must hold before the alert fires.
    pub for_ms: Millis,
    /// How long an active alert keeps firing after its condition is gone.
    pub keep_firing_ms: Millis,
    /// Flapping: more than this many changes between active and cleared…
    pub flap_changes: usize,
    /// …within this window marks the alert flapping; it is stable again
    /// after a window without a change.
    pub flap_window_ms: Millis,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            for_ms: 0,
            keep_firing_ms: 0,
            flap_changes: 4,
            flap_window_ms: 10 * 60_000,
        }
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The condition was first seen (pending).
    Triggered,
    /// It started firing.
    Activated,
    /// A cleared, unacknowledged alert fired again.
    Reactivated,
    /// Its severity rose while open.
    Escalated,
    /// Someone acknowledged it.
    Acknowledged,
    /// The condition was gone for the keep-firing period.
    Cleared,
    /// Someone cleared it by hand.
    ClearedManually,
    /// The condition went away while pending.
    Cancelled,
    /// It changed state too often: notifications held.
    FlappingStarted,
    /// Stable again: notifications resume.
    FlappingStopped,
}

impl EventKind {
    /// The name used in APIs and storage (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Triggered => "triggered",
            EventKind::Activated => "activated",
            EventKind::Reactivated => "reactivated",
            EventKind::Escalated => "escalated",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Cleared => "cleared",
            EventKind::ClearedManually => "cleared_manually",
            EventKind::Cancelled => "cancelled",
            EventKind::FlappingStarted => "flapping_started",
            EventKind::FlappingStopped => "flapping_stopped",
        }
    }
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub at: Millis,
    pub kind: EventKind,
    /// The state after it.
    pub state: AlertState,
    /// The severity after it.
    pub severity: Severity,
    /// Who did it (acknowledge, manual clear), if a person did.
    pub by: Option<String>,
    /// Their comment, or the value that triggered it.
    pub note: Option<String>,
}

/// Why an operation on an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Acknowledging an alert that is already acknowledged, pending or over.
    #[error(
        "the alert is {0:?}: only an unacknowledged active or cleared alert can be acknowledged"
    )]
    NotAcknowledgeable(AlertState),
    /// Clearing an alert that is not firing.
    #[error("the alert is {0:?}: only a pending or active alert can be cleared")]
    NotClearable(AlertState),
}

/// One alert and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What it is about.
    pub key: AlertKey,
    /// Where it is in its lifecycle.
    pub state: AlertState,
    /// Its severity now.
    pub severity: Severity,
    /// The highest severity it reached.
    pub peak_severity: Severity,
    /// Triggers seen while open.
    pub count: u64,
    /// The last value that triggered it.
    pub last_value: Option<f64>,
    /// When the condition was first seen.
    pub first_seen: Millis,
    /// The last trigger.
    pub last_seen: Millis,
    /// When it (last) started firing; escalation counts from here.
    pub activated_at: Option<Millis>,
    /// Since when the condition has been gone while active.
    pub condition_gone_since: Option<Millis>,
    /// Who acknowledged it, and when.
    pub acknowledged: Option<(String, Millis)>,
    /// When it was cleared.
    pub cleared_at: Option<Millis>,
    /// Marked flapping: notifications are held.
    pub flapping: bool,
    /// Recent changes between active and cleared (for flap detection).
    changes: VecDeque<Millis>,
    /// Everything that happened, oldest first.
    pub history: Vec<AlertEvent>,
}

impl Alert {
    /// A new alert for a condition first seen at `now`. It is pending, or
    /// active at once when the rule has no for-duration.
    pub fn new(
        key: AlertKey,
        severity: Severity,
        value: Option<f64>,
        now: Millis,
        timing: &Timing,
    ) -> Alert {
        let mut alert = Alert {
            key,
            state: AlertState::Pending,
            severity,
            peak_severity: severity,
            count: 1,
            last_value: value,
            first_seen: now,
            last_seen: now,
            activated_at: None,
            condition_gone_since: None,
            acknowledged: None,
            cleared_at: None,
            flapping: false,
            changes: VecDeque::new(),
            history: Vec::new(),
        };
        alert.record(
            now,
            EventKind::Triggered,
            None,
            value.map(|v| v.to_string()),
        );
        alert.tick(now, timing);
        alert
    }

    /// The condition holds again at `now` with this severity and value.
    pub fn trigger(
        &mut self,
        severity: Severity,
        value: Option<f64>,
        now: Millis,
        timing: &Timing,
    ) {
        if !self.state.is_open() {
            return;
        }
        self.count += 1;
        // A trigger without a value (a model verdict, a restated state)
        // keeps the last value known.
        if value.is_some() {
            self.last_value = value;
        }
        self.last_seen = now;
        self.condition_gone_since = None;
        if severity > self.severity {
            self.severity = severity;
            self.peak_severity = self.peak_severity.max(severity);
            self.record(
                now,
                EventKind::Escalated,
                None,
                value.map(|v| v.to_string()),
            );
        }
        if self.state == AlertState::ClearedUnack {
            self.state = AlertState::ActiveUnack;
            self.activated_at = Some(now);
            self.cleared_at = None;
            self.change(now, timing);
            self.record(
                now,
                EventKind::Reactivated,
                None,
                value.map(|v| v.to_string()),
            );
        }
        self.tick(now, timing);
    }

    /// The condition does not hold at `now`.
    pub fn condition_gone(&mut self, now: Millis, timing: &Timing) {
        match self.state {
            AlertState::Pending => {
                self.state = AlertState::Cancelled;
                self.record(now, EventKind::Cancelled, None, None);
            }
            AlertState::ActiveUnack | AlertState::ActiveAck => {
                self.condition_gone_since.get_or_insert(now);
                self.tick(now, timing);
            }
            _ => {}
        }
    }

    /// Time has passed: fires a pending alert whose for-duration is over,
    /// clears an active one whose condition has been gone for the
    /// keep-firing period, ends flapping after a quiet window.
    pub fn tick(&mut self, now: Millis, timing: &Timing) {
        if self.state == AlertState::Pending && now - self.first_seen >= timing.for_ms {
            self.state = AlertState::ActiveUnack;
            self.activated_at = Some(now);
            self.record(now, EventKind::Activated, None, None);
        }
        if let (true, Some(since)) = (self.state.is_active(), self.condition_gone_since) {
            if now - since >= timing.keep_firing_ms {
                self.state = match self.state {
                    AlertState::ActiveAck => AlertState::ClearedAck,
                    _ => AlertState::ClearedUnack,
                };
                self.cleared_at = Some(now);
                self.condition_gone_since = None;
                self.change(now, timing);
                self.record(now, EventKind::Cleared, None, None);
            }
        }
        if self.flapping
            && self
                .changes
                .back()
                .is_none_or(|last| now - last >= timing.flap_window_ms)
        {
            self.flapping = false;
            self.record(now, EventKind::FlappingStopped, None, None);
        }
    }

    /// When [`Alert::tick`] next has something to do, if ever.
    pub fn next_deadline(&self, timing: &Timing) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut consider = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == AlertState::Pending {
            consider(self.first_seen + timing.for_ms);
        }
        if let (true, Some(since)) = (self.state.is_active(), self.condition_gone_since) {
            consider(since + timing.keep_firing_ms);
        }
        if self.flapping {
            if let Some(last) = self.changes.back() {
                consider(last + timing.flap_window_ms);
            }
        }
        next
    }

    /// Someone acknowledges it: escalation stops.
    pub fn acknowledge(
        &mut self,
        by: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<(), AlertError> {
        self.state = match self.state {
            AlertState::ActiveUnack => AlertState::ActiveAck,
            AlertState::ClearedUnack => AlertState::ClearedAck,
            other => return Err(AlertError::NotAcknowledgeable(other)),
        };
        self.acknowledged = Some((by.to_owned(), now));
        self.record(
            now,
            EventKind::Acknowledged,
            Some(by),
            comment.map(str::to_owned),
        );
        Ok(())
    }

    /// Someone clears it by hand (the condition may still hold; a later
    /// trigger of an unacknowledged alert re-activates it).
    pub fn clear(
        &mut self,
        by: &str,
        comment: Option<&str>,
        now: Millis,
    ) -> Result<(), AlertError> {
        self.state = match self.state {
            AlertState::Pending => AlertState::Cancelled,
            AlertState::ActiveUnack => AlertState::ClearedUnack,
            AlertState::ActiveAck => AlertState::ClearedAck,
            other => return Err(AlertError::NotClearable(other)),
        };
        self.cleared_at = Some(now);
        self.condition_gone_since = None;
        self.record(
            now,
            EventKind::ClearedManually,
            Some(by),
            comment.map(str::to_owned),
        );
        Ok(())
    }

    /// Whether notifications may go out for it now: firing, unacknowledged
    /// and not flapping. (Silences and inhibition are judged by the caller,
    /// who knows the other alerts.)
    pub fn wants_notification(&self) -> bool {
        self.state == AlertState::ActiveUnack && !self.flapping
    }

    /// Counts a change between active and cleared; too many in the window
    /// mark the alert flapping.
    fn change(&mut self, now: Millis, timing: &Timing) {
        self.changes.push_back(now);
        while self
            .changes
            .front()
            .is_some_and(|t| now - t > timing.flap_window_ms)
        {
            self.changes.pop_front();
        }
        if !self.flapping && self.changes.len() > timing.flap_changes {
            self.flapping = true;
            self.record(now, EventKind::FlappingStarted, None, None);
        }
    }

    fn record(&mut self, at: Millis, kind: EventKind, by: Option<&str>, note: Option<String>) {
        self.history.push(AlertEvent {
            at,
            kind,
            state: self.state,
            severity: self.severity,
            by: by.map(str::to_owned),
            note,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AlertKey {
        AlertKey {
            source: "plant/rig-1/TS1".into(),
            kind: "threshold:oil-hot".into(),
        }
    }

    fn timing(for_ms: Millis, keep_firing_ms: Millis) -> Timing {
        Timing {
            for_ms,
            keep_firing_ms,
            ..Timing::default()
        }
    }

    fn kinds(alert: &Alert) -> Vec<EventKind> {
        alert.history.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn pending_fires_after_its_for_duration_and_clears_after_keep_firing() {
        let t = timing(30_000, 60_000);
        let mut a = Alert::new(key(), Severity::Warning, Some(61.0), 0, &t);
        assert_eq!(a.state, AlertState::Pending);
        assert_eq!(a.next_deadline(&t), Some(30_000));
        a.trigger(Severity::Warning, Some(62.0), 10_000, &t);
        a.tick(29_999, &t);
        assert_eq!(a.state, AlertState::Pending);
        a.tick(30_000, &t);
        assert_eq!(a.state, AlertState::ActiveUnack);
        assert_eq!(a.activated_at, Some(30_000));
        assert!(a.wants_notification());
        // Gone, but it keeps firing for a minute; back in time, it stays.
        a.condition_gone(40_000, &t);
        assert_eq!(a.next_deadline(&t), Some(100_000));
        a.trigger(Severity::Warning, Some(61.5), 90_000, &t);
        a.tick(100_000, &t);
        assert_eq!(a.state, AlertState::ActiveUnack);
        a.condition_gone(110_000, &t);
        a.tick(169_999, &t);
        assert_eq!(a.state, AlertState::ActiveUnack);
        a.tick(170_000, &t);
        assert_eq!(a.state, AlertState::ClearedUnack);
        assert_eq!(a.count, 3);
        assert_eq!(a.last_value, Some(61.5));
        a.acknowledge("ana", Some("checked the cooler"), 200_000)
            .unwrap();
        assert_eq!(a.state, AlertState::ClearedAck);
        assert!(!a.state.is_open());
        assert_eq!(
            kinds(&a),
            [
                EventKind::Triggered,
                EventKind::Activated,
                EventKind::Cleared,
                EventKind::Acknowledged
            ]
        );
        let ack = a.history.last().unwrap();
        assert_eq!(ack.by.as_deref(), Some("ana"));
        assert_eq!(ack.note.as_deref(), Some("checked the cooler"));
    }

    #[test]
    fn a_condition_gone_while_pending_cancels_without_firing() {
        let t = timing(30_000, 0);
        let mut a = Alert::new(key(), Severity::Major, None, 0, &t);
        a.condition_gone(5_000, &t);
        assert_eq!(a.state, AlertState::Cancelled);
        assert!(a.activated_at.is_none() && !a.state.is_open());
        // A closed alert ignores triggers: the caller opens a new one.
        a.trigger(Severity::Major, None, 6_000, &t);
        assert_eq!((a.state, a.count), (AlertState::Cancelled, 1));
    }

    #[test]
    fn severity_escalates_in_place_and_peak_is_kept() {
        let t = timing(0, 0);
        let mut a = Alert::new(key(), Severity::Minor, Some(1.0), 0, &t);
        assert_eq!(a.state, AlertState::ActiveUnack);
        a.trigger(Severity::Critical, Some(3.0), 1_000, &t);
        a.trigger(Severity::Minor, Some(1.5), 2_000, &t);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.peak_severity, Severity::Critical);
        assert_eq!(
            kinds(&a),
            [
                EventKind::Triggered,
                EventKind::Activated,
                EventKind::Escalated
            ]
        );
    }

    #[test]
    fn acknowledge_and_clear_are_refused_where_they_make_no_sense() {
        let t = timing(10_000, 0);
        let mut a = Alert::new(key(), Severity::Warning, None, 0, &t);
        assert_eq!(
            a.acknowledge("ana", None, 1),
            Err(AlertError::NotAcknowledgeable(AlertState::Pending))
        );
        a.tick(10_000, &t);
        a.acknowledge("ana", None, 10_001).unwrap();
        assert!(!a.wants_notification());
        assert!(a.acknowledge("bo", None, 10_002).is_err());
        a.clear("bo", Some("replaced sensor"), 10_003).unwrap();
        assert_eq!(a.state, AlertState::ClearedAck);
        assert_eq!(
            a.clear("bo", None, 10_004),
            Err(AlertError::NotClearable(AlertState::ClearedAck))
        );
    }

    #[test]
    fn a_manually_cleared_unacknowledged_alert_reactivates_on_a_new_trigger() {
        let t = timing(0, 0);
        let mut a = Alert::new(key(), Severity::Warning, None, 0, &t);
        a.clear("ana", None, 1_000).unwrap();
        assert_eq!(a.state, AlertState::ClearedUnack);
        a.trigger(Severity::Warning, None, 2_000, &t);
        assert_eq!(a.state, AlertState::ActiveUnack);
        assert_eq!(a.activated_at, Some(2_000));
        assert_eq!(a.history.last().unwrap().kind, EventKind::Reactivated);
    }

    #[test]
    fn flapping_holds_notifications_until_a_quiet_window() {
        let t = Timing {
            for_ms: 0,
            keep_firing_ms: 0,
            flap_changes: 3,
            flap_window_ms: 60_000,
        };
        let mut a = Alert::new(key(), Severity::Warning, None, 0, &t);
        // Cleared and back every 5 s: the fourth change marks it flapping.
        let mut now = 0;
        for _ in 0..2 {
            now += 5_000;
            a.condition_gone(now, &t);
            assert!(!a.flapping);
            now += 5_000;
            a.trigger(Severity::Warning, None, now, &t);
        }
        assert!(a.flapping, "{:?}", kinds(&a));
        assert_eq!(a.state, AlertState::ActiveUnack);
        assert!(!a.wants_notification());
        assert_eq!(a.next_deadline(&t), Some(now + 60_000));
        a.tick(now + 59_999, &t);
        assert!(a.flapping);
        a.tick(now + 60_000, &t);
        assert!(!a.flapping && a.wants_notification());
        let flaps: Vec<EventKind> = kinds(&a)
            .into_iter()
            .filter(|k| matches!(k, EventKind::FlappingStarted | EventKind::FlappingStopped))
            .collect();
        assert_eq!(
            flaps,
            [EventKind::FlappingStarted, EventKind::FlappingStopped]
        );
    }

    #[test]
    fn slow_changes_are_not_flapping() {
        let t = Timing {
            for_ms: 0,
            keep_firing_ms: 0,
            flap_changes: 3,
            flap_window_ms: 60_000,
        };
        let mut a = Alert::new(key(), Severity::Warning, None, 0, &t);
        let mut now = 0;
        for _ in 0..10 {
            now += 40_000;
            a.condition_gone(now, &t);
            now += 40_000;
            a.trigger(Severity::Warning, None, now, &t);
        }
        assert!(!a.flapping);
    }

    #[test]
    fn names_are_the_serialised_ones() {
        for state in AlertState::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json.as_str(), Some(state.as_str()));
            assert_eq!(
                AlertState::parse(&state.as_str().to_lowercase()),
                Some(state)
            );
        }
        assert_eq!(AlertState::parse("burning"), None);
        let json = serde_json::to_value(EventKind::ClearedManually).unwrap();
        assert_eq!(json.as_str(), Some(EventKind::ClearedManually.as_str()));
    }
}
