//! The health of an equipment unit as far as its sensors tell.

use serde::{Deserialize, Serialize};

use crate::{Quality, SensorId, SensorState, SensorStatus};

/// Coarse health of an equipment unit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every sensor reports good data.
    Ok,
    /// Some sensors are bad, stale or out of range.
    Degraded,
    /// No sensor delivers usable data.
    Fault,
    /// Nothing has been read yet.
    Unknown,
}

/// Health with the reason operators should read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why it is not `ok`.
    pub reason: Option<String>,
}

impl Health {
    /// Derives health from the states of all of an equipment's sensors.
    pub fn from_sensors<'a>(
        sensors: impl IntoIterator<Item = (&'a SensorId, &'a SensorState)>,
    ) -> Health {
        let mut total = 0usize;
        let mut no_data = 0usize;
        let mut unusable: Vec<&SensorId> = Vec::new();
        let mut suspect: Vec<&SensorId> = Vec::new();
        for (id, state) in sensors {
            total += 1;
            match (state.status, state.quality) {
                (SensorStatus::NoData, _) => no_data += 1,
                (_, Quality::Bad) => unusable.push(id),
                (SensorStatus::OutOfRange, _) | (_, Quality::Uncertain) => suspect.push(id),
                _ => {}
            }
        }
        if total == 0 || no_data == total {
            return Health {
                status: HealthStatus::Unknown,
                reason: Some("no data yet".into()),
            };
        }
        if unusable.len() + no_data == total {
            return Health {
                status: HealthStatus::Fault,
                reason: Some("no usable data from any sensor".into()),
            };
        }
        if unusable.is_empty() && suspect.is_empty() && no_data == 0 {
            return Health {
                status: HealthStatus::Ok,
                reason: None,
            };
        }
        let mut parts = Vec::new();
        if !unusable.is_empty() {
            parts.push(format!("bad: {}", join(&unusable)));
        }
        if !suspect.is_empty() {
            parts.push(format!("uncertain: {}", join(&suspect)));
        }
        if no_data > 0 {
            parts.push(format!("{no_data} without data"));
        }
        Health {
            status: HealthStatus::Degraded,
            reason: Some(parts.join("; ")),
        }
    }
}

fn join(ids: &[&SensorId]) -> String {
    const SHOWN: usize = 5;
    let mut out: Vec<&str> = ids.iter().take(SHOWN).map(|id| id.as_str()).collect();
    let rest = ids.len().saturating_sub(SHOWN);
    let more = format!("+{rest} more");
    if rest > 0 {
        out.push(&more);
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: SensorStatus, quality: Quality) -> SensorState {
        SensorState {
            value: Some(1.0),
            quality,
            ts_ms: 1,
            status,
            reason: None,
        }
    }

    fn ids(n: usize) -> Vec<SensorId> {
        (0..n)
            .map(|i| SensorId::parse(&format!("S{i}")).unwrap())
            .collect()
    }

    #[test]
    fn all_good_is_ok_and_all_bad_is_fault() {
        let ids = ids(3);
        let good = state(SensorStatus::Ok, Quality::Good);
        let h = Health::from_sensors(ids.iter().map(|i| (i, &good)));
        assert_eq!(h.status, HealthStatus::Ok);
        let bad = state(SensorStatus::DeviceError, Quality::Bad);
        let h = Health::from_sensors(ids.iter().map(|i| (i, &bad)));
        assert_eq!(h.status, HealthStatus::Fault);
    }

    #[test]
    fn one_bad_sensor_degrades_and_is_named() {
        let ids = ids(3);
        let good = state(SensorStatus::Ok, Quality::Good);
        let bad = state(SensorStatus::Stale, Quality::Bad);
        let states = [&good, &bad, &good];
        let h = Health::from_sensors(ids.iter().zip(states));
        assert_eq!(h.status, HealthStatus::Degraded);
        assert_eq!(h.reason.as_deref(), Some("bad: S1"));
    }

    #[test]
    fn nothing_read_is_unknown() {
        let ids = ids(2);
        let none = SensorState::no_data();
        let h = Health::from_sensors(ids.iter().map(|i| (i, &none)));
        assert_eq!(h.status, HealthStatus::Unknown);
    }
}
