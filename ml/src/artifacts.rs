//! The trained artifacts and loading them into a [`Scorer`].
//!
//! Artifacts (see `models/artifacts/MODEL_CARD.md`):
//! - `rf-cycle.json.gz`: the RandomForest classifiers (`hydrowatch train`);
//! - `novelty.json.gz`: the novelty detectors of cycles and of single sample
//!   vectors (`hydrowatch train`);
//! - `xgb-cycle.json` and `xgb-cycle.onnx`: the XGBoost member
//!   (`models/xgboost/train_xgb.py`), run by [`crate::onnx`].
//!
//! Each member's `model_version` is the first 12 hex digits of the SHA-256 of
//! its artifact file, so a verdict names exactly the bytes that produced it.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use hydrowatch_models::forest::Forests;
use hydrowatch_models::novelty::Novelty;
use hydrowatch_models::scoring::{CycleMember, ForestMember, NoveltyMember, Scorer};

use crate::settings::ModelsSettings;

/// File name of the RandomForest artifact.
pub const FOREST_ARTIFACT: &str = "rf-cycle.json.gz";
/// File name of the novelty artifact.
pub const NOVELTY_ARTIFACT: &str = "novelty.json.gz";

const EMBEDDED_FOREST: &[u8] = include_bytes!("../../models/artifacts/rf-cycle.json.gz");
const EMBEDDED_NOVELTY: &[u8] = include_bytes!("../../models/artifacts/novelty.json.gz");
/// The XGBoost member's manifest and model, by file name.
const EMBEDDED_XGB: [(&str, &[u8]); 2] = [
    (
        crate::onnx::MANIFEST,
        include_bytes!("../../models/artifacts/xgb-cycle.json"),
    ),
    (
        "xgb-cycle.onnx",
        include_bytes!("../../models/artifacts/xgb-cycle.onnx"),
    ),
];

/// The novelty artifact: one detector of cycle features, one of single
/// sample vectors.
#[derive(Debug, Serialize, Deserialize)]
pub struct NoveltyArtifact {
    /// Fitted on the features of every training cycle.
    pub cycle: Novelty,
    /// Fitted on the 17 sensors' values at every second of the training cycles.
    pub sample: Novelty,
}

/// Why the models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file is not a model of this build.
    #[error("{what}: {reason}")]
    Invalid {
        /// The artifact.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// The first 12 hex digits of the SHA-256 of `parts`, one after the other.
pub fn version_of(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads gzip'd (or plain) JSON.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, ModelError> {
    let invalid = |reason: String| ModelError::Invalid {
        what: what.to_owned(),
        reason,
    };
    let mut plain = Vec::new();
    let json: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .map_err(|e| invalid(format!("not valid gzip: {e}")))?;
        &plain
    } else {
        bytes
    };
    serde_json::from_slice(json).map_err(|e| invalid(format!("not a model of this build: {e}")))
}

/// Writes `value` as JSON, gzip'd when `path` ends in `.gz`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<usize> {
    use std::io::Write as _;
    let mut bytes = serde_json::to_vec(value)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        bytes = gz.finish()?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, &bytes)?;
    Ok(bytes.len())
}

fn artifact(
    dir: Option<&Path>,
    name: &str,
    embedded: &'static [u8],
) -> Result<Vec<u8>, ModelError> {
    match dir {
        None => Ok(embedded.to_vec()),
        Some(dir) => {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    }
}

/// Loads the artifacts per `settings` into a scorer. Members that are
/// configured but cannot run are recorded as unavailable (and logged once);
/// only an artifact that exists but is broken is an error.
pub fn load_scorer(settings: &ModelsSettings) -> Result<Scorer, ModelError> {
    let dir = settings.dir.as_deref();
    let bytes = artifact(dir, FOREST_ARTIFACT, EMBEDDED_FOREST)?;
    let forests: Forests = decode_json(FOREST_ARTIFACT, &bytes)?;
    forests.validate().map_err(|e| ModelError::Invalid {
        what: FOREST_ARTIFACT.into(),
        reason: e.to_string(),
    })?;
    let forest =
        ForestMember::new(&forests, version_of(&[&bytes])).map_err(|e| ModelError::Invalid {
            what: FOREST_ARTIFACT.into(),
            reason: e.to_string(),
        })?;
    let mut members: Vec<Arc<dyn CycleMember>> = vec![Arc::new(forest)];
    let bytes = artifact(dir, NOVELTY_ARTIFACT, EMBEDDED_NOVELTY)?;
    let novelty: NoveltyArtifact = decode_json(NOVELTY_ARTIFACT, &bytes)?;
    for model in [&novelty.cycle, &novelty.sample] {
        model.validate().map_err(|e| ModelError::Invalid {
            what: NOVELTY_ARTIFACT.into(),
            reason: e.to_string(),
        })?;
    }
    let version = version_of(&[&bytes]);
    let invalid = |e: hydrowatch_models::scoring::MemberError| ModelError::Invalid {
        what: NOVELTY_ARTIFACT.into(),
        reason: e.to_string(),
    };
    members.push(Arc::new(
        NoveltyMember::new(novelty.cycle, version.clone()).map_err(invalid)?,
    ));
    let mut unavailable = Vec::new();
    if settings.ensemble.member("xgboost").is_some() {
        let read = |name: &str| -> Result<Vec<u8>, String> {
            match dir {
                Some(dir) => std::fs::read(dir.join(name))
                    .map_err(|e| format!("{}: {e}", dir.join(name).display())),
                None => EMBEDDED_XGB
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, bytes)| bytes.to_vec())
                    .ok_or_else(|| format!("{name}: not built into this binary")),
            }
        };
        let runtime = crate::onnx::runtime_path(settings.onnxruntime.as_deref());
        match crate::onnx::XgbMember::load(read, runtime.as_deref()) {
            Ok(member) => members.push(Arc::new(member)),
            Err(reason) => {
                tracing::warn!(member = "xgboost", reason = %reason, "ensemble member unavailable; the others are reweighted");
                unavailable.push(("xgboost", reason.to_string()));
            }
        }
    }
    let mut scorer = Scorer::new(settings.ensemble.clone(), members)
        .with_sample_novelty(novelty.sample)
        .map_err(invalid)?;
    for (name, reason) in unavailable {
        scorer.mark_unavailable(name, reason);
    }
    for (name, version) in scorer.members() {
        tracing::info!(member = name, version, "cycle model loaded");
    }
    Ok(scorer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrowatch_models::ensemble::{Component, MemberConfig};
    use hydrowatch_protocols::rig::{RigCondition, RigRecording};

    fn cycle(condition: RigCondition) -> hydrowatch_models::cycle::Cycle {
        let recording = RigRecording::embedded();
        hydrowatch_models::cycle::Cycle {
            values: recording.cycles(condition)[0]
                .values
                .iter()
                .map(|row| row.to_vec())
                .collect(),
        }
    }

    #[test]
    fn the_shipped_forests_laid_out_for_scoring_vote_as_smartcore_does() {
        let forests: Forests = decode_json(FOREST_ARTIFACT, EMBEDDED_FOREST).unwrap();
        for (target, forest) in &forests.forests {
            let compiled = forest.compile().unwrap().expect("every target has levels");
            for condition in RigCondition::ALL {
                let features = cycle(condition).features().unwrap();
                let reference = forest.votes(std::slice::from_ref(&features)).unwrap();
                assert_eq!(compiled.votes(&features), reference[0], "{target:?}");
            }
        }
    }

    #[test]
    fn without_onnx_runtime_the_xgboost_member_is_reported_and_the_others_decide() {
        let mut settings = ModelsSettings {
            onnxruntime: Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
            ..ModelsSettings::default()
        };
        // XGBoost would dominate if it ran.
        settings.ensemble.members.insert(
            "xgboost".into(),
            MemberConfig {
                enabled: true,
                weight: 100.0,
            },
        );
        let scorer = load_scorer(&settings).expect("loads without ONNX Runtime");
        let unavailable = scorer.unavailable();
        assert_eq!(unavailable.len(), 1);
        assert_eq!(unavailable[0].0, "xgboost");
        assert!(unavailable[0].1.contains("not found"), "{unavailable:?}");
        let names: Vec<&str> = scorer.members().map(|(n, _)| n).collect();
        assert_eq!(names, ["random_forest", "novelty"]);
        // The forest alone decides the components, at full weight.
        let v = scorer.score(&cycle(RigCondition::ValveLag)).unwrap();
        assert_eq!(v.affected_component, Some(Component::Valve));
        let forest = &v.per_model[0];
        assert_eq!(forest.model, "random_forest");
        for (component, p) in &v.components {
            assert_eq!(Some(p), forest.degraded.get(component));
        }
        assert!(!v.model_version.contains("xgboost"));
        // Switched off, it is not even tried.
        settings
            .ensemble
            .members
            .get_mut("xgboost")
            .unwrap()
            .enabled = false;
        let scorer = load_scorer(&settings).unwrap();
        assert!(scorer.unavailable().is_empty());
    }
}
