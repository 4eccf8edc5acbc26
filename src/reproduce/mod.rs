//! Whole experiments of the paper, end to end: each `tms reproduce` subcommand trains its runs,
//! draws its figures and writes a `summary.md` that compares the numbers with the paper.
//! - [`basic`]: the seed's basic results (n = 20, m = 5, linear and ReLU output model);
//! - [`intro`]: the introduction's figure (n = 5, m = 2): orthogonal, antipodal, pentagon;
//! - [`phase`]: the phase diagrams of one extra feature (n = 2, m = 1 and n = 3, m = 2), with the
//!   closed-form boundary for n = 2, m = 1;
//! - [`geometry`]: dimensions per feature and feature dimensionalities of uniform superposition;
//! - [`sae`]: sparse autoencoders on toy models, scored against the true features;
//! - [`correlated`]: correlated and anticorrelated feature sets (n = 4 and 6 with m = 2; n = 20,
//!   m = 10);
//! - [`privileged`]: the privileged-basis model (ReLU on the hidden layer), neuron by neuron;
//! - [`computation`]: the untied model computing |x| in superposition ([`neurons`] holds the
//!   neuron counts and the figure these two share).
//!
//! Each is a [`Reproduction`] (its experiments, figures and summary); [`reproduce`] is the one driver
//! that checks, trains (or, with `--redraw`, reads back), draws and writes for all of them.

pub mod basic;
pub mod computation;
pub mod correlated;
pub mod geometry;
pub mod intro;
pub mod neurons;
pub mod phase;
pub mod privileged;
pub mod sae;

use crate::device::{BackendChoice, Device};
use crate::error::UsageError;
use crate::experiment::Experiment;
use crate::run::{new_run, train_watched, Watch};
use crate::store::results::{read_config, read_results, InstanceResult, Results, RunConfig};
use crate::store::write_atomic;
use std::path::{Path, PathBuf};

/// The options every reproduction takes (its flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReproduceOptions {
    /// Output directory (default results/<experiment>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Training steps (default: the notebook's 10,000; phase: 5,000).
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    /// Independent fits per setting (default: intro 5, phase 4, basic and geometry 1, privileged
    /// 100, computation 100 for its small runs and 8 for its sweep); figures and summaries use the
    /// best by evaluation loss.
    #[arg(long, value_name = "K")]
    pub restarts: Option<u32>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Overwrite the result files of existing run directories.
    #[arg(long)]
    pub force: bool,
    /// Redraw the figures and summary.md from the run files already in the output directory.
    #[arg(long, conflicts_with = "force")]
    pub redraw: bool,
}

/// A trained run read back: its config.json and results.json.
pub type RunFiles = (RunConfig, Results);

/// One of the paper's experiments: which runs it trains, and what it draws and writes from them.
pub trait Reproduction {
    /// Its name: `tms reproduce NAME` writes into `results/NAME` by default.
    fn name(&self) -> &'static str;
    /// Its runs: the name of each run directory (under the output directory) and its experiment,
    /// resolved and validated.
    fn experiments(
        &self,
        options: &ReproduceOptions,
    ) -> Result<Vec<(&'static str, Experiment)>, UsageError>;
    /// Work on the trained runs before the figures are drawn (the SAEs of `tms reproduce sae`);
    /// skipped with `--redraw`, whose figures read what it wrote.
    fn after_training(&self, _out: &Path, _options: &ReproduceOptions) -> anyhow::Result<()> {
        Ok(())
    }
    /// Draws its figures into `out` from its runs (in the order of [`Reproduction::experiments`]);
    /// returns the files written.
    fn figures(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<Vec<PathBuf>>;
    /// Its summary.md: the numbers compared with the paper.
    fn summary(&self, runs: &[RunFiles], out: &Path) -> anyhow::Result<String>;
}

/// Runs a reproduction end to end: resolves its experiments and checks every run directory before
/// anything is trained, trains each run watched by `watch` (or, with `--redraw`, reads the runs
/// already there), then draws the figures and writes summary.md.
pub fn reproduce(
    reproduction: &dyn Reproduction,
    options: &ReproduceOptions,
    watch: &Watch,
) -> anyhow::Result<()> {
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| Path::new("results").join(reproduction.name()));
    let experiments = reproduction.experiments(options)?;
    let device = Device::from_flags(options.backend, None, None)?;
    let placements = experiments
        .iter()
        .map(|(_, exp)| device.check(exp))
        .collect::<Result<Vec<_>, _>>()?;
    // Every run directory is claimed (checked and locked) before the first run trains.
    let claimed = match options.redraw {
        true => vec![],
        false => experiments
            .iter()
            .map(|(name, exp)| new_run(exp, &out.join(name), options.force))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut runs = vec![];
    for (k, ((name, exp), placement)) in experiments.into_iter().zip(&placements).enumerate() {
        if let Some(dir) = claimed.get(k) {
            train_watched(exp, placement, Some(dir), None, watch)?;
        }
        let dir = out.join(name);
        runs.push((read_config(&dir)?, read_results(&dir)?));
    }
    if !options.redraw {
        reproduction.after_training(&out, options)?;
    }
    for path in reproduction.figures(&runs, &out)? {
        eprintln!("wrote {}", path.display());
    }
    let summary = out.join("summary.md");
    write_atomic(&summary, reproduction.summary(&runs, &out)?.as_bytes())?;
    eprintln!("wrote {}", summary.display());
    Ok(())
}

/// The instances that are the best restart of their setting (lowest evaluation loss), in order.
fn best_instances(results: &Results) -> Vec<&InstanceResult> {
    results
        .instances
        .iter()
        .filter(|inst| inst.best_of_setting)
        .collect()
}

/// "adamw (lr 0.001, weight decay 0.01), batch 1024, 10000 steps, constant learning rate, seed 0", the
/// device and the data stream, for the summaries.
fn training_line(config: &RunConfig) -> String {
    let exp = &config.experiment;
    let lower = |value: &dyn std::fmt::Debug| format!("{value:?}").to_lowercase();
    format!(
        "{}: {} (lr {}, weight decay {}), batch {}, {} steps, {} learning rate, seed {}; evaluation loss on {} held-out samples; \
         data from the presence-byte stream of `src/features.rs` (regenerated on 2026-11-25, when it replaced one mask word \
         per feature: the same distribution, other draws)",
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
