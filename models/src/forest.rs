//! RandomForest classifiers over cycle features, one per target (cooler,
//! valve, pump leakage, accumulator, stable flag), trained and run in Rust
//! with smartcore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::cycle::FEATURES;
use crate::ensemble::Component;

/// How a forest is grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForestParams {
    /// Trees per target (default 100), split evenly among at most [`GROVES`]
    /// groves.
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
    /// The forest, grown as [`GROVES`] groves of a tenth of its trees each
    /// (smartcore reports a forest's majority only; the groves' votes give the
    /// share of each label).
    Groves(Vec<Inner>),
}

/// Groves a forest is grown as (fewer when it has fewer trees).
pub const GROVES: u16 = 10;

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
        if y.iter().all(|l| *l == y[0]) {
            return Ok(TargetForest {
                model: Model::Constant(y[0]),
            });
        }
        let groves = GROVES.min(params.n_trees.max(1));
        let x = matrix(x)?;
        let y = y.to_vec();
        let mut fitted = Vec::with_capacity(usize::from(groves));
        for g in 0..groves {
            let mut p = RandomForestClassifierParameters::default()
                .with_n_trees((params.n_trees / groves).max(1))
                .with_seed(params.seed.wrapping_add(u64::from(g) * 1_000_003));
            if let Some(depth) = params.max_depth {
                p = p.with_max_depth(depth);
            }
            if let Some(m) = params.features_per_split {
                p = p.with_m(m);
            }
            fitted.push(Inner::fit(&x, &y, p).map_err(|e| ForestError(e.to_string()))?);
        }
        Ok(TargetForest {
            model: Model::Groves(fitted),
        })
    }

    /// The predicted label of each row.
    pub fn predict(&self, x: &[[f64; FEATURES]]) -> Result<Vec<i32>, ForestError> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .votes(x)?
            .into_iter()
            .map(|v| {
                // The most votes; a tie goes to the smaller label.
                v.iter()
                    .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                    .map_or(0, |(label, _)| *label)
            })
            .collect())
    }

    /// The forest laid out for scoring one row at a time; `None` when the
    /// training data held one label only.
    pub fn compile(&self) -> Result<Option<CompiledForest>, ForestError> {
        match &self.model {
            Model::Constant(_) => Ok(None),
            Model::Groves(groves) => CompiledForest::from_groves(groves).map(Some),
        }
    }

    /// The label when the training data held one label only.
    pub fn constant(&self) -> Option<i32> {
        match &self.model {
            Model::Constant(label) => Some(*label),
            Model::Groves(_) => None,
        }
    }

    /// For each row, the share of the groves voting for each label.
    pub fn votes(&self, x: &[[f64; FEATURES]]) -> Result<Vec<BTreeMap<i32, f64>>, ForestError> {
        match &self.model {
            Model::Constant(label) => Ok(vec![BTreeMap::from([(*label, 1.0)]); x.len()]),
            Model::Groves(groves) => {
                let mut counts: Vec<BTreeMap<i32, usize>> = vec![BTreeMap::new(); x.len()];
                if x.is_empty() {
                    return Ok(Vec::new());
                }
                let m = matrix(x)?;
                for grove in groves {
                    let labels = grove.predict(&m).map_err(|e| ForestError(e.to_string()))?;
                    for (row, label) in counts.iter_mut().zip(labels) {
                        *row.entry(label).or_insert(0) += 1;
                    }
                }
                let n = groves.len() as f64;
                Ok(counts
                    .into_iter()
                    .map(|row| row.into_iter().map(|(l, c)| (l, c as f64 / n)).collect())
                    .collect())
            }
        }
    }
}

/// A trained forest laid out for scoring one cycle at a time: every tree's
/// nodes in one array of small nodes, walked without allocating.
///
/// smartcore keeps about 90 bytes per node and builds a matrix per call;
/// inline scoring walks 400 trees per cycle, so the layout is what the time
/// goes on. Votes are the same as [`TargetForest::votes`] (a test holds the
/// two together).
#[derive(Debug, Clone)]
pub struct CompiledForest {
    /// The labels; a leaf holds an index into them.
    labels: Vec<i32>,
    /// The nodes of every tree, each tree's root first.
    nodes: Vec<FlatNode>,
    /// The root of each tree, grove after grove.
    roots: Vec<u32>,
    /// Trees per grove, in the order of `roots`.
    grove_sizes: Vec<u32>,
}

/// A split (`x[feature] <= threshold` goes to `left`, otherwise to `right`)
/// or, when `feature` is [`LEAF`], a leaf whose label index is `left`.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    threshold: f64,
    feature: u32,
    left: u32,
    right: u32,
}

const LEAF: u32 = u32::MAX;

/// Labels a compiled forest may have: votes are counted on the stack.
const MAX_LABELS: usize = 16;

/// The parts of smartcore's serde form of a forest that prediction uses.
#[derive(Deserialize)]
struct SmartcoreForest {
    trees: Option<Vec<SmartcoreTree>>,
    classes: Option<Vec<i32>>,
}

#[derive(Deserialize)]
struct SmartcoreTree {
    nodes: Vec<SmartcoreNode>,
}

#[derive(Deserialize)]
struct SmartcoreNode {
    output: usize,
    split_feature: usize,
    split_value: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
}

impl CompiledForest {
    fn from_groves(groves: &[Inner]) -> Result<CompiledForest, ForestError> {
        let broken = |what: &str| ForestError(format!("cannot lay out the forest: {what}"));
        let mut compiled = CompiledForest {
            labels: Vec::new(),
            nodes: Vec::new(),
            roots: Vec::new(),
            grove_sizes: Vec::new(),
        };
        for grove in groves {
            // smartcore's fields are private; its serde form is the stable
            // view of them.
            let value = serde_json::to_value(grove).map_err(|e| broken(&e.to_string()))?;
            let grove: SmartcoreForest =
                serde_json::from_value(value).map_err(|e| broken(&e.to_string()))?;
            let (Some(trees), Some(classes)) = (grove.trees, grove.classes) else {
                return Err(broken("a grove was never fitted"));
            };
            // Leaves index the grove's classes; map them to one label list.
            let mut label_index = Vec::with_capacity(classes.len());
            for label in classes {
                let i = match compiled.labels.iter().position(|l| *l == label) {
                    Some(i) => i,
                    None if compiled.labels.len() < MAX_LABELS => {
                        compiled.labels.push(label);
                        compiled.labels.len() - 1
                    }
                    None => return Err(broken("more than 16 labels")),
                };
                label_index.push(u32::try_from(i).map_err(|_| broken("too many labels"))?);
            }
            compiled
                .grove_sizes
                .push(u32::try_from(trees.len()).map_err(|_| broken("too many trees"))?);
            for tree in trees {
                let base = compiled.nodes.len();
                compiled
                    .roots
                    .push(u32::try_from(base).map_err(|_| broken("too many nodes"))?);
                for node in &tree.nodes {
                    let index = |child: usize| {
                        if child >= tree.nodes.len() {
                            return Err(broken("a child outside its tree"));
                        }
                        u32::try_from(base + child).map_err(|_| broken("too many nodes"))
                    };
                    compiled
                        .nodes
                        .push(match (node.true_child, node.false_child) {
                            (Some(t), Some(f)) => FlatNode {
                                // smartcore sends a missing split value right.
                                threshold: node.split_value.unwrap_or(f64::NAN),
                                feature: u32::try_from(node.split_feature)
                                    .ok()
                                    .filter(|f| (*f as usize) < FEATURES)
                                    .ok_or_else(|| broken("a split on a feature out of range"))?,
                                left: index(t)?,
                                right: index(f)?,
                            },
                            _ => FlatNode {
                                threshold: 0.0,
                                feature: LEAF,
                                left: *label_index
                                    .get(node.output)
                                    .ok_or_else(|| broken("a leaf with an unknown class"))?,
                                right: 0,
                            },
                        });
                }
            }
        }
        Ok(compiled)
    }

    /// The label of the leaf `x` reaches in the tree rooted at `root`.
    fn leaf(&self, root: u32, x: &[f64; FEATURES]) -> usize {
        let mut node = self.nodes[root as usize];
        while node.feature != LEAF {
            let next = if x[node.feature as usize] <= node.threshold {
                node.left
            } else {
                node.right
            };
            node = self.nodes[next as usize];
        }
        node.left as usize
    }

    /// The share of the groves voting for each label (labels not voted for
    /// are left out), as [`TargetForest::votes`] gives for one row.
    pub fn votes(&self, x: &[f64; FEATURES]) -> BTreeMap<i32, f64> {
        let mut grove_votes = [0usize; MAX_LABELS];
        let mut start = 0;
        for &size in &self.grove_sizes {
            let mut counts = [0usize; MAX_LABELS];
            for &root in &self.roots[start..start + size as usize] {
                counts[self.leaf(root, x)] += 1;
            }
            start += size as usize;
            // smartcore's choice: the first label with the most votes, in
            // the order of the grove's (sorted) classes.
            let mut best: Option<usize> = None;
            for i in 0..self.labels.len() {
                let better = |b: usize| {
                    counts[i] > counts[b]
                        || (counts[i] == counts[b] && self.labels[i] < self.labels[b])
                };
                if best.is_none_or(better) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                grove_votes[b] += 1;
            }
        }
        let groves = self.grove_sizes.len() as f64;
        self.labels
            .iter()
            .zip(grove_votes)
            .filter(|(_, n)| *n > 0)
            .map(|(label, n)| (*label, n as f64 / groves))
            .collect()
    }
}

/// What a classifier predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Cooler efficiency.
    Cooler,
    /// Valve condition.
    Valve,
    /// Internal pump leakage.
    Pump,
    /// Accumulator pressure.
    Accumulator,
    /// Stable flag.
    Stable,
}

impl Target {
    /// Every target, in `profile.txt` order.
    pub const ALL: [Target; 5] = [
        Target::Cooler,
        Target::Valve,
        Target::Pump,
        Target::Accumulator,
        Target::Stable,
    ];

    /// Position in [`Target::ALL`] (and in `profile.txt`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The component this target judges (none for the stable flag).
    pub fn component(self) -> Option<Component> {
        match self {
            Target::Cooler => Some(Component::Cooler),
            Target::Valve => Some(Component::Valve),
            Target::Pump => Some(Component::Pump),
            Target::Accumulator => Some(Component::Accumulator),
            Target::Stable => None,
        }
    }

    /// The healthy label, for the four components.
    pub fn healthy(self) -> Option<i32> {
        match self {
            Target::Cooler => Some(100),
            Target::Valve => Some(100),
            Target::Pump => Some(0),
            Target::Accumulator => Some(130),
            Target::Stable => None,
        }
    }
}

/// The trained classifiers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forests {
    /// Features per cycle they were trained on ([`FEATURES`] when trained;
    /// a model of another feature set must not be used).
    #[serde(default)]
    pub features: usize,
    /// How they were grown.
    pub params: ForestParams,
    /// One per target, in [`Target::ALL`] order.
    pub forests: Vec<(Target, TargetForest)>,
}

impl Forests {
    /// Trains one forest per target on the cycles' `features` and their
    /// `labels` (per cycle, one per target in [`Target::ALL`] order).
    pub fn train(
        features: &[[f64; FEATURES]],
        labels: &[[i32; 5]],
        params: &ForestParams,
    ) -> Result<Forests, ForestError> {
        let mut forests = Vec::new();
        for target in Target::ALL {
            let y: Vec<i32> = labels.iter().map(|l| l[target.index()]).collect();
            forests.push((target, TargetForest::train(features, &y, params)?));
        }
        Ok(Forests {
            features: FEATURES,
            params: params.clone(),
            forests,
        })
    }
}

impl Forests {
    /// Checks a model read from an artifact against this build.
    pub fn validate(&self) -> Result<(), ForestError> {
        if self.features != FEATURES {
            return Err(ForestError(format!(
                "trained on {} features per cycle; this build computes {FEATURES}: train again",
                self.features
            )));
        }
        if self.forests.is_empty() {
            return Err(ForestError("no forests".into()));
        }
        Ok(())
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
        // Ten groves of one tree each vote; a clear case is unanimous.
        let votes = forest.votes(&[row(2.0)]).unwrap();
        assert_eq!(votes[0].get(&90), Some(&1.0));
    }

    #[test]
    fn the_compiled_forest_votes_as_smartcore_does() {
        // Three labels that overlap, so the groves split many times and
        // sometimes disagree.
        let noisy = |i: usize| {
            let mut r = [0.0; FEATURES];
            for (f, v) in r.iter_mut().enumerate().take(40) {
                *v = ((i * 37 + f * 11) % 23) as f64 / 7.0 + (i % 3) as f64 * (f % 2) as f64;
            }
            r
        };
        let x: Vec<[f64; FEATURES]> = (0..150).map(noisy).collect();
        let y: Vec<i32> = (0..150).map(|i| [130, 115, 90][(i + i / 7) % 3]).collect();
        let params = ForestParams {
            n_trees: 30,
            ..ForestParams::default()
        };
        let forest = TargetForest::train(&x, &y, &params).unwrap();
        let compiled = forest.compile().unwrap().unwrap();
        let unseen: Vec<[f64; FEATURES]> = (150..400).map(noisy).collect();
        let reference = forest.votes(&unseen).unwrap();
        let mut split_votes = 0;
        for (row, expected) in unseen.iter().zip(&reference) {
            assert_eq!(&compiled.votes(row), expected);
            split_votes += usize::from(expected.len() > 1);
        }
        assert!(split_votes > 10, "the groves should disagree on some rows");
        // One label: nothing to compile.
        let constant = TargetForest::train(&x, &vec![7; 150], &params).unwrap();
        assert!(constant.compile().unwrap().is_none());
        assert_eq!(constant.constant(), Some(7));
    }
}
