//! Reads a folder in the format of the hydraulic rig data set
//! (`../shared/data/hydraulic-rig`): one `SENSOR.txt.xz` (or `SENSOR.txt`) per
//! sensor, a tab-separated matrix with one row per cycle and one column per
//! second, and `profile.txt(.xz)` with the five targets per cycle. Any number of
//! cycles; the same file names.
//!
//! Data: ZeMA hydraulic test rig, CC BY 4.0 — N. Helwig, E. Pignanelli,
//! A. Schütze, "Condition Monitoring of a Complex Hydraulic System Using
//! Multivariate Statistics", I2MTC 2015, doi:10.1109/I2MTC.2015.7151267; UCI
//! Machine Learning Repository, data set 447.

use std::path::{Path, PathBuf};

use hydrowatch_models::cycle::{Cycle, CYCLE_SECONDS, SENSORS};
use hydrowatch_models::forest::Target;

/// The conditions a cycle was recorded in (`profile.txt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conditions {
    /// Cooler efficiency, %: 3, 20 or 100.
    pub cooler: i32,
    /// Valve condition, %: 73, 80, 90 or 100.
    pub valve: i32,
    /// Internal pump leakage: 0 none, 1 weak, 2 severe.
    pub pump: i32,
    /// Accumulator pressure, bar: 90, 100, 115 or 130.
    pub accumulator: i32,
    /// 0 stable, 1 not yet stable.
    pub stable: i32,
}

impl Conditions {
    /// The label of `target`.
    pub fn label(&self, target: Target) -> i32 {
        match target {
            Target::Cooler => self.cooler,
            Target::Valve => self.valve,
            Target::Pump => self.pump,
            Target::Accumulator => self.accumulator,
            Target::Stable => self.stable,
        }
    }

    /// Every target's label, in [`Target::ALL`] order.
    pub fn labels(&self) -> [i32; 5] {
        Target::ALL.map(|t| self.label(t))
    }

    /// No component degraded.
    pub fn healthy(&self) -> bool {
        self.cooler == 100 && self.valve == 100 && self.pump == 0 && self.accumulator == 130
    }
}

/// The cycles of a folder with their conditions, in file order.
#[derive(Debug, Clone)]
pub struct RigData {
    pub dir: PathBuf,
    /// One per row.
    pub cycles: Vec<Cycle>,
    /// The conditions of each.
    pub conditions: Vec<Conditions>,
}

/// Why a folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RigDataError {
    /// A file is missing or unreadable.
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// A file's content is not what the format says.
    #[error("{path}, row {row}: {reason}")]
    Format {
        path: PathBuf,
        /// 1-based row.
        row: usize,
        reason: String,
    },
    /// Files disagree on the number of cycles.
    #[error("{path} has {got} rows; {expected_from} has {expected}")]
    Rows {
        path: PathBuf,
        /// Its rows.
        got: usize,
        /// The file it was compared with.
        expected_from: String,
        /// That file's rows.
        expected: usize,
    },
}

/// `NAME.txt.xz` or `NAME.txt` in `dir`, decompressed.
fn read_text(dir: &Path, name: &str) -> Result<(PathBuf, String), RigDataError> {
    let xz = dir.join(format!("{name}.txt.xz"));
    let plain = dir.join(format!("{name}.txt"));
    let failed = |path: &Path, reason: String| RigDataError::File {
        path: path.to_path_buf(),
        reason,
    };
    if xz.exists() {
        let raw = std::fs::read(&xz).map_err(|e| failed(&xz, e.to_string()))?;
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
            .map_err(|e| failed(&xz, format!("not valid xz: {e:?}")))?;
        let text = String::from_utf8(out).map_err(|_| failed(&xz, "not UTF-8 text".into()))?;
        Ok((xz, text))
    } else {
        let text = std::fs::read_to_string(&plain).map_err(|e| {
            failed(
                &plain,
                format!("{e} (neither {name}.txt.xz nor {name}.txt is readable)"),
            )
        })?;
        Ok((plain, text))
    }
}

/// Rows of numbers, each of `width` columns.
fn matrix(path: &Path, text: &str, width: usize) -> Result<Vec<Vec<f64>>, RigDataError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let row: Result<Vec<f64>, _> = line.split_whitespace().map(str::parse::<f64>).collect();
            let row = row.map_err(|e| RigDataError::Format {
                path: path.to_path_buf(),
                row: i + 1,
                reason: format!("not a number: {e}"),
            })?;
            if row.len() != width {
                return Err(RigDataError::Format {
                    path: path.to_path_buf(),
                    row: i + 1,
                    reason: format!("{} columns, expected {width}", row.len()),
                });
            }
            if row.iter().any(|v| !v.is_finite()) {
                return Err(RigDataError::Format {
                    path: path.to_path_buf(),
                    row: i + 1,
                    reason: "a value is not finite".into(),
                });
            }
            Ok(row)
        })
        .collect()
}

impl RigData {
    /// Reads every sensor file and the profile of `dir`.
    pub fn load(dir: &Path) -> Result<RigData, RigDataError> {
        let (profile_path, text) = read_text(dir, "profile")?;
        let profile = matrix(&profile_path, &text, 5)?;
        let conditions: Vec<Conditions> = profile
            .iter()
            .map(|r| Conditions {
                cooler: r[0] as i32,
                valve: r[1] as i32,
                pump: r[2] as i32,
                accumulator: r[3] as i32,
                stable: r[4] as i32,
            })
            .collect();
        let mut per_sensor = Vec::with_capacity(SENSORS.len());
        for name in SENSORS {
            let (path, text) = read_text(dir, name)?;
            let rows = matrix(&path, &text, CYCLE_SECONDS)?;
            if rows.len() != conditions.len() {
                return Err(RigDataError::Rows {
                    path,
                    got: rows.len(),
                    expected_from: profile_path.display().to_string(),
                    expected: conditions.len(),
                });
            }
            per_sensor.push(rows);
        }
        let cycles = (0..conditions.len())
            .map(|c| Cycle {
                values: per_sensor.iter().map(|rows| rows[c].clone()).collect(),
            })
            .collect();
        Ok(RigData {
            dir: dir.to_path_buf(),
            cycles,
            conditions,
        })
    }
}
