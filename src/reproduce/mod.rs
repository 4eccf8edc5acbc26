//! Whole experiments of the paper, end to end: each `tms reproduce` subcommand trains its runs,
//! draws its figures and writes a `summary.md` that compares the numbers with the paper.
//! - [`basic`]: the seed's basic results (n = 20, m = 5, linear and ReLU output model);
//! - [`intro`]: the introduction's figure (n = 5, m = 2): orthogonal, antipodal, pentagon;
//! - [`phase`]: the phase diagrams of one extra feature (n = 2, m = 1 and n = 3, m = 2), with the
//!   closed-form boundary for n = 2, m = 1;
//! - [`geometry`]: dimensions per feature and feature dimensionalities of uniform superposition.

pub mod basic;
pub mod geometry;
pub mod intro;
pub mod phase;

use crate::cli::{prepare_run_dir, train_run, ReproduceOptions};
use crate::config::Experiment;
use crate::export::{read_config, read_results, Results, RunConfig};
use std::path::Path;

/// Checks that `dir` can take a new run, trains `exp` there and returns its config and results; with
/// --redraw, reads the config and results already in `dir` instead.
fn train_into(
    exp: Experiment,
    options: &ReproduceOptions,
    dir: &Path,
) -> anyhow::Result<(RunConfig, Results)> {
    if !options.redraw {
        prepare_run_dir(dir, options.force)?;
        train_run(exp, options.backend, dir)?;
    }
    Ok((read_config(dir)?, read_results(dir)?))
}

/// The instances that are the best restart of their setting (lowest evaluation loss), in order.
fn best_instances(results: &Results) -> Vec<&crate::export::InstanceResult> {
    results
        .instances
        .iter()
        .filter(|inst| inst.best_of_setting)
        .collect()
}

/// "adamw (lr 0.001, weight decay 0.01), batch 1024, 10000 steps, constant learning rate, seed 0" and
/// the device, for the summaries.
fn training_line(config: &RunConfig) -> String {
    let exp = &config.experiment;
    let lower = |value: &dyn std::fmt::Debug| format!("{value:?}").to_lowercase();
    format!(
        "{}: {} (lr {}, weight decay {}), batch {}, {} steps, {} learning rate, seed {}; evaluation loss on {} held-out samples",
        config.device,
        lower(&exp.optimizer.kind),
        exp.optimizer.lr,
        exp.optimizer.weight_decay,
        exp.batch,
        exp.steps,
        lower(&exp.schedule),
        exp.seed,
        exp.eval_samples
    )
}

/// `count` values spaced evenly in log from `lo` to `hi`.
pub fn log_grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![lo];
    }
    (0..count)
        .map(|k| lo * (hi / lo).powf(k as f64 / (count - 1) as f64))
        .collect()
}
