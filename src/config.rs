//! The experiment description shared by every backend: what to train (model kind, sizes, instances
//! with their densities and importances) and how (batch, steps, optimizer, schedule, seed).
//!
//! Settings arrive from a TOML file and from command-line flags as one [`Settings`] (every field
//! optional, flags laid over the file); [`Settings::resolve`] fills in the public notebook's defaults,
//! checks every value and returns the [`Experiment`] that trainers consume and `config.json` records.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

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

/// Bad settings: a one-line message naming the field, the value and what is allowed.
/// The command line reports it and exits with status 2.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(field: &str, value: impl fmt::Display, allowed: &str) -> ConfigError {
    ConfigError(format!("invalid {field}: {value} ({allowed})"))
}

/// One instance given explicitly in a config file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettings {
    pub density: Option<f64>,
    pub importance: Option<Vec<f64>>,
    pub importance_decay: Option<f64>,
}

/// Everything a user may set; `None` means "not given here". A TOML config file holds these fields.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub model: Option<ModelKind>,
    pub features: Option<usize>,
    pub hidden: Option<usize>,
    pub density: Option<Vec<f64>>,
    pub importance_decay: Option<f64>,
    pub instances: Option<Vec<InstanceSettings>>,
    pub batch: Option<usize>,
    pub steps: Option<u32>,
    pub lr: Option<f64>,
    pub optimizer: Option<OptimizerKind>,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub log_every: Option<u32>,
    pub eval_samples: Option<usize>,
    pub seed: Option<u64>,
}

/// One independent model: its feature density (1 − S) and importance per feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub density: f64,
    pub importance: Vec<f32>,
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
}

/// The seed's basic-results densities.
pub const DEFAULT_DENSITIES: [f64; 7] = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001];

/// Largest step count: the step is a 31-bit counter word of the feature generator.
pub const MAX_STEPS: u32 = 1 << 31;

impl Settings {
    /// Reads a TOML config file; syntax errors and unknown keys name the line and column.
    pub fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        Settings::from_toml_str(&text)
            .map_err(|ConfigError(e)| ConfigError(format!("config {}: {e}", path.display())))
    }

    /// Parses TOML text into settings.
    pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    let column =
                        span.start - text[..span.start].rfind('\n').map_or(0, |p| p + 1) + 1;
                    format!("line {line}, column {column}: ")
                })
                .unwrap_or_default();
            ConfigError(format!("{at}{}", e.message().replace('\n', " ")))
        })
    }

    /// Lays `over` on top of `self`: every field set in `over` wins.
    pub fn overlay(self, over: Settings) -> Settings {
        macro_rules! pick {
            ($($f:ident),*) => { Settings { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            model,
            features,
            hidden,
            density,
            importance_decay,
            instances,
            batch,
            steps,
            lr,
            optimizer,
            weight_decay,
            schedule,
            log_every,
            eval_samples,
            seed
        )
    }

    /// Applies defaults and validates every value.
    pub fn resolve(&self) -> Result<Experiment, ConfigError> {
        let features = self.features.unwrap_or(20);
        let hidden = self.hidden.unwrap_or(5);
        if features == 0 || features > 1 << 16 {
            return Err(bad("features", features, "must be between 1 and 65536"));
        }
        if hidden == 0 || hidden > 1 << 12 {
            return Err(bad("hidden", hidden, "must be between 1 and 4096"));
        }
        let decay = self.importance_decay.unwrap_or(0.7);
        check_decay("importance-decay", decay)?;

        let instances = match (&self.instances, &self.density) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "give either density or instances, not both".into(),
                ))
            }
            (Some(list), None) => list
                .iter()
                .enumerate()
                .map(|(i, spec)| resolve_instance(i, spec, features, decay))
                .collect::<Result<Vec<_>, _>>()?,
            (None, density) => {
                let densities = density
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DENSITIES.to_vec());
                let spec = |d| InstanceSettings {
                    density: Some(d),
                    ..Default::default()
                };
                densities
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| resolve_instance(i, &spec(d), features, decay))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        if instances.is_empty() {
            return Err(bad(
                "instances",
                "[]",
                "at least one instance (density) is needed",
            ));
        }

        let batch = self.batch.unwrap_or(1024);
        if batch == 0 || batch > 1 << 20 {
            return Err(bad("batch", batch, "must be between 1 and 1048576"));
        }
        let steps = self.steps.unwrap_or(10_000);
        if steps == 0 || steps > MAX_STEPS {
            return Err(bad("steps", steps, "must be between 1 and 2^31"));
        }
        let kind = self.optimizer.unwrap_or(OptimizerKind::Adamw);
        let lr = self.lr.unwrap_or(1e-3);
        if !(lr.is_finite() && lr > 0.0) {
            return Err(bad("lr", lr, "must be a positive finite number"));
        }
        let default_decay = if kind == OptimizerKind::Adamw {
            0.01
        } else {
            0.0
        };
        let weight_decay = self.weight_decay.unwrap_or(default_decay);
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(bad(
                "weight-decay",
                weight_decay,
                "must be a finite number ≥ 0",
            ));
        }
        let log_every = self.log_every.unwrap_or(100);
        if log_every == 0 {
            return Err(bad("log-every", log_every, "must be at least 1"));
        }
        let eval_samples = self.eval_samples.unwrap_or(16_384);
        if eval_samples == 0 || eval_samples > 1 << 24 {
            return Err(bad(
                "eval-samples",
                eval_samples,
                "must be between 1 and 16777216",
            ));
        }
        if (batch.max(eval_samples) as u64) * (features.div_ceil(4) as u64) > u64::from(u32::MAX) {
            return Err(ConfigError(format!(
                "batch × features too large for the 32-bit sample counter: {batch} × {features}"
            )));
        }
        Ok(Experiment {
            model: self.model.unwrap_or(ModelKind::Relu),
            features,
            hidden,
            instances,
            batch,
            steps,
            optimizer: Optimizer {
                kind,
                lr,
                weight_decay,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            schedule: self.schedule.unwrap_or(Schedule::Constant),
            log_every,
            eval_samples,
            seed: self.seed.unwrap_or(0),
        })
    }
}

fn check_decay(field: &str, decay: f64) -> Result<(), ConfigError> {
    if decay.is_finite() && decay > 0.0 {
        Ok(())
    } else {
        Err(bad(
            field,
            decay,
            "must be a positive finite number, e.g. 0.7 for I_i = 0.7^i",
        ))
    }
}

fn resolve_instance(
    index: usize,
    spec: &InstanceSettings,
    features: usize,
    decay: f64,
) -> Result<Instance, ConfigError> {
    let density = spec
        .density
        .ok_or_else(|| ConfigError(format!("invalid instances[{index}]: missing density")))?;
    if !(density.is_finite() && density > 0.0 && density <= 1.0) {
        return Err(bad(
            &format!("density of instance {index}"),
            density,
            "must be in (0, 1]",
        ));
    }
    let importance = match (&spec.importance, spec.importance_decay) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(format!(
                "invalid instances[{index}]: give importance or importance_decay, not both"
            )))
        }
        (Some(list), None) => {
            if list.len() != features {
                return Err(bad(
                    &format!("importance of instance {index}"),
                    format!("{} values", list.len()),
                    &format!("must list one value per feature ({features})"),
                ));
            }
            if let Some(v) = list.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(bad(
                    &format!("importance of instance {index}"),
                    v,
                    "values must be finite and ≥ 0",
                ));
            }
            list.iter().map(|&v| v as f32).collect()
        }
        (None, own_decay) => {
            let r = own_decay.unwrap_or(decay);
            check_decay(&format!("importance_decay of instance {index}"), r)?;
            geometric_importance(features, r)
        }
    };
    Ok(Instance {
        density,
        importance,
    })
}

/// I_i = r^i, computed in f64 and rounded once.
pub fn geometric_importance(features: usize, r: f64) -> Vec<f32> {
    (0..features).map(|i| r.powi(i as i32) as f32).collect()
}

impl Experiment {
    /// The seed's basic-results experiment with the notebook's settings.
    pub fn seed_default() -> Experiment {
        Settings::default().resolve().expect("defaults are valid")
    }

    /// Parameters per instance: W (m × n) and b (n).
    pub fn params_per_instance(&self) -> usize {
        self.hidden * self.features + self.features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_experiment_with_notebook_settings() {
        let e = Experiment::seed_default();
        assert_eq!(
            (e.features, e.hidden, e.batch, e.steps, e.model),
            (20, 5, 1024, 10_000, ModelKind::Relu)
        );
        assert_eq!(
            e.instances.iter().map(|i| i.density).collect::<Vec<_>>(),
            DEFAULT_DENSITIES
        );
        assert_eq!(e.optimizer.kind, OptimizerKind::Adamw);
        assert_eq!((e.optimizer.lr, e.optimizer.weight_decay), (1e-3, 0.01));
        assert_eq!(e.schedule, Schedule::Constant);
        assert!((e.instances[0].importance[3] - 0.343).abs() < 1e-6);
    }

    #[test]
    fn flags_override_the_file() {
        let file =
            Settings::from_toml_str("features = 10\nhidden = 3\nlr = 0.01\nmodel = \"linear\"")
                .unwrap();
        let flags = Settings {
            lr: Some(0.05),
            ..Default::default()
        };
        let e = file.overlay(flags).resolve().unwrap();
        assert_eq!(
            (e.features, e.hidden, e.optimizer.lr, e.model),
            (10, 3, 0.05, ModelKind::Linear)
        );
    }

    #[test]
    fn explicit_instances_from_toml() {
        let text = "features = 3\nhidden = 2\n[[instances]]\ndensity = 0.5\nimportance = [1.0, 2.0, 0.5]\n[[instances]]\ndensity = 1.0\nimportance_decay = 0.5\n";
        let e = Settings::from_toml_str(text).unwrap().resolve().unwrap();
        assert_eq!(e.instances[0].importance, vec![1.0, 2.0, 0.5]);
        assert_eq!(e.instances[1].importance, vec![1.0, 0.5, 0.25]);
    }

    #[test]
    fn bad_values_get_one_line_naming_the_field() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    features: Some(0),
                    ..Default::default()
                },
                "features",
            ),
            (
                Settings {
                    hidden: Some(0),
                    ..Default::default()
                },
                "hidden",
            ),
            (
                Settings {
                    density: Some(vec![0.0]),
                    ..Default::default()
                },
                "density",
            ),
            (
                Settings {
                    density: Some(vec![1.5]),
                    ..Default::default()
                },
                "density",
            ),
            (
                Settings {
                    density: Some(vec![f64::NAN]),
                    ..Default::default()
                },
                "density",
            ),
            (
                Settings {
                    density: Some(vec![]),
                    ..Default::default()
                },
                "instances",
            ),
            (
                Settings {
                    lr: Some(-1.0),
                    ..Default::default()
                },
                "lr",
            ),
            (
                Settings {
                    lr: Some(f64::INFINITY),
                    ..Default::default()
                },
                "lr",
            ),
            (
                Settings {
                    batch: Some(0),
                    ..Default::default()
                },
                "batch",
            ),
            (
                Settings {
                    steps: Some(0),
                    ..Default::default()
                },
                "steps",
            ),
            (
                Settings {
                    importance_decay: Some(0.0),
                    ..Default::default()
                },
                "importance-decay",
            ),
            (
                Settings {
                    weight_decay: Some(f64::NAN),
                    ..Default::default()
                },
                "weight-decay",
            ),
            (
                Settings {
                    log_every: Some(0),
                    ..Default::default()
                },
                "log-every",
            ),
        ];
        for (settings, field) in cases {
            let err = settings.resolve().unwrap_err().0;
            assert!(err.contains(field) && !err.contains('\n'), "{field}: {err}");
        }
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        let err = Settings::from_toml_str("features = 20\nhidden = = 5\n")
            .unwrap_err()
            .0;
        assert!(err.starts_with("line 2, column"), "{err}");
        let err = Settings::from_toml_str("features = 20\nhiden = 5\n")
            .unwrap_err()
            .0;
        assert!(err.contains("line 2") && err.contains("hiden"), "{err}");
    }
}
