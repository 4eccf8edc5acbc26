//! What a user may set, declared once: [`Settings`] is both the command line's flags (clap) and a
//! TOML config file's fields (serde), every field optional. Flags are laid over the file
//! ([`Settings::overlay`]), and [`Settings::resolve`] fills in the public notebook's defaults, checks
//! every value and returns the [`Experiment`]: the one place where experiment settings are validated.

use super::FeatureData;
use super::{
    check_sizes, geometric_importance, within_importance_range, Experiment, Instance, ModelKind,
    Optimizer, OptimizerKind, Schedule, DEFAULT_DENSITIES, MAX_IMPORTANCE, MAX_INSTANCES,
};
use crate::error::UsageError;
use crate::features::{AnticorrelatedMode, FeatureSet, Values};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One instance given explicitly in a config file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettings {
    pub density: Option<f64>,
    pub importance: Option<Vec<f64>>,
    pub importance_decay: Option<f64>,
}

/// Declares [`Settings`] and its [`Settings::overlay`] from one field list, so a new setting is one
/// field here (with its flag and its TOML key) plus its default and check in [`Settings::resolve`].
macro_rules! settings {
    ($(#[$meta:meta])* pub struct Settings { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct Settings { $($(#[$field_meta])* pub $field: $ty,)* }

        impl Settings {
            /// Lays `over` on top of `self`: every field set in `over` wins.
            pub fn overlay(self, over: Settings) -> Settings {
                Settings { $($field: over.$field.or(self.$field)),* }
            }
        }
    };
}

settings! {
    /// Everything a user may set, as command-line flags (`--importance-decay`) and as the fields of a
    /// TOML config file (`importance_decay`); `None` means "not given here".
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, clap::Args)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Toy model: relu x' = ReLU(WᵀWx + b), linear x' = WᵀWx + b, relu-hidden
        /// x' = ReLU(Wᵀ ReLU(Wx) + b), or abs y' = ReLU(W₂ ReLU(W₁x) + b) trained on features
        /// uniform on [−1, 1] to compute |x| (default relu; the last two on the GPU up to 256
        /// parameters per instance).
        #[arg(long, value_enum)]
        pub model: Option<ModelKind>,
        /// Number of features n (default 20).
        #[arg(long, value_name = "N")]
        pub features: Option<usize>,
        /// Number of hidden dimensions m (default 5).
        #[arg(long, value_name = "M")]
        pub hidden: Option<usize>,
        /// Feature densities 1 − S, one instance each (default 1,0.3,0.1,0.03,0.01,0.003,0.001).
        #[arg(long, value_name = "D1,D2,...", value_delimiter = ',', allow_negative_numbers = true)]
        pub density: Option<Vec<f64>>,
        /// Importance I_i = R^i (default 0.7).
        #[arg(long, value_name = "R", allow_negative_numbers = true)]
        pub importance_decay: Option<f64>,
        /// Instances given one by one (config file only).
        #[arg(skip)]
        pub instances: Option<Vec<InstanceSettings>>,
        /// Samples per step and instance (default 1024).
        #[arg(long, value_name = "B")]
        pub batch: Option<usize>,
        /// Training steps (default 10000).
        #[arg(long, value_name = "T")]
        pub steps: Option<u32>,
        /// Learning rate (default 0.001).
        #[arg(long, value_name = "X", allow_negative_numbers = true)]
        pub lr: Option<f64>,
        /// Optimizer (default adamw).
        #[arg(long, value_enum)]
        pub optimizer: Option<OptimizerKind>,
        /// Weight decay (default 0.01 for adamw, 0 for adam).
        #[arg(long, value_name = "X", allow_negative_numbers = true)]
        pub weight_decay: Option<f64>,
        /// Learning-rate schedule: constant, 1 − t/T or cos(πt / 2T) (default constant).
        #[arg(long, value_enum)]
        pub schedule: Option<Schedule>,
        /// Steps between logged training losses (default 100).
        #[arg(long, value_name = "K")]
        pub log_every: Option<u32>,
        /// Samples in the held-out evaluation batch (default 16384).
        #[arg(long, value_name = "K")]
        pub eval_samples: Option<usize>,
        /// Seed of the random data and initial weights (default 0).
        #[arg(long, value_name = "S")]
        pub seed: Option<u64>,
        /// Importances of an extra feature to sweep (crossed with the densities), e.g. 0.1,1,10.
        #[arg(long, value_name = "R1,R2,...", value_delimiter = ',', allow_negative_numbers = true)]
        pub extra_importance: Option<Vec<f64>>,
        /// Index of the extra feature (default: the last).
        #[arg(long, value_name = "I")]
        pub extra_feature: Option<usize>,
        /// Independently initialised instances per setting; the best by evaluation loss is marked
        /// (default 1).
        #[arg(long, value_name = "K")]
        pub restarts: Option<u32>,
        /// Sets of consecutive features from feature 0, e.g. correlated:2,anticorrelated:3 (KIND is
        /// independent, correlated or anticorrelated); the other features are independent.
        #[arg(long, value_name = "KIND:SIZE,...")]
        pub feature_sets: Option<String>,
        /// Anticorrelated sets: paper (active with probability 1 − S, then one member uniformly) or
        /// marginal (each member's own probability 1 − S, never two; needs (1 − S) · size ≤ 1)
        /// (default paper).
        #[arg(long, value_enum)]
        pub anticorrelated_mode: Option<AnticorrelatedMode>,
        /// Values of present features: U[0, 1), 1, or clip(0.5 + 0.2·N(0, 1), 0, 1) (default uniform).
        #[arg(long, value_enum)]
        pub values: Option<Values>,
        /// Every sample has exactly K present features, chosen uniformly, instead of a density.
        #[arg(long, value_name = "K")]
        pub exactly_k: Option<u32>,
    }
}

impl Settings {
    /// Reads a TOML config file; syntax errors and unknown keys name the line and column.
    pub fn from_toml_file(path: &Path) -> Result<Settings, UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?;
        Settings::from_toml_str(&text)
            .map_err(|UsageError(e)| UsageError(format!("config {}: {e}", path.display())))
    }

    /// The settings of the config file `file` (if any) with `flags` laid over them (see
    /// [`Settings::with_flags`]).
    pub fn with_file(file: Option<&Path>, flags: Settings) -> Result<Settings, UsageError> {
        let base = match file {
            Some(path) => Settings::from_toml_file(path)?,
            None => Settings::default(),
        };
        Ok(base.with_flags(flags))
    }

    /// `flags` laid over these settings (a config file's); a density list among the flags replaces
    /// the file's explicit instances.
    pub fn with_flags(self, flags: Settings) -> Settings {
        let replaces_instances = flags.density.is_some();
        let mut merged = self.overlay(flags);
        if replaces_instances {
            merged.instances = None;
        }
        merged
    }

    /// Parses TOML text into settings.
    pub fn from_toml_str(text: &str) -> Result<Settings, UsageError> {
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
            UsageError(format!("{at}{}", e.message().replace('\n', " ")))
        })
    }

    /// Applies defaults and validates every value.
    pub fn resolve(&self) -> Result<Experiment, UsageError> {
        let features = self.features.unwrap_or(20);
        let hidden = self.hidden.unwrap_or(5);
        check_sizes(features, hidden)?;
        let decay = self.importance_decay.unwrap_or(0.7);
        check_decay("importance-decay", decay)?;

        // The sweep's size, checked before any instance is built.
        let restarts = self.restarts.unwrap_or(1);
        if restarts == 0 || restarts > 100_000 {
            return Err(UsageError::invalid(
                "restarts",
                restarts,
                "must be between 1 and 100000",
            ));
        }
        let bases = match (&self.instances, &self.density) {
            (Some(list), _) => list.len(),
            (None, density) => density.as_ref().map_or(DEFAULT_DENSITIES.len(), Vec::len),
        };
        let extras = self.extra_importance.as_ref().map_or(1, Vec::len);
        let total = bases as u128 * extras as u128 * u128::from(restarts);
        if total > MAX_INSTANCES as u128 {
            return Err(UsageError::invalid(
                "instances",
                format!("{bases} densities × {extras} importances × {restarts} restarts"),
                &format!("at most {MAX_INSTANCES} in one run; split the sweep into several runs"),
            ));
        }
        let exactly_k_density = match self.exactly_k {
            Some(_) if self.density.is_some() || self.instances.is_some() => {
                return Err(UsageError(
                    "give either exactly-k or densities (density, instances), not both".into(),
                ))
            }
            Some(k) => Some(vec![f64::from(k) / features as f64]),
            None => None,
        };
        let density = exactly_k_density.as_ref().or(self.density.as_ref());
        let settings = match (&self.instances, density) {
            (Some(_), Some(_)) => return Err(UsageError("give either density or instances, not both".into())),
            (Some(_), None) if self.extra_importance.is_some() => {
                return Err(UsageError("extra_importance sweeps the density list; with explicit instances give each its importance".into()))
            }
            (Some(list), None) => list.iter().enumerate().map(|(i, spec)| resolve_instance(i, spec, features, decay)).collect::<Result<Vec<_>, _>>()?,
            (None, density) => {
                let densities = density.cloned().unwrap_or_else(|| DEFAULT_DENSITIES.to_vec());
                let spec = |d| InstanceSettings { density: Some(d), ..Default::default() };
                let base = densities.iter().enumerate().map(|(i, &d)| resolve_instance(i, &spec(d), features, decay)).collect::<Result<Vec<_>, _>>()?;
                self.cross_extra_importance(base, features)?
            }
        };
        let instances: Vec<Instance> = settings
            .into_iter()
            .enumerate()
            .flat_map(|(setting, inst)| {
                (0..restarts).map(move |restart| Instance {
                    setting,
                    restart,
                    ..inst.clone()
                })
            })
            .collect();
        let kind = self.optimizer.unwrap_or(OptimizerKind::Adamw);
        let default_decay = if kind == OptimizerKind::Adamw {
            0.01
        } else {
            0.0
        };
        let exp = Experiment {
            model: self.model.unwrap_or(ModelKind::Relu),
            features,
            hidden,
            instances,
            batch: self.batch.unwrap_or(1024),
            steps: self.steps.unwrap_or(10_000),
            optimizer: Optimizer {
                kind,
                lr: self.lr.unwrap_or(1e-3),
                weight_decay: self.weight_decay.unwrap_or(default_decay),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            schedule: self.schedule.unwrap_or(Schedule::Constant),
            log_every: self.log_every.unwrap_or(100),
            eval_samples: self.eval_samples.unwrap_or(16_384),
            seed: self.seed.unwrap_or(0),
            first_instance: 0,
            shard: None,
            data: FeatureData {
                feature_sets: match &self.feature_sets {
                    Some(text) => FeatureSet::parse_list(text)
                        .map_err(|why| UsageError::invalid("feature-sets", text, &why))?,
                    None => vec![],
                },
                anticorrelated_mode: self.anticorrelated_mode.unwrap_or_default(),
                values: self.values.unwrap_or_default(),
                exactly_k: self.exactly_k,
            },
        };
        exp.validate()?;
        Ok(exp)
    }
}

impl Settings {
    /// Every base instance once per extra-feature importance (if a sweep is given).
    fn cross_extra_importance(
        &self,
        base: Vec<Instance>,
        features: usize,
    ) -> Result<Vec<Instance>, UsageError> {
        let Some(extras) = &self.extra_importance else {
            if let Some(f) = self.extra_feature {
                return Err(UsageError::invalid(
                    "extra-feature",
                    f,
                    "only meaningful with extra-importance",
                ));
            }
            return Ok(base);
        };
        let feature = self.extra_feature.unwrap_or(features - 1);
        if feature >= features {
            return Err(UsageError::invalid(
                "extra-feature",
                feature,
                &format!("must be a feature index below {features}"),
            ));
        }
        if let Some(r) = extras
            .iter()
            .find(|&&r| !(r > 0.0 && within_importance_range(r as f32)))
        {
            return Err(UsageError::invalid(
                "extra-importance",
                format!("{r:?}"),
                &format!("must be positive numbers up to {MAX_IMPORTANCE:e}"),
            ));
        }
        if extras.is_empty() {
            return Err(UsageError::invalid(
                "extra-importance",
                "[]",
                "give at least one importance",
            ));
        }
        Ok(base
            .iter()
            .flat_map(|inst| {
                extras.iter().map(move |&r| {
                    let mut importance = inst.importance.clone();
                    importance[feature] = r as f32;
                    Instance {
                        importance,
                        ..inst.clone()
                    }
                })
            })
            .collect())
    }
}

fn check_decay(field: &str, decay: f64) -> Result<(), UsageError> {
    if decay.is_finite() && decay > 0.0 {
        Ok(())
    } else {
        Err(UsageError::invalid(
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
) -> Result<Instance, UsageError> {
    let density = spec
        .density
        .ok_or_else(|| UsageError(format!("invalid instances[{index}]: missing density")))?;
    let importance = match (&spec.importance, spec.importance_decay) {
        (Some(_), Some(_)) => {
            return Err(UsageError(format!(
                "invalid instances[{index}]: give importance or importance_decay, not both"
            )))
        }
        (Some(list), None) => {
            if list.len() != features {
                return Err(UsageError::invalid(
                    &format!("importance of instance {index}"),
                    format!("{} values", list.len()),
                    &format!("must list one value per feature ({features})"),
                ));
            }
            list.iter().map(|&v| v as f32).collect()
        }
        (None, own_decay) => {
            let r = own_decay.unwrap_or(decay);
            let field = match own_decay {
                Some(_) => format!("importance_decay of instance {index}"),
                None => "importance-decay".to_string(),
            };
            check_decay(&field, r)?;
            let importance = geometric_importance(features, r);
            if let Some(k) = importance.iter().position(|&v| !within_importance_range(v)) {
                return Err(UsageError::invalid(
                    &field,
                    format!("{r:?}"),
                    &format!("gives feature {k} importance {r:?}^{k}, beyond {MAX_IMPORTANCE:e}, the largest importance that keeps the loss finite in f32"),
                ));
            }
            importance
        }
    };
    Ok(Instance {
        density,
        importance,
        setting: index,
        restart: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Shard;
    use crate::features::{AnticorrelatedMode, FeatureSet, Values};

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
    fn restarts_and_extra_importance_make_a_grid() {
        let s = Settings {
            features: Some(2),
            hidden: Some(1),
            importance_decay: Some(1.0),
            density: Some(vec![1.0, 0.1]),
            extra_importance: Some(vec![0.5, 2.0, 4.0]),
            restarts: Some(3),
            ..Default::default()
        };
        let e = s.resolve().unwrap();
        assert_eq!(e.instances.len(), 2 * 3 * 3);
        let i = &e.instances[4]; // density 1, extra 2.0, restart 1
        assert_eq!(
            (i.density, i.importance.clone(), i.setting, i.restart),
            (1.0, vec![1.0, 2.0], 1, 1)
        );
        assert_eq!(e.instances[17].setting, 5);
        let bad_feature = Settings {
            extra_feature: Some(2),
            ..s.clone()
        };
        assert!(bad_feature
            .resolve()
            .unwrap_err()
            .0
            .contains("extra-feature"));
        assert!(Settings {
            restarts: Some(0),
            ..s.clone()
        }
        .resolve()
        .unwrap_err()
        .0
        .contains("restarts"));
        assert!(Settings {
            extra_importance: Some(vec![-1.0]),
            ..s
        }
        .resolve()
        .unwrap_err()
        .0
        .contains("extra-importance"));
    }

    #[test]
    fn shards_cover_the_sweep_once_in_order() {
        let e = Settings {
            density: Some((1..=10).map(|i| f64::from(i) / 10.0).collect()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let shards: Vec<Experiment> = (0..3).map(|k| e.shard(k, 3).unwrap()).collect();
        assert_eq!(
            shards.iter().map(|s| s.instances.len()).collect::<Vec<_>>(),
            [3, 3, 4]
        );
        assert_eq!(
            shards.iter().map(|s| s.first_instance).collect::<Vec<_>>(),
            [0, 3, 6]
        );
        let joined: Vec<Instance> = shards.iter().flat_map(|s| s.instances.clone()).collect();
        assert_eq!(joined, e.instances);
        assert_eq!(Shard::parse("2/5").unwrap(), (2, 5));
        for bad in ["5/5", "x/2", "3", "-1/2"] {
            assert!(Shard::parse(bad).unwrap_err().0.contains("shard"), "{bad}");
        }
        assert!(e.shard(0, 12).is_err(), "an empty shard is refused");
    }

    #[test]
    fn signed_values_for_any_model_and_the_abs_models_own() {
        let with = |model, values| {
            Settings {
                model: Some(model),
                values,
                ..Default::default()
            }
            .resolve()
        };
        // The abs model draws signed values, whether --values is left at uniform or says signed.
        for values in [None, Some(Values::Uniform), Some(Values::Signed)] {
            let e = with(ModelKind::Abs, values).unwrap();
            assert_eq!(e.distribution().values, Values::Signed, "{values:?}");
        }
        for values in [Values::Binary, Values::Normal] {
            let error = with(ModelKind::Abs, Some(values)).unwrap_err();
            assert!(error.0.contains("values"), "{}", error.0);
        }
        // Any other model takes signed values when asked, and records them in config.json.
        let e = with(ModelKind::Linear, Some(Values::Signed)).unwrap();
        assert_eq!(e.distribution().values, Values::Signed);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"signed\""), "{json}");
        assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), e);
        assert_eq!(
            with(ModelKind::Relu, None).unwrap().distribution().values,
            Values::Uniform
        );
    }

    #[test]
    fn feature_distributions_from_toml_and_their_refusals() {
        let text = "features = 6\nhidden = 2\nfeature_sets = \"correlated:2, anticorrelated:3\"\nanticorrelated_mode = \"marginal\"\nvalues = \"normal\"\ndensity = [0.3, 0.1]\n";
        let e = Settings::from_toml_str(text).unwrap().resolve().unwrap();
        let sets = e.data.distribution();
        assert_eq!(
            FeatureSet::list_text(sets.sets()),
            "correlated:2,anticorrelated:3"
        );
        assert_eq!(
            (e.data.anticorrelated_mode, e.data.values),
            (AnticorrelatedMode::Marginal, Values::Normal)
        );
        // Recorded in config.json, and read back; the default leaves config.json as it was.
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), e);
        let plain = serde_json::to_string(&Experiment::seed_default()).unwrap();
        assert!(!plain.contains("\"data\""), "{plain}");
        let k = Settings {
            features: Some(10),
            exactly_k: Some(3),
            restarts: Some(2),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            k.instances.iter().map(|i| i.density).collect::<Vec<_>>(),
            [0.3, 0.3]
        );
        let refused = |settings: Settings, field: &str| {
            let err = settings.resolve().unwrap_err().0;
            assert!(err.contains(field) && !err.contains('\n'), "{field}: {err}");
        };
        let base = Settings {
            features: Some(5),
            density: Some(vec![0.5, 0.2]),
            ..Default::default()
        };
        let sets = |text: &str| Settings {
            feature_sets: Some(text.into()),
            ..base.clone()
        };
        refused(sets("correlated:2,anticorrelated:4"), "feature-sets");
        refused(sets("correlated:0"), "feature-sets");
        refused(sets("independent:0"), "feature-sets");
        refused(sets("correlated"), "feature-sets");
        refused(sets(&vec!["independent:1"; 65].join(",")), "feature-sets");
        let marginal = |text: &str| Settings {
            anticorrelated_mode: Some(AnticorrelatedMode::Marginal),
            ..sets(text)
        };
        assert!(
            marginal("anticorrelated:2").resolve().is_ok(),
            "0.5 · 2 = 1"
        );
        refused(marginal("anticorrelated:3"), "anticorrelated-mode");
        refused(
            Settings {
                exactly_k: Some(6),
                density: None,
                ..base.clone()
            },
            "exactly-k",
        );
        refused(
            Settings {
                exactly_k: Some(2),
                ..base.clone()
            },
            "exactly-k",
        );
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
