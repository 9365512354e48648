//! A unit's load cycle in `plant.toml`: which sensors the cycle models read
//! and how a cycle is cut.

use serde::Deserialize;

use hydrowatch_models::SensorId;

use super::*;

/// How an equipment unit's samples are cut into load cycles for the cycle
/// models (`[equipment.cycle]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleConfig {
    /// The sensor holding the PLC's cycle timer (seconds into the cycle).
    pub phase_sensor: SensorId,
    /// Seconds a sensor may miss in a cycle and still be scored (filled by
    /// interpolation).
    #[serde(default = "default_max_missing")]
    pub max_missing: usize,
    /// A pause between polls longer than this ends the cycle, ms.
    #[serde(default = "default_max_gap")]
    pub max_gap_ms: i64,
}

fn default_max_missing() -> usize {
    3
}

fn default_max_gap() -> i64 {
    10_000
}

/// The cycle layout of an equipment carrying `sensors`, or what is missing.
pub(super) fn cycle_layout(
    c: &CycleConfig,
    sensors: &[SensorConfig],
    key: &str,
) -> Result<hydrowatch_models::cycle::CycleLayout, String> {
    use hydrowatch_models::cycle::SENSORS;
    let index = |id: &str| sensors.iter().position(|s| s.id.as_str() == id);
    let phase_column = index(c.phase_sensor.as_str()).ok_or_else(|| {
        format!(
            "{key}.phase_sensor = {:?}: not a sensor of this equipment",
            c.phase_sensor.as_str()
        )
    })?;
    let missing: Vec<&str> = SENSORS
        .iter()
        .copied()
        .filter(|s| index(s).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{key}: the cycle models need the rig's 17 sensors ({}); this equipment lacks {}",
            SENSORS.join(", "),
            missing.join(", ")
        ));
    }
    if c.max_missing >= hydrowatch_models::cycle::CYCLE_SECONDS / 2 {
        return Err(format!(
            "{key}.max_missing = {}: must be below {}",
            c.max_missing,
            hydrowatch_models::cycle::CYCLE_SECONDS / 2
        ));
    }
    if c.max_gap_ms < 1 {
        return Err(format!(
            "{key}.max_gap_ms = {}: must be at least 1",
            c.max_gap_ms
        ));
    }
    Ok(hydrowatch_models::cycle::CycleLayout {
        phase_column,
        columns: SENSORS.map(|s| index(s).unwrap_or(0)),
        max_missing: c.max_missing,
        max_gap_ms: c.max_gap_ms,
    })
}
