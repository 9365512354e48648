//! `supervision.toml`: how each level of the tree supervises, validated at start.

use std::time::Duration;

use serde::Deserialize;

use crate::supervision::{Backoff, Intensity, RestartType, Strategy, SupervisorSpec};

/// Restart backoff of one level, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Delay before the first restart, ms.
    pub initial_ms: u64,
    /// Largest delay, ms.
    pub max_ms: u64,
    /// Growth factor (≥ 1).
    pub multiplier: f64,
    /// Random spread in `[0, 1]`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 100,
            max_ms: 10_000,
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

/// One level of the tree, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LevelConfig {
    /// Which children restart together.
    pub strategy: Strategy,
    /// Restarts tolerated within `within_secs`.
    pub max_restarts: u32,
    /// The intensity period, seconds.
    pub within_secs: f64,
    /// Restart backoff.
    pub backoff: BackoffConfig,
    /// Grace period for a child to stop before it is killed, ms.
    pub shutdown_timeout_ms: u64,
    /// How this supervisor's parent restarts it (ignored for the root).
    pub restart: RestartType,
    /// How this supervisor restarts its children (for the root: unused; its
    /// children are the levels below, each with its own `restart`).
    pub children: RestartType,
}

impl Default for LevelConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            max_restarts: 5,
            within_secs: 30.0,
            backoff: BackoffConfig::default(),
            shutdown_timeout_ms: 5_000,
            restart: RestartType::Permanent,
            children: RestartType::Permanent,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    /// The root of the tree.
    #[serde(default)]
    pub root: LevelConfig,
    /// The connections supervisor and its connection actors.
    #[serde(default)]
    pub connections: LevelConfig,
    /// The plant supervisor and its equipment actors.
    #[serde(default)]
    pub plant: LevelConfig,
    /// Each equipment actor as supervisor of its sensors.
    #[serde(default = "equipment_default")]
    pub equipment: LevelConfig,
    /// The sessions supervisor and its session actors.
    #[serde(default = "sessions_default")]
    pub sessions: LevelConfig,
}

fn equipment_default() -> LevelConfig {
    LevelConfig {
        strategy: Strategy::RestForOne,
        ..LevelConfig::default()
    }
}

fn sessions_default() -> LevelConfig {
    LevelConfig {
        children: RestartType::Temporary,
        ..LevelConfig::default()
    }
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            root: LevelConfig::default(),
            connections: LevelConfig::default(),
            plant: LevelConfig::default(),
            equipment: equipment_default(),
            sessions: sessions_default(),
        }
    }
}

/// A value in the file that cannot work; names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: {problem}")]
pub struct InvalidSetting {
    /// Dotted key, e.g. `equipment.backoff.jitter`.
    pub key: String,
    /// The value found.
    pub value: String,
    /// Why it is refused.
    pub problem: String,
}

impl SupervisionConfig {
    /// Checks every level; the first impossible value is reported with its key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (name, level) in [
            ("root", &self.root),
            ("connections", &self.connections),
            ("plant", &self.plant),
            ("equipment", &self.equipment),
            ("sessions", &self.sessions),
        ] {
            level.validate(name)?;
        }
        Ok(())
    }
}

impl LevelConfig {
    fn validate(&self, level: &str) -> Result<(), InvalidSetting> {
        let bad = |key: &str, value: String, problem: &str| InvalidSetting {
            key: format!("{level}.{key}"),
            value,
            problem: problem.into(),
        };
        if !(self.within_secs.is_finite() && self.within_secs > 0.0 && self.within_secs <= 86_400.0)
        {
            return Err(bad(
                "within_secs",
                self.within_secs.to_string(),
                "must be more than 0 and at most 86400",
            ));
        }
        let b = &self.backoff;
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
            return Err(bad(
                "backoff.multiplier",
                b.multiplier.to_string(),
                "must be at least 1",
            ));
        }
        if !(b.jitter.is_finite() && (0.0..=1.0).contains(&b.jitter)) {
            return Err(bad(
                "backoff.jitter",
                b.jitter.to_string(),
                "must be between 0 and 1",
            ));
        }
        if b.initial_ms > b.max_ms {
            return Err(bad(
                "backoff.initial_ms",
                b.initial_ms.to_string(),
                "must not exceed backoff.max_ms",
            ));
        }
        if b.max_ms > 3_600_000 {
            return Err(bad(
                "backoff.max_ms",
                b.max_ms.to_string(),
                "must be at most 3600000 (one hour)",
            ));
        }
        if self.shutdown_timeout_ms == 0 || self.shutdown_timeout_ms > 600_000 {
            return Err(bad(
                "shutdown_timeout_ms",
                self.shutdown_timeout_ms.to_string(),
                "must be between 1 and 600000",
            ));
        }
        Ok(())
    }

    /// The runtime form.
    pub fn spec(&self) -> SupervisorSpec {
        SupervisorSpec {
            strategy: self.strategy,
            intensity: Intensity {
                max_restarts: self.max_restarts,
                within: Duration::from_secs_f64(self.within_secs),
            },
            backoff: Backoff {
                initial: Duration::from_millis(self.backoff.initial_ms),
                max: Duration::from_millis(self.backoff.max_ms),
                multiplier: self.backoff.multiplier,
                jitter: self.backoff.jitter,
            },
            shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_that_validate() {
        let cfg: SupervisionConfig = toml::from_str("").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.equipment.strategy, Strategy::RestForOne);
        assert_eq!(cfg.sessions.children, RestartType::Temporary);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<SupervisionConfig>("[plant]\nmax_restart = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_restart"), "{err}");
    }

    #[test]
    fn impossible_value_is_named() {
        let cfg: SupervisionConfig = toml::from_str("[equipment.backoff]\njitter = 1.5\n").unwrap();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.key, "equipment.backoff.jitter");
        let cfg: SupervisionConfig = toml::from_str("[root]\nwithin_secs = 0\n").unwrap();
        assert_eq!(cfg.validate().unwrap_err().key, "root.within_secs");
    }
}
