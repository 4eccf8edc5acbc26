//! The command line: `tms train` and friends, mapping flags onto [`Settings`] and running the work.

use crate::config::{ConfigError, Experiment, ModelKind, OptimizerKind, Schedule, Settings};
use crate::cpu::CpuTrainer;
use crate::export::{write_run, Results, RunConfig};
use crate::gpu::{list_adapters, GpuOptions, GpuTrainer};
use crate::trainer::{evaluate, run_to_end, TrainState, Trainer};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

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
    Train(TrainArgs),
    /// List the GPU adapters wgpu finds (WGPU_BACKEND=vulkan,metal,dx12,gl restricts the search).
    Devices,
    /// Time the standard workloads on every available backend (and optionally the PyTorch loop).
    Bench(BenchArgs),
}

/// Which trainer runs the experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A GPU adapter when there is one, otherwise the CPU.
    Auto,
    Gpu,
    Cpu,
}

/// The experiment settings shared by every command that trains.
#[derive(Args, Debug, Clone, Default)]
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
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub experiment: ExperimentArgs,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// GPU adapter to use: a substring of its name, as `tms devices` lists it.
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Run directory for the result files.
    #[arg(long, value_name = "DIR", default_value = "tms-run")]
    pub out: PathBuf,
    /// Overwrite the result files of an existing run directory.
    #[arg(long)]
    pub force: bool,
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
    }
}

/// Checks that `dir` can hold a new run before any work starts.
fn prepare_run_dir(dir: &Path, force: bool) -> Result<(), ConfigError> {
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

/// Builds the trainer for a backend choice (and GPU adapter name, if given); returns it with the
/// backend's name. `auto` falls back to the CPU, with one line on stderr, when no adapter works.
pub fn make_trainer(
    choice: BackendChoice,
    adapter: Option<&str>,
    exp: &Experiment,
    state: TrainState,
) -> anyhow::Result<(Box<dyn Trainer>, &'static str)> {
    let options = GpuOptions {
        adapter: adapter.map(str::to_owned),
        ..Default::default()
    };
    match choice {
        BackendChoice::Cpu => Ok((Box::new(CpuTrainer::new(exp, state)), "cpu")),
        BackendChoice::Gpu => Ok((Box::new(GpuTrainer::new(exp, state, &options)?), "gpu")),
        BackendChoice::Auto if list_adapters().is_empty() => {
            eprintln!("no GPU adapter found; training on the CPU");
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

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let exp = args.experiment.resolve()?;
    prepare_run_dir(&args.out, args.force)?;
    let (mut trainer, backend) = make_trainer(
        args.backend,
        args.adapter.as_deref(),
        &exp,
        TrainState::initial(&exp),
    )?;
    let device = trainer.device();
    eprintln!(
        "training {} {:?} instances (n = {}, m = {}) for {} steps on {device}",
        exp.instances.len(),
        exp.model,
        exp.features,
        exp.hidden,
        exp.steps
    );
    let started = std::time::Instant::now();
    let (state, records) = run_to_end(&exp, trainer.as_mut(), 0)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let eval = evaluate(&exp, &state);
    let results = Results::collect(&exp, &state, &records, &eval);
    let config = RunConfig {
        experiment: exp,
        backend: backend.into(),
        device,
        tms_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_run(&args.out, &config, &results, &state)?;
    eprintln!(
        "trained in {train_seconds:.2} s; wrote {}",
        args.out.display()
    );
    for r in &results.instances {
        eprintln!(
            "  density {:<6} final loss {:.6}  eval loss {:.6}",
            r.density, r.final_loss, r.eval_loss
        );
    }
    Ok(())
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
    if choice != BackendChoice::Cpu && !list_adapters().is_empty() {
        backends.push((
            "gpu".into(),
            Box::new(|exp: &Experiment, state| {
                Ok(
                    Box::new(GpuTrainer::new(exp, state, &GpuOptions::default())?)
                        as Box<dyn Trainer>,
                )
            }),
        ));
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
    let instances = workload.densities.len() as f64;
    Some(crate::bench::Measurement {
        workload: workload.name.clone(),
        backend: format!("pytorch-{device}"),
        device: v["device"].as_str().unwrap_or(device).to_string(),
        steps: v["steps"].as_u64().unwrap_or(0) as u32,
        repeats,
        seconds_per_step: per_step,
        instance_steps_per_second: instances / per_step,
        samples_per_second: instances * 1024.0 / per_step,
        gflops: workload.flops_per_step() / per_step / 1e9,
        randoms_per_second: workload.randoms_per_step() / per_step,
        peak_host_bytes: 0,
        device_bytes: 0,
        speedup_vs_cpu: None,
    })
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
