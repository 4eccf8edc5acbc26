//! Whole experiments of the paper, end to end: `tms reproduce basic` trains the linear and the ReLU
//! output model (n = 20, m = 5, I_i = 0.7^i, seven densities, the notebook's settings) into
//! `OUT/linear/` and `OUT/relu/`, draws the figures into `OUT/`, and writes `OUT/summary.md`: a
//! metrics table per model kind and a comparison with the paper's claims.

use crate::analysis::{InstanceMetrics, NEGATIVE_BIAS, REPRESENTED_NORM, SUPERPOSITION_THRESHOLD};
use crate::cli::{prepare_run_dir, train_run, BasicArgs};
use crate::config::{ModelKind, Settings};
use crate::export::{read_config, write_atomic, Results, RunConfig};
use crate::figures::{draw_all, model_label, Run};
use std::fmt::Write;

/// `tms reproduce basic`.
pub fn basic(args: &BasicArgs) -> anyhow::Result<()> {
    let kinds = [(ModelKind::Linear, "linear"), (ModelKind::Relu, "relu")];
    let experiments = kinds
        .iter()
        .map(|&(model, name)| {
            let exp = Settings {
                model: Some(model),
                steps: args.steps,
                ..Default::default()
            }
            .resolve()?;
            let dir = args.out.join(name);
            prepare_run_dir(&dir, args.force)?;
            Ok((exp, dir))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs = vec![];
    for (exp, dir) in experiments {
        let results = train_run(exp, args.backend, &dir)?;
        runs.push((read_config(&dir)?, results));
    }
    let figures: Vec<Run> = runs
        .iter()
        .map(|(_, results)| Run {
            label: model_label(results.model).into(),
            results: results.clone(),
        })
        .collect();
    for path in draw_all(&figures, &args.out)? {
        eprintln!("wrote {}", path.display());
    }
    let summary = args.out.join("summary.md");
    write_atomic(&summary, summary_markdown(&runs).as_bytes())?;
    eprintln!("wrote {}", summary.display());
    Ok(())
}

/// Whether exactly the `m` most important features are represented, none in superposition.
fn top_m_only(metrics: &InstanceMetrics, m: usize) -> bool {
    let represented: Vec<usize> = (0..metrics.norms.len())
        .filter(|&i| metrics.norms[i] > REPRESENTED_NORM)
        .collect();
    represented == (0..m).collect::<Vec<_>>() && metrics.represented_in_superposition == 0
}

/// summary.md of a reproduced basic experiment: settings, a table per model kind, and sentences
/// comparing the numbers with the paper.
pub fn summary_markdown(runs: &[(RunConfig, Results)]) -> String {
    let mut out = String::new();
    let Some((config, first)) = runs.first() else {
        return out;
    };
    let exp = &config.experiment;
    let (n, m) = (first.features, first.hidden);
    let _ = writeln!(
        out,
        "# Basic results: n = {n} features, m = {m} hidden dimensions\n"
    );
    let _ = writeln!(
        out,
        "Trained by `tms reproduce basic` on {} ({}): {:?} (lr {}, weight decay {}), batch {}, {} steps, {:?} schedule, seed {}; \
         evaluation loss on {} held-out samples.\n",
        config.backend, config.device, exp.optimizer.kind, exp.optimizer.lr, exp.optimizer.weight_decay, exp.batch, exp.steps, exp.schedule, exp.seed, exp.eval_samples
    );
    let _ = writeln!(
        out,
        "A feature is *represented* when ‖W_i‖ > {REPRESENTED_NORM}, and *in superposition* when it is represented and \
         Σ_{{j≠i}} (Ŵ_i·W_j)² > {SUPERPOSITION_THRESHOLD}. A bias is negative when b_i < −{NEGATIVE_BIAS}. \
         Dimensions per feature is m / ‖W‖²_F.\n"
    );
    let all_metrics: Vec<Vec<InstanceMetrics>> = runs
        .iter()
        .map(|(_, results)| results.instances.iter().map(InstanceMetrics::of).collect())
        .collect();
    for ((_, results), metrics) in runs.iter().zip(&all_metrics) {
        let _ = writeln!(out, "## {} model\n", model_label(results.model));
        let _ = writeln!(out, "| density 1 − S | features represented | in superposition | dimensions per feature | eval loss | negative biases |");
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
        for mt in metrics {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.3e} | {} |",
                mt.density,
                mt.features_represented,
                mt.represented_in_superposition,
                mt.dimensions_per_feature,
                mt.eval_loss,
                mt.negative_biases
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Compared with the paper\n");
    for ((_, results), metrics) in runs.iter().zip(&all_metrics) {
        let _ = writeln!(out, "{}\n", comparison(results.model, metrics, m));
    }
    let _ = writeln!(out, "## Figures\n");
    let _ = writeln!(out, "![WᵀW and b per density](weights.png)\n\n![‖W_i‖ coloured by superposition](feature-bars.png)\n\n![training loss](loss.png)");
    out
}

/// A few sentences on one model kind against the paper's claims.
fn comparison(model: ModelKind, metrics: &[InstanceMetrics], m: usize) -> String {
    let top: Vec<bool> = metrics.iter().map(|mt| top_m_only(mt, m)).collect();
    let densities = |keep: &dyn Fn(usize) -> bool| {
        metrics
            .iter()
            .enumerate()
            .filter(|&(k, _)| keep(k))
            .map(|(_, mt)| mt.density.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match model {
        ModelKind::Linear if top.iter().all(|&t| t) => format!(
            "**Linear model.** As in the paper, it represents exactly the {m} most important features at every density, none in superposition: \
             WᵀW is the projection onto the top {m} features, whatever the sparsity."
        ),
        ModelKind::Linear => format!(
            "**Linear model.** Unlike the paper, it does not learn exactly the top {m} features (orthogonally) at density {}.",
            densities(&|k| !top[k])
        ),
        ModelKind::Relu => {
            let mut text = String::from("**ReLU output model.** ");
            match metrics.iter().position(|mt| mt.density == 1.0) {
                Some(k) if top[k] => {
                    let _ = write!(text, "At density 1 it behaves like the linear model (the top {m} features, orthogonal), as in the paper. ");
                }
                Some(_) => {
                    let _ = write!(text, "Unlike the paper, at density 1 it does not learn exactly the top {m} features orthogonally. ");
                }
                None => {}
            }
            let steps = metrics.iter().map(|mt| format!("{} at {}", mt.features_represented, mt.density)).collect::<Vec<_>>().join(", ");
            let _ = write!(text, "As features get sparser it represents more of them (features represented at each density: {steps}). ");
            if let Some(sparsest) = metrics.iter().min_by(|a, b| a.density.total_cmp(&b.density)) {
                let _ = write!(
                    text,
                    "At density {} it represents {} of {} features in {} dimensions, {} of them in superposition ({:.2} dimensions per feature), \
                     with {} negative biases that cut off the interference between them: the paper's superposition.",
                    sparsest.density,
                    sparsest.features_represented,
                    sparsest.norms.len(),
                    m,
                    sparsest.represented_in_superposition,
                    sparsest.dimensions_per_feature,
                    sparsest.negative_biases
                );
            }
            text
        }
    }
}
