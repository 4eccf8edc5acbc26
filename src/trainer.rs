//! The interface every backend implements, and nothing else: the training state ([`TrainState`], with
//! all of its instance-major layout arithmetic), the loss records a run logs, [`is_log_step`] and the
//! [`Trainer`] trait. It depends only on the experiment and the random initial weights, so reading or
//! changing the trait needs no backend, no file format and no run policy: those sit above it
//! (`cpu`, `gpu`, `multi` implement it; `device` builds them; `run` drives them).

use crate::experiment::Experiment;
use crate::features::{init_normal, init_uniform};

/// Parameters and Adam moments of all instances, instance-major: W is [instances, m, n] (row-major
/// m × n per instance; for the untied model [instances, 2m, n]: W₁, then W₂ᵀ), b is [instances, n].
/// `step` is the number of steps already taken.
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
    /// b = 0, zero moments. The untied model's W₁ and W₂ are Kaiming-uniform as ARENA initialises
    /// them (PyTorch's `kaiming_uniform_` on [instances, m, n] and [instances, n, m] tensors, whose
    /// fan-in is m·n: uniform on ±sqrt(6 / (m·n))).
    pub fn initial(exp: &Experiment) -> TrainState {
        let (n, m) = (exp.features, exp.hidden);
        let std = (2.0 / (n + m) as f64).sqrt();
        let bound = (6.0 / (m * n) as f64).sqrt();
        let untied = exp.model.untied();
        let w = (0..exp.instances.len())
            .flat_map(|i| {
                (0..exp.weights_per_instance()).map(move |j| {
                    let (seed, instance, j) = (exp.seed, exp.global_index(i), j as u32);
                    if untied {
                        (bound * init_uniform(seed, instance, j)) as f32
                    } else {
                        (std * init_normal(seed, instance, j)) as f32
                    }
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

    /// The weights of instance `i`: W (m × n, row-major), then W₂ᵀ for the untied model.
    pub fn w_of(&self, i: usize, exp: &Experiment) -> &[f32] {
        let len = exp.weights_per_instance();
        &self.w[i * len..(i + 1) * len]
    }

    /// W (W₁ of the untied model) of instance `i`: m × n, row-major.
    pub fn w1_of(&self, i: usize, exp: &Experiment) -> &[f32] {
        &self.w_of(i, exp)[..exp.hidden * exp.features]
    }

    /// W₂ of the untied model's instance `i`, n × m row-major (its weights hold the transpose);
    /// `None` for a tied model.
    pub fn w2_of(&self, i: usize, exp: &Experiment) -> Option<Vec<f32>> {
        let (n, m) = (exp.features, exp.hidden);
        let u = &self.w_of(i, exp)[m * n..];
        exp.model
            .untied()
            .then(|| (0..n * m).map(|j| u[(j % m) * n + j / m]).collect())
    }

    /// b of instance `i`.
    pub fn b_of(&self, i: usize, exp: &Experiment) -> &[f32] {
        &self.b[i * exp.features..(i + 1) * exp.features]
    }

    /// The state of instances `range` only.
    pub fn slice(&self, exp: &Experiment, range: std::ops::Range<usize>) -> TrainState {
        let (mn, n) = (exp.weights_per_instance(), exp.features);
        let w = |v: &[f32]| v[range.start * mn..range.end * mn].to_vec();
        let b = |v: &[f32]| v[range.start * n..range.end * n].to_vec();
        TrainState {
            step: self.step,
            w: w(&self.w),
            m_w: w(&self.m_w),
            v_w: w(&self.v_w),
            b: b(&self.b),
            m_b: b(&self.m_b),
            v_b: b(&self.v_b),
        }
    }

    /// The states of consecutive parts joined into one.
    pub fn concat(parts: &[TrainState]) -> TrainState {
        let join = |f: fn(&TrainState) -> &Vec<f32>| {
            parts.iter().flat_map(|p| f(p).iter().copied()).collect()
        };
        TrainState {
            step: parts.first().map_or(0, |p| p.step),
            w: join(|p| &p.w),
            b: join(|p| &p.b),
            m_w: join(|p| &p.m_w),
            v_w: join(|p| &p.v_w),
            m_b: join(|p| &p.m_b),
            v_b: join(|p| &p.v_b),
        }
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
    /// Seconds of device time spent so far as the device's own timer measured it (GPU timestamp
    /// queries); `None` where there is no such timer and only the wall clock can time the work.
    fn device_seconds(&self) -> Option<f64> {
        None
    }
}
