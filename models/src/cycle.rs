//! Per-cycle features: what the cycle models see of one 60 s load cycle of a
//! hydraulic rig.
//!
//! A cycle is the 17 sensors of the rig at 1 Hz for [`CYCLE_SECONDS`] seconds,
//! in [`SENSORS`] order (the order of the rig data set). For each sensor the
//! features are, in this order ([`FEATURES_PER_SENSOR`] of them):
//!
//! | # | feature | why |
//! |---|---|---|
//! | 0 | mean | the operating level (accumulator pressure, cooler temperature) |
//! | 1 | standard deviation | how much the load cycle moves the signal |
//! | 2 | minimum | |
//! | 3 | maximum | |
//! | 4 | slope (unit per second, least squares) | warming or cooling over the cycle |
//! | 5–10 | mean of each 10 s segment | the shape of the cycle |
//!
//! Then the **step responses** of [`STEP_SENSORS`] (PS1, PS2, PS3, FS1, EPS1,
//! SE) to the load steps of the rig's cycle, which switch at the seconds in
//! [`LOAD_STEPS`] (0, 9, 19, 29, 39, 49). A weak accumulator buffers less, so
//! pressure and flow settle faster or overshoot differently after a step; a
//! lagging valve completes less of the step at 9 s in its first second. For
//! each step sensor and each step `t0` (in that order), with `v` the sensor's
//! values:
//!
//! - `plat` = mean of `v[t0+3..=t0+8]` (where the step settles),
//! - `prev` = mean of `v[t0-3..=t0-1]` (for `t0` = 0: `v[57..=59]`, the end of
//!   the cycle, which repeats),
//! - `step` = `plat − prev`, `sg` = its sign (+1 for 0),
//! - for `j` = 0, 1, 2: `ov_j` = `v[t0+j] − plat` (overshoot) and
//!   `frac_j` = `(v[t0+j] − prev) / (|step| + 0.001) · sg` (share of the step
//!   done after `j` s),
//! - in the order ov0, frac0, ov1, frac1, ov2, frac2, step: 7 per step.
//!
//! 17 × 11 + 6 × 6 × 7 = 439 features, named by [`feature_names`]. The choice
//! was measured on the rig data with 5-fold cross-validation that keeps runs of
//! cycles together (models/artifacts/MODEL_CARD.md): the step responses lift
//! valve accuracy from about 89 % to 98 % and accumulator from about 80 % to 96 %.

use serde::{Deserialize, Serialize};

/// The rig's sensors, in the order of the data set and of a cycle's rows.
pub const SENSORS: [&str; 17] = [
    "PS1", "PS2", "PS3", "PS4", "PS5", "PS6", "EPS1", "FS1", "FS2", "TS1", "TS2", "TS3", "TS4",
    "VS1", "CE", "CP", "SE",
];

/// Seconds (samples at 1 Hz) in a cycle.
pub const CYCLE_SECONDS: usize = 60;

/// Segments a cycle is cut into for the shape features.
pub const SEGMENTS: usize = 6;

/// Features computed per sensor.
pub const FEATURES_PER_SENSOR: usize = 5 + SEGMENTS;

/// Sensors whose step responses are features (indices into [`SENSORS`]:
/// PS1, PS2, PS3, FS1, EPS1, SE).
pub const STEP_SENSORS: [usize; 6] = [0, 1, 2, 7, 6, 16];

/// Seconds of the cycle at which the rig's load switches.
pub const LOAD_STEPS: [usize; 6] = [0, 9, 19, 29, 39, 49];

/// Features per step sensor and step.
pub const FEATURES_PER_STEP: usize = 7;

/// Features of a cycle.
pub const FEATURES: usize =
    SENSORS.len() * FEATURES_PER_SENSOR + STEP_SENSORS.len() * LOAD_STEPS.len() * FEATURES_PER_STEP;

/// One cycle: per sensor (in [`SENSORS`] order), one value per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    /// `values[s][t]`: sensor `s` at second `t`.
    pub values: Vec<Vec<f64>>,
}

/// Why a cycle cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CycleError {
    /// Not 17 sensors.
    #[error("a cycle has {expected} sensors ({names}); got {got}")]
    SensorCount {
        /// Sensors expected.
        expected: usize,
        /// Their names.
        names: String,
        /// Sensors given.
        got: usize,
    },
    /// A sensor without 60 values.
    #[error("sensor {sensor} has {got} values; a cycle has {expected}")]
    Length {
        sensor: &'static str,
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A value that is not a finite number.
    #[error("sensor {sensor} at second {second} is not a finite number")]
    NotFinite {
        sensor: &'static str,
        /// Index of the value: seconds into the cycle, from 0.
        second: usize,
    },
}

impl Cycle {
    /// Checks the shape and values.
    pub fn validate(&self) -> Result<(), CycleError> {
        if self.values.len() != SENSORS.len() {
            return Err(CycleError::SensorCount {
                expected: SENSORS.len(),
                names: SENSORS.join(", "),
                got: self.values.len(),
            });
        }
        for (name, row) in SENSORS.iter().zip(&self.values) {
            if row.len() != CYCLE_SECONDS {
                return Err(CycleError::Length {
                    sensor: name,
                    expected: CYCLE_SECONDS,
                    got: row.len(),
                });
            }
            if let Some(second) = row.iter().position(|v| !v.is_finite()) {
                return Err(CycleError::NotFinite {
                    sensor: name,
                    second,
                });
            }
        }
        Ok(())
    }

    /// The cycle's features (see the module documentation), after validation.
    pub fn features(&self) -> Result<[f64; FEATURES], CycleError> {
        self.validate()?;
        let mut out = [0.0; FEATURES];
        for (s, row) in self.values.iter().enumerate() {
            sensor_features(
                row,
                &mut out[s * FEATURES_PER_SENSOR..(s + 1) * FEATURES_PER_SENSOR],
            );
        }
        let mut at = SENSORS.len() * FEATURES_PER_SENSOR;
        for &s in &STEP_SENSORS {
            for &t0 in &LOAD_STEPS {
                step_features(&self.values[s], t0, &mut out[at..at + FEATURES_PER_STEP]);
                at += FEATURES_PER_STEP;
            }
        }
        Ok(out)
    }
}

/// Writes one sensor's features into `out` (length [`FEATURES_PER_SENSOR`]).
fn sensor_features(row: &[f64], out: &mut [f64]) {
    let n = row.len() as f64;
    let mean = row.iter().sum::<f64>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let min = row.iter().copied().fold(f64::INFINITY, f64::min);
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Least-squares slope against t = 0..n-1.
    let t_mean = (n - 1.0) / 2.0;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in row.iter().enumerate() {
        let dt = t as f64 - t_mean;
        sxy += dt * (v - mean);
        sxx += dt * dt;
    }
    out[0] = mean;
    out[1] = var.sqrt();
    out[2] = min;
    out[3] = max;
    out[4] = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let seg = row.len() / SEGMENTS;
    for k in 0..SEGMENTS {
        let part = &row[k * seg..(k + 1) * seg];
        out[5 + k] = part.iter().sum::<f64>() / part.len() as f64;
    }
}

/// Writes the response of `row` to the load step at `t0` into `out` (length
/// [`FEATURES_PER_STEP`]); see the module documentation.
fn step_features(row: &[f64], t0: usize, out: &mut [f64]) {
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let plat = mean(&row[t0 + 3..=t0 + 8]);
    let prev = if t0 == 0 {
        mean(&row[57..=59])
    } else {
        mean(&row[t0 - 3..=t0 - 1])
    };
    let step = plat - prev;
    let sign = if step + 1e-12 >= 0.0 { 1.0 } else { -1.0 };
    for j in 0..3 {
        out[2 * j] = row[t0 + j] - plat;
        out[2 * j + 1] = (row[t0 + j] - prev) / (step.abs() + 1e-3) * sign;
    }
    out[6] = step;
}

/// How an equipment unit's live samples are cut into cycles.
///
/// The rig's PLC exposes the second into the running load cycle (its cycle
/// timer) as one more sensor; a cycle ends when that value wraps. Each of the
/// 17 sensors' values is placed at the second its poll read, so the cycle is
/// aligned with the load steps whatever the poll's phase or the wall-clock
/// speed of the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleLayout {
    /// Index, among the equipment's sensors, of the cycle timer.
    pub phase_column: usize,
    /// Index, among the equipment's sensors, of each of [`SENSORS`].
    pub columns: [usize; 17],
    /// Seconds a sensor may miss in a cycle, filled by interpolation from
    /// its neighbours; with more the cycle is not scored.
    pub max_missing: usize,
    /// A pause between two polls longer than this ends the cycle being
    /// assembled (whatever the timer says), ms.
    pub max_gap_ms: i64,
}

/// What [`CycleAssembler::push`] hands back when a cycle ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A cycle to score.
    Complete {
        cycle: Cycle,
        /// When its first sample was read, ms since the Unix epoch.
        start_ms: i64,
        /// When its last sample was read.
        end_ms: i64,
        /// Values filled by interpolation.
        filled: usize,
    },
    /// Too many seconds were missing (the first, partial cycle after a
    /// start, or a gap in polling): not scored.
    Incomplete {
        /// When its first sample was read.
        start_ms: i64,
        /// The most seconds missing from one sensor.
        missing: usize,
    },
}

/// Cuts live samples into cycles (see [`CycleLayout`]).
#[derive(Debug, Clone)]
pub struct CycleAssembler {
    layout: CycleLayout,
    values: Vec<[f64; CYCLE_SECONDS]>,
    last_phase: Option<usize>,
    start_ms: i64,
    last_ms: i64,
}

impl CycleAssembler {
    /// An empty assembler.
    pub fn new(layout: CycleLayout) -> CycleAssembler {
        CycleAssembler {
            layout,
            values: vec![[f64::NAN; CYCLE_SECONDS]; SENSORS.len()],
            last_phase: None,
            start_ms: 0,
            last_ms: 0,
        }
    }

    pub fn layout(&self) -> &CycleLayout {
        &self.layout
    }

    /// Adds one poll read at `ts_ms`: `values[i]` is the equipment's sensor
    /// `i` (`None` when missing or not usable). Returns the previous cycle
    /// when this poll starts a new one. A poll without a usable cycle timer
    /// cannot be placed and is skipped.
    pub fn push(&mut self, ts_ms: i64, values: &[Option<f64>]) -> Option<Assembled> {
        let phase = values
            .get(self.layout.phase_column)
            .copied()
            .flatten()
            .filter(|p| p.is_finite() && *p >= 0.0 && *p < CYCLE_SECONDS as f64)?
            as usize;
        let wrapped = self.last_phase.is_some_and(|last| phase < last);
        let gap = self.last_phase.is_some() && ts_ms - self.last_ms > self.layout.max_gap_ms;
        let done = if wrapped || gap {
            Some(self.finish())
        } else {
            None
        };
        if self.last_phase.is_none() {
            self.start_ms = ts_ms;
        }
        self.last_phase = Some(phase);
        self.last_ms = ts_ms;
        for (row, &column) in self.values.iter_mut().zip(&self.layout.columns) {
            // Two polls in one second: the first read stands.
            if row[phase].is_nan() {
                if let Some(v) = values
                    .get(column)
                    .copied()
                    .flatten()
                    .filter(|v| v.is_finite())
                {
                    row[phase] = v;
                }
            }
        }
        done
    }

    /// Ends the cycle being assembled and starts an empty one.
    fn finish(&mut self) -> Assembled {
        let start_ms = self.start_ms;
        let end_ms = self.last_ms;
        self.last_phase = None;
        let missing = self
            .values
            .iter()
            .map(|row| row.iter().filter(|v| v.is_nan()).count())
            .max()
            .unwrap_or(0);
        if missing > self.layout.max_missing {
            self.values.iter_mut().for_each(|r| r.fill(f64::NAN));
            return Assembled::Incomplete { start_ms, missing };
        }
        let mut filled = 0;
        let values = self
            .values
            .iter_mut()
            .map(|row| {
                filled += fill_gaps(row);
                let out = row.to_vec();
                row.fill(f64::NAN);
                out
            })
            .collect();
        Assembled::Complete {
            cycle: Cycle { values },
            start_ms,
            end_ms,
            filled,
        }
    }
}

/// Fills the missing (NaN) values of `row` linearly between the nearest
/// known neighbours (the nearest one at the ends); returns how many.
fn fill_gaps(row: &mut [f64]) -> usize {
    let known: Vec<usize> = (0..row.len()).filter(|&i| !row[i].is_nan()).collect();
    let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
        return 0;
    };
    let mut filled = 0;
    for i in 0..row.len() {
        if !row[i].is_nan() {
            continue;
        }
        filled += 1;
        row[i] = if i < first {
            row[first]
        } else if i > last {
            row[last]
        } else {
            let after = known.partition_point(|&k| k < i);
            let (a, b) = (known[after - 1], known[after]);
            row[a] + (row[b] - row[a]) * (i - a) as f64 / (b - a) as f64
        };
    }
    filled
}

/// The features' names, `SENSOR_feature`, in order.
pub fn feature_names() -> Vec<String> {
    let mut names = Vec::with_capacity(FEATURES);
    for sensor in SENSORS {
        for f in ["mean", "std", "min", "max", "slope"] {
            names.push(format!("{sensor}_{f}"));
        }
        for k in 0..SEGMENTS {
            let from = k * CYCLE_SECONDS / SEGMENTS;
            let to = (k + 1) * CYCLE_SECONDS / SEGMENTS;
            names.push(format!("{sensor}_mean_{from}_{to}s"));
        }
    }
    for &s in &STEP_SENSORS {
        for t0 in LOAD_STEPS {
            for f in ["ov0", "frac0", "ov1", "frac1", "ov2", "frac2", "step"] {
                names.push(format!("{}_step{t0}s_{f}", SENSORS[s]));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(f: impl Fn(usize, usize) -> f64) -> Cycle {
        Cycle {
            values: (0..17)
                .map(|s| (0..60).map(|t| f(s, t)).collect())
                .collect(),
        }
    }

    #[test]
    fn features_of_a_ramp_and_a_constant() {
        // Sensor 0 ramps 0..59, the others are constant at their index.
        let c = cycle(|s, t| if s == 0 { t as f64 } else { s as f64 });
        let f = c.features().unwrap();
        assert_eq!(f.len(), FEATURES);
        assert_eq!(&f[0..5], &[29.5, (3599.0f64 / 12.0).sqrt(), 0.0, 59.0, 1.0]);
        assert_eq!(&f[5..11], &[4.5, 14.5, 24.5, 34.5, 44.5, 54.5]);
        let ps2 = &f[FEATURES_PER_SENSOR..2 * FEATURES_PER_SENSOR];
        assert_eq!(
            ps2,
            &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        );
        let names = feature_names();
        assert_eq!(names.len(), FEATURES);
        assert_eq!(names[0], "PS1_mean");
        assert_eq!(names[10], "PS1_mean_50_60s");
        assert_eq!(names[186], "SE_mean_50_60s");
        assert_eq!(names[187], "PS1_step0s_ov0");
        assert_eq!(names[FEATURES - 1], "SE_step49s_step");
        assert_eq!(FEATURES, 439);
        // PS1's ramp: at t0 = 9 the plateau is mean(12..=17) = 14.5, before
        // it mean(6..=8) = 7.
        let at = 187 + 7;
        let expected = [
            9.0 - 14.5,
            (9.0 - 7.0) / (7.5 + 1e-3),
            10.0 - 14.5,
            (10.0 - 7.0) / (7.5 + 1e-3),
            11.0 - 14.5,
            (11.0 - 7.0) / (7.5 + 1e-3),
            7.5,
        ];
        assert_eq!(&f[at..at + 7], &expected);
        // A constant sensor has no step.
        let ps2 = 187 + 6 * 7;
        assert_eq!(&f[ps2..ps2 + 7], &[0.0; 7]);
    }

    #[test]
    fn malformed_cycles_name_what_is_wrong() {
        let mut c = cycle(|_, _| 1.0);
        c.values[13][7] = f64::NAN;
        assert_eq!(
            c.features().unwrap_err(),
            CycleError::NotFinite {
                sensor: "VS1",
                second: 7
            }
        );
        c.values[13].pop();
        assert!(matches!(
            c.features().unwrap_err(),
            CycleError::Length {
                sensor: "VS1",
                got: 59,
                ..
            }
        ));
        c.values.pop();
        assert!(matches!(
            c.features().unwrap_err(),
            CycleError::SensorCount { got: 16, .. }
        ));
    }

    fn layout() -> CycleLayout {
        // The equipment lists the timer first, then the 17 sensors reversed.
        let mut columns = [0; 17];
        for (s, c) in columns.iter_mut().enumerate() {
            *c = 17 - s;
        }
        CycleLayout {
            phase_column: 0,
            columns,
            max_missing: 3,
            max_gap_ms: 10_000,
        }
    }

    /// One poll at `second` of the cycle: sensor `s` reads `s * 100 + second`.
    fn poll(second: f64) -> Vec<Option<f64>> {
        let mut v = vec![Some(second)];
        v.extend(
            (0..17)
                .rev()
                .map(|s| Some(s as f64 * 100.0 + second.floor())),
        );
        v
    }

    #[test]
    fn a_cycle_ends_when_the_timer_wraps_and_gaps_are_filled() {
        let mut a = CycleAssembler::new(layout());
        let mut ts = 0;
        // Start mid-cycle: that first part is incomplete.
        for second in 30..60 {
            assert_eq!(a.push(ts, &poll(second as f64 + 0.4)), None);
            ts += 1000;
        }
        let first = a.push(ts, &poll(0.4));
        assert!(
            matches!(first, Some(Assembled::Incomplete { missing: 30, .. })),
            "{first:?}"
        );
        let start = ts;
        for second in 1..60 {
            ts += 1000;
            let mut p = poll(second as f64 + 0.4);
            if second == 20 || second == 21 {
                p[17] = None; // PS1 (listed last) missing twice
            }
            if second == 40 {
                p[0] = None; // no timer: the poll cannot be placed
            }
            a.push(ts, &p);
            if second == 10 {
                // A second poll in the same second does not overwrite.
                a.push(
                    ts + 10,
                    &poll(10.9)
                        .into_iter()
                        .map(|v| v.map(|x| x + 0.5))
                        .collect::<Vec<_>>(),
                );
            }
        }
        let Some(Assembled::Complete {
            cycle,
            start_ms,
            filled,
            ..
        }) = a.push(ts + 1000, &poll(0.2))
        else {
            panic!("a complete cycle");
        };
        assert_eq!(start_ms, start);
        // PS1 at 20, 21 and every sensor at 40 were filled.
        assert_eq!(filled, 2 + 17);
        assert_eq!(cycle.values[0][20], 20.0);
        assert_eq!(cycle.values[0][21], 21.0);
        assert_eq!(cycle.values[5][40], 540.0);
        assert_eq!(cycle.values[3][10], 310.0);
        assert_eq!(cycle.values[16][59], 1659.0);
        assert!(cycle.features().is_ok());
        // A long pause ends the cycle, whatever the timer says.
        let ended = a.push(ts + 60_000, &poll(5.0));
        assert!(
            matches!(ended, Some(Assembled::Incomplete { .. })),
            "{ended:?}"
        );
    }
}
