//! RandomForest classifiers over cycle features, one per target (cooler,
//! valve, pump leakage, accumulator, stable flag), trained and run in Rust
//! with smartcore.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::cycle::FEATURES;

/// How a forest is grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestParams {
    /// Trees.
    pub n_trees: u16,
    /// Deepest a tree may grow (`None`: until its leaves are pure).
    pub max_depth: Option<u16>,
    /// Features tried per split (`None`: √features).
    pub features_per_split: Option<usize>,
    /// Seed, so training is reproducible.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: None,
            features_per_split: None,
            seed: 20_151_267,
        }
    }
}

/// Why a forest could not be trained or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("random forest: {0}")]
pub struct ForestError(pub String);

type Inner = RandomForestClassifier<f64, i32, DenseMatrix<f64>, Vec<i32>>;

/// A trained classifier for one target.
#[derive(Debug, Serialize, Deserialize)]
pub struct TargetForest {
    model: Model,
}

#[derive(Debug, Serialize, Deserialize)]
enum Model {
    /// The training data held one label only: nothing to split on.
    Constant(i32),
    /// The forest.
    Forest(Box<Inner>),
}

fn matrix(rows: &[[f64; FEATURES]]) -> Result<DenseMatrix<f64>, ForestError> {
    let rows: Vec<Vec<f64>> = rows.iter().map(|r| r.to_vec()).collect();
    DenseMatrix::from_2d_vec(&rows).map_err(|e| ForestError(e.to_string()))
}

impl TargetForest {
    /// Grows a forest on `x` (one feature row per cycle) and labels `y`.
    pub fn train(
        x: &[[f64; FEATURES]],
        y: &[i32],
        params: &ForestParams,
    ) -> Result<TargetForest, ForestError> {
        if x.len() != y.len() || x.is_empty() {
            return Err(ForestError(format!(
                "{} feature rows for {} labels",
                x.len(),
                y.len()
            )));
        }
        let mut p = RandomForestClassifierParameters::default()
            .with_n_trees(params.n_trees)
            .with_seed(params.seed);
        if let Some(depth) = params.max_depth {
            p = p.with_max_depth(depth);
        }
        if let Some(m) = params.features_per_split {
            p = p.with_m(m);
        }
        if y.iter().all(|l| *l == y[0]) {
            return Ok(TargetForest {
                model: Model::Constant(y[0]),
            });
        }
        let forest =
            Inner::fit(&matrix(x)?, &y.to_vec(), p).map_err(|e| ForestError(e.to_string()))?;
        Ok(TargetForest {
            model: Model::Forest(Box::new(forest)),
        })
    }

    /// The predicted label of each row.
    pub fn predict(&self, x: &[[f64; FEATURES]]) -> Result<Vec<i32>, ForestError> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        match &self.model {
            Model::Constant(label) => Ok(vec![*label; x.len()]),
            Model::Forest(forest) => forest
                .predict(&matrix(x)?)
                .map_err(|e| ForestError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: f64) -> [f64; FEATURES] {
        let mut r = [0.0; FEATURES];
        r[3] = v;
        r[100] = (v * 7.0).sin();
        r
    }

    #[test]
    fn a_separable_target_is_learned_and_a_single_label_is_kept() {
        let x: Vec<[f64; FEATURES]> = (0..60).map(|i| row(i as f64)).collect();
        let y: Vec<i32> = (0..60).map(|i| if i < 30 { 90 } else { 130 }).collect();
        let params = ForestParams {
            n_trees: 10,
            features_per_split: Some(FEATURES),
            ..ForestParams::default()
        };
        let forest = TargetForest::train(&x, &y, &params).unwrap();
        assert_eq!(
            forest.predict(&[row(2.0), row(55.0)]).unwrap(),
            vec![90, 130]
        );
        let constant = TargetForest::train(&x, &vec![1; 60], &params).unwrap();
        assert_eq!(constant.predict(&[row(2.0)]).unwrap(), vec![1]);
        // The model survives a JSON round trip.
        let json = serde_json::to_string(&forest).unwrap();
        let back: TargetForest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict(&[row(2.0), row(55.0)]).unwrap(), vec![90, 130]);
        assert!(TargetForest::train(&x, &y[..10], &params).is_err());
    }
}
