//! Training an experiment into a run directory, the one pipeline every command that trains goes
//! through (`tms train`, every `tms reproduce`): the checks before anything is written ([`new_run`]:
//! host memory, the directory), the device placement, the run to the end with checkpoints and a
//! Ctrl-C/SIGTERM stop ([`train`], [`resume`]), the evaluation and the run's files. A program that
//! embeds the library (the Python package) watches and stops a run itself, and may train in memory
//! ([`Watch`], [`train_watched`]). Which shard of a sweep to train, from `--shard` or a Slurm array
//! job, is decided here too ([`shard_of`]).
//!
//! - [`dir`]: what a run directory may hold and the files a finished run writes there;
//! - [`driver`]: the loop from the current step to the end, and the held-out evaluation.

pub mod dir;
pub mod driver;

use crate::cpu::CpuTrainer;
use crate::device::Device;
use crate::error::{Interrupted, UsageError};
use crate::experiment::{Experiment, Shard};
use crate::store::checkpoint::{checkpoint_path, read_checkpoint};
use crate::store::results::{Results, RunConfig, Weights};
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use driver::{diverged_instances, evaluate, run_to_end, Outcome, Progress, RunControl};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Seconds between the checkpoints every run writes, whatever `--checkpoint-every` says.
const CHECKPOINT_SECONDS: f64 = 300.0;

/// Checks, before anything is written, that `exp` fits in host memory and that `dir` can take a new
/// run (see [`dir::prepare`]); creates `dir`.
pub fn new_run(exp: &Experiment, dir: &Path, force: bool) -> Result<(), UsageError> {
    check_host_memory(exp)?;
    dir::prepare(dir, force)
}

/// Trains `exp` from its initial state on `device` into `dir` (accepted by [`new_run`]), with a
/// checkpoint every `checkpoint_every` steps if given; returns the results it wrote.
pub fn train(
    exp: Experiment,
    device: &Device,
    dir: &Path,
    checkpoint_every: Option<u32>,
) -> anyhow::Result<Results> {
    train_watched(exp, device, Some(dir), checkpoint_every, &Watch::default())
        .map(|run| run.results)
}

/// Continues the interrupted run in `dir` from its checkpoint (its experiment included) to the end.
pub fn resume(
    dir: &Path,
    device: &Device,
    checkpoint_every: Option<u32>,
) -> anyhow::Result<Results> {
    resume_watched(dir, device, checkpoint_every, &Watch::default()).map(|run| run.results)
}

/// How a run is watched and stopped. The default is the command line's: a progress bar and messages
/// on stderr, and Ctrl-C or SIGTERM (through a process-wide handler) to stop. A program that embeds
/// the library (the Python package) gives its own progress report and stop flag instead.
#[derive(Clone, Copy, Default)]
pub struct Watch<'a> {
    /// Set to stop after the current chunk of steps (with a checkpoint when the run has a
    /// directory); `None` installs the Ctrl-C/SIGTERM handler.
    pub stop: Option<&'a AtomicBool>,
    /// Progress after every chunk; when given, it replaces the progress bar and the messages.
    pub progress: Option<&'a Progress<'a>>,
}

/// A finished run: what its files hold (and, for a run in memory, all there is of it).
pub struct Finished {
    pub config: RunConfig,
    pub results: Results,
    pub state: TrainState,
}

/// Trains `exp` from its initial state on `device`, watched by `watch`: into `dir` (accepted by
/// [`new_run`]) with its checkpoints and files, or, with no `dir`, in memory (checked by
/// [`check_host_memory`]; no checkpoints, nothing written).
pub fn train_watched(
    exp: Experiment,
    device: &Device,
    dir: Option<&Path>,
    checkpoint_every: Option<u32>,
    watch: &Watch,
) -> anyhow::Result<Finished> {
    let state = TrainState::initial(&exp);
    train_from(exp, device, dir, state, vec![], checkpoint_every, watch)
}

/// [`resume`], watched by `watch`.
pub fn resume_watched(
    dir: &Path,
    device: &Device,
    checkpoint_every: Option<u32>,
    watch: &Watch,
) -> anyhow::Result<Finished> {
    if dir.join("results.json").exists() && !checkpoint_path(dir).exists() {
        return Err(UsageError(format!(
            "run {} has already finished; nothing to resume",
            dir.display()
        ))
        .into());
    }
    let checkpoint = read_checkpoint(dir)?;
    if watch.progress.is_none() {
        eprintln!(
            "resuming {} at step {}",
            dir.display(),
            checkpoint.state.step
        );
    }
    train_from(
        checkpoint.experiment,
        device,
        Some(dir),
        checkpoint.state,
        checkpoint.records,
        checkpoint_every,
        watch,
    )
}

/// Set by SIGINT/SIGTERM: the run stops after its current chunk, with a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_stop_handler() -> anyhow::Result<()> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| result = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)));
    result.context("cannot install the Ctrl-C handler")
}

/// Trains `exp` from `state` (with the loss records so far) to the end, checkpointing into `dir` if
/// given, and writes the run's files there. Stops with [`Interrupted`] when `watch` says so.
fn train_from(
    exp: Experiment,
    device: &Device,
    dir: Option<&Path>,
    state: TrainState,
    records: Vec<LossRecord>,
    checkpoint_every: Option<u32>,
    watch: &Watch,
) -> anyhow::Result<Finished> {
    let stop = match watch.stop {
        Some(stop) => stop,
        None => {
            install_stop_handler()?;
            &STOP
        }
    };
    let talk = watch.progress.is_none(); // the command line's messages on stderr
    let start = state.step;
    let (mut trainer, backend) = device.trainer(&exp, state)?;
    let device = trainer.device();
    if talk {
        eprintln!(
            "training {} {:?} instances (n = {}, m = {}) for {} steps on {device}",
            exp.instances.len(),
            exp.model,
            exp.features,
            exp.hidden,
            exp.steps
        );
    }
    let control = RunControl {
        checkpoint_dir: dir,
        checkpoint_every,
        checkpoint_seconds: Some(CHECKPOINT_SECONDS),
        stop: Some(stop),
        progress: watch.progress,
    };
    let started = std::time::Instant::now();
    let (state, records, outcome) = run_to_end(&exp, trainer.as_mut(), start, records, &control)?;
    if let Outcome::Interrupted(step) = outcome {
        let resume = dir.map_or(String::new(), |dir| {
            format!(
                "; checkpoint written. Resume with: tms train --resume {}",
                dir.display()
            )
        });
        return Err(Interrupted(format!(
            "interrupted at step {step} of {}{resume}",
            exp.steps
        ))
        .into());
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
    if let Some(dir) = dir {
        let weights = Weights {
            w: &state.w,
            b: &state.b,
        };
        dir::write_files(dir, &config, &results, &weights)?;
        let _ = std::fs::remove_file(checkpoint_path(dir)); // the results supersede it
        if talk {
            eprintln!("trained in {train_seconds:.2} s; wrote {}", dir.display());
            for r in &results.instances {
                let show =
                    |l: Option<f64>| l.map_or("not finite".to_string(), |l| format!("{l:.6}"));
                eprintln!(
                    "  density {:<6} final loss {}  eval loss {}",
                    r.density,
                    show(r.final_loss.map(f64::from)),
                    show(r.eval_loss)
                );
            }
        }
    }
    Ok(Finished {
        config,
        results,
        state,
    })
}

/// An upper estimate of the host memory a run of `exp` needs: the state (parameters and both Adam
/// moments) a few times over (trainer, checkpoint, results) and the CPU trainer's own buffers (the
/// CPU may train it, or take over when a GPU cannot).
pub fn host_bytes_needed(exp: &Experiment) -> u64 {
    let params = (exp.instances.len() * exp.params_per_instance()) as u64;
    4 * params * 6 * 3 + CpuTrainer::host_bytes(exp)
}

/// Refuses, before any work, a run that needs more host memory than the machine has available.
pub fn check_host_memory(exp: &Experiment) -> Result<(), UsageError> {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024);
    let needed = host_bytes_needed(exp);
    match available {
        Some(available) if needed > available => Err(UsageError(format!(
            "this sweep needs about {:.1} GiB of host memory and {:.1} GiB are available; split it with --shard K/N",
            needed as f64 / (1u64 << 30) as f64,
            available as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// The shard to train: `--shard K/N` (`flag`), else a Slurm array task's SLURM_ARRAY_TASK_ID (minus
/// SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT, else none.
pub fn shard_of(flag: Option<&str>) -> Result<Option<(u32, u32)>, UsageError> {
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
