//! The CPU trainer: the reference every other backend is checked against.
//!
//! Each step, the batch of every instance is cut into fixed chunks of [`CHUNK_SAMPLES`] samples;
//! rayon computes the chunks' gradients in parallel (each chunk generating its own samples from the
//! counters), then each instance sums its chunks in a fixed order and takes its Adam step. Chunking
//! does not depend on the number of threads, so results are bit-identical on any machine with the
//! same float behaviour. All buffers are allocated once, in [`CpuTrainer::new`].

use crate::experiment::{Experiment, ModelKind};
use crate::features::{unit_float, FeatureSource, LANES};
use crate::model::zero_sample;
use crate::optim::{adam_update, step_table, AdamHyper};
use crate::trainer::{is_log_step, LossRecord, TrainState, Trainer};
use rayon::prelude::*;
use wide::f32x8;

/// Samples per parallel work item.
pub const CHUNK_SAMPLES: usize = 256;

/// Eight samples side by side, as plain floats (for filling) and as a SIMD vector (for arithmetic).
type Lanes = [f32; LANES];

/// A slice of one instance's batch, with its own gradient accumulators and scratch space.
///
/// A step of a chunk runs in three phases: (1) the presence of every feature of every sample, from
/// batched Philox calls; (2) the values of the groups with a present feature, batched the same way;
/// (3) the forward and backward passes over the samples that are not all zero, eight at a time with
/// one sample per SIMD lane, so every loop over n and m is a vector operation whatever n and m are.
/// All-zero samples only touch the bias gradient and are added in closed form.
struct Chunk {
    instance: usize,
    samples: std::ops::Range<u32>,
    source: FeatureSource,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    loss: f64,
    /// Phase 1: present[local sample · n + feature].
    present: Vec<u8>,
    /// Local indices of the samples with a present feature.
    live: Vec<u32>,
    /// Phase 2: value-word slot of each (local sample, group), and the Philox counters and words.
    slot: Vec<u32>,
    value_index: Vec<u32>,
    value_words: Vec<[u32; 4]>,
    /// Phase 3: the eight-sample block and its per-lane accumulators.
    x_lanes: Vec<Lanes>,
    x: Vec<f32x8>,
    x_any: Vec<bool>,
    h: Vec<f32x8>,
    y: Vec<f32x8>,
    dh: Vec<f32x8>,
    acc_w: Vec<f32x8>,
    acc_b: Vec<f32x8>,
    zero_delta: Vec<f32>,
}

impl Chunk {
    fn new(exp: &Experiment, instance: usize, samples: std::ops::Range<u32>) -> Chunk {
        let (n, m, len) = (exp.features, exp.hidden, samples.len());
        let groups = n.div_ceil(4);
        Chunk {
            instance,
            source: FeatureSource::train(
                exp.seed,
                exp.global_index(instance),
                exp.instances[instance].density,
                n,
            ),
            samples,
            grad_w: vec![0.0; m * n],
            grad_b: vec![0.0; n],
            loss: 0.0,
            present: vec![0; len * n],
            live: Vec::with_capacity(len),
            slot: vec![0; len * groups],
            value_index: Vec::with_capacity(len * groups),
            value_words: vec![[0; 4]; len * groups],
            x_lanes: vec![[0.0; LANES]; n],
            x: vec![f32x8::ZERO; n],
            x_any: vec![false; n],
            h: vec![f32x8::ZERO; m],
            y: vec![f32x8::ZERO; n],
            dh: vec![f32x8::ZERO; m],
            acc_w: vec![f32x8::ZERO; m * n],
            acc_b: vec![f32x8::ZERO; n],
            zero_delta: vec![0.0; n],
        }
    }

    /// The bytes of the buffers [`Chunk::new`] allocates for `len` samples, one term per buffer in
    /// the same order, so that a new buffer is counted where it is added.
    fn bytes(n: usize, m: usize, len: usize) -> u64 {
        let groups = n.div_ceil(4);
        let (f32s, u32s, lanes) = (4, 4, std::mem::size_of::<f32x8>());
        let bytes = m * n * f32s // grad_w
            + n * f32s // grad_b
            + len * n // present
            + len * u32s // live
            + len * groups * u32s // slot
            + len * groups * u32s // value_index
            + len * groups * 4 * u32s // value_words
            + n * LANES * f32s // x_lanes
            + n * lanes // x
            + n // x_any
            + m * lanes // h
            + n * lanes // y
            + m * lanes // dh
            + m * n * lanes // acc_w
            + n * lanes // acc_b
            + n * f32s; // zero_delta
        bytes as u64
    }

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
        let n = b.len();
        let groups = n.div_ceil(4);
        // Phase 1: presence, and the samples that are not all zero.
        self.source
            .presence(step, self.samples.clone(), &mut self.present);
        self.live.clear();
        self.value_index.clear();
        for (s, row) in self.present.chunks(n).enumerate() {
            if row.iter().any(|&p| p != 0) {
                self.live.push(s as u32);
                for (g, group) in row.chunks(4).enumerate() {
                    if group.iter().any(|&p| p != 0) {
                        self.slot[s * groups + g] = self.value_index.len() as u32;
                        self.value_index
                            .push((self.samples.start + s as u32) * groups as u32 + g as u32);
                    }
                }
            }
        }
        // Phase 2: values of the groups that need them.
        let words = &mut self.value_words[..self.value_index.len()];
        self.source.value_words(step, &self.value_index, words);

        // Phase 3: forward and backward, eight live samples at a time.
        self.acc_w.fill(f32x8::ZERO);
        self.acc_b.fill(f32x8::ZERO);
        let mut loss = 0.0f64;
        for block in self.live.chunks(LANES) {
            self.x_lanes.fill([0.0; LANES]);
            for (l, &s) in block.iter().enumerate() {
                let row = &self.present[s as usize * n..(s as usize + 1) * n];
                for (j, _) in row.iter().enumerate().filter(|(_, &p)| p != 0) {
                    self.x_lanes[j][l] = unit_float(
                        self.value_words[self.slot[s as usize * groups + j / 4] as usize][j % 4],
                    );
                }
            }
            for ((x, lanes), any) in self
                .x
                .iter_mut()
                .zip(&self.x_lanes)
                .zip(self.x_any.iter_mut())
            {
                *x = f32x8::from(*lanes);
                *any = lanes.iter().any(|&v| v != 0.0);
            }
            let mut valid = [0.0f32; LANES];
            valid[..block.len()].fill(1.0);
            let block_loss = block_pass(
                kind,
                w,
                b,
                importance,
                c,
                f32x8::from(valid),
                &self.x,
                &self.x_any,
                &mut self.h,
                &mut self.y,
                &mut self.dh,
                &mut self.acc_w,
                &mut self.acc_b,
            );
            loss += block_loss
                .to_array()
                .iter()
                .map(|&l| f64::from(l))
                .sum::<f64>();
        }
        for (g, acc) in self.grad_w.iter_mut().zip(&self.acc_w) {
            *g = acc.to_array().iter().sum();
        }
        for (g, acc) in self.grad_b.iter_mut().zip(&self.acc_b) {
            *g = acc.to_array().iter().sum();
        }
        let zero_samples = self.samples.len() - self.live.len();
        if zero_samples > 0 {
            // Every all-zero sample has the same loss and bias gradient: add them in closed form.
            let zero_loss = zero_sample(kind, importance, b, c, &mut self.zero_delta);
            loss += f64::from(zero_loss) * zero_samples as f64;
            let count = zero_samples as f32;
            self.grad_b
                .iter_mut()
                .zip(&self.zero_delta)
                .for_each(|(g, d)| *g += count * d);
        }
        self.loss = loss;
    }
}

/// Forward and backward pass of eight samples at once (one per SIMD lane; `valid` is 0 for padding
/// lanes), adding their gradients into the per-lane accumulators; returns the per-lane losses.
/// The maths is [`crate::model`]'s, lane by lane. `x_any[j]` says whether feature j is present in
/// any lane: absent features are skipped in W x.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_pass(
    kind: ModelKind,
    w: &[f32],
    b: &[f32],
    importance: &[f32],
    c: f32,
    valid: f32x8,
    x: &[f32x8],
    x_any: &[bool],
    h: &mut [f32x8],
    y: &mut [f32x8],
    dh: &mut [f32x8],
    acc_w: &mut [f32x8],
    acc_b: &mut [f32x8],
) -> f32x8 {
    let n = x.len();
    // h = W x
    for (k, hk) in h.iter_mut().enumerate() {
        let mut acc = f32x8::ZERO;
        for ((&wkj, &xj), _) in w[k * n..(k + 1) * n]
            .iter()
            .zip(x)
            .zip(x_any)
            .filter(|(_, &any)| any)
        {
            acc += f32x8::splat(wkj) * xj;
        }
        *hk = acc;
    }
    // y = Wᵀ h + b
    for (yi, &bi) in y.iter_mut().zip(b) {
        *yi = f32x8::splat(bi);
    }
    for (k, &hk) in h.iter().enumerate() {
        for (yi, &wki) in y.iter_mut().zip(&w[k * n..(k + 1) * n]) {
            *yi += f32x8::splat(wki) * hk;
        }
    }
    // Loss, and δ = ∂loss/∂y written over y.
    let mut loss = f32x8::ZERO;
    let two_c = f32x8::splat(c + c) * valid;
    for ((yi, &xi), &ii) in y.iter_mut().zip(x).zip(importance) {
        let ii = f32x8::splat(ii);
        let out = match kind {
            ModelKind::Linear => *yi,
            ModelKind::Relu => yi.max(f32x8::ZERO),
        };
        let err = out - xi;
        loss += ii * err * err;
        let delta = two_c * ii * err;
        *yi = match kind {
            ModelKind::Linear => delta,
            ModelKind::Relu => yi.simd_gt(f32x8::ZERO) & delta,
        };
    }
    let delta = &*y;
    // dh = W δ
    for (k, dhk) in dh.iter_mut().enumerate() {
        let mut acc = f32x8::ZERO;
        for (&wki, &di) in w[k * n..(k + 1) * n].iter().zip(delta) {
            acc += f32x8::splat(wki) * di;
        }
        *dhk = acc;
    }
    // ∂W += h δᵀ + dh xᵀ, ∂b += δ
    for (k, (&hk, &dhk)) in h.iter().zip(dh.iter()).enumerate() {
        for ((g, &di), &xi) in acc_w[k * n..(k + 1) * n].iter_mut().zip(delta).zip(x) {
            *g += hk * di + dhk * xi;
        }
    }
    for (g, &di) in acc_b.iter_mut().zip(delta) {
        *g += di;
    }
    loss * f32x8::splat(c) * valid
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
        let chunks_per_instance = exp.batch.div_ceil(CHUNK_SAMPLES);
        let chunks = (0..exp.instances.len())
            .flat_map(|instance| {
                (0..chunks_per_instance).map(move |k| {
                    let first = k * CHUNK_SAMPLES;
                    let last = (first + CHUNK_SAMPLES).min(exp.batch);
                    Chunk::new(exp, instance, first as u32..last as u32)
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

    /// Host bytes the trainer for `exp` allocates beyond the state it is given: its chunks' buffers.
    pub fn host_bytes(exp: &Experiment) -> u64 {
        let (full, rest) = (exp.batch / CHUNK_SAMPLES, exp.batch % CHUNK_SAMPLES);
        let (n, m) = (exp.features, exp.hidden);
        let per_instance = full as u64 * Chunk::bytes(n, m, CHUNK_SAMPLES)
            + if rest > 0 {
                Chunk::bytes(n, m, rest)
            } else {
                0
            };
        exp.instances.len() as u64 * per_instance
    }

    /// One training step of every instance; returns the per-instance batch losses.
    /// One training step of every instance. Allocates nothing: the batch losses stay in the first
    /// chunk of each instance ([`CpuTrainer::losses`] collects them at log points).
    fn step(&mut self, constants: crate::optim::StepConstants) {
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
        self.chunks
            .par_chunks_mut(self.chunks_per_instance)
            .zip(state.w.par_chunks_mut(mn))
            .zip(state.m_w.par_chunks_mut(mn))
            .zip(state.v_w.par_chunks_mut(mn))
            .zip(state.b.par_chunks_mut(n))
            .zip(state.m_b.par_chunks_mut(n))
            .zip(state.v_b.par_chunks_mut(n))
            .for_each(|((((((chunks, w), m_w), v_w), b), m_b), v_b)| {
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
            });
        state.step += 1;
    }

    /// The batch loss of every instance at the last step.
    fn losses(&self) -> Vec<f32> {
        self.chunks
            .iter()
            .step_by(self.chunks_per_instance)
            .map(|first| first.loss as f32)
            .collect()
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
            self.step(constants);
            if is_log_step(&self.exp, step) {
                records.push(LossRecord {
                    step,
                    losses: self.losses(),
                });
            }
        }
        Ok(records)
    }

    fn state(&mut self) -> anyhow::Result<TrainState> {
        Ok(self.state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Settings;
    use crate::model::{backward, forward, output_delta, Scratch};

    /// The batched SIMD path computes the same loss and gradient as the per-sample reference maths
    /// of `crate::model` in f64, over samples from `FeatureSource::sample`.
    #[test]
    fn chunk_gradient_equals_the_per_sample_reference() {
        for (kind, density) in [
            (ModelKind::Relu, 1.0),
            (ModelKind::Relu, 0.15),
            (ModelKind::Linear, 0.4),
        ] {
            let exp = Settings {
                model: Some(kind),
                features: Some(11),
                hidden: Some(3),
                batch: Some(300),
                density: Some(vec![density]),
                ..Default::default()
            }
            .resolve()
            .unwrap();
            let (n, m) = (exp.features, exp.hidden);
            let mut state = TrainState::initial(&exp);
            state
                .b
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = 0.1 * (i as f32 - 5.0));
            let c = 1.0 / (exp.batch * n) as f32;
            let step = 17;
            let mut chunk = Chunk::new(&exp, 0, 0..exp.batch as u32);
            chunk.compute(
                kind,
                step,
                &state.w,
                &state.b,
                &exp.instances[0].importance,
                c,
            );

            let w: Vec<f64> = state.w.iter().map(|&v| f64::from(v)).collect();
            let b: Vec<f64> = state.b.iter().map(|&v| f64::from(v)).collect();
            let imp: Vec<f64> = exp.instances[0]
                .importance
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let (mut gw, mut gb, mut loss) = (vec![0.0; m * n], vec![0.0; n], 0.0);
            let mut scratch = Scratch::new(n, m);
            let source = FeatureSource::train(exp.seed, 0, density, n);
            let mut x32 = vec![0.0f32; n];
            for s in 0..exp.batch as u32 {
                source.sample(step, s, &mut x32);
                let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
                forward(&w, &b, &x, &mut scratch);
                loss += output_delta(kind, &imp, &x, f64::from(c), &mut scratch);
                backward(&w, &x, &mut scratch, &mut gw, &mut gb);
            }
            assert!(
                (chunk.loss - loss).abs() < 1e-5 * loss,
                "{kind:?} {density}: loss {} vs {loss}",
                chunk.loss
            );
            let scale = gw.iter().chain(&gb).fold(0.0f64, |a, g| a.max(g.abs()));
            for (fast, reference) in chunk
                .grad_w
                .iter()
                .zip(&gw)
                .chain(chunk.grad_b.iter().zip(&gb))
            {
                assert!(
                    (f64::from(*fast) - reference).abs() < 1e-5 * scale,
                    "{kind:?} {density}: {fast} vs {reference}"
                );
            }
        }
    }
}
