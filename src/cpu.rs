//! The CPU trainer: the reference every other backend is checked against.
//!
//! Each step, the batch of every instance is cut into fixed chunks of [`CHUNK_SAMPLES`] samples;
//! rayon computes the chunks' gradients in parallel (each chunk generating its own samples from the
//! counters), then each instance sums its chunks in a fixed order and takes its Adam step. Chunking
//! does not depend on the number of threads, so results are bit-identical on any machine with the
//! same float behaviour. All buffers are allocated once, in [`CpuTrainer::new`].
//!
//! The block pass is [`crate::model`]'s maths with a lane type of `lanes` (eight samples per vector,
//! no fused multiply-adds), so it rounds like the scalar reference lane by lane. The chunks run
//! under the best [`InstructionSet`] the processor has, chosen at run time, and every instruction
//! set computes the same bits, so results do not depend on the machine either. Large models take
//! the matrix path of `dense` instead (see [`MATRIX_PATH_ABOVE_BYTES`]).

use crate::experiment::{Experiment, ModelKind};
use crate::features::{FeatureSource, PendingCalls, CHUNK_FEATURES, LANES};
use crate::model::{backward, forward_over, output_delta, zero_sample, Scratch};
use crate::optim::{adam_update, step_table, AdamHyper};
use crate::trainer::{is_log_step, LossRecord, TrainState, Trainer};
use rayon::prelude::*;

/// Samples per parallel work item.
pub const CHUNK_SAMPLES: usize = 256;

/// Models whose per-lane gradient accumulators (m·n·8 floats per chunk) exceed this many bytes take
/// the matrix path (`dense`). Measured (one thread, CPU time per step): `large` (2048 × 256) 955 →
/// 275 ms, `geometry` (400 × 30, 375 KiB of accumulators) 124 → 104 ms. Smaller models (every
/// committed result but results/geometry's 400 × 30) stay on the block pass.
const MATRIX_PATH_ABOVE_BYTES: usize = 128 << 10;

/// Whether the chunks of `exp` take the matrix path (written for the tied models without a hidden
/// ReLU; the privileged-basis and abs models always take the block pass).
fn matrix_path(exp: &Experiment) -> bool {
    !exp.model.hidden_relu()
        && exp.features * exp.hidden * std::mem::size_of::<F32x8>() > MATRIX_PATH_ABOVE_BYTES
}

mod dense;
mod lanes;
#[cfg(target_arch = "x86_64")]
mod philox;

use dense::Dense;
#[cfg(target_arch = "x86_64")]
use lanes::{Avx8, Sse8};
use lanes::{F32x8, Lanes};

/// The lane type of the baseline level: SSE2 registers on x86-64, plain arrays elsewhere.
#[cfg(target_arch = "x86_64")]
type Baseline = Sse8;
#[cfg(not(target_arch = "x86_64"))]
type Baseline = F32x8;

/// The instruction set the CPU trainer runs its chunks with, chosen when the trainer is built from
/// what the processor has (`pulp` checks the processor's features at run time and compiles the
/// chunk once per level): x86-64-v3 (AVX2) where the processor has it, else the baseline (SSE2 on
/// x86-64), and NEON on aarch64. Processors with AVX-512 run the AVX2 code: eight lanes fill only
/// half a 512-bit register, and an earlier (array-based) version of the lanes compiled for
/// x86-64-v4 measured 1.6× slower than for x86-64-v3 on the `basic` workload.
#[derive(Clone, Copy, Debug)]
pub enum InstructionSet {
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    #[cfg(target_arch = "aarch64")]
    Neon(pulp::aarch64::Neon),
    Baseline,
}

impl InstructionSet {
    /// The best level this processor has.
    pub fn detect() -> InstructionSet {
        InstructionSet::available()[0]
    }

    /// Every level this processor can run, best first (the tests run the trainer under each).
    pub fn available() -> Vec<InstructionSet> {
        let mut levels = vec![];
        #[cfg(target_arch = "x86_64")]
        levels.extend(pulp::x86::V3::try_new().map(InstructionSet::Avx2));
        #[cfg(target_arch = "aarch64")]
        levels.extend(pulp::aarch64::Neon::try_new().map(InstructionSet::Neon));
        levels.push(InstructionSet::Baseline);
        levels
    }

    /// Its name, as `tms devices` and `tms bench` print it.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx2(_) => "AVX2",
            #[cfg(target_arch = "aarch64")]
            InstructionSet::Neon(_) => "NEON",
            InstructionSet::Baseline if cfg!(target_arch = "x86_64") => "SSE2",
            InstructionSet::Baseline => "scalar",
        }
    }

    /// The chunks of `exp`, with the lane type of this level.
    /// (on the matrix path if `matrix`).
    fn chunks(self, exp: &Experiment, matrix: bool) -> Chunks {
        match self {
            #[cfg(target_arch = "x86_64")]
            InstructionSet::Avx2(v3) => Chunks::Avx2(v3, Chunk::all(exp, matrix)),
            #[cfg(target_arch = "aarch64")]
            InstructionSet::Neon(neon) => Chunks::Neon(neon, Chunk::all(exp, matrix)),
            InstructionSet::Baseline => Chunks::Baseline(Chunk::all(exp, matrix)),
        }
    }
}

/// Every chunk of a trainer, with the lane type of its instruction set and the `pulp` token that
/// runs them with it.
enum Chunks {
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3, Vec<Chunk<Avx8>>),
    #[cfg(target_arch = "aarch64")]
    Neon(pulp::aarch64::Neon, Vec<Chunk<F32x8>>),
    Baseline(Vec<Chunk<Baseline>>),
}

/// Evaluates `$body` with `$chunks` bound to the chunk vector of whichever level `$set` holds.
macro_rules! each_level {
    ($set:expr, $chunks:ident => $body:expr) => {
        match $set {
            #[cfg(target_arch = "x86_64")]
            Chunks::Avx2(_, $chunks) => $body,
            #[cfg(target_arch = "aarch64")]
            Chunks::Neon(_, $chunks) => $body,
            Chunks::Baseline($chunks) => $body,
        }
    };
}

impl Chunks {
    /// Computes every chunk's loss and gradient in parallel, with this level's instructions.
    fn compute<'a>(&mut self, inputs: impl Fn(usize) -> StepInputs<'a> + Sync) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Chunks::Avx2(v3, chunks) => chunks.par_iter_mut().for_each(|chunk| {
                let at = inputs(chunk.instance);
                pulp::Simd::vectorize(*v3, ChunkStep { chunk, at })
            }),
            #[cfg(target_arch = "aarch64")]
            Chunks::Neon(neon, chunks) => chunks.par_iter_mut().for_each(|chunk| {
                let at = inputs(chunk.instance);
                pulp::Simd::vectorize(*neon, ChunkStep { chunk, at })
            }),
            Chunks::Baseline(chunks) => chunks
                .par_iter_mut()
                .for_each(|chunk| chunk.compute(inputs(chunk.instance))),
        }
    }
}

/// A slice of one instance's batch, with its own gradient accumulators and scratch space.
///
/// A step of a chunk runs in two phases: (1) the presence of every feature of every sample as bits,
/// from batched Philox calls; (2) one pass over the samples that are not all zero, eight at a time
/// with one sample per SIMD lane: their value words (batched the same way, only the value calls
/// of the present features) go straight into the block, and the block's forward and backward passes run over
/// the columns present in any lane. All-zero samples only touch the bias gradient and are added in
/// closed form.
struct Chunk<L> {
    instance: usize,
    samples: std::ops::Range<u32>,
    source: FeatureSource,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    loss: f64,
    /// Phase 1: the presence bits of the chunk's samples, as [`FeatureSource::presence`] packs them.
    present: Vec<u32>,
    /// Phase 2: the block of eight samples (zero outside `columns`), the presence bits of the block,
    /// the columns present in any lane, scratch vectors and per-lane gradient accumulators.
    x: Vec<L>,
    block_bits: Vec<u64>,
    columns: Vec<usize>,
    scratch: Scratch<L>,
    acc_w: Vec<L>,
    acc_b: Vec<L>,
    zero_delta: Vec<f32>,
    /// One sample's mask words, for distributions other than the default (then empty): phase 1
    /// applies the distribution's rules to them ([`FeatureSource::presence_general`]).
    mask_words: Vec<u32>,
    /// Whether the chunk takes the matrix path (large models; then the block pass's buffers are
    /// empty and the matrix path's are the thread's).
    dense: bool,
}

/// Value calls of the current block waiting to be made ([`FeatureSource::value_calls`]), each with
/// (its lane, its chunk's first feature) and the presence bits (in the chunk) of the features it serves.
type PendingValues = PendingCalls<((usize, usize), u32)>;

/// What a chunk's step reads: the step, and the instance's model kind, weights, bias and importance;
/// `c` = 1 / (batch · n); `log`: whether the step's loss is read (a log step; the matrix path sums
/// the loss only then).
#[derive(Clone, Copy)]
struct StepInputs<'a> {
    kind: ModelKind,
    step: u32,
    log: bool,
    w: &'a [f32],
    b: &'a [f32],
    importance: &'a [f32],
    c: f32,
}

/// A chunk's share of a step as `pulp` runs it: [`pulp::WithSimd::with_simd`] is monomorphised and
/// inlined per instruction set, and with it [`Chunk::compute`] and everything it calls.
struct ChunkStep<'a, L> {
    chunk: &'a mut Chunk<L>,
    at: StepInputs<'a>,
}

impl<L: Lanes> pulp::WithSimd for ChunkStep<'_, L> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.chunk.compute(self.at)
    }
}

impl<L: Lanes> Chunk<L> {
    /// The chunks of every instance of `exp`, instance by instance.
    fn all(exp: &Experiment, matrix: bool) -> Vec<Chunk<L>> {
        let per_instance = exp.batch.div_ceil(CHUNK_SAMPLES);
        (0..exp.instances.len())
            .flat_map(|instance| {
                (0..per_instance).map(move |k| {
                    let first = k * CHUNK_SAMPLES;
                    let last = (first + CHUNK_SAMPLES).min(exp.batch);
                    Chunk::new(exp, instance, first as u32..last as u32, matrix)
                })
            })
            .collect()
    }

    /// The chunk of `samples` of `instance`; on the matrix path, the block pass's buffers are empty.
    fn new(
        exp: &Experiment,
        instance: usize,
        samples: std::ops::Range<u32>,
        matrix: bool,
    ) -> Chunk<L> {
        let (n, m, len) = (exp.features, exp.hidden, samples.len());
        let rows = exp.model.weight_rows(m);
        let (bn, bm, brows) = if matrix { (0, 0, 0) } else { (n, m, rows) };
        let source = FeatureSource::train(
            exp.seed,
            exp.global_index(instance),
            exp.instances[instance].density,
            n,
        )
        .with(&exp.distribution());
        let words = source.presence_words();
        let mask_words = if source.is_plain() {
            0
        } else {
            4 * source.groups()
        };
        Chunk {
            instance,
            source,
            samples,
            grad_w: vec![0.0; rows * n],
            grad_b: vec![0.0; n],
            loss: 0.0,
            present: vec![0; source.presence_stream_len(len)],
            x: vec![L::ZERO; bn],
            block_bits: vec![0; words],
            columns: Vec::with_capacity(bn),
            scratch: Scratch::new(bn, bm),
            acc_w: vec![L::ZERO; brows * bn],
            acc_b: vec![L::ZERO; bn],
            zero_delta: vec![0.0; bn],
            mask_words: vec![0; mask_words],
            dense: matrix,
        }
    }

    /// The bytes of the buffers [`Chunk::new`] allocates for `len` samples of a model whose weights
    /// are `rows` rows of n, one term per buffer in the same order, so that a new buffer is counted
    /// where it is added.
    fn bytes(n: usize, m: usize, rows: usize, len: usize, matrix: bool, plain: bool) -> u64 {
        let words = n.div_ceil(64);
        let (bn, bm, brows) = if matrix { (0, 0, 0) } else { (n, m, rows) };
        let (f32s, u32s, u64s, usizes, lanes) = (4, 4, 8, 8, std::mem::size_of::<F32x8>());
        let bytes = rows * n * f32s // grad_w
            + n * f32s // grad_b
            + (len * n.div_ceil(CHUNK_FEATURES)).div_ceil(LANES) * LANES / 2 * u32s // present
            + bn * lanes // x
            + words * u64s // block_bits
            + bn * usizes // columns
            + (bm + bn + bn + bm) * lanes // scratch: h, y, delta, dh
            + brows * bn * lanes // acc_w
            + bn * lanes // acc_b
            + bn * f32s // zero_delta
            + if plain { 0 } else { 4 * n.div_ceil(4) * u32s }; // mask_words
        bytes as u64
    }

    /// Loss and gradient of this chunk's samples at `step`, for the instance's current W and b.
    /// Inlined into [`InstructionSet::run`], with everything it calls, to use its instructions.
    #[inline(always)]
    fn compute(&mut self, at: StepInputs) {
        let StepInputs {
            kind,
            step,
            b,
            importance,
            c,
            ..
        } = at;
        let n = b.len();
        // Phase 1: presence bits (any other distribution's by its rules, from the same mask words).
        if self.source.is_plain() {
            self.source
                .presence::<L::Philox>(step, self.samples.clone(), &mut self.present);
        } else {
            self.source.presence_general::<L::Philox>(
                step,
                self.samples.clone(),
                &mut self.present,
                &mut self.mask_words,
            );
        }
        if self.dense {
            self.loss = Dense::compute_on_this_thread::<L>(
                &self.source,
                self.samples.clone(),
                &self.present,
                at,
                &mut self.grad_w,
                &mut self.grad_b,
            );
            return;
        }

        // Phase 2: values, forward and backward, eight live samples at a time, into the per-lane
        // accumulators (zero between steps).
        let mut loss = 0.0f64;
        let (mut live, mut lane) = (0usize, 0usize);
        let mut pending = PendingValues::default();
        // A sample takes the next lane when its first present chunk is met. (The stream is taken
        // out of `self` while it is read, and put back.)
        let present = std::mem::take(&mut self.present);
        let mut current = usize::MAX;
        for (s, c, bits) in self.source.present_chunks(&present, self.samples.len()) {
            if s != current {
                if current != usize::MAX {
                    loss += self.next_lane(&at, &mut lane, &mut pending);
                }
                current = s;
                live += 1;
            }
            self.block_bits[c / 4] |= u64::from(bits) << (16 * (c % 4));
            let sample = self.samples.start + s as u32;
            for (call, served) in self.source.value_calls(sample, c, bits) {
                if pending.push(call, ((lane, CHUNK_FEATURES * c), served)) {
                    self.draw_values(step, &mut pending);
                }
            }
        }
        self.present = present;
        if current != usize::MAX {
            loss += self.next_lane(&at, &mut lane, &mut pending);
        }
        if lane > 0 {
            self.draw_values(step, &mut pending);
            loss += self.block(&at, lane);
        }
        if live == 0 {
            // Nothing touched the accumulators: skip their m·n·8 floats (most chunks of very
            // sparse instances).
            self.grad_w.fill(0.0);
            self.grad_b.fill(0.0);
        } else {
            for (g, acc) in self.grad_w.iter_mut().zip(&mut self.acc_w) {
                *g = std::mem::replace(acc, L::ZERO).sum();
            }
            for (g, acc) in self.grad_b.iter_mut().zip(&mut self.acc_b) {
                *g = std::mem::replace(acc, L::ZERO).sum();
            }
        }
        let zero_samples = self.samples.len() - live;
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
        debug_assert_eq!(self.grad_b.len(), n);
        self.loss = loss;
    }

    /// Moves on from a filled lane of the block: when all [`LANES`] are filled, draws their values
    /// and runs the block; returns the block's loss (0 otherwise).
    #[inline(always)]
    fn next_lane(&mut self, at: &StepInputs, lane: &mut usize, pending: &mut PendingValues) -> f64 {
        *lane += 1;
        if *lane < LANES {
            return 0.0;
        }
        *lane = 0;
        self.draw_values(at.step, pending);
        self.block(at, LANES)
    }

    /// Draws the pending value words and writes the present features' values into the block.
    #[inline(always)]
    fn draw_values(&mut self, step: u32, pending: &mut PendingValues) {
        let x = &mut self.x;
        self.source
            .make_value_calls::<L::Philox, _>(step, pending, |(lane, first), bit, value| {
                x[first + bit].set(lane, value)
            });
    }

    /// Forward and backward pass of the block's `lanes` samples (the model's maths, eight samples at a
    /// time), adding their gradients into the per-lane accumulators; returns their loss. Clears the
    /// block for the next one.
    #[inline(always)]
    fn block(&mut self, at: &StepInputs, lanes: usize) -> f64 {
        let StepInputs {
            kind,
            w,
            b,
            importance,
            c,
            ..
        } = *at;
        self.columns.clear();
        for (k, word) in self.block_bits.iter_mut().enumerate() {
            let mut rest = std::mem::take(word);
            while rest != 0 {
                self.columns.push(k * 64 + rest.trailing_zeros() as usize);
                rest &= rest - 1;
            }
        }
        // c in the live lanes, 0 in the padding ones: zeroes their loss and gradient.
        let c_lanes = L::from_array(std::array::from_fn(|l| if l < lanes { c } else { 0.0 }));
        let s = &mut self.scratch;
        forward_over(kind, w, b, &self.x, self.columns.iter().copied(), s);
        let loss = output_delta(kind, importance, &self.x, c_lanes, s);
        backward(kind, w, &self.x, s, &mut self.acc_w, &mut self.acc_b);
        for &j in &self.columns {
            self.x[j] = L::ZERO;
        }
        loss.to_array().iter().map(|&l| f64::from(l)).sum()
    }
}

/// Trains all instances of an experiment on the CPU, on all cores.
pub struct CpuTrainer {
    exp: Experiment,
    state: TrainState,
    chunks: Chunks,
    chunks_per_instance: usize,
}

impl CpuTrainer {
    pub fn new(exp: &Experiment, state: TrainState) -> CpuTrainer {
        CpuTrainer::with_path(exp, state, matrix_path(exp))
    }

    /// The trainer with the matrix path on or off, whatever the model's size.
    fn with_path(exp: &Experiment, state: TrainState, matrix: bool) -> CpuTrainer {
        CpuTrainer {
            exp: exp.clone(),
            state,
            chunks: InstructionSet::detect().chunks(exp, matrix),
            chunks_per_instance: exp.batch.div_ceil(CHUNK_SAMPLES),
        }
    }

    /// The CPU trainer on this machine in words: its instruction set and thread count.
    pub fn describe() -> String {
        format!(
            "cpu ({}, {} threads)",
            InstructionSet::detect().name(),
            rayon::current_num_threads()
        )
    }

    /// Host bytes the trainer for `exp` allocates beyond the state it is given: its chunks' buffers,
    /// and on the matrix path each thread's.
    pub fn host_bytes(exp: &Experiment) -> u64 {
        let (full, rest) = (exp.batch / CHUNK_SAMPLES, exp.batch % CHUNK_SAMPLES);
        let (n, m, matrix) = (exp.features, exp.hidden, matrix_path(exp));
        let plain = exp.distribution().is_plain();
        let rows = exp.model.weight_rows(m);
        let per_instance = full as u64
            * Chunk::<F32x8>::bytes(n, m, rows, CHUNK_SAMPLES, matrix, plain)
            + if rest > 0 {
                Chunk::<F32x8>::bytes(n, m, rows, rest, matrix, plain)
            } else {
                0
            };
        let dense = if matrix {
            let len = exp.batch.min(CHUNK_SAMPLES);
            rayon::current_num_threads() * Dense::bytes(len, n, m)
        } else {
            0
        };
        exp.instances.len() as u64 * per_instance + dense as u64
    }

    /// One training step of every instance. Allocates nothing: the batch losses stay in the first
    /// chunk of each instance ([`CpuTrainer::losses`] collects them at log points).
    fn step(&mut self, constants: crate::optim::StepConstants) {
        let exp = &self.exp;
        let (n, mn) = (exp.features, exp.weights_per_instance());
        let c = 1.0 / (exp.batch * n) as f32;
        let step = self.state.step;
        let log = is_log_step(exp, step);
        let state = &mut self.state;
        {
            let (w, b) = (&state.w, &state.b);
            self.chunks.compute(|i| StepInputs {
                kind: exp.model,
                step,
                log,
                w: &w[i * mn..(i + 1) * mn],
                b: &b[i * n..(i + 1) * n],
                importance: &exp.instances[i].importance,
                c,
            });
        }
        // Per instance: sum the chunks in order into the first one, then take the Adam step.
        let hyper = AdamHyper::of(exp);
        each_level!(&mut self.chunks, chunks => chunks
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
        }));
        state.step += 1;
    }

    /// The batch loss of every instance at the last step.
    fn losses(&self) -> Vec<f32> {
        each_level!(&self.chunks, chunks => chunks
            .iter()
            .step_by(self.chunks_per_instance)
            .map(|first| first.loss as f32)
            .collect())
    }
}

impl Trainer for CpuTrainer {
    fn device(&self) -> String {
        CpuTrainer::describe()
    }

    fn advance(&mut self, until: u32) -> anyhow::Result<Vec<LossRecord>> {
        let table = step_table(&self.exp, self.state.step, until);
        let mut records = vec![];
        // The steps run on a thread of rayon's pool (`scope` moves its body there), so that the
        // two parallel loops of each step fork from a worker instead of handing each loop from
        // this thread to the pool and sleeping until it is done: two thread wake-ups per step,
        // which were a few percent of a basic step.
        rayon::scope(|_| {
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
        });
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

    /// Every instruction set this processor has, and the portable lane type, compute the same
    /// chunks bit for bit (eight lanes on every level and no fused multiply-adds).
    #[test]
    fn every_instruction_set_computes_the_same_bits() {
        let exp = Settings {
            features: Some(70),
            hidden: Some(6),
            batch: Some(600),
            density: Some(vec![1.0, 0.05]),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let state = TrainState::initial(&exp);
        let (n, mn) = (exp.features, exp.features * exp.hidden);
        let inputs = |i: usize| StepInputs {
            kind: exp.model,
            step: 3,
            log: true,
            w: &state.w[i * mn..(i + 1) * mn],
            b: &state.b[i * n..(i + 1) * n],
            importance: &exp.instances[i].importance,
            c: 1.0 / (exp.batch * n) as f32,
        };
        type Results = Vec<(u64, Vec<f32>, Vec<f32>)>;
        let results = |chunks: &Chunks| -> Results {
            each_level!(chunks, chunks => chunks
                .iter()
                .map(|c| (c.loss.to_bits(), c.grad_w.clone(), c.grad_b.clone()))
                .collect())
        };
        let mut portable = Chunk::<F32x8>::all(&exp, false);
        portable
            .iter_mut()
            .for_each(|chunk| chunk.compute(inputs(chunk.instance)));
        let portable: Results = portable
            .iter()
            .map(|c| (c.loss.to_bits(), c.grad_w.clone(), c.grad_b.clone()))
            .collect();
        assert!(portable.iter().all(|(loss, ..)| *loss != 0));
        let levels = InstructionSet::available();
        assert!(matches!(levels.last(), Some(InstructionSet::Baseline)));
        for level in levels {
            let mut chunks = level.chunks(&exp, false);
            chunks.compute(inputs);
            assert!(
                results(&chunks) == portable,
                "{} differs from the portable lanes",
                level.name()
            );
        }
    }

    /// The block pass and the matrix path compute the same loss and gradient as the per-sample
    /// reference maths of `crate::model` in f64, over samples from `FeatureSource::sample`.
    #[test]
    fn chunk_gradient_equals_the_per_sample_reference() {
        for (kind, density, matrix) in [
            (ModelKind::Relu, 1.0, false),
            (ModelKind::Relu, 0.15, false),
            (ModelKind::Linear, 0.4, false),
            (ModelKind::Relu, 1.0, true),
            (ModelKind::Relu, 0.15, true),
            (ModelKind::Linear, 0.4, true),
            (ModelKind::ReluHidden, 1.0, false),
            (ModelKind::ReluHidden, 0.15, false),
            (ModelKind::Abs, 1.0, false),
            (ModelKind::Abs, 0.15, false),
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
            let mut chunk = Chunk::<Baseline>::new(&exp, 0, 0..exp.batch as u32, matrix);
            chunk.compute(StepInputs {
                kind,
                step,
                log: true,
                w: &state.w,
                b: &state.b,
                importance: &exp.instances[0].importance,
                c,
            });

            let w: Vec<f64> = state.w.iter().map(|&v| f64::from(v)).collect();
            let b: Vec<f64> = state.b.iter().map(|&v| f64::from(v)).collect();
            let imp: Vec<f64> = exp.instances[0]
                .importance
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let (mut gw, mut gb, mut loss) = (vec![0.0; state.w.len()], vec![0.0; n], 0.0);
            let mut scratch = Scratch::new(n, m);
            let source = FeatureSource::train(exp.seed, 0, density, n).with(&exp.distribution());
            let mut x32 = vec![0.0f32; n];
            for s in 0..exp.batch as u32 {
                source.sample(step, s, &mut x32);
                let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
                forward(kind, &w, &b, &x, &mut scratch);
                loss += output_delta(kind, &imp, &x, f64::from(c), &mut scratch);
                backward(kind, &w, &x, &mut scratch, &mut gw, &mut gb);
            }
            assert!(
                (chunk.loss - loss).abs() < 1e-5 * loss,
                "{kind:?} {density} matrix {matrix}: loss {} vs {loss}",
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
                    "{kind:?} {density} matrix {matrix}: {fast} vs {reference}"
                );
            }
        }
    }

    /// The matrix path trains like the block pass (the reference) within the tolerance the GPU
    /// trainer is held to: W and b within 2e-5 after 300 steps, losses within 1e-4 relative.
    #[test]
    fn matrix_path_follows_the_block_pass() {
        let exp = Settings {
            features: Some(90),
            hidden: Some(12),
            batch: Some(300),
            steps: Some(300),
            log_every: Some(50),
            density: Some(vec![1.0, 0.1, 0.02]),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let run = |matrix: bool| {
            let mut trainer = CpuTrainer::with_path(&exp, TrainState::initial(&exp), matrix);
            let records = trainer.advance(exp.steps).unwrap();
            (records, trainer.state().unwrap())
        };
        let ((block_losses, block), (matrix_losses, matrix)) = (run(false), run(true));
        for (a, b) in block
            .w
            .iter()
            .chain(&block.b)
            .zip(matrix.w.iter().chain(&matrix.b))
        {
            assert!((a - b).abs() < 2e-5, "parameter {a} vs {b}");
        }
        assert_eq!(block_losses.len(), matrix_losses.len());
        for (a, b) in block_losses.iter().zip(&matrix_losses) {
            for (x, y) in a.losses.iter().zip(&b.losses) {
                assert!(
                    (x - y).abs() <= 1e-4 * x.abs(),
                    "step {}: loss {x} vs {y}",
                    a.step
                );
            }
        }
    }
}
