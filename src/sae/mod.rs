//! `tms sae`: sparse autoencoders trained on the hidden activations h = W x of a finished toy run,
//! many at once (toy instances × kinds × latent counts × restarts), and scored against the ground
//! truth that toy models have and language models lack: the true feature directions, the columns of
//! W.
//!
//! - [`model`]: the maths of one SAE on one sample (L1, Top-K and JumpReLU), the reference;
//! - [`cpu`]: the many-SAE trainer (Adam, decoder renormalisation, dead-latent resampling) and the
//!   held-out evaluation;
//! - [`gpu`]: the same training on a GPU adapter, all SAEs in the same dispatches.
//!
//! [`SaeOptions`] are the command line's flags, [`SaeOptions::resolve`] checks them against the run
//! and gives an [`SaeExperiment`]; [`check`] places it on a [`Device`], [`train_on`] trains it there and [`train_into`] writes
//! `DIR/sae.json`.

pub mod cpu;
pub mod gpu;
pub mod model;

use crate::device::{BackendChoice, Device};
use crate::error::{one_line, UsageError};
use crate::experiment::{Optimizer, OptimizerKind};
use crate::run::dir::{claim, RunDir};
use crate::store::results::{read_config, read_results};
use crate::store::write_atomic;
use model::{SaeKind, SaeShape};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `tms sae`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SaeOptions {
    /// Finished toy run directory (with results.json) whose instances the SAEs read.
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Output directory for sae.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Latent counts, one SAE family per value (default: the run's feature count n).
    #[arg(long, value_name = "K,..", value_delimiter = ',')]
    pub latents: Option<Vec<usize>>,
    /// SAE kinds: l1 (ReLU and an L1 penalty), topk (the k largest), jumprelu (learned thresholds, L0).
    #[arg(
        long,
        value_enum,
        value_name = "KIND,..",
        value_delimiter = ',',
        default_value = "l1"
    )]
    pub kind: Vec<SaeKind>,
    /// L1 coefficient λ of l1 SAEs (ARENA: 0.2).
    #[arg(long, value_name = "X", default_value_t = 0.2)]
    pub l1: f64,
    /// L0 coefficient λ of jumprelu SAEs (ARENA: 0.1).
    #[arg(long, value_name = "X", default_value_t = 0.1)]
    pub l0: f64,
    /// Active latents of topk SAEs.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub k: usize,
    /// Training steps.
    #[arg(long, value_name = "T", default_value_t = 20_000)]
    pub steps: u32,
    /// Samples per step.
    #[arg(long, value_name = "B", default_value_t = 1024)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, value_name = "X", default_value_t = 1e-3)]
    pub lr: f64,
    /// Independent SAEs per (toy instance, kind, latent count).
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub restarts: u32,
    /// Resample dead latents every K steps (0: never; ARENA: 2,500).
    #[arg(long, value_name = "K", default_value_t = 2_500)]
    pub resample_every: u32,
    /// Only these toy instances (indices into the run; default all).
    #[arg(long, value_name = "I,..", value_delimiter = ',')]
    pub instances: Option<Vec<usize>>,
    /// Seed of the SAEs' initial weights and resampling draws.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Held-out samples for the scores.
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub eval_samples: usize,
    /// Where the SAEs train: auto (a hardware GPU if wgpu finds one, else the CPU), gpu (any
    /// adapter, software ones included) or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// GPU adapter: its number or a substring of its name, as `tms devices` lists them.
    #[arg(long, value_name = "NAME|N")]
    pub adapter: Option<String>,
    /// Overwrite an existing sae.json.
    #[arg(long)]
    pub force: bool,
}

/// One toy instance the SAEs read: its trained W (m rows of n) and its data distribution.
#[derive(Clone, Debug)]
pub struct ToyInstance {
    /// Index of the instance in the run's results.json.
    pub index: usize,
    pub global_index: u32,
    pub density: f64,
    pub hidden: usize,
    pub w: Vec<f32>,
}

/// One SAE: which toy instance it reads, its kind, latents and penalty, and which restart it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeSpec {
    /// Index into [`SaeExperiment::toys`].
    #[serde(skip)]
    pub toy: usize,
    pub kind: SaeKind,
    pub latents: usize,
    /// λ of the L1 or L0 penalty (0 for Top-K).
    pub coefficient: f64,
    /// Active latents (Top-K only).
    pub k: usize,
    pub restart: u32,
}

/// Every SAE to train, with the toy instances they read and the training settings.
#[derive(Clone, Debug)]
pub struct SaeExperiment {
    pub features: usize,
    pub toy_seed: u64,
    /// The toy run's feature distribution besides density (its sets, values, exactly-K; signed
    /// values for the abs model).
    pub toy_data: crate::features::Distribution,
    /// Whether the toy model's hidden layer has a ReLU (relu-hidden, abs): the SAE then reads
    /// h = ReLU(W x), the activations the model computes with, not W x.
    pub toy_hidden_relu: bool,
    pub toys: Vec<ToyInstance>,
    pub saes: Vec<SaeSpec>,
    pub steps: u32,
    pub batch: usize,
    pub optimizer: Optimizer,
    pub resample_every: Option<u32>,
    pub log_every: u32,
    pub eval_samples: usize,
    pub seed: u64,
}

impl SaeExperiment {
    /// The toy model's hidden vector h of sample `x` on instance `toy`, as the SAE reads it.
    #[inline]
    pub fn toy_hidden(&self, toy: &ToyInstance, x: &[f32], h: &mut [f32]) {
        crate::model::hidden(&toy.w, x, 0..x.len(), h);
        if self.toy_hidden_relu {
            h.iter_mut().for_each(|v| *v = crate::model::Real::relu(*v));
        }
    }

    /// The shape of SAE `spec`.
    pub fn shape(&self, spec: &SaeSpec) -> SaeShape {
        SaeShape {
            d: self.toys[spec.toy].hidden,
            latents: spec.latents,
            kind: spec.kind,
            coefficient: spec.coefficient as f32,
            k: spec.k,
        }
    }
}

impl SaeOptions {
    /// Checks every flag, reads the run, and lists the SAEs: for each chosen toy instance, each
    /// kind, each latent count, each restart.
    pub fn resolve(&self) -> anyhow::Result<SaeExperiment> {
        let config = read_config(&self.run)?;
        let results = read_results(&self.run)?;
        let exp = &config.experiment;
        let non_negative = |field: &str, value: f64| {
            if value.is_finite() && value >= 0.0 && (value as f32).is_finite() {
                Ok(())
            } else {
                Err(UsageError::invalid(
                    field,
                    value,
                    "must be a finite number ≥ 0",
                ))
            }
        };
        non_negative("l1", self.l1)?;
        non_negative("l0", self.l0)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(
                UsageError::invalid("lr", self.lr, "must be a positive finite number").into(),
            );
        }
        let latents = self.latents.clone().unwrap_or_else(|| vec![exp.features]);
        if let Some(&bad) = latents.iter().find(|&&k| k == 0 || k > 1 << 14) {
            return Err(UsageError::invalid("latents", bad, "must be between 1 and 16384").into());
        }
        if self.kind.contains(&SaeKind::Topk) && latents.iter().any(|&l| self.k == 0 || self.k > l)
        {
            return Err(UsageError::invalid(
                "k",
                self.k,
                "must be between 1 and each latent count",
            )
            .into());
        }
        for (field, value, max) in [
            ("steps", self.steps as usize, 1 << 24),
            ("batch", self.batch, 1 << 16),
            ("restarts", self.restarts as usize, 10_000),
            ("eval-samples", self.eval_samples, 1 << 24),
        ] {
            if value == 0 || value > max {
                return Err(UsageError::invalid(
                    field,
                    value,
                    &format!("must be between 1 and {max}"),
                )
                .into());
            }
        }
        let chosen = match &self.instances {
            Some(list) => list.clone(),
            None => (0..results.instances.len()).collect(),
        };
        if let Some(&bad) = chosen.iter().find(|&&i| i >= results.instances.len()) {
            return Err(UsageError::invalid(
                "instances",
                bad,
                &format!("the run has {} instances", results.instances.len()),
            )
            .into());
        }
        let toys: Vec<ToyInstance> = chosen
            .iter()
            .map(|&i| {
                let inst = &results.instances[i];
                ToyInstance {
                    index: i,
                    global_index: inst.index as u32,
                    density: inst.density,
                    hidden: exp.hidden,
                    w: inst.w.iter().flatten().copied().collect(),
                }
            })
            .collect();
        if let Some(toy) = toys.iter().find(|t| t.w.iter().any(|v| !v.is_finite())) {
            return Err(UsageError(format!(
                "instance {} of {} diverged (its W is not finite); leave it out with --instances",
                toy.index,
                self.run.display()
            ))
            .into());
        }
        let count = toys.len() * self.kind.len() * latents.len() * self.restarts as usize;
        if count > 1 << 20 {
            return Err(UsageError::invalid(
                "restarts",
                self.restarts,
                "too many SAEs in one run (at most 1,048,576)",
            )
            .into());
        }
        let mut saes = vec![];
        for toy in 0..toys.len() {
            for &kind in &self.kind {
                for &l in &latents {
                    for restart in 0..self.restarts {
                        saes.push(SaeSpec {
                            toy,
                            kind,
                            latents: l,
                            coefficient: match kind {
                                SaeKind::L1 => self.l1,
                                SaeKind::Jumprelu => self.l0,
                                SaeKind::Topk => 0.0,
                            },
                            k: if kind == SaeKind::Topk { self.k } else { 0 },
                            restart,
                        });
                    }
                }
            }
        }
        Ok(SaeExperiment {
            features: exp.features,
            toy_seed: exp.seed,
            toy_data: exp.distribution(),
            toy_hidden_relu: exp.model.hidden_relu(),
            toys,
            saes,
            steps: self.steps,
            batch: self.batch,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                lr: self.lr,
                weight_decay: 0.0,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            resample_every: (self.resample_every > 0).then_some(self.resample_every),
            log_every: (self.steps / 100).max(1),
            eval_samples: self.eval_samples,
            seed: self.seed,
        })
    }
}

/// How well one SAE recovers the true features, on held-out inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeScores {
    /// Mean over the represented true features of the best cosine with a decoder row (MMCS).
    pub mmcs: f64,
    /// Per true feature (column of W), the best cosine with a decoder row; null for a feature the toy
    /// model does not represent (‖W_i‖ ≤ 0.5, no direction to recover).
    pub best_match: Vec<Option<f64>>,
    /// Latents that never fire on the held-out inputs.
    pub dead_latents: usize,
    /// Mean number of active latents per input.
    pub l0: f64,
    /// Mean over inputs and dimensions of (ĥ − h)².
    pub mse: f64,
    /// 1 − Σ‖ĥ − h‖² / Σ‖h − mean h‖².
    pub fraction_variance_explained: f64,
}

impl SaeScores {
    /// Scores from the toy weights `w` (d rows of n), decoder rows `w_dec` and the held-out sums.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &[f32],
        n: usize,
        d: usize,
        w_dec: &[f32],
        mse: f64,
        fraction_variance_explained: f64,
        l0: f64,
        dead_latents: usize,
    ) -> SaeScores {
        let column = |f: usize| -> Vec<f64> { (0..d).map(|r| f64::from(w[r * n + f])).collect() };
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let best_match: Vec<Option<f64>> = (0..n)
            .map(|f| {
                let truth = column(f);
                let length = norm(&truth);
                (length > crate::analysis::REPRESENTED_NORM).then(|| {
                    w_dec
                        .chunks(d)
                        .map(|row| {
                            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                            let dot: f64 = row.iter().zip(&truth).map(|(a, b)| a * b).sum();
                            dot / (length * norm(&row).max(f64::MIN_POSITIVE))
                        })
                        .fold(f64::NEG_INFINITY, f64::max)
                })
            })
            .collect();
        let matched: Vec<f64> = best_match.iter().flatten().copied().collect();
        SaeScores {
            mmcs: matched.iter().sum::<f64>() / matched.len().max(1) as f64,
            best_match,
            dead_latents,
            l0,
            mse,
            fraction_variance_explained,
        }
    }
}

/// One trained SAE as sae.json holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeResult {
    /// The toy instance (index into the run's results.json) and its density.
    pub instance: usize,
    pub density: f64,
    #[serde(flatten)]
    pub spec: SaeSpec,
    /// Encoder and decoder rows (latents × m), biases; JumpReLU's thresholds θ.
    pub w_enc: Vec<Vec<f32>>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<Vec<f32>>,
    pub b_dec: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Vec<f32>>,
    pub scores: SaeScores,
    /// (step, mean training loss) at 100 points of the run.
    pub loss_curve: Vec<(u32, f32)>,
    /// Latents resampled over the run.
    pub resampled: usize,
}

/// sae.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaeFile {
    pub run: String,
    pub features: usize,
    pub hidden: usize,
    pub steps: u32,
    pub batch: usize,
    pub lr: f64,
    pub resample_every: Option<u32>,
    pub seed: u64,
    pub eval_samples: usize,
    pub backend: String,
    pub saes: Vec<SaeResult>,
}

/// Where the SAEs of an experiment train, checked by [`check`] before anything is written.
pub enum SaePlacement<'a> {
    Cpu,
    Gpu(gpu::SaeGpuPlan<'a>),
    /// `auto`: the GPU's plan, or why the CPU trains instead.
    Auto(Result<gpu::SaeGpuPlan<'a>, String>),
}

/// Checks the SAEs of `exp` on `device` (the CPU, a GPU adapter, or auto: a hardware GPU if one
/// can train them, else the CPU): refuses what a GPU adapter cannot train, before anything is
/// written.
pub fn check<'a>(exp: &'a SaeExperiment, device: &Device) -> Result<SaePlacement<'a>, UsageError> {
    Ok(match device {
        Device::Cpu => SaePlacement::Cpu,
        Device::Gpu { adapter } => {
            SaePlacement::Gpu(gpu::SaeGpuPlan::new(exp, adapter.as_deref())?)
        }
        // As for toy runs: software adapters are far slower than the CPU trainer.
        Device::Auto { .. } if !crate::gpu::list_adapters().iter().any(|a| !a.software()) => {
            SaePlacement::Auto(Err("no hardware GPU adapter found".into()))
        }
        Device::Auto { adapter } => SaePlacement::Auto(
            gpu::SaeGpuPlan::new(exp, adapter.as_deref())
                .map_err(|e| format!("the GPU adapter cannot train these SAEs ({})", e.0)),
        ),
        Device::Many(_) => return Err(UsageError("tms sae trains on one device".into())),
    })
}

/// Trains every SAE of `exp` as `placement` (checked for `exp` by [`check`]) says, saying so where
/// the CPU trains them instead of the GPU; returns their states and the backend's name.
pub fn train_on(
    exp: &SaeExperiment,
    placement: &SaePlacement,
) -> anyhow::Result<(Vec<cpu::SaeState>, &'static str)> {
    match placement {
        SaePlacement::Cpu => Ok((cpu::train(exp), "cpu")),
        SaePlacement::Gpu(plan) => Ok((gpu::train(plan)?, "gpu")),
        SaePlacement::Auto(Err(why)) => {
            eprintln!("{why}; training the SAEs on the CPU");
            Ok((cpu::train(exp), "cpu"))
        }
        SaePlacement::Auto(Ok(plan)) => match gpu::train(plan) {
            Ok(states) => Ok((states, "gpu")),
            Err(e) => {
                eprintln!(
                    "the GPU adapter cannot train these SAEs ({}); training on the CPU",
                    one_line(&e)
                );
                Ok((cpu::train(exp), "cpu"))
            }
        },
    }
}

/// Trains every SAE of `options` and writes `DIR/sae.json`; returns what it wrote.
pub fn train_into(options: &SaeOptions) -> anyhow::Result<SaeFile> {
    let exp = options.resolve()?;
    let device = Device::from_flags(options.backend, options.adapter.clone(), None)?;
    let placement = check(&exp, &device)?;
    let out = claim_sae_dir(&options.out, options.force)?;
    eprintln!(
        "training {} SAEs on {} toy instances (m = {}) for {} steps",
        exp.saes.len(),
        exp.toys.len(),
        exp.toys[0].hidden,
        exp.steps
    );
    let (states, backend) = train_on(&exp, &placement)?;
    let d = exp.toys[0].hidden;
    let saes = exp
        .saes
        .iter()
        .zip(states)
        .map(|(spec, state)| {
            let p = &state.params;
            let toy = &exp.toys[spec.toy];
            SaeResult {
                instance: toy.index,
                density: toy.density,
                spec: spec.clone(),
                w_enc: p.w_enc.chunks(d).map(<[f32]>::to_vec).collect(),
                b_enc: p.b_enc.clone(),
                w_dec: p.w_dec.chunks(d).map(<[f32]>::to_vec).collect(),
                b_dec: p.b_dec.clone(),
                threshold: (spec.kind == SaeKind::Jumprelu)
                    .then(|| p.log_theta.iter().map(|t| t.exp()).collect()),
                scores: cpu::evaluate(&exp, spec, p),
                loss_curve: state.loss_curve,
                resampled: state.resampled,
            }
        })
        .collect();
    let file = SaeFile {
        run: options.run.display().to_string(),
        features: exp.features,
        hidden: d,
        steps: exp.steps,
        batch: exp.batch,
        lr: exp.optimizer.lr,
        resample_every: exp.resample_every,
        seed: exp.seed,
        eval_samples: exp.eval_samples,
        backend: backend.into(),
        saes,
    };
    write_atomic(&out.path().join("sae.json"), &serde_json::to_vec(&file)?)?;
    for sae in &file.saes {
        eprintln!(
            "  instance {} {:?} {} latents: MMCS {:.3}, L0 {:.2}, FVE {:.3}, {} dead",
            sae.instance,
            sae.spec.kind,
            sae.spec.latents,
            sae.scores.mmcs,
            sae.scores.l0,
            sae.scores.fraction_variance_explained,
            sae.scores.dead_latents
        );
    }
    Ok(file)
}

/// Reads `DIR/sae.json`.
pub fn read_sae_file(dir: &Path) -> anyhow::Result<SaeFile> {
    let path = dir.join("sae.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| UsageError(format!("{} is not a tms sae file: {e}", path.display())).into())
}

/// The output directory, refused if it holds an sae.json (unless `force`), created, probed and
/// locked against other `tms` processes (as run directories are) until the returned value drops.
fn claim_sae_dir(dir: &Path, force: bool) -> Result<RunDir, UsageError> {
    claim(dir, || {
        if dir.join("sae.json").exists() && !force {
            return Err(UsageError(format!(
                "{} already holds sae.json (use --force to overwrite)",
                dir.display()
            )));
        }
        Ok(())
    })
}
