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
use crate::device::{Device, Placement};
use crate::error::{Interrupted, UsageError};
use crate::experiment::{Experiment, Shard};
use crate::store::checkpoint::{checkpoint_path, read_checkpoint};
use crate::store::results::{Results, RunConfig, Weights};
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use dir::RunDir;
use driver::{diverged_instances, evaluate, run_to_end, Outcome, Progress, RunControl};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Seconds between the checkpoints every run writes, whatever `--checkpoint-every` says.
const CHECKPOINT_SECONDS: f64 = 300.0;

/// Checks, before anything is written, that `exp` fits in host memory, then claims `dir` for it
/// (see [`dir::claim_new`]: refused if it holds a run, unless `force`; locked while the returned
/// [`RunDir`] lives).
pub fn new_run(exp: &Experiment, dir: &Path, force: bool) -> Result<RunDir, UsageError> {
    check_host_memory(exp)?;
    dir::claim_new(dir, force)
}

/// Trains `exp` from its initial state on `placement` (its device checked for it by
/// [`Device::check`]) into `dir` (claimed by [`new_run`]), with a checkpoint every
/// `checkpoint_every` steps if given; returns the results it wrote.
pub fn train(
    exp: Experiment,
    placement: &Placement,
    dir: &RunDir,
    checkpoint_every: Option<u32>,
) -> anyhow::Result<Results> {
    train_watched(
        exp,
        placement,
        Some(dir),
        checkpoint_every,
        &Watch::default(),
    )
    .map(|run| run.results)
}

/// Continues the interrupted run in `dir` from its checkpoint (its experiment and checkpoint interval
/// included; `checkpoint_every` replaces the interval) to the end. The directory is claimed and the
/// checkpoint checked before any work.
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

/// Trains `exp` from its initial state on `placement` (see [`train`]), watched by `watch`: into
/// `dir` (claimed by [`new_run`]) with its checkpoints and files, or, with no `dir`, in memory
/// (checked by [`check_host_memory`]; no checkpoints, nothing written).
pub fn train_watched(
    exp: Experiment,
    placement: &Placement,
    dir: Option<&RunDir>,
    checkpoint_every: Option<u32>,
    watch: &Watch,
) -> anyhow::Result<Finished> {
    let state = TrainState::initial(&exp);
    train_from(exp, placement, dir, state, vec![], checkpoint_every, watch)
}

/// [`resume`], watched by `watch`.
pub fn resume_watched(
    dir: &Path,
    device: &Device,
    checkpoint_every: Option<u32>,
    watch: &Watch,
) -> anyhow::Result<Finished> {
    // From the claim on, a signal must stop the run cleanly, also while the device is checked
    // (enumerating adapters may take a while).
    if watch.stop.is_none() {
        install_stop_handler()?;
    }
    let claimed = dir::claim_to_resume(dir)?;
    let checkpoint = read_checkpoint(dir)?;
    check_host_memory(&checkpoint.experiment)?;
    let placement = device.check(&checkpoint.experiment)?;
    if watch.progress.is_none() {
        eprintln!(
            "resuming {} at step {}",
            dir.display(),
            checkpoint.state.step
        );
    }
    train_from(
        checkpoint.experiment,
        &placement,
        Some(&claimed),
        checkpoint.state,
        checkpoint.records,
        checkpoint_every.or(checkpoint.checkpoint_every),
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
    placement: &Placement,
    dir: Option<&RunDir>,
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
    let (mut trainer, backend) = placement.trainer(&exp, state)?;
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
        checkpoint_dir: dir.map(RunDir::path),
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
                dir.path().display()
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
        data_stream: crate::features::DATA_STREAM,
        weights_sha256: None, // recorded as the weights are written
    };
    if let Some(dir) = dir {
        let (w, w2) = Weights::of_state(&config.experiment, &state);
        let weights = Weights {
            w: &w,
            w2: w2.as_deref(),
            b: &state.b,
        };
        dir::write_files(dir, &config, &results, &weights)?;
        let _ = std::fs::remove_file(checkpoint_path(dir.path())); // the results supersede it
        if talk {
            eprintln!(
                "trained in {train_seconds:.2} s; wrote {}",
                dir.path().display()
            );
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
/// moments) a few times over (trainer, checkpoint, results), the CPU trainer's own buffers (the CPU
/// may train it, or take over when a GPU cannot), the result files' text and structures (about 48
/// bytes per parameter and 4 KiB per instance) and the process itself (32 MiB). Checked against
/// peak RSS in tests/hostile.rs.
pub fn host_bytes_needed(exp: &Experiment) -> u64 {
    let instances = exp.instances.len() as u64;
    let params = instances * exp.params_per_instance() as u64;
    let state = 4 * params * 6 * 3;
    let files = 48 * params + 4096 * instances;
    state + files + CpuTrainer::host_bytes(exp) + (32 << 20)
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

/// The shard to train: `--shard K/N` (`flag`), else the Slurm array task's (see [`slurm_shard`]),
/// else none.
pub fn shard_of(flag: Option<&str>) -> Result<Option<(u32, u32)>, UsageError> {
    match flag {
        Some(text) => Shard::parse(text).map(Some),
        None => slurm_shard(|name| std::env::var(name).ok()),
    }
}

/// The shard of a Slurm array task, from its variables (`var` looks one up): task
/// SLURM_ARRAY_TASK_ID of an array MIN..=MAX with step STEP (`--array=0-6:2` gives IDs 0, 2, 4, 6)
/// is shard (ID − MIN) / STEP of SLURM_ARRAY_TASK_COUNT. None outside an array job. Anything that
/// does not fit that pattern (a variable that is not a number, an ID off the step, a task beyond
/// the count, as irregular `--array=0,2,3` lists give) is refused rather than guessed, since a wrong
/// guess trains one part of the sweep twice and another never.
pub fn slurm_shard(var: impl Fn(&str) -> Option<String>) -> Result<Option<(u32, u32)>, UsageError> {
    let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
        return Ok(None);
    };
    let number = |name: &str, value: Option<String>, default: Option<u32>| match value {
        Some(text) => text.trim().parse::<u32>().map_err(|_| {
            UsageError::invalid(
                name,
                format!("{text:?}"),
                "must be a whole number; is this a Slurm array job?",
            )
        }),
        None => default.ok_or_else(|| {
            UsageError(format!(
                "SLURM_ARRAY_TASK_ID is set but {name} is not; give --shard K/N"
            ))
        }),
    };
    let id = number("SLURM_ARRAY_TASK_ID", Some(id), None)?;
    let count = number(
        "SLURM_ARRAY_TASK_COUNT",
        var("SLURM_ARRAY_TASK_COUNT"),
        None,
    )?;
    let min = number("SLURM_ARRAY_TASK_MIN", var("SLURM_ARRAY_TASK_MIN"), Some(0))?;
    let step = number(
        "SLURM_ARRAY_TASK_STEP",
        var("SLURM_ARRAY_TASK_STEP"),
        Some(1),
    )?
    .max(1);
    let offset = id.checked_sub(min).filter(|o| o % step == 0);
    match offset.map(|o| o / step) {
        Some(index) if index < count => Ok(Some((index, count))),
        _ => Err(UsageError(format!(
            "Slurm array task {id} is not one of {count} tasks {min}, {}, … (step {step}); use a regular array such as --array=0-{}, or give --shard K/N",
            min + step,
            count.saturating_sub(1)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slurm(vars: &[(&str, &str)]) -> Result<Option<(u32, u32)>, UsageError> {
        slurm_shard(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn slurm_array_tasks_map_to_shards() {
        assert_eq!(slurm(&[]), Ok(None));
        let plain = |id: &str| {
            slurm(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ])
        };
        assert_eq!(plain("3"), Ok(Some((0, 4))));
        assert_eq!(plain("6"), Ok(Some((3, 4))));
        assert!(plain("7").is_err() && plain("2").is_err());
        // --array=0-6:2: IDs 0, 2, 4, 6 are shards 0..4; an ID off the step is refused.
        let stepped = |id: &str| {
            slurm(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ])
        };
        let shards: Vec<_> = ["0", "2", "4", "6"].map(|id| stepped(id).unwrap()).into();
        assert_eq!(shards, [0, 1, 2, 3].map(|k| Some((k, 4))));
        let off_step = stepped("3").unwrap_err().0;
        assert!(off_step.contains("not one of 4 tasks"), "{off_step}");
        let garbage = slurm(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert!(garbage.unwrap_err().0.contains("SLURM_ARRAY_TASK_ID"));
        let no_count = slurm(&[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err().0;
        assert!(no_count.contains("SLURM_ARRAY_TASK_COUNT"), "{no_count}");
    }
}
