//! An unsupervised novelty score: how far a cycle's features lie from the
//! cycles the model was fitted on, as a Mahalanobis distance.
//!
//! Fitting standardises each feature (mean, standard deviation of the fitted
//! cycles), estimates their correlation with shrinkage towards the identity
//! (`shrinkage` λ: Σ' = (1 − λ)·Σ + λ·I, so hundreds of features from a few hundred
//! cycles still give an invertible matrix), and sets the threshold at a
//! quantile of the fitted cycles' own distances. A cycle beyond it is novel:
//! it does not look like anything the models were trained on — a fault of a
//! kind never seen, or a sensor gone wrong.

use serde::{Deserialize, Serialize};

/// How the novelty model is fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoveltyParams {
    /// Shrinkage towards the identity, in [0, 1].
    pub shrinkage: f64,
    /// Quantile of the fitted cycles' distances taken as the threshold.
    pub quantile: f64,
    /// The threshold is that quantile times this margin.
    pub margin: f64,
}

impl Default for NoveltyParams {
    fn default() -> Self {
        NoveltyParams {
            shrinkage: 0.1,
            quantile: 0.995,
            margin: 1.5,
        }
    }
}

/// Why a novelty model could not be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("novelty model: {0}")]
pub struct NoveltyError(pub String);

/// A fitted novelty model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Novelty {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Lower-triangular Cholesky factor of the shrunk correlation, packed by
    /// rows (row `i` holds `i + 1` values), so the artifact carries no zeros.
    chol: Vec<f64>,
    /// Distances beyond this are novel.
    pub threshold: f64,
}

impl Novelty {
    /// Fits on `rows` (all of one width).
    pub fn fit(rows: &[Vec<f64>], params: &NoveltyParams) -> Result<Novelty, NoveltyError> {
        let n = rows.len();
        let d = rows.first().map_or(0, Vec::len);
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return Err(NoveltyError(format!(
                "need at least 2 rows of equal, non-zero width; got {n}"
            )));
        }
        if !(0.0..=1.0).contains(&params.shrinkage) || !(0.0..1.0).contains(&params.quantile) {
            return Err(NoveltyError(
                "shrinkage in [0, 1], quantile in [0, 1)".into(),
            ));
        }
        let mut mean = vec![0.0; d];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n as f64;
            }
        }
        let mut scale = vec![0.0; d];
        for r in rows {
            for j in 0..d {
                scale[j] += (r[j] - mean[j]).powi(2) / (n - 1) as f64;
            }
        }
        for s in scale.iter_mut() {
            // A constant feature carries no information: it still counts, on
            // a unit scale, if it ever moves.
            *s = if *s > 1e-24 { s.sqrt() } else { 1.0 };
        }
        let z: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| (0..d).map(|j| (r[j] - mean[j]) / scale[j]).collect())
            .collect();
        let lambda = params.shrinkage;
        let mut cov = vec![0.0; d * d];
        for r in &z {
            for i in 0..d {
                let ri = r[i];
                for j in 0..=i {
                    cov[i * d + j] += ri * r[j];
                }
            }
        }
        for i in 0..d {
            for j in 0..=i {
                let c = cov[i * d + j] / (n - 1) as f64 * (1.0 - lambda)
                    + if i == j { lambda } else { 0.0 };
                cov[i * d + j] = c;
                cov[j * d + i] = c;
            }
        }
        let full = cholesky(&cov, d)
            .ok_or_else(|| NoveltyError("correlation matrix is not positive definite".into()))?;
        let chol = (0..d)
            .flat_map(|i| full[i * d..=i * d + i].iter().copied())
            .collect();
        let mut model = Novelty {
            mean,
            scale,
            chol,
            threshold: f64::INFINITY,
        };
        let mut distances: Vec<f64> = rows.iter().map(|r| model.distance(r)).collect();
        distances.sort_by(f64::total_cmp);
        let at = ((n - 1) as f64 * params.quantile).round() as usize;
        model.threshold = distances[at.min(n - 1)] * params.margin;
        Ok(model)
    }

    /// The Mahalanobis distance of `row` from the fitted cycles.
    pub fn distance(&self, row: &[f64]) -> f64 {
        let d = self.mean.len();
        // Solve L y = z by forward substitution; distance = |y|.
        let mut y = vec![0.0; d];
        let mut sum_sq = 0.0;
        for i in 0..d {
            let zi = (row.get(i).copied().unwrap_or(f64::NAN) - self.mean[i]) / self.scale[i];
            let row = &self.chol[i * (i + 1) / 2..=i * (i + 1) / 2 + i];
            y[i] = (zi - dot(&row[..i], &y[..i])) / row[i];
            sum_sq += y[i] * y[i];
        }
        sum_sq.sqrt()
    }

    /// Checks a model read from an artifact: consistent sizes, finite
    /// numbers, a usable threshold.
    pub fn validate(&self) -> Result<(), NoveltyError> {
        let d = self.mean.len();
        let ok = d > 0
            && self.scale.len() == d
            && self.chol.len() == d * (d + 1) / 2
            && self
                .mean
                .iter()
                .chain(&self.scale)
                .chain(&self.chol)
                .all(|v| v.is_finite())
            && self.scale.iter().all(|s| *s > 0.0)
            && (0..d).all(|i| self.chol[i * (i + 1) / 2 + i] > 0.0)
            && self.threshold.is_finite()
            && self.threshold > 0.0;
        if ok {
            Ok(())
        } else {
            Err(NoveltyError(format!(
                "inconsistent model ({d} features, {} factor values)",
                self.chol.len()
            )))
        }
    }

    /// Features per row the model was fitted on.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Distance over threshold: above 1 is novel.
    pub fn score(&self, row: &[f64]) -> f64 {
        self.distance(row) / self.threshold
    }

    /// The model laid out for scoring many rows: the inverse of the
    /// Cholesky factor in single precision, so a distance is one
    /// triangular matrix–vector product with no chain of dependent steps
    /// and half the memory to stream (scores agree with
    /// [`Novelty::score`] to about 1e-5 relative).
    pub fn compile(&self) -> CompiledNovelty {
        let d = self.mean.len();
        let l = |i: usize, j: usize| self.chol[i * (i + 1) / 2 + j];
        // W = L⁻¹, lower triangular, row by row: W[i][j] for j ≤ i.
        let mut w = vec![0.0f64; d * (d + 1) / 2];
        for i in 0..d {
            let row = i * (i + 1) / 2;
            for j in 0..=i {
                let mut s = if i == j { 1.0 } else { 0.0 };
                for k in j..i {
                    s -= l(i, k) * w[k * (k + 1) / 2 + j];
                }
                w[row + j] = s / l(i, i);
            }
        }
        CompiledNovelty {
            mean: self.mean.clone(),
            inverse_scale: self.scale.iter().map(|s| 1.0 / s).collect(),
            inverse: w.iter().map(|v| *v as f32).collect(),
            threshold: self.threshold,
        }
    }
}

/// A [`Novelty`] model laid out for scoring (see [`Novelty::compile`]).
#[derive(Debug, Clone)]
pub struct CompiledNovelty {
    mean: Vec<f64>,
    inverse_scale: Vec<f64>,
    /// L⁻¹, lower triangle packed row after row.
    inverse: Vec<f32>,
    threshold: f64,
}

impl CompiledNovelty {
    /// Features per row.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Distance over threshold: above 1 is novel. A missing or non-finite
    /// value gives NaN (which the ensemble treats as novel).
    pub fn score(&self, row: &[f64]) -> f64 {
        let d = self.mean.len();
        let z: Vec<f32> = (0..d)
            .map(|i| {
                ((row.get(i).copied().unwrap_or(f64::NAN) - self.mean[i]) * self.inverse_scale[i])
                    as f32
            })
            .collect();
        let mut sum_sq = 0.0f64;
        for i in 0..d {
            let start = i * (i + 1) / 2;
            let y = dot32(&self.inverse[start..=start + i], &z[..=i]);
            sum_sq += f64::from(y) * f64::from(y);
        }
        sum_sq.sqrt() / self.threshold
    }
}

/// [`dot`] in single precision, over sixteen partial sums.
fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (a16.remainder(), b16.remainder());
    for (x, y) in a16.zip(b16) {
        for ((lane, xv), yv) in lanes.iter_mut().zip(x).zip(y) {
            *lane += xv * yv;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `a · b` over eight independent partial sums, so the compiler can keep
/// them in SIMD lanes (one running sum would serialise every addition).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for ((lane, xv), yv) in lanes.iter_mut().zip(x).zip(y) {
            *lane += xv * yv;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f64>() + tail
}

/// Lower-triangular `L` with `L Lᵀ = a` (row-major, `d × d`), if `a` is
/// positive definite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(seed: u64) -> f64 {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Two strongly correlated features and a constant one.
    fn row(i: u64) -> Vec<f64> {
        let a = uniform(i) * 10.0;
        vec![a, 2.0 * a + uniform(i + 1_000_000), 5.0]
    }

    #[test]
    fn it_flags_what_breaks_the_learned_correlation() {
        let rows: Vec<Vec<f64>> = (0..500).map(row).collect();
        let model = Novelty::fit(&rows, &NoveltyParams::default()).unwrap();
        let false_alarms = (1_000..2_000)
            .filter(|&i| model.score(&row(i)) > 1.0)
            .count();
        assert!(false_alarms <= 10, "{false_alarms} of 1000");
        // Each value within its own range, but the pair breaks the correlation.
        assert!(model.score(&[3.0, -6.0, 5.0]) > 1.0);
        // The constant feature moving is novel too.
        assert!(model.score(&[1.0, 2.0, 9.0]) > 1.0);
        assert!(Novelty::fit(&rows[..1], &NoveltyParams::default()).is_err());
    }

    #[test]
    fn cholesky_reproduces_the_matrix() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        assert_eq!(l, vec![2.0, 0.0, 1.0, 2f64.sqrt()]);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn the_compiled_model_scores_as_the_exact_one() {
        // Twenty correlated features, so the factor has a full lower triangle.
        let wide = |i: u64| -> Vec<f64> {
            let base = uniform(i) * 10.0;
            (0..20)
                .map(|j| base * (j % 4) as f64 + uniform(i * 31 + j) * (1.0 + j as f64))
                .collect()
        };
        let rows: Vec<Vec<f64>> = (0..400).map(wide).collect();
        let model = Novelty::fit(&rows, &NoveltyParams::default()).unwrap();
        let compiled = model.compile();
        assert_eq!(compiled.width(), 20);
        for i in 1_000..1_200 {
            let mut r = wide(i);
            if i % 3 == 0 {
                r[7] += 40.0;
            }
            let (exact, fast) = (model.score(&r), compiled.score(&r));
            assert!(
                (exact - fast).abs() <= 1e-4 * exact.max(1.0),
                "{exact} vs {fast}"
            );
        }
        assert!(compiled.score(&[1.0]).is_nan());
    }
}
