//! The command line: `tms train` and friends, mapping flags onto [`Settings`] and running the work.
//! `tms plot` and `tms reproduce` live in [`crate::figures`] and [`crate::reproduce`].

use crate::checkpoint::{checkpoint_path, read_checkpoint};
use crate::config::{ConfigError, Experiment, ModelKind, OptimizerKind, Schedule, Settings, Shard};
use crate::cpu::CpuTrainer;
use crate::export::{write_run, Results, RunConfig};
use crate::gpu::{list_adapters, GpuOptions, GpuTrainer};
use crate::multi::{MultiTrainer, SendTrainer, WorkerFactory};
use crate::trainer::{
    check_host_memory, diverged_instances, evaluate, run_to_end, LossRecord, Outcome, RunControl,
    TrainState, Trainer,
};
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser, Debug)]
#[command(
    name = "tms",
    version,
    about = "Toy Models of Superposition on the CPU and on any GPU (wgpu)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train every instance of an experiment and write config.json, results.json, weights.safetensors.
    Train(Box<TrainArgs>),
    /// List the GPU adapters wgpu finds (WGPU_BACKEND=vulkan,metal,dx12,gl restricts the search).
    Devices,
    /// Time the standard workloads on every available backend (and optionally the PyTorch loop).
    Bench(BenchArgs),
    /// Redraw the figures of a run directory, or of a directory of runs (as `tms reproduce` writes).
    Plot(PlotArgs),
    /// Run one of the paper's experiments end to end: training, figures and summary.md.
    Reproduce(ReproduceArgs),
    /// Join the run directories of the shards of one sweep (tms train --shard K/N) into one.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shard run directories, in any order.
    #[arg(required = true, value_name = "DIR")]
    pub shards: Vec<PathBuf>,
    /// The merged run directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite an existing merged run.
    #[arg(long)]
    pub force: bool,
}

/// Which trainer runs the experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A GPU adapter when there is one, otherwise the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// The experiment settings shared by every command that trains.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ExperimentArgs {
    /// TOML file with the same fields as the flags (flags win); may list [[instances]] explicitly.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Number of features n.
    #[arg(long, value_name = "N")]
    pub features: Option<usize>,
    /// Number of hidden dimensions m.
    #[arg(long, value_name = "M")]
    pub hidden: Option<usize>,
    /// Feature densities 1 − S, one instance each.
    #[arg(
        long,
        value_name = "D1,D2,...",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub density: Option<Vec<f64>>,
    /// Importance I_i = R^i.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub importance_decay: Option<f64>,
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub lr: Option<f64>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Weight decay (default 0.01 for adamw, 0 for adam).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Steps between logged training losses.
    #[arg(long, value_name = "K")]
    pub log_every: Option<u32>,
    /// Samples in the held-out evaluation batch.
    #[arg(long, value_name = "K")]
    pub eval_samples: Option<usize>,
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Importances of an extra feature to sweep (crossed with the densities), e.g. 0.1,1,10.
    #[arg(
        long,
        value_name = "R1,R2,...",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub extra_importance: Option<Vec<f64>>,
    /// Index of the extra feature (default: the last).
    #[arg(long, value_name = "I")]
    pub extra_feature: Option<usize>,
    /// Independently initialised instances per setting; the best by evaluation loss is marked.
    #[arg(long, value_name = "K")]
    pub restarts: Option<u32>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// GPU adapter to use: its number or a substring of its name, as `tms devices` lists them.
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Train on several devices at once, each taking a contiguous part of the instances: `all` (every
    /// GPU adapter), or a list of adapter numbers/names and `cpu` (the CPU trainer as a worker).
    #[arg(long, value_name = "all|LIST", value_delimiter = ',', conflicts_with_all = ["backend", "adapter"])]
    pub devices: Option<Vec<String>>,
    /// Run directory for the result files.
    #[arg(long, value_name = "DIR", default_value = "tms-run")]
    pub out: PathBuf,
    /// Overwrite the result files of an existing run directory.
    #[arg(long)]
    pub force: bool,
    /// Continue the interrupted run in DIR from its checkpoint (its settings come from the checkpoint).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "force"])]
    pub resume: Option<PathBuf>,
    /// Write a checkpoint every K steps (one is also written every 5 minutes, and on Ctrl-C).
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u32>,
    /// Train only shard K of N of the instances (contiguous; each keeps its global index and random
    /// streams). Inside a Slurm array job it defaults to the array task's index and count.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which backends to time: auto = every available one.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Workloads to run (basic, sweep, geometry, large); default all.
    #[arg(long, value_delimiter = ',')]
    pub workload: Option<Vec<String>>,
    /// Steps per timed repeat (default: calibrated to about half a second).
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    /// Timed repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Also write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also time benches/pytorch_loop.py (CPU, and CUDA when torch sees a GPU) and print the ratios.
    #[arg(long)]
    pub compare_pytorch: bool,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run directory (with results.json) or a directory of run directories.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    #[command(subcommand)]
    pub experiment: ReproduceExperiment,
}

#[derive(Subcommand, Debug)]
pub enum ReproduceExperiment {
    /// The seed's basic results: linear and ReLU output models (n = 20, m = 5) at seven densities.
    Basic(BasicArgs),
    /// The introduction's figure: n = 5, m = 2, I_i = 0.9^i over a density sweep (W_i as arrows).
    Intro(IntroArgs),
    /// Phase diagrams of one extra feature (n = 2, m = 1 with its analytic boundary; n = 3, m = 2).
    Phase(PhaseArgs),
    /// Uniform superposition: dimensions per feature and feature dimensionalities against sparsity.
    Geometry(GeometryArgs),
}

/// Options of every reproduction beyond basic.
#[derive(Args, Debug)]
pub struct ReproduceOptions {
    /// Output directory (default results/<experiment>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Training steps (default: the notebook's 10,000; phase: 5,000).
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    /// Independent fits per setting (default: intro 5, phase 4, geometry 1); figures and summaries
    /// use the best by evaluation loss.
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

impl ReproduceOptions {
    /// The output directory: --out, or `default`.
    pub fn out_or(&self, default: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from(default))
    }
}

#[derive(Args, Debug)]
pub struct IntroArgs {
    #[command(flatten)]
    pub options: ReproduceOptions,
}

#[derive(Args, Debug)]
pub struct PhaseArgs {
    #[command(flatten)]
    pub options: ReproduceOptions,
    /// Cells per axis of each diagram (importance × density).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub grid: usize,
}

#[derive(Args, Debug)]
pub struct GeometryArgs {
    #[command(flatten)]
    pub options: ReproduceOptions,
    /// Number of features n.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub features: usize,
    /// Number of hidden dimensions m.
    #[arg(long, value_name = "M", default_value_t = 30)]
    pub hidden: usize,
    #[arg(long, value_name = "B", default_value_t = 1024)]
    pub batch: usize,
    /// Densities (instances) in the sweep.
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub instances: usize,
}

#[derive(Args, Debug)]
pub struct BasicArgs {
    /// Output directory: linear/ and relu/ run directories, figures and summary.md.
    #[arg(long, value_name = "DIR", default_value = "results/basic")]
    pub out: PathBuf,
    /// Training steps (default: the notebook's 10,000).
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Overwrite the result files of existing run directories.
    #[arg(long)]
    pub force: bool,
}

impl ExperimentArgs {
    /// The config file (if any) with the flags laid over it, resolved and validated.
    pub fn resolve(&self) -> Result<Experiment, ConfigError> {
        let file = match &self.config {
            Some(path) => Settings::from_toml_file(path)?,
            None => Settings::default(),
        };
        let flags = Settings {
            model: self.model,
            features: self.features,
            hidden: self.hidden,
            density: self.density.clone(),
            importance_decay: self.importance_decay,
            instances: None,
            batch: self.batch,
            steps: self.steps,
            lr: self.lr,
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            log_every: self.log_every,
            eval_samples: self.eval_samples,
            seed: self.seed,
            extra_importance: self.extra_importance.clone(),
            extra_feature: self.extra_feature,
            restarts: self.restarts,
        };
        let mut merged = file.overlay(flags);
        if self.density.is_some() {
            merged.instances = None; // a density list on the command line replaces the file's instances
        }
        merged.resolve()
    }
}

/// An error chain in one line.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train(&args),
        Command::Devices => devices(),
        Command::Bench(args) => bench(&args),
        Command::Merge(args) => {
            let results = crate::merge::merge(&args.shards, &args.out, args.force)?;
            eprintln!(
                "merged {} shards ({} instances) into {}",
                args.shards.len(),
                results.instances.len(),
                args.out.display()
            );
            Ok(())
        }
        Command::Plot(args) => {
            let written =
                crate::figures::draw_all(&crate::figures::load_runs(&args.dir)?, &args.dir)?;
            written
                .iter()
                .for_each(|path| eprintln!("wrote {}", path.display()));
            Ok(())
        }
        Command::Reproduce(ReproduceArgs { experiment }) => match experiment {
            ReproduceExperiment::Basic(args) => crate::reproduce::basic::run(&args),
            ReproduceExperiment::Intro(args) => crate::reproduce::intro::run(&args),
            ReproduceExperiment::Phase(args) => crate::reproduce::phase::run(&args),
            ReproduceExperiment::Geometry(args) => crate::reproduce::geometry::run(&args),
        },
    }
}

/// Checks that `dir` can hold a new run before any work starts.
pub fn prepare_run_dir(dir: &Path, force: bool) -> Result<(), ConfigError> {
    if dir.join("results.json").exists() && !force {
        return Err(ConfigError(format!(
            "run directory {} already holds results (use --force to overwrite)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        ConfigError(format!(
            "cannot create output directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".tms-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            ConfigError(format!(
                "output directory {} is not writable: {e}",
                dir.display()
            ))
        })
}

/// Where a run trains: a backend (with optionally one GPU adapter), or several devices at once.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub backend: BackendChoice,
    pub adapter: Option<String>,
    pub devices: Option<Vec<String>>,
}

impl Placement {
    /// Builds the trainer for this placement; returns it with the backend's name for config.json.
    pub fn trainer(
        &self,
        exp: &Experiment,
        state: TrainState,
    ) -> anyhow::Result<(SendTrainer, &'static str)> {
        match &self.devices {
            None => make_trainer(self.backend, self.adapter.as_deref(), exp, state),
            Some(list) => Ok((
                Box::new(MultiTrainer::new(exp, state, device_workers(list)?)?),
                "devices",
            )),
        }
    }
}

/// One worker factory per device of a `--devices` list (`all`, adapter numbers or names, `cpu`).
fn device_workers(list: &[String]) -> anyhow::Result<Vec<WorkerFactory<'static>>> {
    let mut adapters: Vec<Option<String>> = vec![]; // None: the CPU trainer
    for item in list {
        match item.trim() {
            "all" => {
                let count = list_adapters().len();
                if count == 0 {
                    return Err(ConfigError(
                        "invalid --devices: all (no GPU adapter found; see tms devices)".into(),
                    )
                    .into());
                }
                adapters.extend((0..count).map(|i| Some(i.to_string())));
            }
            "cpu" => adapters.push(None),
            name => adapters.push(Some(name.to_string())),
        }
    }
    Ok(adapters
        .into_iter()
        .map(|adapter| -> WorkerFactory<'static> {
            Box::new(move |exp: &Experiment, state| match adapter {
                None => Ok(Box::new(CpuTrainer::new(exp, state)) as SendTrainer),
                Some(name) => Ok(Box::new(GpuTrainer::new(
                    exp,
                    state,
                    &GpuOptions {
                        adapter: Some(name),
                        ..Default::default()
                    },
                )?) as SendTrainer),
            })
        })
        .collect())
}

/// Builds the trainer for a backend choice (and GPU adapter name, if given); returns it with the
/// backend's name. `auto` falls back to the CPU, with one line on stderr, when no adapter works.
pub fn make_trainer(
    choice: BackendChoice,
    adapter: Option<&str>,
    exp: &Experiment,
    state: TrainState,
) -> anyhow::Result<(SendTrainer, &'static str)> {
    let options = GpuOptions {
        adapter: adapter.map(str::to_owned),
        ..Default::default()
    };
    match choice {
        BackendChoice::Cpu => Ok((Box::new(CpuTrainer::new(exp, state)), "cpu")),
        BackendChoice::Gpu => Ok((Box::new(GpuTrainer::new(exp, state, &options)?), "gpu")),
        // Software adapters (llvmpipe/lavapipe) run the kernels on the CPU, far slower than the CPU
        // trainer: `auto` only takes a hardware GPU; `--backend gpu` takes whatever there is.
        BackendChoice::Auto if !list_adapters().iter().any(|a| a.device_type != "Cpu") => {
            eprintln!("no hardware GPU adapter found; training on the CPU");
            Ok((Box::new(CpuTrainer::new(exp, state)), "cpu"))
        }
        BackendChoice::Auto => match GpuTrainer::new(exp, state.clone(), &options) {
            Ok(trainer) => Ok((Box::new(trainer), "gpu")),
            Err(e) => {
                eprintln!(
                    "the GPU adapter cannot train this ({}); training on the CPU",
                    one_line(&e)
                );
                Ok((Box::new(CpuTrainer::new(exp, state)), "cpu"))
            }
        },
    }
}

/// `tms devices`: one line per adapter.
fn devices() -> anyhow::Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        println!(
            "no GPU adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers)"
        );
    }
    for adapter in adapters {
        println!("{adapter}");
    }
    Ok(())
}

/// The shard to train: `--shard K/N`, else a Slurm array task's SLURM_ARRAY_TASK_ID (minus
/// SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT, else none.
fn shard_of(flag: Option<&str>) -> Result<Option<(u32, u32)>, ConfigError> {
    if let Some(text) = flag {
        return Shard::parse(text).map(Some);
    }
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    match (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        (Some(id), Some(count)) => {
            let index = id.checked_sub(var("SLURM_ARRAY_TASK_MIN").unwrap_or(0));
            Shard::parse(&format!(
                "{}/{count}",
                index.map_or("?".into(), |i| i.to_string())
            ))
            .map(Some)
        }
        _ => Ok(None),
    }
}

/// Set by SIGINT/SIGTERM: the run stops after its current chunk, with a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_stop_handler() -> anyhow::Result<()> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| result = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)));
    result.context("cannot install the Ctrl-C handler")
}

/// The run was stopped by a signal after writing a checkpoint (exit status 130).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let (exp, dir, state, records) = match &args.resume {
        Some(dir) => {
            if args.experiment != ExperimentArgs::default() {
                return Err(ConfigError("--resume takes the run's settings from its checkpoint; give no experiment flags with it".into()).into());
            }
            if dir.join("results.json").exists() && !checkpoint_path(dir).exists() {
                return Err(ConfigError(format!(
                    "run {} has already finished; nothing to resume",
                    dir.display()
                ))
                .into());
            }
            let checkpoint = read_checkpoint(dir)?;
            eprintln!(
                "resuming {} at step {}",
                dir.display(),
                checkpoint.state.step
            );
            (
                checkpoint.experiment,
                dir.clone(),
                checkpoint.state,
                checkpoint.records,
            )
        }
        None => {
            let exp = args.experiment.resolve()?;
            let exp = match shard_of(args.shard.as_deref())? {
                Some((index, count)) => exp.shard(index, count)?,
                None => exp,
            };
            check_host_memory(&exp)?;
            prepare_run_dir(&args.out, args.force)?;
            let state = TrainState::initial(&exp);
            (exp, args.out.clone(), state, vec![])
        }
    };
    if args.checkpoint_every == Some(0) {
        return Err(
            ConfigError("invalid --checkpoint-every: 0 (must be at least 1)".into()).into(),
        );
    }
    let placement = Placement {
        backend: args.backend,
        adapter: args.adapter.clone(),
        devices: args.devices.clone(),
    };
    let results = train_from(exp, &placement, &dir, state, records, args.checkpoint_every)?;
    let diverged: Vec<usize> = results
        .instances
        .iter()
        .filter(|r| r.diverged)
        .map(|r| r.index)
        .collect();
    if !diverged.is_empty() {
        anyhow::bail!("{} of {} instances diverged (loss or weights not finite): {diverged:?}; they are marked \"diverged\" in results.json", diverged.len(), results.instances.len());
    }
    Ok(())
}

/// Trains `exp` from scratch on `backend` and writes its run directory `out` (which must exist):
/// config.json, results.json, weights.safetensors and metrics.json. Returns the results.
pub fn train_run(exp: Experiment, backend: BackendChoice, out: &Path) -> anyhow::Result<Results> {
    check_host_memory(&exp)?;
    let state = TrainState::initial(&exp);
    let placement = Placement {
        backend,
        ..Default::default()
    };
    train_from(exp, &placement, out, state, vec![], None)
}

/// Trains `exp` from `state` (with the loss records so far) to the end, checkpointing into `dir`,
/// and writes the run's files there. Stops with [`Interrupted`] on Ctrl-C or SIGTERM.
fn train_from(
    exp: Experiment,
    placement: &Placement,
    dir: &Path,
    state: TrainState,
    records: Vec<LossRecord>,
    checkpoint_every: Option<u32>,
) -> anyhow::Result<Results> {
    install_stop_handler()?;
    let start = state.step;
    let (mut trainer, backend) = placement.trainer(&exp, state)?;
    let device = trainer.device();
    eprintln!(
        "training {} {:?} instances (n = {}, m = {}) for {} steps on {device}",
        exp.instances.len(),
        exp.model,
        exp.features,
        exp.hidden,
        exp.steps
    );
    let control = RunControl {
        checkpoint_dir: Some(dir),
        checkpoint_every,
        checkpoint_seconds: Some(300.0),
        stop: Some(&STOP),
    };
    let started = std::time::Instant::now();
    let (state, records, outcome) = run_to_end(&exp, trainer.as_mut(), start, records, &control)?;
    if let Outcome::Interrupted(step) = outcome {
        return Err(Interrupted(format!("interrupted at step {step} of {}; checkpoint written. Resume with: tms train --resume {}", exp.steps, dir.display())).into());
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let eval = evaluate(&exp, &state);
    let diverged = diverged_instances(&records, &state, &exp);
    let results = Results::collect(&exp, &state, &records, &eval, &diverged);
    let config = RunConfig {
        experiment: exp,
        backend: backend.into(),
        device,
        tms_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_run(dir, &config, &results, &state)?;
    crate::analysis::write_metrics(dir, &results)?;
    let _ = std::fs::remove_file(checkpoint_path(dir)); // the results supersede it
    eprintln!("trained in {train_seconds:.2} s; wrote {}", dir.display());
    for r in &results.instances {
        let show = |l: Option<f64>| l.map_or("not finite".to_string(), |l| format!("{l:.6}"));
        eprintln!(
            "  density {:<6} final loss {}  eval loss {}",
            r.density,
            show(r.final_loss.map(f64::from)),
            show(r.eval_loss)
        );
    }
    Ok(results)
}

/// A backend to benchmark: its name and a way to build its trainer.
type TrainerFactory = Box<dyn Fn(&Experiment, TrainState) -> anyhow::Result<Box<dyn Trainer>>>;

/// The backends `tms bench` measures for a choice.
fn bench_backends(choice: BackendChoice) -> Vec<(String, TrainerFactory)> {
    let mut backends: Vec<(String, TrainerFactory)> = vec![];
    if choice != BackendChoice::Gpu {
        backends.push((
            "cpu".into(),
            Box::new(|exp: &Experiment, state| {
                Ok(Box::new(CpuTrainer::new(exp, state)) as Box<dyn Trainer>)
            }),
        ));
    }
    if choice != BackendChoice::Cpu {
        // Every adapter, by its number in `tms devices`.
        for (index, adapter) in list_adapters().into_iter().enumerate() {
            let options = GpuOptions {
                adapter: Some(index.to_string()),
                ..Default::default()
            };
            backends.push((
                format!("gpu {index} ({})", adapter.backend),
                Box::new(move |exp: &Experiment, state| {
                    Ok(Box::new(GpuTrainer::new(exp, state, &options)?) as Box<dyn Trainer>)
                }),
            ));
        }
    }
    backends
}

/// Runs benches/pytorch_loop.py for one workload and device; None (with a message) if it cannot run.
fn pytorch_row(
    workload: &crate::bench::Workload,
    device: &str,
    repeats: usize,
) -> Option<crate::bench::Measurement> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_loop.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--workload",
            &workload.name,
            "--device",
            device,
            "--repeats",
            &repeats.to_string(),
        ])
        .output();
    let parsed = output
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(v) = parsed else {
        eprintln!("pytorch ({device}) could not run {}: is torch installed? (pip install -r benches/requirements.txt)", workload.name);
        return None;
    };
    let per_step = v["seconds_per_step"].as_f64()?;
    let steps = v["steps"].as_u64().unwrap_or(0) as u32;
    let device_name = v["device"].as_str().unwrap_or(device);
    Some(crate::bench::Measurement::of_time(
        workload,
        &format!("pytorch-{device}"),
        device_name,
        steps,
        repeats,
        per_step,
    ))
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    use crate::bench::{add_speedups, markdown_table, measure, standard_workloads};
    let all = standard_workloads();
    let workloads: Vec<_> = match &args.workload {
        None => all,
        Some(names) => names
            .iter()
            .map(|name| {
                all.iter()
                    .find(|w| &w.name == name)
                    .cloned()
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "invalid --workload: {name} (one of basic, sweep, geometry, large)"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    if args.repeats == 0 {
        return Err(ConfigError("invalid --repeats: 0 (must be at least 1)".into()).into());
    }
    let cuda = args.compare_pytorch
        && std::process::Command::new("python3")
            .args([
                "-c",
                "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)",
            ])
            .status()
            .is_ok_and(|s| s.success());
    let mut rows = vec![];
    for workload in &workloads {
        for (name, factory) in bench_backends(args.backend) {
            let exp = workload.experiment(crate::config::MAX_STEPS);
            let mut trainer = factory(&exp, TrainState::initial(&exp))?;
            eprintln!("timing {} on {name} ({})", workload.name, trainer.device());
            rows.push(measure(
                workload,
                &name,
                trainer.as_mut(),
                args.steps,
                3,
                args.repeats,
            )?);
        }
        if args.compare_pytorch {
            for device in if cuda {
                vec!["cpu", "cuda"]
            } else {
                vec!["cpu"]
            } {
                rows.extend(pytorch_row(workload, device, args.repeats));
            }
        }
    }
    add_speedups(&mut rows);
    println!("{}", markdown_table(&rows));
    println!("Work counted per instance-step: 10·B·n·m flops and 2·B·n random numbers (B = 1024); times are medians of {} repeats.", args.repeats);
    if args.compare_pytorch {
        println!("\ntms vs the PyTorch loop (PyTorch time / tms time):");
        for tms_row in rows.iter().filter(|r| !r.backend.starts_with("pytorch")) {
            for torch_row in rows
                .iter()
                .filter(|r| r.backend.starts_with("pytorch") && r.workload == tms_row.workload)
            {
                println!(
                    "  {:<9} tms {:<4} vs {:<13}: {:.2}×",
                    tms_row.workload,
                    tms_row.backend,
                    torch_row.backend,
                    torch_row.seconds_per_step / tms_row.seconds_per_step
                );
            }
        }
    }
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "tms_version": env!("CARGO_PKG_VERSION"),
            "commit": std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
            "host": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())),
            "threads": rayon::current_num_threads(),
            "rows": rows,
        });
        crate::export::write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
