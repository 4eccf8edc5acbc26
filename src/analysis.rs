//! Superposition metrics of trained instances, computed from W (m rows × n columns) and b.
//!
//! Column W_i is the direction of feature i in the hidden space. The paper reads a model through:
//! - the Gram matrix WᵀW (n × n), which the heat maps draw;
//! - the norm ‖W_i‖: how strongly feature i is represented;
//! - its superposition Σ_{j≠i} (Ŵ_i·W_j)²: how much other features share its direction;
//! - its dimensionality D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²: the fraction of a dimension it owns
//!   (1 dedicated, 1/2 antipodal pair, 2/5 pentagon, 0 not learned);
//! - dimensions per feature m / ‖W‖²_F over the whole instance;
//! - counts: features represented (‖W_i‖ > [`REPRESENTED_NORM`]), of those the ones in superposition
//!   (superposition > [`SUPERPOSITION_THRESHOLD`]), and negative biases (b_i < −[`NEGATIVE_BIAS`]).
//!
//! `tms train` writes these per instance to `metrics.json` ([`RunMetrics`]).

use crate::experiment::ModelKind;
use crate::store::results::{InstanceResult, Results};
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A feature counts as represented when its column norm exceeds this.
pub const REPRESENTED_NORM: f64 = 0.5;
/// A represented feature counts as in superposition when its superposition exceeds this.
pub const SUPERPOSITION_THRESHOLD: f64 = 0.1;
/// A bias counts as negative when it is below minus this (smaller values are optimiser noise).
pub const NEGATIVE_BIAS: f64 = 0.01;
/// A dimensionality D_i within this of a polytope's fraction (1/2 antipodal pair, 2/5 pentagon)
/// counts as that polytope.
pub const POLYTOPE_TOLERANCE: f64 = 0.07;

/// Metrics of one trained instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceMetrics {
    pub index: usize,
    pub density: f64,
    /// ‖W_i‖ per feature.
    pub norms: Vec<f64>,
    /// Σ_{j≠i} (Ŵ_i·W_j)² per feature (0 for a zero column).
    pub superposition: Vec<f64>,
    /// D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)² per feature (0 for a zero column).
    pub dimensionality: Vec<f64>,
    /// m / ‖W‖²_F (0 when W = 0, like the dimensionality of a zero column).
    pub dimensions_per_feature: f64,
    pub features_represented: usize,
    pub represented_in_superposition: usize,
    pub biases: Vec<f32>,
    pub negative_biases: usize,
    pub eval_loss: Option<f64>,
}

/// metrics.json: the metrics of every instance of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub model: ModelKind,
    pub features: usize,
    pub hidden: usize,
    pub represented_norm: f64,
    pub superposition_threshold: f64,
    pub negative_bias: f64,
    pub instances: Vec<InstanceMetrics>,
}

/// WᵀW (n × n) of W given as m rows of n entries.
pub fn gram(w: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let n = w.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    w.iter()
                        .map(|row| f64::from(row[i]) * f64::from(row[j]))
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// Per-feature norms, superposition and dimensionality from the Gram matrix: with G = WᵀW,
/// ‖W_i‖² = G_ii and Ŵ_i·W_j = G_ij / ‖W_i‖.
fn feature_metrics(g: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = g.len();
    let mut norms = Vec::with_capacity(n);
    let mut superposition = Vec::with_capacity(n);
    let mut dimensionality = Vec::with_capacity(n);
    for (i, row) in g.iter().enumerate() {
        let norm_sq = row[i];
        norms.push(norm_sq.sqrt());
        if norm_sq <= 0.0 {
            superposition.push(0.0);
            dimensionality.push(0.0);
            continue;
        }
        let others: f64 = row
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, &gij)| gij * gij / norm_sq)
            .sum();
        superposition.push(others);
        // Σ_j (Ŵ_i·W_j)² includes j = i, which contributes ‖W_i‖².
        dimensionality.push(norm_sq / (norm_sq + others));
    }
    (norms, superposition, dimensionality)
}

impl InstanceMetrics {
    /// Metrics of one instance of results.json.
    pub fn of(result: &InstanceResult) -> InstanceMetrics {
        let hidden = result.w.len();
        let g = gram(&result.w);
        let (norms, superposition, dimensionality) = feature_metrics(&g);
        let frobenius_sq: f64 = (0..g.len()).map(|i| g[i][i]).sum();
        let represented: Vec<usize> = (0..norms.len())
            .filter(|&i| norms[i] > REPRESENTED_NORM)
            .collect();
        InstanceMetrics {
            index: result.index,
            density: result.density,
            dimensions_per_feature: if frobenius_sq > 0.0 {
                hidden as f64 / frobenius_sq
            } else {
                0.0
            },
            features_represented: represented.len(),
            represented_in_superposition: represented
                .iter()
                .filter(|&&i| superposition[i] > SUPERPOSITION_THRESHOLD)
                .count(),
            negative_biases: result
                .b
                .iter()
                .filter(|&&b| f64::from(b) < -NEGATIVE_BIAS)
                .count(),
            biases: result.b.clone(),
            eval_loss: result.eval_loss,
            norms,
            superposition,
            dimensionality,
        }
    }
}

impl InstanceMetrics {
    /// The represented features (‖W_i‖ > [`REPRESENTED_NORM`]), most important first.
    pub fn represented(&self) -> Vec<usize> {
        (0..self.norms.len())
            .filter(|&i| self.norms[i] > REPRESENTED_NORM)
            .collect()
    }

    /// The mean dimensionality D_i of the represented features (0 when there are none).
    pub fn mean_represented_dimensionality(&self) -> f64 {
        let represented = self.represented();
        if represented.is_empty() {
            return 0.0;
        }
        represented
            .iter()
            .map(|&i| self.dimensionality[i])
            .sum::<f64>()
            / represented.len() as f64
    }

    /// The represented features in superposition (superposition > [`SUPERPOSITION_THRESHOLD`]),
    /// most important first.
    pub fn shared(&self) -> Vec<usize> {
        self.represented()
            .into_iter()
            .filter(|&i| self.superposition[i] > SUPERPOSITION_THRESHOLD)
            .collect()
    }

    /// Whether exactly the `m` most important features are represented, none in superposition: the
    /// linear model's solution (and the ReLU model's at density 1).
    pub fn top_m_only(&self, m: usize) -> bool {
        self.represented() == (0..m).collect::<Vec<_>>() && self.represented_in_superposition == 0
    }

    /// Whether feature `i`'s dimensionality is within [`POLYTOPE_TOLERANCE`] of `fraction`.
    pub fn dimensionality_near(&self, i: usize, fraction: f64) -> bool {
        (self.dimensionality[i] - fraction).abs() < POLYTOPE_TOLERANCE
    }
}

impl RunMetrics {
    /// Metrics of every instance of a run.
    pub fn of(results: &Results) -> RunMetrics {
        RunMetrics {
            model: results.model,
            features: results.features,
            hidden: results.hidden,
            represented_norm: REPRESENTED_NORM,
            superposition_threshold: SUPERPOSITION_THRESHOLD,
            negative_bias: NEGATIVE_BIAS,
            instances: results.instances.iter().map(InstanceMetrics::of).collect(),
        }
    }
}

/// Writes the metrics of a run to `dir`/metrics.json and returns them.
pub fn write_metrics(dir: &Path, results: &Results) -> anyhow::Result<RunMetrics> {
    let metrics = RunMetrics::of(results);
    write_atomic(
        &dir.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics)?,
    )?;
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance whose W has the given columns (each of length m).
    fn instance(columns: &[Vec<f64>]) -> InstanceResult {
        let m = columns[0].len();
        let w = (0..m)
            .map(|r| columns.iter().map(|c| c[r] as f32).collect())
            .collect();
        InstanceResult {
            index: 0,
            density: 1.0,
            importance: vec![1.0; columns.len()],
            w,
            w2: None,
            b: vec![0.0; columns.len()],
            final_loss: Some(0.0),
            eval_loss: Some(0.0),
            loss_curve: vec![],
            setting: 0,
            restart: 0,
            best_of_setting: true,
            diverged: false,
        }
    }

    /// k unit vectors evenly spaced on the circle (a regular k-gon in 2-D).
    fn polygon(k: usize) -> Vec<Vec<f64>> {
        (0..k)
            .map(|i| std::f64::consts::TAU * i as f64 / k as f64)
            .map(|a| vec![a.cos(), a.sin()])
            .collect()
    }

    fn assert_all(values: &[f64], expected: f64) {
        assert!(
            values.iter().all(|v| (v - expected).abs() < 1e-6),
            "{values:?} ≠ {expected}"
        );
    }

    #[test]
    fn orthogonal_features_own_one_dimension_each() {
        let m = instance(&[
            vec![1.0, 0.0, 0.0],
            vec![0.0, 2.0, 0.0],
            vec![0.0, 0.0, 0.7],
        ]);
        let metrics = InstanceMetrics::of(&m);
        assert_all(&metrics.dimensionality, 1.0);
        assert_all(&metrics.superposition, 0.0);
        assert_eq!(
            (
                metrics.features_represented,
                metrics.represented_in_superposition
            ),
            (3, 0)
        );
    }

    #[test]
    fn antipodal_pair_has_dimensionality_one_half() {
        let metrics = InstanceMetrics::of(&instance(&[
            vec![1.0, 0.0],
            vec![-1.0, 0.0],
            vec![0.0, 1.0],
        ]));
        assert_all(&metrics.dimensionality[..2], 0.5);
        assert_all(&metrics.superposition[..2], 1.0);
        assert_all(&metrics.dimensionality[2..], 1.0);
        assert_eq!(metrics.represented_in_superposition, 2);
        assert!((metrics.dimensions_per_feature - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn triangle_and_pentagon_in_two_dimensions() {
        assert_all(
            &InstanceMetrics::of(&instance(&polygon(3))).dimensionality,
            2.0 / 3.0,
        );
        assert_all(
            &InstanceMetrics::of(&instance(&polygon(5))).dimensionality,
            2.0 / 5.0,
        );
    }

    #[test]
    fn tetrahedron_in_three_dimensions() {
        let s = 1.0 / 3f64.sqrt();
        let tetra = [
            vec![s, s, s],
            vec![s, -s, -s],
            vec![-s, s, -s],
            vec![-s, -s, s],
        ];
        let metrics = InstanceMetrics::of(&instance(&tetra));
        assert_all(&metrics.dimensionality, 0.75);
        assert!((metrics.dimensions_per_feature - 0.75).abs() < 1e-6);
    }

    #[test]
    fn zero_column_is_not_represented() {
        assert_eq!(
            InstanceMetrics::of(&instance(&[vec![0.0, 0.0]])).dimensions_per_feature,
            0.0
        );
        let metrics = InstanceMetrics::of(&instance(&[vec![1.0, 0.0], vec![0.0, 0.0]]));
        assert_eq!(
            (
                metrics.dimensionality[1],
                metrics.superposition[1],
                metrics.norms[1]
            ),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(metrics.features_represented, 1);
    }

    #[test]
    fn gram_and_negative_biases() {
        let mut result = instance(&[vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(gram(&result.w), vec![vec![5.0, 11.0], vec![11.0, 25.0]]);
        result.b = vec![-0.5, -0.001];
        assert_eq!(InstanceMetrics::of(&result).negative_biases, 1);
    }
}
