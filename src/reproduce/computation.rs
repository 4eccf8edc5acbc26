//! `tms reproduce computation`: computation in superposition. The untied model
//! h = ReLU(W₁ x), y' = ReLU(W₂ h + b) learns y = |x| of features that are uniform on [−1, 1] when
//! present, in three runs: the dense check (n = 3, m = 6: two neurons of opposite sign per
//! feature), the sweep (n = 100, m = 40, I_i = 0.8^i, seven densities) and the asymmetric
//! superposition motif (n = 6, m = 10, S = 0.8). Figures draw W₁ after rescaling each neuron so its
//! largest weight is 1 (the paper's footnote); summary.md counts features per neuron and neurons
//! per feature per density.

use super::neurons::{Neurons, NeuronsFigure, Panel, ACTIVE_FRACTION};
use super::privileged::{restarts, rows};
use super::{best_instances, training_line, ReproduceOptions, Reproduction, RunFiles};
use crate::error::UsageError;
use crate::experiment::{Experiment, ModelKind, OptimizerKind, Settings};
use crate::figures::save;
use crate::store::results::{InstanceResult, Results};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The sweep's densities 1 − S (ARENA's and the paper's).
pub const DENSITIES: [f64; 7] = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001];

/// Restarts per setting unless --restarts says otherwise: the small runs take 100, the sweep (about
/// 100 times the work per restart: some 65 s of one core for its seven densities) its own count,
/// [`SWEEP_RESTARTS`].
pub const SMALL_RESTARTS: u32 = 100;
pub const SWEEP_RESTARTS: u32 = 8;

/// `tms reproduce computation`.
pub struct Computation;

/// The abs model's settings with ARENA's optimizer (Adam without weight decay, lr 1e-3).
fn abs_settings(features: usize, hidden: usize, steps: u32, restarts: u32) -> Settings {
    Settings {
        model: Some(ModelKind::Abs),
        features: Some(features),
        hidden: Some(hidden),
        restarts: Some(restarts),
        optimizer: Some(OptimizerKind::Adam),
        weight_decay: Some(0.0),
        steps: Some(steps),
        log_every: Some((steps / 20).max(1)),
        ..Default::default()
    }
}

impl Reproduction for Computation {
    fn name(&self) -> &'static str {
        "computation"
    }

    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError> {
        // ARENA trains this model for 5,000 steps.
        let steps = options.steps.unwrap_or(5_000);
        let small = options.restarts.unwrap_or(SMALL_RESTARTS);
        let dense = Settings {
            importance_decay: Some(1.0),
            density: Some(vec![1.0]),
            ..abs_settings(3, 6, steps, small)
        }
        .resolve()?;
        let sweep = Settings {
            importance_decay: Some(0.8),
            density: Some(DENSITIES.to_vec()),
            ..abs_settings(100, 40, steps, options.restarts.unwrap_or(SWEEP_RESTARTS))
        }
        .resolve()?;
        // keltin13's motif settings: S = 0.8, I_i = 0.7^i, batch 128.
        let asymmetric = Settings {
            importance_decay: Some(0.7),
            density: Some(vec![0.2]),
            batch: Some(128),
            ..abs_settings(6, 10, steps, small)
        }
        .resolve()?;
        Ok(vec![
            ("dense", dense),
            ("sweep", sweep),
            ("asymmetric", asymmetric),
        ])
    }

    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let panels = |results: &Results, label: &dyn Fn(&InstanceResult) -> String| {
            best_instances(results)
                .into_iter()
                .map(|inst| Panel {
                    title: label(inst),
                    w: rescaled(inst),
                })
                .collect::<Vec<_>>()
        };
        let (dense, sweep, asymmetric) = (&runs[0].1, &runs[1].1, &runs[2].1);
        let sweep_figure = NeuronsFigure {
            title: format!(
                "|x| in superposition: W₁ of y' = ReLU(W₂ ReLU(W₁x) + b), n = 100, m = 40, I_i = 0.8^i, each neuron rescaled to a largest weight of 1 (best of {})",
                restarts(sweep)
            ),
            panels: panels(sweep, &|inst| format!("1 − S = {}", inst.density)),
            columns: 4,
        };
        let mut small = panels(dense, &|_| "dense: n = 3, m = 6".to_string());
        small.extend(panels(asymmetric, &|_| {
            "motif: n = 6, m = 10, S = 0.8".to_string()
        }));
        let small_figure = NeuronsFigure {
            title: format!(
                "|x| models, W₁ rescaled per neuron (best of {} restarts)",
                restarts(dense)
            ),
            panels: small,
            columns: 2,
        };
        let mut written = save(&sweep_figure, &out.join("computation"))?.to_vec();
        written.extend(save(&small_figure, &out.join("computation-small"))?);
        Ok(written)
    }

    fn summary(&self, runs: &[RunFiles], _out: &Path) -> anyhow::Result<String> {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Computation in superposition: y = |x| through h = ReLU(W₁ x), y' = ReLU(W₂ h + b)\n"
        );
        let _ = writeln!(
            out,
            "Trained by `tms reproduce computation` on {}. Features are uniform on [−1, 1] when present; W₁ and W₂ start \
             Kaiming-uniform as in ARENA. Each row is the best restart by evaluation loss (all restarts are in the run \
             directories' results.json). W₁ is rescaled per neuron so that its largest |weight| is 1; a neuron counts a \
             feature when the rescaled |weight| is at least {ACTIVE_FRACTION} of W₁'s largest. A feature has an \
             *|x| pair* when one of its neurons has a positive weight and another a negative one \
             (ReLU(x) + ReLU(−x) = |x|).\n",
            training_line(&runs[1].0)
        );
        let _ = writeln!(out, "| run | 1 − S | restarts | features represented | with an \\|x\\| pair | monosemantic neurons | polysemantic neurons | features per polysemantic neuron | neurons per represented feature | eval loss (best) |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut sweep_rows = vec![];
        for (name, (_, results)) in ["dense", "sweep", "asymmetric"].iter().zip(runs) {
            for inst in best_instances(results) {
                let counts = Counts::of(inst);
                if *name == "sweep" {
                    sweep_rows.push((inst.density, counts.clone()));
                }
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.3e} |",
                    inst.density,
                    restarts(results),
                    counts.represented,
                    counts.pairs,
                    counts.monosemantic,
                    counts.polysemantic,
                    counts.features_per_polysemantic,
                    counts.neurons_per_feature,
                    inst.eval_loss.unwrap_or(f64::NAN)
                );
            }
        }
        let dense = best_instances(&runs[0].1)
            .first()
            .map(|inst| Counts::of(inst));
        let _ = writeln!(out, "\n## Compared with the paper\n");
        let _ = writeln!(
            out,
            "- Dense check (paper: two neurons per feature, of opposite sign): {} of 3 features have an |x| pair, \
             with {} monosemantic neurons of 6.",
            dense.as_ref().map_or(0, |c| c.pairs),
            dense.as_ref().map_or(0, |c| c.monosemantic)
        );
        let first = sweep_rows.first();
        let last = sweep_rows.last();
        if let (Some((d0, c0)), Some((d1, c1))) = (first, last) {
            let _ = writeln!(
                out,
                "- Sweep (paper: dense features are computed by monosemantic pairs of neurons for the most important \
                 features, at most m / 2 = 20 of them; sparser features are computed in superposition, more features \
                 than neurons, polysemantic neurons): at 1 − S = {d0}, {} features represented ({} with an |x| pair), \
                 {} monosemantic and {} polysemantic neurons; at 1 − S = {d1}, {} features represented, {} \
                 monosemantic and {} polysemantic neurons with {:.2} features each.",
                c0.represented,
                c0.pairs,
                c0.monosemantic,
                c0.polysemantic,
                c1.represented,
                c1.monosemantic,
                c1.polysemantic,
                c1.features_per_polysemantic
            );
        }
        let _ = writeln!(
            out,
            "- Asymmetric motif (paper: one neuron with a large weight for one feature and a small one for another, \
             an opposite neuron cleaning up): see `computation-small.png`, right panel.\n"
        );
        let _ = writeln!(
            out,
            "## Figures\n\n![the sweep](computation.png)\n\n![the dense check and the asymmetric motif](computation-small.png)"
        );
        Ok(out)
    }
}

/// W₁ of an abs instance with each neuron (row) divided by its largest |weight|.
pub fn rescaled(inst: &InstanceResult) -> Vec<Vec<f64>> {
    rows(inst)
        .into_iter()
        .map(|row| {
            let largest = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            row.iter()
                .map(|v| if largest > 0.0 { v / largest } else { 0.0 })
                .collect()
        })
        .collect()
}

/// The counts of summary.md for one instance's rescaled W₁.
#[derive(Clone, Debug)]
pub struct Counts {
    pub represented: usize,
    pub pairs: usize,
    pub monosemantic: usize,
    pub polysemantic: usize,
    pub features_per_polysemantic: f64,
    pub neurons_per_feature: f64,
}

impl Counts {
    pub fn of(inst: &InstanceResult) -> Counts {
        let w = rescaled(inst);
        let neurons = Neurons::of(&w, true);
        let per_feature = neurons.neurons_per_feature();
        let represented = neurons.represented();
        let polysemantic = neurons.polysemantic();
        let in_polysemantic: usize = neurons
            .features_of
            .iter()
            .filter(|f| f.len() >= 2)
            .map(Vec::len)
            .sum();
        let sign_of = |k: usize, i: usize| w[k][i].signum();
        let pairs = (0..neurons.features)
            .filter(|&i| {
                let signs: Vec<f64> = (0..w.len())
                    .filter(|&k| neurons.features_of[k].contains(&i))
                    .map(|k| sign_of(k, i))
                    .collect();
                signs.contains(&1.0) && signs.contains(&-1.0)
            })
            .count();
        Counts {
            represented,
            pairs,
            monosemantic: neurons.monosemantic(),
            polysemantic,
            features_per_polysemantic: in_polysemantic as f64 / polysemantic.max(1) as f64,
            neurons_per_feature: per_feature.iter().sum::<usize>() as f64
                / represented.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Placement;
    use crate::run::{train_watched, Watch};
    use std::sync::atomic::AtomicBool;

    /// The dense n = 3, m = 6 |x| model, best of 8 short restarts: every feature gets two neurons
    /// of opposite sign (ReLU(x) + ReLU(−x)), as the paper's sanity check says.
    #[test]
    fn dense_abs_model_gives_each_feature_two_neurons_of_opposite_sign() {
        let options = ReproduceOptions {
            steps: Some(3000),
            restarts: Some(8),
            ..Default::default()
        };
        let (_, exp) = Computation.experiments(&options).unwrap().remove(0);
        let stop = AtomicBool::new(false);
        let watch = Watch {
            stop: Some(&stop),
            progress: Some(&|_, _, _| {}),
        };
        let run = train_watched(exp, &Placement::Cpu, None, None, &watch).unwrap();
        let best = best_instances(&run.results)[0];
        let counts = Counts::of(best);
        assert_eq!((counts.represented, counts.pairs), (3, 3), "{best:?}");
        assert!(best.eval_loss.unwrap() < 1e-3, "{best:?}");
    }
}
