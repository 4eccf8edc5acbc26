//! What every backend shares: the training state, the [`Trainer`] interface that the CPU and GPU
//! trainers implement, the initial weights, the driver that runs a whole experiment with a progress
//! bar, and the held-out evaluation.

use crate::checkpoint::write_checkpoint;
use crate::config::Experiment;
use crate::features::{init_normal, FeatureSource};
use crate::model::{forward, output_delta, zero_sample, Scratch};
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Parameters and Adam moments of all instances, instance-major: W is [instances, m, n] (row-major
/// m × n per instance), b is [instances, n]. `step` is the number of steps already taken.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    pub step: u32,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub m_w: Vec<f32>,
    pub v_w: Vec<f32>,
    pub m_b: Vec<f32>,
    pub v_b: Vec<f32>,
}

impl TrainState {
    /// Xavier-normal W (std sqrt(2 / (n + m)), independent per instance, from the seed's Init stream),
    /// b = 0, zero moments.
    pub fn initial(exp: &Experiment) -> TrainState {
        let (n, m) = (exp.features, exp.hidden);
        let std = (2.0 / (n + m) as f64).sqrt();
        let w = (0..exp.instances.len())
            .flat_map(|i| {
                (0..m * n).map(move |j| {
                    (std * init_normal(exp.seed, exp.global_index(i), j as u32)) as f32
                })
            })
            .collect::<Vec<_>>();
        let zeros_b = vec![0.0; exp.instances.len() * n];
        TrainState {
            step: 0,
            m_w: vec![0.0; w.len()],
            v_w: vec![0.0; w.len()],
            w,
            b: zeros_b.clone(),
            m_b: zeros_b.clone(),
            v_b: zeros_b,
        }
    }

    /// W of instance `i` (m × n, row-major).
    pub fn w_of(&self, i: usize, exp: &Experiment) -> &[f32] {
        let len = exp.hidden * exp.features;
        &self.w[i * len..(i + 1) * len]
    }

    /// b of instance `i`.
    pub fn b_of(&self, i: usize, exp: &Experiment) -> &[f32] {
        &self.b[i * exp.features..(i + 1) * exp.features]
    }
}

/// The training loss of every instance at one logged step (the batch loss before that step's update).
#[derive(Clone, Debug, PartialEq)]
pub struct LossRecord {
    pub step: u32,
    pub losses: Vec<f32>,
}

/// An upper estimate of the host memory a run of `exp` needs: the state (parameters and both Adam
/// moments) a few times over (trainer, checkpoint, results) and the CPU trainer's per-chunk buffers.
pub fn host_bytes_needed(exp: &Experiment) -> u64 {
    let (n, m, count) = (
        exp.features as u64,
        exp.hidden as u64,
        exp.instances.len() as u64,
    );
    let params = count * (m * n + n);
    let chunks = count * (exp.batch as u64).div_ceil(crate::cpu::CHUNK_SAMPLES as u64);
    let per_chunk = 4 * (m * n + n)
        + 32 * (m * n + 3 * n + 2 * m)
        + (crate::cpu::CHUNK_SAMPLES as u64) * (n + 16 * n.div_ceil(4));
    4 * params * 6 * 3 + chunks * per_chunk
}

/// Refuses, before any work, a run that needs more host memory than the machine has available.
pub fn check_host_memory(exp: &Experiment) -> Result<(), crate::config::ConfigError> {
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
        Some(available) if needed > available => Err(crate::config::ConfigError(format!(
            "this sweep needs about {:.1} GiB of host memory and {:.1} GiB are available; split it with --shard K/N",
            needed as f64 / (1u64 << 30) as f64,
            available as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// Whether step `step` is a log point: every `log_every` steps, and the last step.
pub fn is_log_step(exp: &Experiment, step: u32) -> bool {
    step.is_multiple_of(exp.log_every) || step + 1 == exp.steps
}

/// A backend that trains every instance of an experiment. Implementations hold their state (on the
/// host or on a device) between calls.
pub trait Trainer {
    /// The device this trainer runs on, for config.json and messages.
    fn device(&self) -> String;
    /// Trains until `until` steps have been taken in total, returning the loss records of the log
    /// points passed on the way. Returns only once that work is done (benchmarks time it).
    fn advance(&mut self, until: u32) -> anyhow::Result<Vec<LossRecord>>;
    /// The current state (weights and optimizer moments), read back from the device if need be.
    fn state(&mut self) -> anyhow::Result<TrainState>;
    /// Bytes of device memory this trainer holds (0 for host-only trainers).
    fn device_bytes(&self) -> u64 {
        0
    }
}

/// How a run reports progress and protects itself against interruption.
#[derive(Default)]
pub struct RunControl<'a> {
    /// Run directory to write checkpoints into (none: no checkpoints).
    pub checkpoint_dir: Option<&'a Path>,
    /// Checkpoint every this many steps (in addition to the time-based default).
    pub checkpoint_every: Option<u32>,
    /// Checkpoint when this many seconds have passed since the last one.
    pub checkpoint_seconds: Option<f64>,
    /// Set (e.g. by a SIGINT handler) to stop after the current chunk with a checkpoint.
    pub stop: Option<&'a AtomicBool>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished,
    /// Stopped at this step on request, after writing a checkpoint.
    Interrupted(u32),
}

/// Instances whose logged loss is not finite.
pub fn diverged_instances(
    records: &[LossRecord],
    state: &TrainState,
    exp: &Experiment,
) -> Vec<usize> {
    (0..exp.instances.len())
        .filter(|&i| {
            let params_finite = state
                .w_of(i, exp)
                .iter()
                .chain(state.b_of(i, exp))
                .all(|v| v.is_finite());
            !params_finite || records.iter().any(|r| !r.losses[i].is_finite())
        })
        .collect()
}

/// Runs `trainer` from its current step (`start`, with the loss records so far) to the end of the
/// experiment in chunks, drawing a progress bar when stderr is a terminal, writing checkpoints as
/// `control` asks, and reporting instances that diverge at the log point where they do.
pub fn run_to_end(
    exp: &Experiment,
    trainer: &mut dyn Trainer,
    start: u32,
    mut records: Vec<LossRecord>,
    control: &RunControl,
) -> anyhow::Result<(TrainState, Vec<LossRecord>, Outcome)> {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(u64::from(exp.steps)),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position(u64::from(start));
    let chunk = exp
        .log_every
        .min(control.checkpoint_every.unwrap_or(u32::MAX))
        .clamp(1, 1000);
    let mut reported = vec![false; exp.instances.len()];
    let (mut step, mut last_checkpoint, mut last_time) = (start, start, Instant::now());
    while step < exp.steps {
        let until = (step + chunk).min(exp.steps);
        let new = trainer.advance(until)?;
        for record in &new {
            let bad: Vec<usize> = (0..reported.len())
                .filter(|&i| !reported[i] && !record.losses[i].is_finite())
                .collect();
            if !bad.is_empty() {
                bar.suspend(|| eprintln!("instance(s) {bad:?} diverged at step {} (loss not finite); the others keep training", record.step));
                bad.iter().for_each(|&i| reported[i] = true);
            }
        }
        if let Some(last) = new.last() {
            let finite: Vec<f64> = last
                .losses
                .iter()
                .filter(|l| l.is_finite())
                .map(|&l| f64::from(l))
                .collect();
            bar.set_message(format!(
                "mean loss {:.5}",
                finite.iter().sum::<f64>() / finite.len().max(1) as f64
            ));
        }
        records.extend(new);
        step = until;
        bar.set_position(u64::from(step));
        if let Some(dir) = control.checkpoint_dir {
            let stopping = control.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            let by_steps = control
                .checkpoint_every
                .is_some_and(|k| step - last_checkpoint >= k);
            let by_time = control
                .checkpoint_seconds
                .is_some_and(|s| last_time.elapsed().as_secs_f64() >= s);
            if step < exp.steps && (stopping || by_steps || by_time) {
                let state = trainer.state()?; // read back once, for the checkpoint and the return
                write_checkpoint(dir, exp, &state, &records)?;
                (last_checkpoint, last_time) = (step, Instant::now());
                if stopping {
                    bar.abandon();
                    return Ok((state, records, Outcome::Interrupted(step)));
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok((trainer.state()?, records, Outcome::Finished))
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
            let source = FeatureSource::eval(exp.seed, exp.global_index(i), inst.density, n);
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
                    forward(&w, &b, &x, &mut scratch);
                    output_delta(exp.model, &imp, &x, c, &mut scratch)
                })
                .sum()
        })
        .collect()
}
