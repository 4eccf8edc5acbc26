//! What every backend shares: the training state, the [`Trainer`] interface that the CPU and GPU
//! trainers implement, the initial weights, the driver that runs a whole experiment with a progress
//! bar, and the held-out evaluation.

use crate::config::Experiment;
use crate::features::{init_normal, FeatureSource};
use crate::model::{forward, output_delta, zero_sample, Scratch};
use rayon::prelude::*;

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
                (0..m * n).map(move |j| (std * init_normal(exp.seed, i as u32, j as u32)) as f32)
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

/// Runs `trainer` to the end of the experiment in chunks, drawing a progress bar when stderr is a
/// terminal, and returns the final state with all loss records.
pub fn run_to_end(
    exp: &Experiment,
    trainer: &mut dyn Trainer,
    start: u32,
) -> anyhow::Result<(TrainState, Vec<LossRecord>)> {
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
    let chunk = exp.log_every.max(1).min(exp.steps);
    let mut records = vec![];
    let mut step = start;
    while step < exp.steps {
        let until = (step + chunk).min(exp.steps);
        let new = trainer.advance(until)?;
        if let Some(last) = new.last() {
            let mean =
                last.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / last.losses.len() as f64;
            bar.set_message(format!("mean loss {mean:.5}"));
        }
        records.extend(new);
        step = until;
        bar.set_position(u64::from(step));
    }
    bar.finish_and_clear();
    Ok((trainer.state()?, records))
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
            let source = FeatureSource::eval(exp.seed, i as u32, inst.density, n);
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
