//! The loop that takes a trainer from its current step to the end of the experiment: chunks of steps,
//! a progress bar on a terminal (or the caller's own progress report), checkpoints as [`RunControl`]
//! asks, a report of instances that diverge, a stop on request; then the held-out evaluation
//! ([`evaluate`]) of the final state.

use crate::experiment::Experiment;
use crate::features::FeatureSource;
use crate::model::{forward, output_delta, zero_sample, Scratch};
use crate::store::checkpoint::write_checkpoint;
use crate::trainer::{LossRecord, TrainState, Trainer};
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a run reports progress and protects itself against interruption.
#[derive(Default)]
pub struct RunControl<'a> {
    /// Run directory to write checkpoints into (none: no checkpoints).
    pub checkpoint_dir: Option<&'a Path>,
    /// Checkpoint every this many steps (in addition to the time-based default).
    pub checkpoint_every: Option<u32>,
    /// Checkpoint when this many seconds have passed since the last one.
    pub checkpoint_seconds: Option<f64>,
    /// Set (e.g. by a SIGINT handler) to stop after the current chunk, with a checkpoint when there
    /// is a checkpoint directory.
    pub stop: Option<&'a AtomicBool>,
    /// Called after every chunk with the step reached, the experiment's steps and the mean finite
    /// loss of the last log point; when given, it replaces the progress bar.
    pub progress: Option<&'a Progress<'a>>,
}

/// A progress report: (step reached, steps in all, mean finite loss at the last log point).
pub type Progress<'a> = dyn Fn(u32, u32, f64) + Sync + 'a;

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished,
    /// Stopped at this step on request, after writing a checkpoint if the run has a directory.
    Interrupted(u32),
}

/// About how long one chunk of steps may take before the loop looks at a stop request again.
const CHUNK_SECONDS: f64 = 0.25;

/// Instances whose logged loss is not finite.
pub fn diverged_instances(
    records: &[LossRecord],
    state: &TrainState,
    exp: &Experiment,
) -> Vec<usize> {
    (0..exp.instances.len())
        .filter(|&i| {
            !params_finite(state, exp, i) || records.iter().any(|r| !r.losses[i].is_finite())
        })
        .collect()
}

/// Runs `trainer` from its current step (`start`, with the loss records so far) to the end of the
/// experiment in chunks, drawing a progress bar when stderr is a terminal (or calling
/// `control.progress`), writing checkpoints as `control` asks, and reporting instances that diverge
/// at the log point where they do.
pub fn run_to_end(
    exp: &Experiment,
    trainer: &mut dyn Trainer,
    start: u32,
    mut records: Vec<LossRecord>,
    control: &RunControl,
) -> anyhow::Result<(TrainState, Vec<LossRecord>, Outcome)> {
    let target = match control.progress {
        Some(_) => indicatif::ProgressDrawTarget::hidden(),
        None => indicatif::ProgressDrawTarget::stderr(),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(u64::from(exp.steps)), target);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(u64::from(start));
    // Chunks end on multiples of `period` (so checkpoints fall where they always have) and are cut
    // shorter when steps are slow, so that a stop request or a progress update waits at most about
    // CHUNK_SECONDS whatever the model's size. Results do not depend on where chunks end.
    let period = exp
        .log_every
        .min(control.checkpoint_every.unwrap_or(u32::MAX))
        .clamp(1, 1000);
    let mut chunk = period.min(16);
    let mut reported = vec![false; exp.instances.len()];
    let (mut step, mut last_checkpoint, mut last_time) = (start, start, Instant::now());
    let mut mean_loss = f64::NAN;
    while step < exp.steps {
        let boundary = (step / period + 1).saturating_mul(period);
        let until = (step + chunk).min(boundary).min(exp.steps);
        let started = Instant::now();
        let new = trainer.advance(until)?;
        let per_step = started.elapsed().as_secs_f64() / f64::from(until - step);
        chunk = ((CHUNK_SECONDS / per_step.max(1e-9)) as u32).clamp(1, period);
        for record in &new {
            let bad = |i: usize| !record.losses[i].is_finite();
            report(&mut reported, bad, &bar, record.step, "loss");
        }
        if let Some(last) = new.last() {
            let finite: Vec<f64> = last
                .losses
                .iter()
                .filter(|l| l.is_finite())
                .map(|&l| f64::from(l))
                .collect();
            mean_loss = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            bar.set_message(format!("mean loss {mean_loss:.5}"));
        }
        records.extend(new);
        step = until;
        bar.set_position(u64::from(step));
        if let Some(progress) = control.progress {
            progress(step, exp.steps, mean_loss);
        }
        let stopping = step < exp.steps && control.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if let Some(dir) = control.checkpoint_dir {
            let by_steps = control
                .checkpoint_every
                .is_some_and(|k| step - last_checkpoint >= k);
            let by_time = control
                .checkpoint_seconds
                .is_some_and(|s| last_time.elapsed().as_secs_f64() >= s);
            if stopping || (step < exp.steps && (by_steps || by_time)) {
                let state = trainer.state()?; // read back once, for the checkpoint and the return
                report_weights(&mut reported, &state, exp, &bar, step);
                write_checkpoint(dir, exp, &state, &records, control.checkpoint_every)?;
                (last_checkpoint, last_time) = (step, Instant::now());
                if stopping {
                    bar.abandon();
                    return Ok((state, records, Outcome::Interrupted(step)));
                }
            }
        } else if stopping {
            bar.abandon();
            return Ok((trainer.state()?, records, Outcome::Interrupted(step)));
        }
    }
    let state = trainer.state()?;
    report_weights(&mut reported, &state, exp, &bar, step);
    bar.finish_and_clear();
    Ok((state, records, Outcome::Finished))
}

/// Reports, once each, the instances that `bad` says have diverged by `step` (their `what` not
/// finite); the others keep training.
fn report(
    reported: &mut [bool],
    bad: impl Fn(usize) -> bool,
    bar: &indicatif::ProgressBar,
    step: u32,
    what: &str,
) {
    let new: Vec<usize> = (0..reported.len())
        .filter(|&i| !reported[i] && bad(i))
        .collect();
    if !new.is_empty() {
        bar.suspend(|| eprintln!("instance(s) {new:?} diverged by step {step} ({what} not finite); the others keep training"));
        new.iter().for_each(|&i| reported[i] = true);
    }
}

/// Reports the instances whose weights read back at `step` are no longer finite.
fn report_weights(
    reported: &mut [bool],
    state: &TrainState,
    exp: &Experiment,
    bar: &indicatif::ProgressBar,
    step: u32,
) {
    report(
        reported,
        |i| !params_finite(state, exp, i),
        bar,
        step,
        "weights",
    );
}

/// Whether instance `i`'s W and b are all finite.
fn params_finite(state: &TrainState, exp: &Experiment, i: usize) -> bool {
    state
        .w_of(i, exp)
        .iter()
        .chain(state.b_of(i, exp))
        .all(|v| v.is_finite())
}

/// Loss of every instance on its held-out evaluation batch (`eval_samples` samples of its own random
/// stream), in f64 with the notebook's normalisation (mean over samples and features).
pub fn evaluate(exp: &Experiment, state: &TrainState) -> Vec<f64> {
    let (n, m) = (exp.features, exp.hidden);
    let c = 1.0 / (exp.eval_samples * n) as f64;
    (0..exp.instances.len())
        .into_par_iter()
        .map(|i| {
            let inst = &exp.instances[i];
            let w: Vec<f64> = state.w_of(i, exp).iter().map(|&v| f64::from(v)).collect();
            let b: Vec<f64> = state.b_of(i, exp).iter().map(|&v| f64::from(v)).collect();
            let imp: Vec<f64> = inst.importance.iter().map(|&v| f64::from(v)).collect();
            let source = FeatureSource::eval(exp.seed, exp.global_index(i), inst.density, n)
                .with(&exp.distribution());
            let mut scratch = Scratch::new(n, m);
            let (mut x32, mut x) = (vec![0.0f32; n], vec![0.0f64; n]);
            let mut delta = vec![0.0; n];
            let zero_loss = zero_sample(exp.model, &imp, &b, c, &mut delta);
            (0..exp.eval_samples as u32)
                .map(|s| {
                    if source.sample(0, s, &mut x32) == 0 {
                        return zero_loss;
                    }
                    x.iter_mut().zip(&x32).for_each(|(d, &v)| *d = f64::from(v));
                    forward(exp.model, &w, &b, &x, &mut scratch);
                    output_delta(exp.model, &imp, &x, c, &mut scratch)
                })
                .sum()
        })
        .collect()
}
