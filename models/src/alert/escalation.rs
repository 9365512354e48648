//! Escalation policies: who is told, by which channel, how long after an
//! alert started firing while nobody acknowledges it.
//!
//! A policy is ordered steps, each a delay from activation and the channels
//! (with their recipients) to notify, e.g. at once to the wallboard and a
//! webhook, after 5 min an email to the on-call engineer, after 15 min to the
//! shift supervisor. An unacknowledged CRITICAL alert repeats the last step at
//! an interval. The schedule is a pure function of the activation time, the
//! clock and the notifications already sent, so after a restart the alerting
//! actor rebuilds exactly what is still due from the database: nothing is
//! sent twice, nothing due is forgotten.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Millis;

/// One step of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Delay after the alert started firing.
    pub after_ms: Millis,
    /// Channels and recipients, e.g. `wallboard`, `webhook:ops`,
    /// `email:oncall@plant.example`.
    pub channels: Vec<String>,
}

/// Ordered steps and the repeat interval for unacknowledged CRITICAL alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    /// The steps, by increasing delay.
    pub steps: Vec<EscalationStep>,
    /// After the last step, an unacknowledged CRITICAL alert notifies the
    /// last step's channels again at this interval.
    #[serde(default)]
    pub repeat_critical_ms: Option<Millis>,
}

/// Why a policy is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("an escalation policy needs at least one step")]
    NoSteps,
    /// A step out of order or with a negative delay.
    #[error("step {0}: delays must be zero or more and must not decrease")]
    Order(usize),
    /// A step with no channel.
    #[error("step {0}: no channels")]
    NoChannels(usize),
    /// A repeat interval that is not positive.
    #[error("repeat_critical_ms must be more than zero")]
    Repeat,
}

/// A notification the schedule says is due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When it fell due.
    pub at: Millis,
    /// The step (index into the policy's steps).
    pub step: usize,
    /// 0 for the step itself; n for the n-th repeat of the last step.
    pub repeat: u32,
}

impl EscalationPolicy {
    /// Checks the steps.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.steps.is_empty() {
            return Err(PolicyError::NoSteps);
        }
        let mut previous = 0;
        for (i, step) in self.steps.iter().enumerate() {
            if step.after_ms < previous {
                return Err(PolicyError::Order(i));
            }
            if step.channels.is_empty() {
                return Err(PolicyError::NoChannels(i));
            }
            previous = step.after_ms;
        }
        if self.repeat_critical_ms.is_some_and(|r| r <= 0) {
            return Err(PolicyError::Repeat);
        }
        Ok(())
    }

    /// The notifications due by `now` for an alert firing since
    /// `activated_at` that are not in `sent` (`(step, repeat)` pairs of this
    /// activation), oldest first. Every step is due once. Of the repeats
    /// (only when `critical`), only the latest is due: repeats missed while
    /// the process was down are superseded by it, not sent in a burst.
    pub fn due(
        &self,
        activated_at: Millis,
        critical: bool,
        now: Millis,
        sent: &BTreeSet<(usize, u32)>,
    ) -> Vec<Due> {
        let mut due: Vec<Due> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, step)| activated_at + step.after_ms <= now && !sent.contains(&(*i, 0)))
            .map(|(i, step)| Due {
                at: activated_at + step.after_ms,
                step: i,
                repeat: 0,
            })
            .collect();
        if let Some((repeat, at)) = self.latest_repeat(activated_at, critical, now) {
            let last = self.steps.len() - 1;
            let newest_sent = sent
                .iter()
                .filter(|(s, _)| *s == last)
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(0);
            if repeat > newest_sent {
                due.push(Due {
                    at,
                    step: last,
                    repeat,
                });
            }
        }
        due
    }

    /// When the next notification falls due after `now`, if ever (for the
    /// actor's timer).
    pub fn next_due(
        &self,
        activated_at: Millis,
        critical: bool,
        now: Millis,
        sent: &BTreeSet<(usize, u32)>,
    ) -> Option<Millis> {
        let step = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, _)| !sent.contains(&(*i, 0)))
            .map(|(_, s)| activated_at + s.after_ms)
            .find(|at| *at > now);
        let repeat = match (critical, self.repeat_critical_ms, self.steps.last()) {
            (true, Some(every), Some(last)) => {
                let first = activated_at + last.after_ms + every;
                Some(if now < first {
                    first
                } else {
                    first + ((now - first) / every + 1) * every
                })
            }
            _ => None,
        };
        match (step, repeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The number and due time of the latest repeat due by `now`.
    fn latest_repeat(
        &self,
        activated_at: Millis,
        critical: bool,
        now: Millis,
    ) -> Option<(u32, Millis)> {
        let every = self.repeat_critical_ms.filter(|_| critical)?;
        let last = self.steps.last()?;
        let since_last = now - (activated_at + last.after_ms);
        if every <= 0 || since_last < every {
            return None;
        }
        let n = since_last / every;
        Some((
            u32::try_from(n).unwrap_or(u32::MAX),
            activated_at + last.after_ms + n * every,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn policy() -> EscalationPolicy {
        EscalationPolicy {
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
                EscalationStep {
                    after_ms: 60 * MIN,
                    channels: vec!["email:manager@plant.example".into()],
                },
            ],
            repeat_critical_ms: Some(30 * MIN),
        }
    }

    /// Runs the schedule minute by minute, "sending" what is due.
    fn run(critical: bool, until: Millis) -> Vec<Due> {
        let p = policy();
        let mut sent = BTreeSet::new();
        let mut log = Vec::new();
        let mut now = 1_000;
        while now <= until {
            for d in p.due(1_000, critical, now, &sent) {
                sent.insert((d.step, d.repeat));
                log.push(d);
            }
            now += MIN;
        }
        log
    }

    #[test]
    fn steps_fire_once_each_in_order() {
        let log = run(false, 3 * 60 * MIN);
        let steps: Vec<(usize, u32)> = log.iter().map(|d| (d.step, d.repeat)).collect();
        assert_eq!(steps, [(0, 0), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(log[1].at, 1_000 + 5 * MIN);
    }

    #[test]
    fn an_unacknowledged_critical_alert_repeats_the_last_step() {
        let log = run(true, 1_000 + 2 * 60 * MIN);
        let repeats: Vec<u32> = log
            .iter()
            .filter(|d| d.step == 3)
            .map(|d| d.repeat)
            .collect();
        assert_eq!(repeats, [0, 1, 2]);
        let p = policy();
        let sent: BTreeSet<_> = log.iter().map(|d| (d.step, d.repeat)).collect();
        assert_eq!(
            p.next_due(1_000, true, 1_000 + 2 * 60 * MIN, &sent),
            Some(1_000 + 150 * MIN)
        );
        assert_eq!(p.next_due(1_000, false, 1_000 + 2 * 60 * MIN, &sent), None);
    }

    #[test]
    fn after_a_restart_what_is_due_is_sent_once_and_missed_repeats_collapse() {
        let p = policy();
        // Steps 0 and 1 went out before the restart; back 3 h after activation.
        let sent = BTreeSet::from([(0, 0), (1, 0)]);
        let due = p.due(0, true, 180 * MIN, &sent);
        let got: Vec<(usize, u32)> = due.iter().map(|d| (d.step, d.repeat)).collect();
        assert_eq!(got, [(2, 0), (3, 0), (3, 4)]);
        // Once recorded, nothing more until the next repeat.
        let sent: BTreeSet<_> = sent.into_iter().chain(got).collect();
        assert!(p.due(0, true, 180 * MIN + 1, &sent).is_empty());
        assert_eq!(p.next_due(0, true, 180 * MIN + 1, &sent), Some(210 * MIN));
        assert_eq!(
            p.next_due(0, false, 2 * MIN, &BTreeSet::from([(0, 0)])),
            Some(5 * MIN)
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert_eq!(
            EscalationPolicy {
                steps: vec![],
                repeat_critical_ms: None
            }
            .validate(),
            Err(PolicyError::NoSteps)
        );
        let mut p = policy();
        p.steps.swap(1, 2);
        assert_eq!(p.validate(), Err(PolicyError::Order(2)));
        let mut p = policy();
        p.steps[0].channels.clear();
        assert_eq!(p.validate(), Err(PolicyError::NoChannels(0)));
        let mut p = policy();
        p.repeat_critical_ms = Some(0);
        assert_eq!(p.validate(), Err(PolicyError::Repeat));
        assert!(policy().validate().is_ok());
    }
}
