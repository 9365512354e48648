//! Recorded cycles of the ZeMA hydraulic test rig, replayed by the simulators.
//!
//! Data: N. Helwig, E. Pignanelli, A. Schütze, "Condition Monitoring of a Complex
//! Hydraulic System Using Multivariate Statistics", I2MTC 2015,
//! doi:10.1109/I2MTC.2015.7151267; UCI Machine Learning Repository data set 447.
//! Licensed CC BY 4.0. The subset shipped here is `protocols/data/rig-cycles.tsv`
//! (see `protocols/data/README.md`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Names of the rig's 17 sensors, in the order of the recordings.
pub const SENSORS: [&str; 17] = [
    "PS1", "PS2", "PS3", "PS4", "PS5", "PS6", "EPS1", "FS1", "FS2", "TS1", "TS2", "TS3", "TS4",
    "VS1", "CE", "CP", "SE",
];

/// Seconds in one load cycle of the rig.
pub const CYCLE_SECS: usize = 60;

const EMBEDDED: &str = include_str!("../data/rig-cycles.tsv");

/// A recorded condition of the rig's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RigCondition {
    /// Cooler 100 %, valve 100 %, no pump leakage, accumulator 130 bar.
    Healthy,
    /// Cooler at 20 % efficiency.
    CoolerDegraded,
    /// Valve switching with severe lag (80 %).
    ValveLag,
    /// Severe internal pump leakage.
    PumpLeakage,
    /// Accumulator pressure close to total failure (90 bar).
    AccumulatorLow,
}

impl RigCondition {
    /// Every condition, in a stable order (also the code written to the
    /// simulator's condition register).
    pub const ALL: [RigCondition; 5] = [
        RigCondition::Healthy,
        RigCondition::CoolerDegraded,
        RigCondition::ValveLag,
        RigCondition::PumpLeakage,
        RigCondition::AccumulatorLow,
    ];

    /// The condition's name as used in config and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            RigCondition::Healthy => "healthy",
            RigCondition::CoolerDegraded => "cooler_degraded",
            RigCondition::ValveLag => "valve_lag",
            RigCondition::PumpLeakage => "pump_leakage",
            RigCondition::AccumulatorLow => "accumulator_low",
        }
    }

    /// Numeric code (index in [`Self::ALL`]).
    pub fn code(self) -> u16 {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0) as u16
    }

    /// The condition of a numeric code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

impl fmt::Display for RigCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RigCondition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown rig condition {s:?}; known: {}", known.join(", "))
            })
    }
}

/// One recorded cycle: 60 values for each of the 17 sensors.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Index of the cycle in the original data set.
    pub original_index: u32,
    /// `values[sensor][second]`.
    pub values: Vec<[f64; CYCLE_SECS]>,
}

/// The recording played as a rig controller would: its process image changes
/// once per recorded second, `speed` recorded seconds per second, from
/// `phase` seconds in; the condition can be switched while it runs. Both
/// simulators (Modbus and OPC-UA) serve from one of these.
pub struct Replay {
    recording: Arc<RigRecording>,
    condition: AtomicU16,
    epoch: tokio::time::Instant,
    phase: f64,
    speed: f64,
}

/// One recorded second of a [`Replay`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayedSecond {
    /// Seconds since the start of the recording (whole).
    pub second: f64,
    /// The 17 sensors, in [`SENSORS`] order.
    pub values: [f64; SENSORS.len()],
    /// Seconds into the running load cycle (0–59).
    pub timer: u16,
}

impl Replay {
    /// Starts replaying now.
    pub fn new(
        recording: Arc<RigRecording>,
        condition: RigCondition,
        phase: f64,
        speed: f64,
    ) -> Self {
        Self {
            recording,
            condition: AtomicU16::new(condition.code()),
            epoch: tokio::time::Instant::now(),
            phase,
            speed,
        }
    }

    /// The condition replayed.
    pub fn condition(&self) -> RigCondition {
        RigCondition::from_code(self.condition_code()).unwrap_or(RigCondition::Healthy)
    }

    /// Its code (see [`RigCondition::code`]).
    pub fn condition_code(&self) -> u16 {
        self.condition.load(Ordering::Relaxed)
    }

    /// Switches the condition replayed.
    pub fn set_condition(&self, condition: RigCondition) {
        self.condition.store(condition.code(), Ordering::Relaxed);
    }

    /// The recorded second playing now.
    pub fn now(&self) -> ReplayedSecond {
        let second = (self.epoch.elapsed().as_secs_f64() * self.speed + self.phase).floor();
        ReplayedSecond {
            second,
            values: self.recording.values_at(self.condition(), second),
            timer: second.rem_euclid(CYCLE_SECS as f64) as u16,
        }
    }
}

/// The recorded cycles of every condition.
#[derive(Debug, Clone)]
pub struct RigRecording {
    cycles: HashMap<RigCondition, Vec<Cycle>>,
}

/// Why the recording could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rig recording line {line}: {message}")]
pub struct RecordingError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl RigRecording {
    /// The subset of the rig data embedded in the binary.
    pub fn embedded() -> Self {
        // The embedded file is checked by a unit test; failing here is a build defect.
        Self::parse(EMBEDDED).expect("embedded rig recording is valid")
    }

    /// Parses the `rig-cycles.tsv` format.
    pub fn parse(text: &str) -> Result<Self, RecordingError> {
        let mut cycles: HashMap<RigCondition, Vec<Cycle>> = HashMap::new();
        let mut current: Option<(RigCondition, Cycle)> = None;
        for (n, line) in text.lines().enumerate() {
            let err = |message: String| RecordingError {
                line: n + 1,
                message,
            };
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 7 + CYCLE_SECS {
                return Err(err(format!(
                    "expected {} fields, found {}",
                    7 + CYCLE_SECS,
                    fields.len()
                )));
            }
            let condition: RigCondition = fields[0].parse().map_err(err)?;
            let original_index: u32 = fields[1]
                .parse()
                .map_err(|_| err(format!("bad cycle index {:?}", fields[1])))?;
            let sensor = fields[6];
            let mut values = [0.0; CYCLE_SECS];
            for (slot, raw) in values.iter_mut().zip(&fields[7..]) {
                *slot = raw.parse().map_err(|_| err(format!("bad value {raw:?}")))?;
            }
            let same_cycle = matches!(&current, Some((c, cy)) if *c == condition && cy.original_index == original_index);
            if !same_cycle {
                if let Some((c, cycle)) = current.take() {
                    finish_cycle(&mut cycles, c, cycle).map_err(err)?;
                }
                current = Some((
                    condition,
                    Cycle {
                        original_index,
                        values: Vec::with_capacity(SENSORS.len()),
                    },
                ));
            }
            let (_, cycle) = current.as_mut().ok_or_else(|| err("no cycle".into()))?;
            let expected = SENSORS[cycle.values.len().min(SENSORS.len() - 1)];
            if cycle.values.len() >= SENSORS.len() || sensor != expected {
                return Err(err(format!("expected sensor {expected}, found {sensor}")));
            }
            cycle.values.push(values);
        }
        if let Some((c, cycle)) = current.take() {
            finish_cycle(&mut cycles, c, cycle).map_err(|message| RecordingError {
                line: text.lines().count(),
                message,
            })?;
        }
        for condition in RigCondition::ALL {
            if !cycles.contains_key(&condition) {
                return Err(RecordingError {
                    line: 0,
                    message: format!("no cycles for condition {condition}"),
                });
            }
        }
        Ok(Self { cycles })
    }

    /// The recorded cycles of `condition`.
    pub fn cycles(&self, condition: RigCondition) -> &[Cycle] {
        self.cycles
            .get(&condition)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The 17 values at `t` seconds into the replay of `condition`, linearly
    /// interpolated between the recorded seconds so that a fast poller sees
    /// values move; the recording loops over its cycles.
    pub fn values_at(&self, condition: RigCondition, t: f64) -> [f64; 17] {
        let cycles = self.cycles(condition);
        let mut out = [0.0; 17];
        if cycles.is_empty() {
            return out;
        }
        let t = if t.is_finite() { t.max(0.0) } else { 0.0 };
        let total = cycles.len() * CYCLE_SECS;
        let whole = t.floor() as usize;
        let frac = t - t.floor();
        let at = |k: usize, sensor: usize| {
            let k = k % total;
            cycles[k / CYCLE_SECS].values[sensor][k % CYCLE_SECS]
        };
        for (sensor, slot) in out.iter_mut().enumerate() {
            let a = at(whole, sensor);
            let b = at(whole + 1, sensor);
            *slot = a + (b - a) * frac;
        }
        out
    }
}

fn finish_cycle(
    cycles: &mut HashMap<RigCondition, Vec<Cycle>>,
    condition: RigCondition,
    cycle: Cycle,
) -> Result<(), String> {
    if cycle.values.len() != SENSORS.len() {
        return Err(format!(
            "cycle {} of {condition} has {} sensors, expected {}",
            cycle.original_index,
            cycle.values.len(),
            SENSORS.len()
        ));
    }
    cycles.entry(condition).or_default().push(cycle);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_recording_has_every_condition() {
        let rec = RigRecording::embedded();
        for c in RigCondition::ALL {
            assert_eq!(rec.cycles(c).len(), 6, "{c}");
            assert_eq!(rec.cycles(c)[0].values.len(), 17);
        }
        assert_eq!(rec.cycles(RigCondition::Healthy)[0].original_index, 1789);
    }

    #[test]
    fn replay_interpolates_and_loops() {
        let rec = RigRecording::embedded();
        let c = RigCondition::Healthy;
        let first = &rec.cycles(c)[0].values;
        assert_eq!(rec.values_at(c, 0.0)[0], first[0][0]);
        let mid = rec.values_at(c, 0.5)[0];
        assert!((mid - (first[0][0] + first[0][1]) / 2.0).abs() < 1e-9);
        let loop_len = (6 * CYCLE_SECS) as f64;
        assert_eq!(rec.values_at(c, loop_len)[3], rec.values_at(c, 0.0)[3]);
    }

    #[test]
    fn conditions_differ_where_the_physics_says() {
        // A degraded cooler runs the oil hotter (TS1 is index 9).
        let rec = RigRecording::embedded();
        let mean = |c| {
            let cy = rec.cycles(c);
            cy.iter()
                .map(|k| k.values[9].iter().sum::<f64>())
                .sum::<f64>()
                / (cy.len() * CYCLE_SECS) as f64
        };
        assert!(mean(RigCondition::CoolerDegraded) > mean(RigCondition::Healthy) + 5.0);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = RigRecording::parse("# c\nhealthy\t1\t2").unwrap_err();
        assert_eq!(err.line, 2);
        assert!("nonsense"
            .parse::<RigCondition>()
            .unwrap_err()
            .contains("healthy"));
    }
}
