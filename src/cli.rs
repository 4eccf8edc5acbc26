//! The command line: clap's definitions of `tms`'s subcommands and their dispatch, nothing else.
//! Every flag is declared once, next to the code that owns its value ([`Settings`],
//! [`BenchOptions`], [`ReproduceOptions`] and each reproduction's own flags); this module turns what
//! clap parsed into those values and calls the module that does the work. Nothing imports it.

use crate::bench::BenchOptions;
use crate::device::{BackendChoice, Device};
use crate::error::UsageError;
use crate::experiment::Settings;
use crate::gpu::list_adapters;
use crate::reproduce::computation::Computation;
use crate::reproduce::geometry::UniformSuperposition;
use crate::reproduce::phase::PhaseDiagrams;
use crate::reproduce::privileged::Privileged;
use crate::reproduce::{
    basic::Basic, correlated::Correlated, intro::Intro, reproduce, ReproduceOptions, Reproduction,
};
use crate::run::Watch;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    Bench(BenchOptions),
    /// Redraw the figures of a run directory, or of a directory of runs (as `tms reproduce` writes).
    Plot(PlotArgs),
    /// Run one of the paper's experiments end to end: training, figures and summary.md.
    #[command(subcommand)]
    Reproduce(ReproduceCommand),
    /// Join the run directories of the shards of one sweep (tms train --shard K/N) into one.
    Merge(MergeArgs),
    /// Train sparse autoencoders on a finished run's hidden activations, scored against its true
    /// features (the columns of W); writes DIR/sae.json.
    Sae(crate::sae::SaeOptions),
    /// Write the static site that trains toy models in the browser through WebGPU (the same WGSL
    /// kernels, driven by JavaScript); serve it with `python3 -m http.server -d DIR`.
    Web(WebArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML file with the same fields as the flags (flags win); may list [[instances]] explicitly.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
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
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_every: Option<u32>,
    /// Train only shard K of N of the instances (contiguous; each keeps its global index and random
    /// streams). Inside a Slurm array job it defaults to the array task's index and count.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run directory (with results.json) or a directory of run directories.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct WebArgs {
    /// Folder for the site (created if missing; its files are overwritten).
    #[arg(long, value_name = "DIR", default_value = "tms-web")]
    pub out: PathBuf,
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

#[derive(Subcommand, Debug)]
pub enum ReproduceCommand {
    /// The seed's basic results: linear and ReLU output models (n = 20, m = 5) at seven densities.
    Basic(ReproduceOptions),
    /// The introduction's figure: n = 5, m = 2, I_i = 0.9^i over a density sweep (W_i as arrows).
    Intro(ReproduceOptions),
    /// Phase diagrams of one extra feature (n = 2, m = 1 with its analytic boundary; n = 3, m = 2).
    Phase {
        #[command(flatten)]
        options: ReproduceOptions,
        #[command(flatten)]
        diagrams: PhaseDiagrams,
    },
    /// Uniform superposition: dimensions per feature and feature dimensionalities against sparsity.
    Geometry {
        #[command(flatten)]
        options: ReproduceOptions,
        #[command(flatten)]
        sweep: UniformSuperposition,
    },
    /// The privileged basis: ReLU on the hidden layer (n = 10, m = 5, I_i = 0.75^i), 13 densities,
    /// W and its per-neuron stacked weights.
    Privileged(ReproduceOptions),
    /// Computation in superposition: the untied model computing |x| (n = 3, m = 6; n = 100, m = 40
    /// over seven densities; the asymmetric motif n = 6, m = 10).
    Computation(ReproduceOptions),
    /// Sparse autoencoders on toy models (n = 5, m = 2; n = 100, m = 20; n = 400, m = 30), scored
    /// against the true features.
    Sae {
        #[command(flatten)]
        options: ReproduceOptions,
        #[command(flatten)]
        saes: crate::reproduce::sae::SaeReproduction,
    },
    /// Correlated and anticorrelated feature sets: n = 4 and 6 with m = 2 (W's columns as arrows),
    /// and two sets of ten correlated features in m = 10 (WᵀW).
    Correlated(ReproduceOptions),
}

impl ReproduceCommand {
    /// The reproduction this command runs, with its options (the Python package's `tms.reproduce`
    /// parses its keywords as this command, so every reproduction and flag reaches it unchanged).
    pub fn parts(&self) -> (&dyn Reproduction, &ReproduceOptions) {
        match self {
            ReproduceCommand::Basic(options) => (&Basic, options),
            ReproduceCommand::Intro(options) => (&Intro, options),
            ReproduceCommand::Phase { options, diagrams } => (diagrams, options),
            ReproduceCommand::Geometry { options, sweep } => (sweep, options),
            ReproduceCommand::Sae { options, saes } => (saes, options),
            ReproduceCommand::Correlated(options) => (&Correlated, options),
            ReproduceCommand::Privileged(options) => (&Privileged, options),
            ReproduceCommand::Computation(options) => (&Computation, options),
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train(&args),
        Command::Devices => {
            devices();
            Ok(())
        }
        Command::Bench(options) => crate::bench::run(&options),
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
        Command::Sae(options) => crate::sae::train_into(&options).map(drop),
        Command::Web(args) => {
            let written = crate::web::write_site(&args.out)?;
            eprintln!(
                "wrote {} files to {}; serve them with: python3 -m http.server -d {}",
                written.len(),
                args.out.display(),
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
        Command::Reproduce(command) => {
            let (reproduction, options) = command.parts();
            reproduce(reproduction, options, &Watch::default())
        }
    }
}

/// `tms devices`: the CPU trainer's instruction set, then one line per adapter.
fn devices() {
    println!("{}", crate::cpu::CpuTrainer::describe());
    let adapters = list_adapters();
    if adapters.is_empty() {
        println!(
            "no GPU adapter found (on Linux without a GPU: apt-get install mesa-vulkan-drivers)"
        );
    }
    for adapter in adapters {
        println!("{adapter}");
    }
}

/// `tms train`: every value is checked (settings, shard, device, host memory, run directory) before
/// the run directory is written; then [`crate::run`] trains.
fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let device = Device::from_flags(args.backend, args.adapter.clone(), args.devices.as_deref())?;
    let results = match &args.resume {
        Some(dir) => {
            if args.config.is_some() || args.shard.is_some() || args.settings != Settings::default()
            {
                return Err(UsageError("--resume takes the run's settings from its checkpoint; give no experiment flags (nor --shard) with it".into()).into());
            }
            crate::run::resume(dir, &device, args.checkpoint_every)?
        }
        None => {
            let exp =
                Settings::with_file(args.config.as_deref(), args.settings.clone())?.resolve()?;
            let exp = match crate::run::shard_of(args.shard.as_deref())? {
                Some((index, count)) => exp.shard(index, count)?,
                None => exp,
            };
            let placement = device.check(&exp)?;
            let dir = crate::run::new_run(&exp, &args.out, args.force)?;
            crate::run::train(exp, &placement, &dir, args.checkpoint_every)?
        }
    };
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
