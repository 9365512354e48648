//! hydrowatch's machine learning glue around the pure models of
//! `hydrowatch-models`: the rig data set's reader, training and evaluation
//! (run-keeping cross-validation, withheld classes), the trained artifacts
//! and loading them into a scorer, and the XGBoost member on ONNX Runtime.
//! No actors, no HTTP, no SQL.

pub mod artifacts;
pub mod evaluate;
pub mod onnx;
pub mod rigdata;
pub mod settings;

pub use settings::ModelsSettings;
