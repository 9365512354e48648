//! `[models]` of `hydrowatch.toml`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[models]`: the cycle models and how their verdicts are combined.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSettings {
    /// Folder of the trained artifacts (`rf-cycle.json.gz`,
    /// `novelty.json.gz`, `xgb-cycle.onnx`); empty: the artifacts built into
    /// the binary (those of `models/artifacts` when it was built).
    pub dir: Option<PathBuf>,
    /// Members' switches and weights, and the decision threshold.
    pub ensemble: hydrowatch_models::ensemble::EnsembleConfig,
    /// The ONNX Runtime library for the XGBoost member
    /// (`libonnxruntime.so.1.31.x`); unset: `ORT_DYLIB_PATH`. Without it the
    /// member is unavailable and the others are reweighted.
    pub onnxruntime: Option<PathBuf>,
}
