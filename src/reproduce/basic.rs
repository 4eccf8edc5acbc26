//! `tms reproduce basic`: trains the linear and the ReLU
//! output model (n = 20, m = 5, I_i = 0.7^i, seven densities, the notebook's settings) into
//! `OUT/linear/` and `OUT/relu/`, draws the figures into `OUT/`, and writes `OUT/summary.md`: a
//! metrics table per model kind and a comparison with the paper's claims.

use super::{training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::analysis::{InstanceMetrics, NEGATIVE_BIAS, REPRESENTED_NORM, SUPERPOSITION_THRESHOLD};
use crate::error::UsageError;
use crate::experiment::{Experiment, ModelKind, Settings};
use crate::figures::{draw_all, model_label, Run};
use crate::store::results::{Results, RunConfig};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// `tms reproduce basic`.
pub struct Basic;

impl Reproduction for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        [(ModelKind::Linear, "linear"), (ModelKind::Relu, "relu")]
            .into_iter()
            .map(|(model, name)| {
                let exp = Settings {
                    model: Some(model),
                    steps: options.steps,
                    restarts: options.restarts,
                    ..Default::default()
                }
                .resolve()?;
                Ok((name, exp))
            })
            .collect()
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let figures: Vec<Run> = runs
            .iter()
            .map(|(_, results)| Run {
                label: model_label(results.model).into(),
                results: results.clone(),
            })
            .collect();
        draw_all(&figures, out)
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        Ok(summary_markdown(runs))
    }
}

/// summary.md of a reproduced basic experiment: settings, a table per model kind, and sentences
/// comparing the numbers with the paper.
pub fn summary_markdown(runs: &[(RunConfig, Results)]) -> String {
    let mut out = String::new();
    let Some((config, first)) = runs.first() else {
        return out;
    };
    let (n, m) = (first.features, first.hidden);
    let _ = writeln!(
        out,
        "# Basic results: n = {n} features, m = {m} hidden dimensions, I_i = 0.7^i\n"
    );
    let _ = writeln!(
        out,
        "Trained by `tms reproduce basic` on {}.\n",
        training_line(config)
    );
    let _ = writeln!(
        out,
        "A feature is *represented* when ‖W_i‖ > {REPRESENTED_NORM}, and *in superposition* when it is represented and \
         Σ_{{j≠i}} (Ŵ_i·W_j)² > {SUPERPOSITION_THRESHOLD}. A bias is negative when b_i < −{NEGATIVE_BIAS}. \
         Dimensions per feature is m / ‖W‖²_F; D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)² is the dimensionality of feature i \
         (1 dedicated, 1/2 antipodal pair, 2/5 pentagon).\n"
    );
    let all_metrics: Vec<Vec<InstanceMetrics>> = runs
        .iter()
        .map(|(_, results)| results.instances.iter().map(InstanceMetrics::of).collect())
        .collect();
    for ((_, results), metrics) in runs.iter().zip(&all_metrics) {
        let name = match results.model {
            ModelKind::Linear => "linear",
            ModelKind::Relu => "ReLU output",
            other => model_label(other),
        };
        let _ = writeln!(out, "## {name} model\n");
        let _ = writeln!(out, "| density 1 − S | features represented | in superposition | dimensions per feature | mean D_i of represented | eval loss | negative biases |");
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for mt in metrics {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3e} | {} |",
                mt.density,
                mt.features_represented,
                mt.represented_in_superposition,
                mt.dimensions_per_feature,
                mt.mean_represented_dimensionality(),
                mt.eval_loss.unwrap_or(f64::NAN),
                mt.negative_biases
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Compared with the paper\n");
    for ((config, results), metrics) in runs.iter().zip(&all_metrics) {
        let _ = writeln!(
            out,
            "{}\n",
            comparison(results, metrics, config.experiment.steps)
        );
    }
    let _ = writeln!(out, "## Figures\n");
    let _ = writeln!(out, "![WᵀW and b per density](weights.png)\n\n![‖W_i‖ coloured by superposition](feature-bars.png)\n\n![training loss](loss.png)");
    out
}

/// The densities of the instances for which `keep` holds, as a list.
fn densities_where(
    metrics: &[InstanceMetrics],
    keep: impl Fn(&InstanceMetrics) -> bool,
) -> Vec<String> {
    metrics
        .iter()
        .filter(|mt| keep(mt))
        .map(|mt| mt.density.to_string())
        .collect()
}

/// "density 0.1" or "densities 0.1, 0.03 and 0.01".
fn at_densities(list: &[String]) -> String {
    match list {
        [] => String::new(),
        [one] => format!("density {one}"),
        [rest @ .., last] => format!("densities {} and {last}", rest.join(", ")),
    }
}

/// A few sentences on one model kind against the paper's claims.
fn comparison(results: &Results, metrics: &[InstanceMetrics], steps: u32) -> String {
    let (n, m) = (results.features, results.hidden);
    if results.model == ModelKind::Linear {
        let off = densities_where(metrics, |mt| !mt.top_m_only(m));
        return if off.is_empty() {
            format!(
                "**Linear model.** As in the paper, it represents exactly the {m} most important features at every density, each in its \
                 own dimension: WᵀW is the projection onto the top {m} features, whatever the sparsity."
            )
        } else {
            format!("**Linear model.** Unlike the paper, it does not learn exactly the top {m} features, orthogonally, at {}.", at_densities(&off))
        };
    }
    let mut text = String::from("**ReLU output model.** ");
    match metrics.iter().find(|mt| mt.density == 1.0) {
        Some(mt) if mt.top_m_only(m) => {
            let _ = write!(text, "At density 1 it behaves like the linear model (the top {m} features, orthogonal), as in the paper. ");
        }
        Some(_) => {
            let _ = write!(text, "Unlike the paper, at density 1 it does not learn exactly the top {m} features orthogonally. ");
        }
        None => {}
    }
    let counts = metrics
        .iter()
        .map(|mt| format!("{} at {}", mt.features_represented, mt.density))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        text,
        "As the features get sparser it represents more of them ({counts}). "
    );
    // Mostly antipodal: at least three quarters of the features in superposition have D_i ≈ 1/2.
    let antipodal = densities_where(metrics, |mt| {
        let shared = mt.shared();
        !shared.is_empty()
            && 4 * shared
                .iter()
                .filter(|&&i| mt.dimensionality_near(i, 0.5))
                .count()
                >= 3 * shared.len()
    });
    if !antipodal.is_empty() {
        let _ = write!(
            text,
            "At {} the features in superposition come in antipodal pairs (D_i ≈ 1/2, the blue off-diagonal entries of WᵀW), \
             as the paper describes for moderate sparsity. ",
            at_densities(&antipodal)
        );
    }
    let dense: Vec<&InstanceMetrics> = metrics
        .iter()
        .filter(|mt| mt.features_represented > 0 && mt.mean_represented_dimensionality() < 0.45)
        .collect();
    if !dense.is_empty() {
        let list = |f: &dyn Fn(&InstanceMetrics) -> String| {
            dense.iter().map(|mt| f(mt)).collect::<Vec<_>>().join(", ")
        };
        let _ = write!(
            text,
            "At {} they pack more densely (mean D_i {}; a pentagon has 2/5) and the biases turn negative ({} negative biases), \
             which lets the model discard the small positive interference between features: the paper's superposition. ",
            at_densities(&dense.iter().map(|mt| mt.density.to_string()).collect::<Vec<_>>()),
            list(&|mt| format!("{:.2}", mt.mean_represented_dimensionality())),
            list(&|mt| mt.negative_biases.to_string())
        );
    }
    if let Some(sparsest) = metrics
        .iter()
        .min_by(|a, b| a.density.total_cmp(&b.density))
    {
        let missing = n - sparsest.features_represented;
        if missing > 2 {
            let first_missing = (0..n)
                .find(|&i| sparsest.norms[i] <= REPRESENTED_NORM)
                .unwrap_or(n - 1);
            let _ = write!(
                text,
                "Where the paper describes almost every feature as represented at high sparsity, here {missing} of the {n} features stay below \
                 ‖W_i‖ = {REPRESENTED_NORM} at density {} after {steps} steps (from feature {first_missing} on, importance ≤ {:.3}; many are \
                 partly learned): their gradients scale with importance × density, so they learn slowly.",
                sparsest.density, results.instances[sparsest.index].importance[first_missing]
            );
        }
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::toy_results;

    #[test]
    fn summary_tables_and_comparison_follow_the_metrics() {
        let config = |model| RunConfig {
            experiment: Settings {
                model: Some(model),
                ..Default::default()
            }
            .resolve()
            .unwrap(),
            backend: "cpu".into(),
            device: "cpu".into(),
            tms_version: "0".into(),
            data_stream: crate::features::DATA_STREAM,
            weights_sha256: None,
        };
        let runs = vec![
            (config(ModelKind::Linear), toy_results(ModelKind::Linear)),
            (config(ModelKind::Relu), toy_results(ModelKind::Relu)),
        ];
        let text = summary_markdown(&runs);
        assert!(
            text.contains("## linear model") && text.contains("## ReLU output model"),
            "{text}"
        );
        assert!(
            text.contains("| 0.01 | 4 | 4 | 0.500 | 0.500 | 1.000e-2 | 4 |"),
            "{text}"
        );
        assert!(
            text.contains("As in the paper, it represents exactly the 2 most important features"),
            "{text}"
        );
        assert!(
            text.contains("At density 1 it behaves like the linear model"),
            "{text}"
        );
        assert!(
            text.contains("At density 0.01 the features in superposition come in antipodal pairs"),
            "{text}"
        );
    }
}
