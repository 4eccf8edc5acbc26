//! The experiment description every backend consumes: what to train (model kind, sizes, instances
//! with their densities and importances) and how (batch, steps, optimizer, schedule, seed), fully
//! resolved and validated, as `config.json` records it. [`settings`] turns what a user gives (TOML file
//! and command-line flags) into an [`Experiment`].

pub mod settings;

pub use settings::Settings;

use crate::error::UsageError;
use serde::{Deserialize, Serialize};

/// Which toy model: x' = WᵀWx + b, or x' = ReLU(WᵀWx + b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Linear,
    Relu,
}

/// Adam (weight decay, if any, added to the gradient as in PyTorch's Adam) or AdamW (decoupled decay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
}

/// Learning-rate schedule over the run, as in the notebook: constant, 1 − t/T, or cos(πt / 2T).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// One independent model: its feature density (1 − S) and importance per feature. Restarts of one
/// setting share `setting` (the index of the distinct density/importance combination) and differ
/// in `restart` and, through their position, in their random streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub density: f64,
    pub importance: Vec<f32>,
    #[serde(default)]
    pub setting: usize,
    #[serde(default)]
    pub restart: u32,
}

/// Optimizer settings. Betas and eps are PyTorch's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// A fully resolved, validated experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub model: ModelKind,
    pub features: usize,
    pub hidden: usize,
    pub instances: Vec<Instance>,
    pub batch: usize,
    pub steps: u32,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub log_every: u32,
    pub eval_samples: usize,
    pub seed: u64,
    /// Global index of the first instance: instance i of this experiment is instance
    /// `first_instance + i` of the whole sweep and draws that instance's random streams. Non-zero
    /// only for a shard of a sweep (`--shard`, several devices).
    #[serde(default)]
    pub first_instance: u32,
    /// Set when this experiment is shard `index` of `count` of a sweep of `total_instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Which part of a sweep a sharded run trains (`--shard K/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    pub total_instances: usize,
}

impl Shard {
    /// Parses "K/N" (0 ≤ K < N).
    pub fn parse(text: &str) -> Result<(u32, u32), UsageError> {
        let parsed = text.split_once('/').and_then(|(k, n)| {
            Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
        });
        match parsed {
            Some((k, n)) if k < n => Ok((k, n)),
            _ => Err(UsageError::invalid(
                "shard",
                text,
                "must be K/N with 0 ≤ K < N, e.g. 0/4",
            )),
        }
    }

    /// The instances of shard `index` of `count` among `total`: a contiguous, deterministic range.
    pub fn range(index: u32, count: u32, total: usize) -> std::ops::Range<usize> {
        let at = |k: u32| (total as u64 * u64::from(k) / u64::from(count)) as usize;
        at(index)..at(index + 1)
    }
}

/// The seed's basic-results densities.
pub const DEFAULT_DENSITIES: [f64; 7] = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001];

/// Largest step count: the step is a 31-bit counter word of the feature generator.
pub const MAX_STEPS: u32 = 1 << 31;

/// I_i = r^i, computed in f64 and rounded once.
pub fn geometric_importance(features: usize, r: f64) -> Vec<f32> {
    (0..features).map(|i| r.powi(i as i32) as f32).collect()
}

impl Experiment {
    /// The seed's basic-results experiment with the notebook's settings.
    pub fn seed_default() -> Experiment {
        Settings::default().resolve().expect("defaults are valid")
    }

    /// The global index of instance `i` (its random streams: data and initial weights).
    pub fn global_index(&self, i: usize) -> u32 {
        self.first_instance + i as u32
    }

    /// The part of this experiment made of instances `range` (indices into `instances`), keeping each
    /// instance's global index, so it trains exactly as it would in the whole experiment.
    pub fn subset(&self, range: std::ops::Range<usize>) -> Experiment {
        Experiment {
            first_instance: self.global_index(range.start),
            instances: self.instances[range].to_vec(),
            ..self.clone()
        }
    }

    /// Shard `index` of `count` of this (whole) experiment.
    pub fn shard(&self, index: u32, count: u32) -> Result<Experiment, UsageError> {
        let total = self.instances.len();
        let range = Shard::range(index, count, total);
        if range.is_empty() {
            return Err(UsageError(format!(
                "invalid shard: {index}/{count} holds no instance (the sweep has {total})"
            )));
        }
        Ok(Experiment {
            shard: Some(Shard {
                index,
                count,
                total_instances: total,
            }),
            ..self.subset(range)
        })
    }

    /// Parameters per instance: W (m × n) and b (n).
    pub fn params_per_instance(&self) -> usize {
        self.hidden * self.features + self.features
    }
}

/// `count` values spaced evenly in log from `lo` to `hi` (just `lo` when `count` is 1): density and
/// importance sweeps.
pub fn log_grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![lo];
    }
    (0..count)
        .map(|k| lo * (hi / lo).powf(k as f64 / (count - 1) as f64))
        .collect()
}
