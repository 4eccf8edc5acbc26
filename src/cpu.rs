//! The CPU trainer: the reference every other backend is checked against.
//!
//! Each step, the batch of every instance is cut into fixed chunks of [`CHUNK_SAMPLES`] samples;
//! rayon computes the chunks' gradients in parallel (each chunk generating its own samples from the
//! counters), then each instance sums its chunks in a fixed order and takes its Adam step. Chunking
//! does not depend on the number of threads, so results are bit-identical on any machine with the
//! same float behaviour. All buffers are allocated once, in [`CpuTrainer::new`].

use crate::config::{Experiment, ModelKind};
use crate::features::FeatureSource;
use crate::model::{backward, forward, output_delta, zero_sample, Scratch};
use crate::optim::{adam_update, step_table, AdamHyper};
use crate::trainer::{is_log_step, LossRecord, TrainState, Trainer};
use rayon::prelude::*;

/// Samples per parallel work item.
pub const CHUNK_SAMPLES: usize = 256;

/// A slice of one instance's batch, with its own gradient accumulators and scratch space.
struct Chunk {
    instance: usize,
    samples: std::ops::Range<u32>,
    source: FeatureSource,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    loss: f64,
    x: Vec<f32>,
    zero_delta: Vec<f32>,
    scratch: Scratch<f32>,
}

impl Chunk {
    /// Loss and gradient of this chunk's samples at `step`, for the instance's current W and b.
    fn compute(
        &mut self,
        kind: ModelKind,
        step: u32,
        w: &[f32],
        b: &[f32],
        importance: &[f32],
        c: f32,
    ) {
        self.grad_w.fill(0.0);
        self.grad_b.fill(0.0);
        let mut loss = 0.0f64;
        let mut zero_samples = 0u32;
        for sample in self.samples.clone() {
            if self.source.sample(step, sample, &mut self.x) == 0 {
                zero_samples += 1;
                continue;
            }
            forward(w, b, &self.x, &mut self.scratch);
            loss += f64::from(output_delta(
                kind,
                importance,
                &self.x,
                c,
                &mut self.scratch,
            ));
            backward(
                w,
                &self.x,
                &mut self.scratch,
                &mut self.grad_w,
                &mut self.grad_b,
            );
        }
        if zero_samples > 0 {
            // Every all-zero sample has the same loss and bias gradient: add them in closed form.
            let zero_loss = zero_sample(kind, importance, b, c, &mut self.zero_delta);
            loss += f64::from(zero_loss) * f64::from(zero_samples);
            let count = zero_samples as f32;
            self.grad_b
                .iter_mut()
                .zip(&self.zero_delta)
                .for_each(|(g, d)| *g += count * d);
        }
        self.loss = loss;
    }
}

/// Trains all instances of an experiment on the CPU, on all cores.
pub struct CpuTrainer {
    exp: Experiment,
    state: TrainState,
    chunks: Vec<Chunk>,
    chunks_per_instance: usize,
}

impl CpuTrainer {
    pub fn new(exp: &Experiment, state: TrainState) -> CpuTrainer {
        let (n, m) = (exp.features, exp.hidden);
        let chunks_per_instance = exp.batch.div_ceil(CHUNK_SAMPLES);
        let chunks = (0..exp.instances.len())
            .flat_map(|instance| {
                let source = FeatureSource::train(
                    exp.seed,
                    instance as u32,
                    exp.instances[instance].density,
                    n,
                );
                (0..chunks_per_instance).map(move |k| {
                    let first = k * CHUNK_SAMPLES;
                    let last = (first + CHUNK_SAMPLES).min(exp.batch);
                    Chunk {
                        instance,
                        samples: first as u32..last as u32,
                        source,
                        grad_w: vec![0.0; m * n],
                        grad_b: vec![0.0; n],
                        loss: 0.0,
                        x: vec![0.0; n],
                        zero_delta: vec![0.0; n],
                        scratch: Scratch::new(n, m),
                    }
                })
            })
            .collect();
        CpuTrainer {
            exp: exp.clone(),
            state,
            chunks,
            chunks_per_instance,
        }
    }

    /// One training step of every instance; returns the per-instance batch losses.
    fn step(
        &mut self,
        constants: crate::optim::StepConstants,
        record_loss: bool,
    ) -> Option<Vec<f32>> {
        let exp = &self.exp;
        let (n, mn) = (exp.features, exp.hidden * exp.features);
        let c = 1.0 / (exp.batch * n) as f32;
        let step = self.state.step;
        let state = &mut self.state;
        {
            let (w, b) = (&state.w, &state.b);
            self.chunks.par_iter_mut().for_each(|chunk| {
                let i = chunk.instance;
                chunk.compute(
                    exp.model,
                    step,
                    &w[i * mn..(i + 1) * mn],
                    &b[i * n..(i + 1) * n],
                    &exp.instances[i].importance,
                    c,
                );
            });
        }
        // Per instance: sum the chunks in order into the first one, then take the Adam step.
        let hyper = AdamHyper::of(exp);
        let losses: Vec<f32> = self
            .chunks
            .par_chunks_mut(self.chunks_per_instance)
            .zip(state.w.par_chunks_mut(mn))
            .zip(state.m_w.par_chunks_mut(mn))
            .zip(state.v_w.par_chunks_mut(mn))
            .zip(state.b.par_chunks_mut(n))
            .zip(state.m_b.par_chunks_mut(n))
            .zip(state.v_b.par_chunks_mut(n))
            .map(|((((((chunks, w), m_w), v_w), b), m_b), v_b)| {
                let (first, rest) = chunks
                    .split_first_mut()
                    .expect("every instance has a chunk");
                for other in rest.iter() {
                    first
                        .grad_w
                        .iter_mut()
                        .zip(&other.grad_w)
                        .for_each(|(a, g)| *a += g);
                    first
                        .grad_b
                        .iter_mut()
                        .zip(&other.grad_b)
                        .for_each(|(a, g)| *a += g);
                    first.loss += other.loss;
                }
                adam_update(hyper, constants, w, &first.grad_w, m_w, v_w);
                adam_update(hyper, constants, b, &first.grad_b, m_b, v_b);
                first.loss as f32
            })
            .collect();
        state.step += 1;
        record_loss.then_some(losses)
    }
}

impl Trainer for CpuTrainer {
    fn device(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn advance(&mut self, until: u32) -> anyhow::Result<Vec<LossRecord>> {
        let table = step_table(&self.exp, self.state.step, until);
        let mut records = vec![];
        for constants in table {
            let step = self.state.step;
            if let Some(losses) = self.step(constants, is_log_step(&self.exp, step)) {
                records.push(LossRecord { step, losses });
            }
        }
        Ok(records)
    }

    fn state(&mut self) -> anyhow::Result<TrainState> {
        Ok(self.state.clone())
    }
}
