//! A counted-cost model of one training step on GPUs we cannot run here: `cargo bench --bench
//! cost_model` prints modelled ms/step of tms's kernels on an H100, an RTX 4090 and an Apple M2 Pro
//! beside the modelled time of the PyTorch loop (benches/pytorch_loop.py) on the same GPU, for the
//! standard workloads of `tms bench`. Every figure it prints is a MODEL, not a measurement, good to
//! about ×2 (design/gpu-kernels.md §4 derives the constants and checks them against the kernels).
//!
//! Counts come from the same shapes the host uses: the workloads of `tms::bench`, the kernel the
//! trainer picks (`tms::gpu::plan::default_kernel`, on a hardware adapter), the register kernel's
//! workgroup size and reduction, the tiled kernels' blocks. Per kernel launch it counts integer ops
//! (Philox4x32-10 without a native mulhi: about 420 per call), flops, workgroup-memory wavefronts
//! (32 lanes × 4 bytes), barriers and DRAM bytes, and takes per compute unit the slowest resource
//! at the occupancy the grid gives (few warps cannot hide latency: throughput scales with resident
//! warps up to 16 per unit), plus a fixed cost per dependent dispatch.
//!
//! Random numbers: Philox calls are charged per warp, as a warp runs them. The tiled path's sampler
//! (one thread per sample and chunk) runs each kind of call as often as its busiest lane needs
//! ([`chunk_calls_per_warp`]), and so does the register kernel for n ≤ 16; above that the register
//! kernel on these GPUs (all have subgroup operations, and the standard workloads' distributions
//! are plain) shares its lanes' tie mask calls and value calls out among the warp
//! ([`cooperative_calls_per_sample`]: the sum of the lanes' calls over 32, rounded up per round,
//! plus the shuffles that move calls and results; `tms::gpu::plan::default_cooperative`).

use tms::bench::{standard_workloads, Workload};
use tms::features::{presence_threshold, CHUNK_FEATURES};
use tms::gpu::abi::{
    hidden_block, sampler_workgroups, REGISTER_WG, SAMPLER_WG, TILE, TILE_DEPTH, TILE_THREADS,
};
use tms::gpu::plan::{default_cooperative, default_kernel, Kernel};
use tms::gpu::register::fits_register;

/// Integer ops of one Philox4x32-10 call emulated in WGSL (10 rounds of two 32×32→64 products
/// built from 16-bit halves, about 17 ops each, plus the xors and key additions).
const PHILOX_OPS: f64 = 420.0;
/// Samples per step in every standard workload.
const BATCH: usize = 1024;
/// Steps per dispatch of the unsplit register kernel on hardware (trainer's SMALL_DISPATCH_STEPS).
const REGISTER_STEPS_PER_DISPATCH: f64 = 100.0;
/// Resident warps per compute unit needed to hide arithmetic and memory latency.
const WARPS_TO_HIDE_LATENCY: f64 = 16.0;
/// 32-bit registers per compute unit (NVIDIA SMs; assumed for Apple too).
const REGISTER_FILE: f64 = 65536.0;
/// Cycles a workgroup barrier costs when every warp arrives together.
const BARRIER_CYCLES: f64 = 30.0;

/// One GPU, per compute unit (SM, Apple GPU core) and clock.
struct Gpu {
    name: &'static str,
    units: f64,
    clock_hz: f64,
    fp32_lanes: f64,
    /// Integer multiply/ALU lanes Philox's mix runs on.
    int_lanes: f64,
    /// Workgroup-memory wavefronts (32 × 4 bytes) per clock.
    shared_wavefronts: f64,
    dram_bytes_per_s: f64,
    /// Seconds between two dependent compute dispatches in one pass (wgpu on Vulkan or Metal).
    dispatch_s: f64,
    /// Host seconds PyTorch spends issuing one kernel (CUDA, MPS).
    torch_launch_s: f64,
}

const GPUS: [Gpu; 3] = [
    Gpu {
        name: "H100 SXM",
        units: 132.0,
        clock_hz: 1.755e9,
        fp32_lanes: 128.0,
        int_lanes: 64.0,
        shared_wavefronts: 1.0,
        dram_bytes_per_s: 3.35e12,
        dispatch_s: 3e-6,
        torch_launch_s: 7e-6,
    },
    Gpu {
        name: "RTX 4090",
        units: 128.0,
        clock_hz: 2.52e9,
        fp32_lanes: 128.0,
        int_lanes: 64.0,
        shared_wavefronts: 1.0,
        dram_bytes_per_s: 1.01e12,
        dispatch_s: 3e-6,
        torch_launch_s: 6e-6,
    },
    Gpu {
        name: "M2 Pro",
        units: 19.0,
        clock_hz: 1.40e9,
        fp32_lanes: 128.0,
        int_lanes: 75.0,
        shared_wavefronts: 0.5,
        dram_bytes_per_s: 0.2e12,
        dispatch_s: 10e-6,
        torch_launch_s: 25e-6,
    },
];

impl Gpu {
    fn fp32_peak(&self) -> f64 {
        2.0 * self.units * self.clock_hz * self.fp32_lanes
    }
}

/// What one workgroup of a launch does, and how many there are.
#[derive(Default)]
struct Launch {
    workgroups: f64,
    threads: f64,
    /// Workgroups one compute unit can hold (registers, workgroup memory).
    resident: f64,
    int_ops: f64,
    flops: f64,
    shared_wavefronts: f64,
    barriers: f64,
    dram_bytes: f64,
}

impl Launch {
    /// Seconds of this launch on `gpu` (without the dispatch cost).
    fn seconds(&self, gpu: &Gpu) -> f64 {
        let per_unit = (self.workgroups / gpu.units).ceil();
        let resident = per_unit.min(self.resident);
        let warps = resident * (self.threads / 32.0).ceil();
        let efficiency = (warps / WARPS_TO_HIDE_LATENCY).min(1.0);
        let busiest = (self.int_ops / gpu.int_lanes)
            // Flops are multiply-adds almost all, two flops per lane and clock.
            .max(self.flops / (2.0 * gpu.fp32_lanes))
            .max(self.shared_wavefronts / gpu.shared_wavefronts);
        let cycles = per_unit * busiest / efficiency
            + (per_unit / resident).ceil() * self.barriers * BARRIER_CYCLES;
        cycles / gpu.clock_hz + self.workgroups * self.dram_bytes / gpu.dram_bytes_per_s
    }
}

/// A step's launches and how many dependent dispatches it costs.
struct Step {
    kernel: Kernel,
    launches: Vec<Launch>,
    dispatches: f64,
}

impl Step {
    fn seconds(&self, gpu: &Gpu) -> f64 {
        self.launches.iter().map(|l| l.seconds(gpu)).sum::<f64>() + self.dispatches * gpu.dispatch_s
    }

    fn total(&self, part: impl Fn(&Launch) -> f64) -> f64 {
        self.launches.iter().map(|l| l.workgroups * part(l)).sum()
    }
}

/// Probability that a run of `lanes` features has at least one present (each with `density`).
fn any_present(density: f64, lanes: f64) -> f64 {
    1.0 - (1.0 - density).powf(lanes)
}

/// P(X ≤ k) for X ~ Binomial(trials, p).
fn binomial_cdf(k: usize, trials: usize, p: f64) -> f64 {
    if p >= 1.0 {
        return if k >= trials { 1.0 } else { 0.0 };
    }
    let mut term = (1.0 - p).powi(trials as i32); // P(X = 0)
    let mut sum = 0.0;
    for x in 0..=k.min(trials) {
        sum += term;
        term *= (trials - x) as f64 / (x + 1) as f64 * p / (1.0 - p);
    }
    sum.min(1.0)
}

/// Philox calls a warp makes for one chunk of `features` (≤ 16) features, each of its 32 lanes
/// drawing that chunk of another sample (`shaders/common.wgsl`, `sample_chunk`; the stream of
/// `tms::features`). A call is charged to the whole warp when any lane makes it (the warp runs
/// the branch):
/// - one presence call (16 bytes);
/// - mask calls for ties (a byte equal to the threshold's top byte: 1 in 256 per feature), none
///   when every tie passes (low 24 bits all ones): one per group with a tie, in a loop, whose k-th
///   iteration the warp runs when any lane has k tied groups: 1 − P(t < k)³², t ~
///   Binomial(groups, P(a group ties));
/// - value call q (q = 0..3, serving the chunk's present features 4q .. 4q + 3) when any lane has
///   more than 4q present: 1 − P(p ≤ 4q)³², p ~ Binomial(features, density).
fn chunk_calls_per_warp(features: usize, density: f64) -> f64 {
    let groups = features.div_ceil(4);
    let warp_runs = |k: usize, trials: usize, p: f64| 1.0 - binomial_cdf(k, trials, p).powi(32);
    let ties = if presence_threshold(density) & 0xFF_FFFF == 0xFF_FFFF {
        0.0
    } else {
        let group_ties = any_present(1.0 / 256.0, features as f64 / groups as f64);
        (1..=groups)
            .map(|k| warp_runs(k - 1, groups, group_ties))
            .sum()
    };
    let values: f64 = (0..groups)
        .map(|q| warp_runs(4 * q, features, density))
        .sum();
    1.0 + ties + values
}

/// Philox calls per sample of n features (per thread of the register kernel; in warps of 32
/// samples): [`chunk_calls_per_warp`] of each chunk, the last one partial.
fn philox_calls_per_sample(n: usize, density: f64) -> f64 {
    (0..n.div_ceil(CHUNK_FEATURES))
        .map(|c| chunk_calls_per_warp((n - CHUNK_FEATURES * c).min(CHUNK_FEATURES), density))
        .sum()
}

/// Integer ops of the cooperative sampler's bookkeeping (src/gpu/register.rs,
/// `cooperative_sampler`), counted from the generated WGSL beyond what the per-lane sampler does
/// too (its presence and tie flags, the features' placement, which neither model counts): per
/// block of chunks and slot (a tie
/// group's mask call or a value call), its share of the packed scan and sum of the lanes' needs
/// (a byte per slot, two subgroup scans of 5 shuffle steps per four slots) and its start (about
/// 10); per round, the loop, the call's guard and the tie's pass bits (about 25) and each slot's
/// subgroup-uniform test whether its calls fall in the round (about 5); per slot whose
/// calls fall in a round, the owner search (5 steps of a shuffle, a compare and a select for 32
/// lanes), the owner's sample and the selects of the call (about 45), and the shuffle of the
/// result back with its tests (about 15).
const COOP_SLOT_OPS: f64 = 10.0;
const COOP_ROUND_OPS: f64 = 25.0;
const COOP_SLOT_TEST_OPS: f64 = 5.0;
const COOP_PAIR_OPS: f64 = 60.0;
/// Lanes per warp (NVIDIA) or SIMD group (Apple): the subgroup the cooperative sampler shares over.
const WARP: usize = 32;

/// `a` convolved with `b` (the distribution of the sum of two independent counts).
fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// The distribution (index: count) of the calls one lane lists for one chunk of `features` (≤ 16)
/// features besides its presence call (`chunk_needs` in shaders/common.wgsl): a mask call per
/// group with a tie (a presence byte equal to the threshold's top byte; none when every tie
/// passes), ⌈p / 4⌉ value calls for its p features at most the top byte (present or tied). Each
/// byte is uniform on 0..255: below the top byte with probability top / 256, a tie with 1 / 256.
/// Also the probability that the lane needs each of the chunk's slots (the groups' mask calls, then
/// the value calls).
fn chunk_need_pmf(features: usize, density: f64) -> (Vec<f64>, Vec<f64>) {
    let threshold = presence_threshold(density);
    let below = f64::from(threshold >> 24) / 256.0;
    let tie = 1.0 / 256.0;
    let settles = threshold & 0xFF_FFFF != 0xFF_FFFF;
    // joint[t][p]: t groups with a tie, p features at most the top byte.
    let groups = features.div_ceil(4);
    let mut joint = vec![vec![0.0; features + 1]; groups + 1];
    joint[0][0] = 1.0;
    let mut slots = vec![];
    for g in 0..groups {
        let lanes = (features - 4 * g).min(4);
        let group_ties = 1.0 - (1.0_f64 - tie).powi(lanes as i32);
        slots.push(if settles { group_ties } else { 0.0 });
        // The group alone: (any tie, count at most the top byte), by enumerating its lanes.
        let mut group = [vec![0.0; lanes + 1], vec![0.0; lanes + 1]];
        for states in 0..3usize.pow(lanes as u32) {
            let (mut prob, mut ties, mut count, mut code) = (1.0, false, 0, states);
            for _ in 0..lanes {
                match code % 3 {
                    0 => (prob, count) = (prob * below, count + 1),
                    1 => (prob, count, ties) = (prob * tie, count + 1, true),
                    _ => prob *= 1.0 - below - tie,
                }
                code /= 3;
            }
            group[usize::from(ties)][count] += prob;
        }
        let mut next = vec![vec![0.0; features + 1]; groups + 1];
        for t in 0..=g {
            for p in 0..=features {
                if joint[t][p] == 0.0 {
                    continue;
                }
                for (tied, counts) in group.iter().enumerate() {
                    for (c, q) in counts.iter().enumerate() {
                        if p + c <= features {
                            next[t + tied][p + c] += joint[t][p] * q;
                        }
                    }
                }
            }
        }
        joint = next;
    }
    let mut pmf = vec![0.0; groups + features.div_ceil(4) + 1];
    for (t, row) in joint.iter().enumerate() {
        for (p, prob) in row.iter().enumerate() {
            pmf[if settles { t } else { 0 } + p.div_ceil(4)] += prob;
        }
    }
    // Value call q is needed when more than 4q features are at most the top byte.
    for q in 0..groups {
        let more = 1.0 - binomial_cdf(4 * q, features, below + tie);
        slots.push(more);
    }
    (pmf, slots)
}

/// Philox calls and bookkeeping ops per sample of n features in the register kernel's cooperative
/// sampler (one sample per lane, a warp of 32): each lane's presence call per chunk, then per block
/// of up to four chunks ⌈S / 32⌉ rounds of calls for the S calls its lanes list (the distribution
/// of S: 32 lanes' [`chunk_need_pmf`] convolved), against the busiest lane's count of each kind in
/// the per-lane sampler ([`philox_calls_per_sample`]). The calls are numbered slot by slot, so a
/// slot's calls are consecutive: the (round, slot) pairs with calls are at most rounds + slots
/// with calls − 1, taken as their number. Returns (calls, other integer ops).
fn cooperative_calls_per_sample(n: usize, density: f64) -> (f64, f64) {
    let chunks = n.div_ceil(CHUNK_FEATURES);
    let (mut calls, mut ops) = (chunks as f64, 0.0);
    for first in (0..chunks).step_by(4) {
        let (mut lane, mut slots) = (vec![1.0], vec![]);
        for c in first..chunks.min(first + 4) {
            let (pmf, needed) =
                chunk_need_pmf((n - CHUNK_FEATURES * c).min(CHUNK_FEATURES), density);
            lane = convolve(&lane, &pmf);
            slots.extend(needed);
        }
        let warp = (0..WARP).fold(vec![1.0], |acc, _| convolve(&acc, &lane));
        let rounds: f64 = warp
            .iter()
            .enumerate()
            .map(|(s, p)| p * s.div_ceil(WARP) as f64)
            .sum();
        let used: f64 = slots
            .iter()
            .map(|p| 1.0 - (1.0 - p).powi(WARP as i32))
            .sum();
        let any = 1.0 - warp[0];
        calls += rounds;
        ops += slots.len() as f64 * COOP_SLOT_OPS
            + rounds * (COOP_ROUND_OPS + slots.len() as f64 * COOP_SLOT_TEST_OPS)
            + (rounds + used - any).max(0.0) * COOP_PAIR_OPS;
    }
    (calls, ops)
}

/// The register kernel (split into `slices` workgroups per instance, or whole).
/// `cooperative`: the cooperative sampler (what hardware adapters run), else the per-lane one.
fn register_step(w: &Workload, slices: usize, kernel: Kernel, cooperative: bool) -> Step {
    let (n, m) = (w.features as f64, w.hidden as f64);
    let wg = REGISTER_WG as f64;
    let values = m * n + n + 2.0;
    let warps = wg / 32.0;
    let samples = BATCH as f64 / slices as f64;
    // Per instance and workgroup; the average instance stands for all (densities vary).
    let count = w.densities.len() as f64;
    let (mut int_ops, mut flops, mut shared) = (0.0, 0.0, 0.0);
    for &d in &w.densities {
        // A warp runs the dense path when any of its lanes has a present feature.
        let dense = any_present(any_present(d, n), 32.0);
        let (calls, bookkeeping) = match cooperative {
            true => cooperative_calls_per_sample(w.features, d),
            false => (philox_calls_per_sample(w.features, d), 0.0),
        };
        int_ops += samples * (calls * PHILOX_OPS + bookkeeping) / count;
        flops += samples * dense * (10.0 * n * m + 12.0 * n) / count;
        // W and b read at uniform addresses (broadcast): h, y and Wδ, per warp-iteration.
        shared += samples / 32.0 * dense * (3.0 * n * m + n) / count;
    }
    // The reduction: subgroup adds (5 shuffle steps), one row per warp, the sum over the rows.
    flops += warps * values * 10.0;
    shared += warps * values + (values / wg).ceil() * warps;
    // Registers per thread: the accumulators, x, δ, y, h, Wδ and bookkeeping (at most 255). The
    // cooperative sampler's value words (n) and flags live only before x, so the peak is the
    // forward and backward pass's, as with the per-lane sampler.
    let registers = (values + 3.0 * n + 2.0 * m + 24.0).min(255.0);
    let train = Launch {
        workgroups: count * slices as f64,
        threads: wg,
        resident: (REGISTER_FILE / (registers * wg)).floor().max(1.0),
        int_ops,
        flops,
        shared_wavefronts: shared,
        barriers: 4.0,
        dram_bytes: if slices > 1 { 4.0 * values } else { 0.0 },
    };
    let mut launches = vec![train];
    if slices > 1 {
        launches.push(Launch {
            workgroups: count,
            threads: wg,
            resident: 4.0,
            flops: (m * n + n) * (slices as f64 + 20.0),
            dram_bytes: 4.0 * values * slices as f64 + 4.0 * 6.0 * (m * n + n),
            ..Default::default()
        });
    }
    Step {
        kernel,
        launches,
        dispatches: if slices > 1 {
            2.0
        } else {
            1.0 / REGISTER_STEPS_PER_DISPATCH
        },
    }
}

/// Block shapes of the tiled products, for weighing alternatives: the hidden products' (batch ×
/// m) output blocks, ∂W's (m × n) blocks, and the slices of the batch ∂W's sum is split into.
#[derive(Clone, Copy, Debug)]
struct TiledShape {
    /// Rows (samples) × columns (hidden units) of a hidden_forward/hidden_backward block.
    hidden_block: (usize, usize),
    /// Rows (hidden units) × columns (features) of a gradient block.
    gradient_block: (usize, usize),
    /// Slices of ∂W's inner dimension (2·batch), summed in a fixed order by Adam.
    gradient_slices: usize,
}

/// The shape the trainer runs for `m` hidden units (src/gpu/trainer.rs).
fn host_shape(m: usize) -> TiledShape {
    TiledShape {
        hidden_block: hidden_block(m),
        gradient_block: (TILE as usize, TILE as usize),
        gradient_slices: 1,
    }
}

/// The tiled kernels: generate (features.wgsl), hidden_forward, output_delta, hidden_backward,
/// gradient, adam_step. The four products run over rows × columns output blocks (TILE × TILE
/// unless `shape` says otherwise) in rounds of TILE_DEPTH, each thread a 4 × 4 block; a GPU
/// computes the blocks' padding too (m = 30 fills half a 64-wide block: its warps mix live and
/// padding lanes).
fn tiled_step(w: &Workload, shape: TiledShape) -> Step {
    let tile = TILE as usize;
    let depth = TILE_DEPTH as f64;
    let blocks = |len: usize, block: usize| (len as f64 / block as f64).ceil();
    let rounds = |len: usize| (len as f64 / depth).ceil();
    let count = w.densities.len() as f64;
    let threads = f64::from(TILE_THREADS * TILE_THREADS);
    let warps = threads / 32.0;
    // Registers per thread: 16 accumulators, the vec4 operands, addresses: about 64, so that four
    // workgroups of 256 threads fit a 64 K register file.
    let resident = (REGISTER_FILE / (64.0 * threads)).floor();
    // One round of a rows × columns block: rows · columns · TILE_DEPTH multiply-adds, each thread
    // a 4 × 4 block per depth step from two vec4 reads. A warp's 32 lanes span columns / 4 distinct
    // vec4 of tile_b and 32 / (columns / 4) of tile_a: 16 bytes each, a wavefront per 128 bytes
    // (at least one). Copying the slices: (rows + columns) · TILE_DEPTH / threads scalar stores per
    // thread, a wavefront each along the rows and two (a 2-way bank conflict) along the depth; 1.5
    // on average. Each round loads both slices from device memory (X, δ, H, W: L2-resident mostly;
    // counted as DRAM traffic to stay on the safe side).
    let gemm = |workgroups: f64, rounds: f64, (rows, cols): (usize, usize)| {
        let (rows, cols) = (rows as f64, cols as f64);
        let lanes_across = (cols / 4.0).min(32.0);
        let a_reads = (32.0 / lanes_across * 16.0 / 128.0).max(1.0);
        let b_reads = (lanes_across * 16.0 / 128.0).max(1.0);
        let copies = (rows + cols) * depth / threads;
        Launch {
            workgroups,
            threads,
            resident,
            flops: rounds * 2.0 * rows * cols * depth,
            shared_wavefronts: rounds * warps * (depth * (a_reads + b_reads) + copies * 1.5),
            barriers: 2.0 * rounds,
            dram_bytes: rounds * (rows + cols) * depth * 4.0,
            ..Default::default()
        }
    };
    // The batch, sampled once per step by features.wgsl: one thread per chunk of 16 features (a
    // warp's lanes draw chunks of one or two samples: counted as [`chunk_calls_per_warp`] of the
    // sample's average chunk).
    let chunks = w.features.div_ceil(CHUNK_FEATURES) as f64;
    let sampler_wg = SAMPLER_WG as f64;
    let mean_calls = w
        .densities
        .iter()
        .map(|&d| philox_calls_per_sample(w.features, d) / chunks)
        .sum::<f64>()
        / count;
    let sample = Launch {
        workgroups: sampler_workgroups(BATCH, w.features) as f64 * count,
        threads: sampler_wg,
        resident: 16.0,
        int_ops: sampler_wg * mean_calls * PHILOX_OPS,
        dram_bytes: sampler_wg * 4.0 * CHUNK_FEATURES as f64,
        ..Default::default()
    };
    let (hr, hc) = shape.hidden_block;
    let hidden_groups = blocks(BATCH, hr) * blocks(w.hidden, hc) * count;
    let square = (tile, tile);
    let slices = shape.gradient_slices as f64;
    let (gr, gc) = shape.gradient_block;
    let launches = vec![
        sample,
        // H = X Wᵀ.
        gemm(hidden_groups, rounds(w.features), shape.hidden_block),
        // Y = b + H W, with δ and the loss in its epilogue.
        gemm(
            blocks(w.features, tile) * blocks(BATCH, tile) * count,
            rounds(w.hidden),
            square,
        ),
        // dH = δ Wᵀ.
        gemm(hidden_groups, rounds(w.features), shape.hidden_block),
        // ∂W = [H | dH]ᵀ [δ ; X]: one product over twice the batch, in `slices` slices of it.
        gemm(
            blocks(w.features, gc) * blocks(w.hidden, gr) * count * slices,
            (2.0 * rounds(BATCH) / slices).ceil(),
            shape.gradient_block,
        ),
        // Adam: one thread per parameter, summing the slices' partial gradients in order.
        Launch {
            workgroups: (count * (w.features * w.hidden + w.features) as f64 / 256.0).ceil(),
            threads: 256.0,
            resident: 8.0,
            flops: 256.0 * (20.0 + slices),
            dram_bytes: 256.0 * 4.0 * (6.0 + slices),
            ..Default::default()
        },
    ];
    Step {
        kernel: Kernel::Tiled,
        launches,
        dispatches: 6.0,
    }
}

/// The step tms's trainer would run for `w` on a hardware adapter.
fn tms_step(w: &Workload) -> Step {
    let instances = w.densities.len();
    let fits = fits_register(w.features, w.hidden);
    match default_kernel(w.features, w.hidden, BATCH, instances, false, fits) {
        Kernel::Split { slices } => register_step(
            w,
            slices as usize,
            Kernel::Split { slices },
            default_cooperative(w.features),
        ),
        Kernel::Register => register_step(w, 1, Kernel::Register, default_cooperative(w.features)),
        Kernel::Tiled => tiled_step(w, host_shape(w.hidden)),
    }
}

/// The PyTorch loop (benches/pytorch_loop.py) on `gpu`: about 45 kernels per step issued by the
/// host without synchronising, so a step costs the larger of the issue time and the GPU time. GPU
/// time: about 40 elementwise passes over the [B, instances, n] tensor (rand, compare, where, loss
/// and their backward) plus the two einsums and their backward as batched SGEMMs at 60 % of peak.
fn torch_seconds(w: &Workload, gpu: &Gpu) -> f64 {
    let instances = w.densities.len() as f64;
    let elements = BATCH as f64 * instances * w.features as f64;
    let passes = 40.0 * elements * 4.0 / gpu.dram_bytes_per_s;
    let gemm = 10.0 * BATCH as f64 * (w.features * w.hidden) as f64 * instances;
    let gpu_time = passes + gemm / (0.6 * gpu.fp32_peak());
    (45.0 * gpu.torch_launch_s).max(gpu_time)
}

fn main() {
    println!(
        "MODELLED, not measured (no such GPU here; about ×2 uncertainty): ms per training step.\n"
    );
    println!("| workload | kernel | per step: Gint ops | GFLOP | shared wavefronts (M) | dispatches | GPU | tms ms/step | % fp32 peak | PyTorch loop ms/step | PyTorch / tms |");
    println!("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for w in standard_workloads() {
        let step = tms_step(&w);
        let model_flops = w.flops_per_step();
        for gpu in &GPUS {
            let tms = step.seconds(gpu);
            let torch = torch_seconds(&w, gpu);
            println!(
                "| {} | {:?} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {:.1} | {:.3} | {:.1}× |",
                w.name,
                step.kernel,
                step.total(|l| l.int_ops) * 1e-9,
                step.total(|l| l.flops) * 1e-9,
                step.total(|l| l.shared_wavefronts) * 1e-6,
                step.dispatches,
                gpu.name,
                tms * 1e3,
                100.0 * model_flops / tms / gpu.fp32_peak(),
                torch * 1e3,
                torch / tms
            );
        }
    }
    println!("\nThe register kernel's sampler (MODELLED): Philox calls per sample (a warp's calls per lane; one presence call per chunk of 16 features cannot be shared) and tms ms/step with each lane making its own calls (the busiest lane's count of each kind) against the cooperative sampler (the warp's sum over 32 per round, plus the shuffles' ops). The host runs the cooperative one for n > 16 (basic, sweep), the per-lane one at n ≤ 16 (privileged).\n");
    println!("| workload | per-lane calls/sample | cooperative calls/sample | bookkeeping int ops/sample | GPU | per-lane ms/step | cooperative ms/step | PyTorch / tms, per-lane → cooperative |");
    println!("|---|---:|---:|---:|---|---:|---:|---|");
    for w in standard_workloads() {
        let kernel = tms_step(&w).kernel;
        let slices = match kernel {
            Kernel::Split { slices } => slices as usize,
            Kernel::Register => 1,
            Kernel::Tiled => continue,
        };
        let mean = |f: &dyn Fn(f64) -> f64| {
            w.densities.iter().map(|&d| f(d)).sum::<f64>() / w.densities.len() as f64
        };
        let per_lane_calls = mean(&|d| philox_calls_per_sample(w.features, d));
        let coop_calls = mean(&|d| cooperative_calls_per_sample(w.features, d).0);
        let coop_ops = mean(&|d| cooperative_calls_per_sample(w.features, d).1);
        let (per_lane, coop) = (
            register_step(&w, slices, kernel, false),
            register_step(&w, slices, kernel, true),
        );
        for gpu in &GPUS {
            let torch = torch_seconds(&w, gpu);
            println!(
                "| {} | {:.2} | {:.2} | {:.0} | {} | {:.3} | {:.3} | {:.1}× → {:.1}× |",
                w.name,
                per_lane_calls,
                coop_calls,
                coop_ops,
                gpu.name,
                per_lane.seconds(gpu) * 1e3,
                coop.seconds(gpu) * 1e3,
                torch / per_lane.seconds(gpu),
                torch / coop.seconds(gpu)
            );
        }
    }
    println!("\nTiled block shapes weighed on the H100 (MODELLED): hidden products' and ∂W's block rows × columns, ∂W's batch slices (summed in order by Adam). Host: the shape the trainer runs.\n");
    println!("| workload | hidden block | ∂W block | ∂W slices | ms/step | % fp32 peak | generate ms | hidden_forward + hidden_backward ms | output_delta ms | gradient ms |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let h100 = &GPUS[0];
    for w in standard_workloads()
        .iter()
        .filter(|w| tms_step(w).kernel == Kernel::Tiled)
    {
        for hidden_block in [(64, 64), (64, 32), (128, 32)] {
            for gradient_block in [(64, 64), (32, 128)] {
                for gradient_slices in [1, 2, 4] {
                    let shape = TiledShape {
                        hidden_block,
                        gradient_block,
                        gradient_slices,
                    };
                    let step = tiled_step(w, shape);
                    let ms = |i: usize| step.launches[i].seconds(h100) * 1e3;
                    let tms = step.seconds(h100);
                    let host = host_shape(w.hidden);
                    let is_host = (host.hidden_block, host.gradient_block, host.gradient_slices)
                        == (hidden_block, gradient_block, gradient_slices);
                    println!(
                        "| {} | {} × {}{} | {} × {} | {} | {:.3} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |",
                        w.name,
                        hidden_block.0,
                        hidden_block.1,
                        if is_host { " (host)" } else { "" },
                        gradient_block.0,
                        gradient_block.1,
                        gradient_slices,
                        tms * 1e3,
                        100.0 * w.flops_per_step() / tms / h100.fp32_peak(),
                        ms(0),
                        ms(1) + ms(3),
                        ms(2),
                        ms(4)
                    );
                }
            }
        }
    }
    println!("\n% fp32 peak: the model's 10·B·n·m flops per instance-step over the step time, against 2 × lanes × units × clock.");
}
