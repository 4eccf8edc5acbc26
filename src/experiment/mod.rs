//! The experiment description every backend consumes: what to train (model kind, sizes, instances
//! with their densities and importances) and how (batch, steps, optimizer, schedule, seed), fully
//! resolved and validated, as `config.json` records it. [`settings`] turns what a user gives (TOML file
//! and command-line flags) into an [`Experiment`].

pub mod settings;

pub use settings::Settings;

use crate::error::UsageError;
use crate::features::{
    presence_threshold, AnticorrelatedMode, Distribution, FeatureSet, SetKind, Values,
    MAX_FEATURE_SETS,
};
use serde::{Deserialize, Serialize};

/// Which toy model: x' = WᵀWx + b; x' = ReLU(WᵀWx + b); the privileged-basis model
/// x' = ReLU(Wᵀ ReLU(Wx) + b); or the untied model y' = ReLU(W₂ ReLU(W₁x) + b) trained on signed
/// features to compute y = |x| (computation in superposition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Linear,
    Relu,
    #[serde(rename = "relu-hidden")]
    #[value(name = "relu-hidden")]
    ReluHidden,
    Abs,
}

impl ModelKind {
    /// Its name, as `--model` and config.json spell it.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::Relu => "relu",
            ModelKind::ReluHidden => "relu-hidden",
            ModelKind::Abs => "abs",
        }
    }

    /// Whether the output passes through a ReLU (every kind but the linear one).
    pub fn output_relu(self) -> bool {
        self != ModelKind::Linear
    }

    /// Whether the hidden layer passes through a ReLU: h = ReLU(W x), a privileged basis.
    pub fn hidden_relu(self) -> bool {
        matches!(self, ModelKind::ReluHidden | ModelKind::Abs)
    }

    /// Whether the output weights are a matrix of their own (W₂), not Wᵀ.
    pub fn untied(self) -> bool {
        self == ModelKind::Abs
    }

    /// Whether the features are signed (uniform on [−1, 1) when present) and the target is |x|.
    pub fn computes_abs(self) -> bool {
        self == ModelKind::Abs
    }

    /// Rows of n weights each instance trains: W (m rows), then for an untied model W₂ᵀ (m more).
    pub fn weight_rows(self, hidden: usize) -> usize {
        if self.untied() {
            2 * hidden
        } else {
            hidden
        }
    }
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
    /// How features are drawn besides their densities; left out of config.json when it is the
    /// paper's (independent features, uniform values), so older files read as before.
    #[serde(default, skip_serializing_if = "FeatureData::is_default")]
    pub data: FeatureData,
}

/// The feature distribution of every instance besides its density (`--feature-sets`,
/// `--anticorrelated-mode`, `--values`, `--exactly-k`): see [`crate::features`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureData {
    #[serde(default)]
    pub feature_sets: Vec<FeatureSet>,
    #[serde(default)]
    pub anticorrelated_mode: AnticorrelatedMode,
    #[serde(default)]
    pub values: Values,
    #[serde(default)]
    pub exactly_k: Option<u32>,
}

impl FeatureData {
    pub fn is_default(&self) -> bool {
        *self == FeatureData::default()
    }

    /// The sampler's form (valid once [`Experiment::validate`] passed).
    pub fn distribution(&self) -> Distribution {
        Distribution::new(
            &self.feature_sets,
            self.anticorrelated_mode,
            self.values,
            self.exactly_k.unwrap_or(0),
        )
        .expect("a validated experiment has at most MAX_FEATURE_SETS sets")
    }

    /// Checks the sets against n features and every instance's density.
    fn validate(&self, features: usize, instances: &[Instance]) -> Result<(), UsageError> {
        let sets = &self.feature_sets;
        let text = || FeatureSet::list_text(sets);
        if sets.len() > MAX_FEATURE_SETS {
            return Err(UsageError::invalid(
                "feature-sets",
                format!("{} sets", sets.len()),
                &format!("at most {MAX_FEATURE_SETS}"),
            ));
        }
        if let Some(set) = sets.iter().find(|s| match s.kind {
            SetKind::Independent => s.size == 0,
            _ => s.size < 2,
        }) {
            return Err(UsageError::invalid(
                "feature-sets",
                text(),
                &format!(
                    "a {:?} set needs at least {} features",
                    set.kind,
                    if set.kind == SetKind::Independent {
                        1
                    } else {
                        2
                    }
                )
                .to_lowercase(),
            ));
        }
        let covered: u64 = sets.iter().map(|s| u64::from(s.size)).sum();
        if covered > features as u64 {
            return Err(UsageError::invalid(
                "feature-sets",
                text(),
                &format!("the sets cover {covered} features, more than the {features} there are"),
            ));
        }
        if let Some(k) = self.exactly_k {
            if k == 0 || k as usize > features {
                return Err(UsageError::invalid(
                    "exactly-k",
                    k,
                    &format!("must be between 1 and the number of features ({features})"),
                ));
            }
            if sets.iter().any(|s| s.kind != SetKind::Independent) {
                return Err(UsageError::invalid(
                    "exactly-k",
                    k,
                    "draws independent features; it does not combine with correlated or anticorrelated sets",
                ));
            }
            let marginal = f64::from(k) / features as f64;
            if let Some(inst) = instances.iter().find(|i| i.density != marginal) {
                return Err(UsageError::invalid(
                    "density",
                    inst.density,
                    &format!("with exactly-k {k} every instance's density is K / n = {marginal}; give no density"),
                ));
            }
        }
        if self.anticorrelated_mode == AnticorrelatedMode::Marginal {
            let largest = sets
                .iter()
                .filter(|s| s.kind == SetKind::Anticorrelated)
                .map(|s| u64::from(s.size))
                .max()
                .unwrap_or(0);
            // The sampler's exact condition: size · ⌈(1 − S) · 2³²⌉ ≤ 2³².
            let cut = |d: f64| u64::from(presence_threshold(d)) + 1;
            if let Some(inst) = instances
                .iter()
                .find(|i| largest * cut(i.density) > 1 << 32)
            {
                return Err(UsageError::invalid(
                    "anticorrelated-mode",
                    "marginal",
                    &format!(
                        "needs (1 − S) · size ≤ 1, but density {} × set size {largest} > 1",
                        inst.density
                    ),
                ));
            }
        }
        Ok(())
    }
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

/// Most instances in one run (a shard of a larger sweep counts its own): beyond this, split the
/// sweep into runs with `--shard`.
pub const MAX_INSTANCES: usize = 1 << 22;

/// Largest step count: the step is a 31-bit counter word of the feature generator.
pub const MAX_STEPS: u32 = 1 << 31;

/// The largest importance a feature may have: the loss sums I·(x − x')² over a batch in f32, and a
/// larger weight leaves no headroom (at 3e38 the CPU and the GPU disagree and nothing trains).
pub const MAX_IMPORTANCE: f32 = 1e9;

/// Whether `importance` is one a feature may have: finite, ≥ 0 and at most [`MAX_IMPORTANCE`] in f32
/// (an f64 setting of 1e300 becomes infinite once rounded to f32, where it is used).
pub fn within_importance_range(importance: f32) -> bool {
    (0.0..=MAX_IMPORTANCE).contains(&importance)
}

/// The model sizes every backend supports.
pub fn check_sizes(features: usize, hidden: usize) -> Result<(), UsageError> {
    if features == 0 || features > 1 << 16 {
        return Err(UsageError::invalid(
            "features",
            features,
            "must be between 1 and 65536",
        ));
    }
    if hidden == 0 || hidden > 1 << 12 {
        return Err(UsageError::invalid(
            "hidden",
            hidden,
            "must be between 1 and 4096",
        ));
    }
    Ok(())
}

/// I_i = r^i, computed in f64 and rounded once.
pub fn geometric_importance(features: usize, r: f64) -> Vec<f32> {
    (0..features).map(|i| r.powi(i as i32) as f32).collect()
}

impl Experiment {
    /// Checks every value of a resolved experiment, whether it comes from the user's settings
    /// ([`Settings::resolve`]) or from a file (a checkpoint, a run's config.json): the one place that
    /// says what a trainable experiment is. Each error is one line naming the setting.
    pub fn validate(&self) -> Result<(), UsageError> {
        check_sizes(self.features, self.hidden)?;
        self.data.validate(self.features, &self.instances)?;
        if self.model.computes_abs()
            && !matches!(self.data.values, Values::Uniform | Values::Signed)
        {
            return Err(UsageError::invalid(
                "values",
                format!("{:?}", self.data.values).to_lowercase(),
                "the abs model's features are signed (uniform on [-1, 1)): use --values signed or leave it at uniform",
            ));
        }
        if self.instances.is_empty() {
            return Err(UsageError::invalid(
                "instances",
                "[]",
                "at least one instance (density) is needed",
            ));
        }
        for (i, inst) in self.instances.iter().enumerate() {
            if !(inst.density.is_finite() && inst.density > 0.0 && inst.density <= 1.0) {
                return Err(UsageError::invalid(
                    &format!("density of instance {i}"),
                    inst.density,
                    "must be in (0, 1]",
                ));
            }
            if inst.importance.len() != self.features {
                return Err(UsageError::invalid(
                    &format!("importance of instance {i}"),
                    format!("{} values", inst.importance.len()),
                    &format!("must list one value per feature ({})", self.features),
                ));
            }
            if let Some(v) = inst
                .importance
                .iter()
                .find(|&&v| !within_importance_range(v))
            {
                return Err(UsageError::invalid(
                    &format!("importance of instance {i}"),
                    format!("{v:?}"),
                    &format!("values must be between 0 and {MAX_IMPORTANCE:e} (as f32)"),
                ));
            }
        }
        if self.instances.len() > MAX_INSTANCES
            || self.instances.len() as u64 + u64::from(self.first_instance) > u64::from(u32::MAX)
        {
            return Err(UsageError::invalid(
                "instances",
                self.instances.len(),
                &format!("at most {MAX_INSTANCES}, within the 32-bit instance counter"),
            ));
        }
        if self.batch == 0 || self.batch > 1 << 20 {
            return Err(UsageError::invalid(
                "batch",
                self.batch,
                "must be between 1 and 1048576",
            ));
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(UsageError::invalid(
                "steps",
                self.steps,
                "must be between 1 and 2^31",
            ));
        }
        let opt = &self.optimizer;
        if !(opt.lr.is_finite()
            && opt.lr > 0.0
            && opt.lr as f32 > 0.0
            && (opt.lr as f32).is_finite())
        {
            return Err(UsageError::invalid(
                "lr",
                opt.lr,
                "must be a positive finite number (in f32 too)",
            ));
        }
        if !(opt.weight_decay.is_finite()
            && opt.weight_decay >= 0.0
            && (opt.weight_decay as f32).is_finite())
        {
            return Err(UsageError::invalid(
                "weight-decay",
                opt.weight_decay,
                "must be a finite number ≥ 0",
            ));
        }
        let unit = |v: f64| (0.0..1.0).contains(&v);
        if !(unit(opt.beta1)
            && unit(opt.beta2)
            && opt.eps > 0.0
            && (opt.eps as f32) > 0.0
            && opt.eps.is_finite())
        {
            return Err(UsageError(format!(
                "invalid optimizer: beta1 {}, beta2 {}, eps {} (betas in [0, 1), eps a positive f32)",
                opt.beta1, opt.beta2, opt.eps
            )));
        }
        if self.log_every == 0 {
            return Err(UsageError::invalid(
                "log-every",
                self.log_every,
                "must be at least 1",
            ));
        }
        if self.eval_samples == 0 || self.eval_samples > 1 << 24 {
            return Err(UsageError::invalid(
                "eval-samples",
                self.eval_samples,
                "must be between 1 and 16777216",
            ));
        }
        let (batch, features) = (self.batch, self.features);
        if (batch.max(self.eval_samples) as u64) * (features.div_ceil(4) as u64)
            > u64::from(u32::MAX)
        {
            return Err(UsageError(format!(
                "batch × features too large for the 32-bit sample counter: {batch} × {features}"
            )));
        }
        if let Some(shard) = self.shard {
            if shard.index >= shard.count
                || Shard::range(shard.index, shard.count, shard.total_instances)
                    != (self.first_instance as usize
                        ..self.first_instance as usize + self.instances.len())
            {
                return Err(UsageError(format!(
                    "invalid shard: {}/{} of {} instances does not hold instances {}..{}",
                    shard.index,
                    shard.count,
                    shard.total_instances,
                    self.first_instance,
                    self.first_instance as usize + self.instances.len()
                )));
            }
        }
        Ok(())
    }

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

    /// Parameters per instance: W (m × n, and W₂ of n × m for an untied model) and b (n).
    pub fn params_per_instance(&self) -> usize {
        self.weights_per_instance() + self.features
    }

    /// Weights per instance, as the trainers' state holds them: W (m × n), then for an
    /// untied model W₂ transposed (m × n, so that both models' backward passes read the same rows).
    pub fn weights_per_instance(&self) -> usize {
        self.model.weight_rows(self.hidden) * self.features
    }

    /// The distribution every instance's features are drawn from: the settings' ([`FeatureData`]),
    /// with signed values for the abs model (which refuses any `--values` but uniform and signed).
    pub fn distribution(&self) -> Distribution {
        let mut distribution = self.data.distribution();
        if self.model.computes_abs() {
            distribution.values = Values::Signed;
        }
        distribution
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
