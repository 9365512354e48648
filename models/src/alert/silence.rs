//! Silences, maintenance windows and inhibition: what keeps an alert from
//! being notified while it is still recorded (and shown as silenced).
//!
//! A silence matches alerts by site, equipment, sensor and severity and is in
//! force over a fixed range or a recurring window (a cron expression in a time
//! zone and a duration: "every Sunday 02:00 Europe/Berlin for 4 h"). An
//! inhibition rule holds back the lesser alerts of an equipment unit's own
//! sensors while the unit itself has a CRITICAL alert firing (Alertmanager's
//! inhibit rules, fixed to the plant's hierarchy).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::Millis;
use crate::ensemble::Severity;

/// What a silence or an inhibition rule looks at in an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertLabels<'a> {
    pub site: &'a str,
    /// The equipment unit, if the alert is about one or its sensors.
    pub equipment: Option<&'a str>,
    /// The sensor, if the alert is about one.
    pub sensor: Option<&'a str>,
    /// The alert's severity.
    pub severity: Severity,
}

/// Which alerts a silence covers; a field left out matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matchers {
    /// Only this site.
    pub site: Option<String>,
    /// Only this equipment unit (its own alerts and its sensors').
    pub equipment: Option<String>,
    /// Only this sensor.
    pub sensor: Option<String>,
    /// Only these severities (empty: all).
    pub severities: Vec<Severity>,
}

impl Matchers {
    /// Whether the alert is covered.
    pub fn matches(&self, alert: &AlertLabels<'_>) -> bool {
        let field = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        field(&self.site, Some(alert.site))
            && field(&self.equipment, alert.equipment)
            && field(&self.sensor, alert.sensor)
            && (self.severities.is_empty() || self.severities.contains(&alert.severity))
    }
}

/// When a silence is in force, as written in config or an API body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// From `starts` (inclusive) to `ends` (exclusive).
    Fixed {
        /// Start, ms since the epoch.
        starts: Millis,
        /// End, ms since the epoch.
        ends: Millis,
    },
    /// Each time the cron expression fires in the time zone, for the duration.
    Recurring {
        /// Cron with seconds: `sec min hour day-of-month month day-of-week
        /// [year]`, e.g. `0 0 2 * * Sun`.
        cron: String,
        /// How long each window lasts.
        duration_ms: Millis,
        /// IANA time zone, e.g. `Europe/Berlin` (the cron is local time there,
        /// so a window keeps its wall-clock hour across daylight saving).
        timezone: String,
    },
}

/// Why a silence window is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A fixed range that ends before it starts.
    #[error("a fixed window must end after it starts")]
    Empty,
    /// A duration that is not positive.
    #[error("duration_ms must be more than zero")]
    Duration,
    /// A cron expression that does not parse.
    #[error("cron `{cron}`: {reason}")]
    Cron {
        cron: String,
        /// What is wrong.
        reason: String,
    },
    /// An unknown time zone.
    #[error("unknown time zone `{0}` (an IANA name such as Europe/Berlin)")]
    TimeZone(String),
}

/// A checked window.
#[derive(Debug, Clone)]
pub enum Window {
    /// A fixed range.
    Fixed {
        /// Start, inclusive.
        starts: Millis,
        /// End, exclusive.
        ends: Millis,
    },
    /// A recurring window.
    Recurring {
        /// The parsed schedule.
        schedule: Box<cron::Schedule>,
        duration_ms: Millis,
        timezone: chrono_tz::Tz,
    },
}

impl TryFrom<&WindowSpec> for Window {
    type Error = WindowError;

    fn try_from(spec: &WindowSpec) -> Result<Window, WindowError> {
        match spec {
            WindowSpec::Fixed { starts, ends } if ends > starts => Ok(Window::Fixed {
                starts: *starts,
                ends: *ends,
            }),
            WindowSpec::Fixed { .. } => Err(WindowError::Empty),
            WindowSpec::Recurring { duration_ms, .. } if *duration_ms <= 0 => {
                Err(WindowError::Duration)
            }
            WindowSpec::Recurring {
                cron,
                duration_ms,
                timezone,
            } => Ok(Window::Recurring {
                schedule: Box::new(cron::Schedule::from_str(cron).map_err(|e| {
                    WindowError::Cron {
                        cron: cron.clone(),
                        reason: e.to_string(),
                    }
                })?),
                duration_ms: *duration_ms,
                timezone: chrono_tz::Tz::from_str(timezone)
                    .map_err(|_| WindowError::TimeZone(timezone.clone()))?,
            }),
        }
    }
}

impl Window {
    /// Whether the window is open at `now`.
    pub fn contains(&self, now: Millis) -> bool {
        match self {
            Window::Fixed { starts, ends } => (*starts..*ends).contains(&now),
            Window::Recurring {
                schedule,
                duration_ms,
                timezone,
            } => {
                // Open when the schedule fired within the last duration:
                // the first firing after `now - duration` is at or before now.
                let Some(from) = utc(now - duration_ms) else {
                    return false;
                };
                schedule
                    .after(&timezone.from_utc_datetime(&from.naive_utc()))
                    .next()
                    .is_some_and(|fired| fired.with_timezone(&Utc).timestamp_millis() <= now)
            }
        }
    }

    /// When the window next opens or closes after `now` (for the actor's
    /// timer), if ever.
    pub fn next_change(&self, now: Millis) -> Option<Millis> {
        match self {
            Window::Fixed { starts, ends } => [*starts, *ends].into_iter().find(|t| *t > now),
            Window::Recurring {
                schedule,
                duration_ms,
                timezone,
            } => {
                let from = utc(now)?;
                let next_start = schedule
                    .after(&timezone.from_utc_datetime(&from.naive_utc()))
                    .next()
                    .map(|t| t.with_timezone(&Utc).timestamp_millis());
                // If open now, it closes duration after the firing that opened it.
                let closing = utc(now - duration_ms).and_then(|back| {
                    schedule
                        .after(&timezone.from_utc_datetime(&back.naive_utc()))
                        .map(|t| t.with_timezone(&Utc).timestamp_millis())
                        .take_while(|t| *t <= now)
                        .last()
                        .map(|t| t + duration_ms)
                });
                match (next_start, closing) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}

fn utc(ms: Millis) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// A silence or maintenance window: matching alerts are recorded and shown
/// as silenced, not notified.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Which alerts.
    pub matchers: Matchers,
    pub window: Window,
}

impl Silence {
    /// Whether it silences this alert at `now`.
    pub fn silences(&self, alert: &AlertLabels<'_>, now: Millis) -> bool {
        self.window.contains(now) && self.matchers.matches(alert)
    }
}

/// Holds back lesser alerts of an equipment unit's sensors while the unit
/// has a severe alert of its own firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inhibition {
    /// An equipment alert at least this severe inhibits…
    pub source_at_least: Severity,
    /// …its sensors' alerts at most this severe.
    pub target_at_most: Severity,
}

impl Default for Inhibition {
    fn default() -> Self {
        Inhibition {
            source_at_least: Severity::Critical,
            target_at_most: Severity::Warning,
        }
    }
}

impl Inhibition {
    /// Whether `target` is held back by any of `firing` (the active alerts).
    pub fn inhibits<'a>(
        &self,
        target: &AlertLabels<'_>,
        firing: impl IntoIterator<Item = AlertLabels<'a>>,
    ) -> bool {
        if target.sensor.is_none() || target.severity > self.target_at_most {
            return false;
        }
        firing.into_iter().any(|source| {
            source.sensor.is_none()
                && source.severity >= self.source_at_least
                && source.site == target.site
                && source.equipment.is_some()
                && source.equipment == target.equipment
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(
        equipment: &'a str,
        sensor: Option<&'a str>,
        severity: Severity,
    ) -> AlertLabels<'a> {
        AlertLabels {
            site: "demo",
            equipment: Some(equipment),
            sensor,
            severity,
        }
    }

    /// 2026-03-29 (the Sunday clocks go forward in Europe) at `h:m` UTC.
    fn march_29(h: u32, m: u32) -> Millis {
        Utc.with_ymd_and_hms(2026, 3, 29, h, m, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn matchers_cover_what_they_name() {
        let m = Matchers {
            equipment: Some("rig-1".into()),
            severities: vec![Severity::Warning, Severity::Minor],
            ..Matchers::default()
        };
        assert!(m.matches(&labels("rig-1", Some("TS1"), Severity::Warning)));
        assert!(m.matches(&labels("rig-1", None, Severity::Minor)));
        assert!(!m.matches(&labels("rig-2", Some("TS1"), Severity::Warning)));
        assert!(!m.matches(&labels("rig-1", Some("TS1"), Severity::Critical)));
        assert!(Matchers::default().matches(&labels("rig-9", None, Severity::Critical)));
        let sensor = Matchers {
            sensor: Some("TS1".into()),
            ..Matchers::default()
        };
        assert!(!sensor.matches(&labels("rig-1", None, Severity::Warning)));
    }

    #[test]
    fn fixed_windows_are_half_open() {
        let w = Window::try_from(&WindowSpec::Fixed {
            starts: 1_000,
            ends: 2_000,
        })
        .unwrap();
        assert!(!w.contains(999) && w.contains(1_000) && w.contains(1_999) && !w.contains(2_000));
        assert_eq!(w.next_change(0), Some(1_000));
        assert_eq!(w.next_change(1_500), Some(2_000));
        assert_eq!(w.next_change(2_000), None);
        assert_eq!(
            Window::try_from(&WindowSpec::Fixed { starts: 5, ends: 5 }).err(),
            Some(WindowError::Empty)
        );
    }

    #[test]
    fn recurring_windows_follow_local_time_across_daylight_saving() {
        // Sundays 03:30 Berlin time for an hour. On 29 March 2026 Berlin
        // switches to summer time (UTC+2) at 01:00 UTC: 03:30 local is
        // 01:30 UTC that day, not 02:30.
        let spec = WindowSpec::Recurring {
            cron: "0 30 3 * * Sun".into(),
            duration_ms: 3_600_000,
            timezone: "Europe/Berlin".into(),
        };
        let w = Window::try_from(&spec).unwrap();
        assert!(!w.contains(march_29(1, 29)));
        assert!(w.contains(march_29(1, 30)));
        assert!(w.contains(march_29(2, 29)));
        assert!(!w.contains(march_29(2, 30)));
        assert_eq!(w.next_change(march_29(1, 0)), Some(march_29(1, 30)));
        assert_eq!(w.next_change(march_29(2, 0)), Some(march_29(2, 30)));
        // The week before (winter time, UTC+1): 02:30 UTC.
        let week = 7 * 24 * 3_600_000;
        assert!(w.contains(march_29(2, 45) - week));
        assert!(!w.contains(march_29(1, 45) - week));
        // A silence applies its window and its matchers.
        let silence = Silence {
            matchers: Matchers {
                equipment: Some("rig-1".into()),
                ..Matchers::default()
            },
            window: w,
        };
        let ts1 = labels("rig-1", Some("TS1"), Severity::Major);
        assert!(silence.silences(&ts1, march_29(2, 0)));
        assert!(!silence.silences(&ts1, march_29(4, 0)));
        assert!(!silence.silences(&labels("rig-2", None, Severity::Major), march_29(2, 0)));
    }

    #[test]
    fn bad_recurring_windows_are_refused_with_the_reason() {
        let bad = |cron: &str, duration_ms: Millis, timezone: &str| {
            Window::try_from(&WindowSpec::Recurring {
                cron: cron.into(),
                duration_ms,
                timezone: timezone.into(),
            })
            .err()
        };
        assert!(matches!(
            bad("not a cron", 1, "UTC"),
            Some(WindowError::Cron { .. })
        ));
        assert_eq!(
            bad("0 0 2 * * Sun", 1, "Mars/Olympus"),
            Some(WindowError::TimeZone("Mars/Olympus".into()))
        );
        assert_eq!(bad("0 0 2 * * Sun", 0, "UTC"), Some(WindowError::Duration));
    }

    #[test]
    fn a_critical_equipment_alert_holds_back_its_sensors_warnings() {
        let rule = Inhibition::default();
        let critical = labels("rig-1", None, Severity::Critical);
        let warning = labels("rig-1", Some("TS1"), Severity::Warning);
        assert!(rule.inhibits(&warning, [critical]));
        // Not another unit's, not a graver one, not the unit's own alert.
        assert!(!rule.inhibits(&labels("rig-2", Some("TS1"), Severity::Warning), [critical]));
        assert!(!rule.inhibits(&labels("rig-1", Some("TS1"), Severity::Major), [critical]));
        assert!(!rule.inhibits(&labels("rig-1", None, Severity::Warning), [critical]));
        // A sensor's critical alert inhibits nothing; a major unit alert neither.
        assert!(!rule.inhibits(&warning, [labels("rig-1", Some("PS1"), Severity::Critical)]));
        assert!(!rule.inhibits(&warning, [labels("rig-1", None, Severity::Major)]));
    }
}
