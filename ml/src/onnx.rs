//! The XGBoost member of the cycle ensemble: gradient-boosted trees trained
//! in Python (`models/xgboost/train_xgb.py`), exported to ONNX and run here
//! with ONNX Runtime through `ort`.
//!
//! ONNX Runtime is a shared library loaded at run time (`load-dynamic`): from
//! `models.onnxruntime` in the config, else `ORT_DYLIB_PATH`. When it cannot
//! be found or loaded, the member is reported unavailable (in the log once and
//! in `/health/ready`) and the ensemble reweights the others; nothing panics.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;

use hydrowatch_models::cycle::FEATURES;
use hydrowatch_models::ensemble::{Component, MemberVerdict};
use hydrowatch_models::scoring::{CycleMember, MemberError};

/// The manifest the training script writes beside the models.
pub const MANIFEST: &str = "xgb-cycle.json";

/// `xgb-cycle.json`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// The ONNX file (beside the manifest): every component's trees, one
    /// input, one probabilities output per component.
    pub file: String,
    /// Name of the input tensor (float32 [N, features]).
    pub input: String,
    /// Features per cycle the model takes.
    pub features: usize,
    /// One output per component.
    pub targets: Vec<TargetOutput>,
}

/// One component's output in the manifest.
#[derive(Debug, Deserialize)]
pub struct TargetOutput {
    /// `cooler`, `valve`, `pump` or `accumulator`.
    pub component: String,
    /// Name of its probabilities output.
    pub output: String,
    /// The condition level of each class index.
    pub classes: Vec<i32>,
    /// The healthy level.
    pub healthy: i32,
}

struct Target {
    component: Component,
    output: String,
    classes: Vec<i32>,
    healthy: i32,
}

/// The XGBoost member.
pub struct XgbMember {
    /// `run` needs the session exclusively; one cycle is scored at a time.
    session: Mutex<ort::session::Session>,
    input: String,
    targets: Vec<Target>,
    version: String,
}

/// Why the member is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The ONNX Runtime library to load: the configured path, else
/// `ORT_DYLIB_PATH`.
pub fn runtime_path(configured: Option<&Path>) -> Option<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
}

/// Loads ONNX Runtime once per process; later calls get the first outcome
/// (the library cannot be swapped once loaded).
fn environment(path: &Path) -> Result<&'static ort::environment::Environment, Unavailable> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    if !path.is_file() {
        return Err(Unavailable(format!(
            "ONNX Runtime library {} not found",
            path.display()
        )));
    }
    ENV.get_or_init(|| {
        // ort panics inside some calls when the library is unusable; keep
        // that from taking the process down.
        let built = std::panic::catch_unwind(|| {
            ort::init_from(path)
                .map_err(|e| e.to_string())?
                .with_name("hydrowatch")
                .with_telemetry(false)
                .build()
                .map_err(|e| e.to_string())
        });
        match built {
            Ok(result) => result
                .map_err(|e| format!("ONNX Runtime {} could not be loaded: {e}", path.display())),
            Err(_) => Err(format!(
                "ONNX Runtime {} could not be loaded",
                path.display()
            )),
        }
    })
    .as_ref()
    .map_err(|e| Unavailable(e.clone()))
}

impl XgbMember {
    /// Loads the models (the manifest and the ONNX files it names, read by
    /// `read`) with the ONNX Runtime library at `runtime`.
    pub fn load(
        read: impl Fn(&str) -> Result<Vec<u8>, String>,
        runtime: Option<&Path>,
    ) -> Result<XgbMember, Unavailable> {
        let text = read(MANIFEST).map_err(Unavailable)?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| Unavailable(format!("{MANIFEST}: {e}")))?;
        if manifest.features != FEATURES {
            return Err(Unavailable(format!(
                "{MANIFEST}: trained on {} features per cycle; this build computes {FEATURES}",
                manifest.features
            )));
        }
        let runtime = runtime.ok_or_else(|| {
            Unavailable(
                "no ONNX Runtime library: set models.onnxruntime or ORT_DYLIB_PATH".to_owned(),
            )
        })?;
        let env = environment(runtime)?;
        let bytes = read(&manifest.file).map_err(Unavailable)?;
        let file = &manifest.file;
        let builder =
            ort::session::Session::builder(env).map_err(|e| Unavailable(format!("{file}: {e}")))?;
        // One thread: cycles are scored inline, one at a time per equipment
        // actor; a thread pool per call would cost more than it saves.
        let mut builder = builder
            .with_intra_threads(1)
            .unwrap_or_else(|e| e.recover());
        let session = builder
            .commit_from_memory(&bytes)
            .map_err(|e| Unavailable(format!("{file}: {e}")))?;
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let mut targets = Vec::new();
        for t in &manifest.targets {
            let component = Component::parse(&t.component).ok_or_else(|| {
                Unavailable(format!("{MANIFEST}: unknown component {:?}", t.component))
            })?;
            if !outputs.contains(&t.output.as_str()) {
                return Err(Unavailable(format!("{file}: no output {:?}", t.output)));
            }
            if t.classes.is_empty() {
                return Err(Unavailable(format!(
                    "{MANIFEST}: {} has no classes",
                    t.component
                )));
            }
            targets.push(Target {
                component,
                output: t.output.clone(),
                classes: t.classes.clone(),
                healthy: t.healthy,
            });
        }
        Ok(XgbMember {
            session: Mutex::new(session),
            input: manifest.input,
            targets,
            version: crate::artifacts::version_of(&[&text, &bytes]),
        })
    }
}

fn failed(reason: impl std::fmt::Display) -> MemberError {
    MemberError {
        member: "xgboost".into(),
        reason: reason.to_string(),
    }
}

impl CycleMember for XgbMember {
    fn name(&self) -> &str {
        "xgboost"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn judge(&self, features: &[f64; FEATURES]) -> Result<MemberVerdict, MemberError> {
        let input: Vec<f32> = features.iter().map(|v| *v as f32).collect();
        let tensor = ort::value::TensorRef::from_array_view(([1usize, FEATURES], &input[..]))
            .map_err(failed)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| failed("session lock poisoned"))?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(failed)?;
        let mut degraded = std::collections::BTreeMap::new();
        let mut levels = std::collections::BTreeMap::new();
        let mut level_shares = std::collections::BTreeMap::new();
        for t in &self.targets {
            let value = outputs
                .get(&t.output)
                .ok_or_else(|| failed(format!("no output {}", t.output)))?;
            let (_, p) = value.try_extract_tensor::<f32>().map_err(failed)?;
            if p.len() != t.classes.len() {
                return Err(failed(format!(
                    "{}: {} probabilities for {} classes",
                    t.output,
                    p.len(),
                    t.classes.len()
                )));
            }
            let healthy = t
                .classes
                .iter()
                .position(|c| *c == t.healthy)
                .map_or(0.0, |i| f64::from(p[i]));
            degraded.insert(t.component, (1.0 - healthy).clamp(0.0, 1.0));
            if let Some((i, _)) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
                levels.insert(t.component, t.classes[i]);
            }
            level_shares.insert(
                t.component,
                t.classes
                    .iter()
                    .zip(p)
                    .map(|(c, p)| (*c, f64::from(*p)))
                    .collect(),
            );
        }
        Ok(MemberVerdict {
            model: "xgboost".into(),
            model_version: self.version.clone(),
            degraded,
            levels,
            level_shares,
            novelty: None,
        })
    }
}
