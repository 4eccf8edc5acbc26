//! The GPU trainer of many sparse autoencoders at once (`tms sae --backend gpu`): every SAE of an
//! [`SaeExperiment`], whatever its toy instance, kind and latent count, trains in the same
//! dispatches of `shaders/sae.wgsl`, following [`super::model`]'s maths and [`super::cpu`]'s
//! schedule (Adam, decoder rows renormalised after every step, the same log points).
//!
//! - Data: `shaders/features.wgsl`'s sampler draws each toy instance's batch X from the SAE streams
//!   (the very counters of [`FeatureSource::sae`](crate::features::FeatureSource::sae)), then
//!   `sae_hidden` computes H = X Wᵀ once per toy instance for all its SAEs.
//! - One command buffer runs steps up to the next log point or resampling (at most
//!   [`SUBMIT_STEPS`]), each step a slot of the dispatch buffer at a dynamic storage offset (no
//!   uniform buffers: see `src/gpu/abi.rs`).
//! - Resampling dead latents runs on the host, exactly as on the CPU: after a resampling step the
//!   host reads back the state, the activity counts of the window, that step's H and the
//!   per-sample reconstruction losses, calls [`super::cpu::resample`] for each SAE and uploads the
//!   state again (a few times per run).
//!
//! Results match the CPU trainer's within float rounding (the kernels sum in the CPU's sample
//! order, but may fuse multiplies and adds, and b_dec's encoder term is summed latent-first):
//! `tests/sae.rs` states the tolerance.

use super::cpu::{
    initial_params, logs_after, resample, resamples_after, window_opens_after, SaeState,
};
use super::model::{SaeKind, SaeParams, SaeShape, JUMP_BANDWIDTH};
use super::SaeExperiment;
use crate::error::UsageError;
use crate::features::{presence_threshold, Stream, CHUNK_FEATURES};
use crate::gpu::abi::{
    dispatch_bytes, dispatch_stride, sampler_loop_iterations, sampler_workgroups, shard_bytes,
    shard_words, Config, Params, SaeEntry, SAE_JUMPRELU, SAE_L1, SAE_TOPK, SAE_WG,
};
use crate::gpu::plan::LOOP_BUDGET;
use crate::gpu::{find_adapter, Bindings, Gpu};
use crate::optim::optimizer_constants;
use anyhow::Context;

/// Steps per command buffer at most (sizes the dispatch buffer).
pub const SUBMIT_STEPS: u32 = 1000;

/// The kernels of one step, in order, with the entry point of each.
const PASSES: [&str; 7] = [
    "sae_hidden",
    "sae_encode",
    "sae_select",
    "sae_decode",
    "sae_delta",
    "sae_gradient",
    "sae_update",
];

/// Trains every SAE of `plan` on its adapter; returns their states, in order.
pub fn train(plan: &SaeGpuPlan) -> anyhow::Result<Vec<SaeState>> {
    let mut trainer = SaeGpuTrainer::new(plan)?;
    eprintln!(
        "on the GPU adapter {} ({})",
        trainer.gpu.adapter.name, trainer.gpu.adapter.backend
    );
    trainer.run()
}

/// The device, its buffers and pipelines for one experiment.
pub struct SaeGpuTrainer<'a> {
    exp: &'a SaeExperiment,
    gpu: Gpu,
    blocks: Blocks,
    /// The kernels of a step with their workgroup grids: `generate`, then [`PASSES`] (but
    /// `sae_select` only where there are Top-K SAEs).
    steps: Vec<(wgpu::ComputePipeline, [u32; 3])>,
    /// `sae_loss`, after the last step before a log point.
    loss: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    state: wgpu::Buffer,
    losses: wgpu::Buffer,
    grads: wgpu::Buffer,
    batch: wgpu::Buffer,
    dispatches: wgpu::Buffer,
    dispatch_stride: u64,
    readback: wgpu::Buffer,
}

/// Parameters of an SAE (one of params, m, v): W_enc, b_enc, W_dec, b_dec, log θ.
fn param_count(shape: &SaeShape) -> usize {
    2 * shape.latents * shape.d + 2 * shape.latents + shape.d
}

/// The parameters in [`SaeParams::groups`] order, as the state buffer holds them.
fn flatten(p: &SaeParams, out: &mut Vec<f32>) {
    for group in p.groups() {
        out.extend_from_slice(group);
    }
}

/// The inverse of [`flatten`].
fn unflatten(shape: &SaeShape, data: &[f32]) -> SaeParams {
    let mut p = SaeParams::zeros(shape);
    let mut at = 0;
    for group in p.groups_mut() {
        let len = group.len();
        group.copy_from_slice(&data[at..at + len]);
        at += len;
    }
    p
}

/// A word offset into a buffer, refused past what the kernels' u32 arithmetic addresses.
fn offset(words: usize) -> Result<u32, UsageError> {
    u32::try_from(words).map_err(|_| {
        UsageError("an SAE buffer would exceed 2³² floats; train fewer SAEs at once".into())
    })
}

/// Where every SAE's blocks lie in the buffers they share, and the grids of a step's passes.
#[derive(Clone, Debug)]
struct Blocks {
    /// The toy slots of the batch buffer: global instances first..first + span.
    first: u32,
    span: usize,
    shapes: Vec<SaeShape>,
    entries: Vec<SaeEntry>,
    /// Floats of the state and work buffers.
    state_at: usize,
    work_at: usize,
    /// Floats of all SAEs' params (the gradient buffer's first part), and of all their latents.
    param_total: usize,
    latent_total: usize,
    /// `generate`, then the passes of [`PASSES`].
    grids: [(usize, usize, usize); 8],
}

/// The SAEs of an experiment checked against the adapter that will train them, before anything is
/// written: what [`SaeGpuTrainer::new`] takes.
#[derive(Clone, Debug)]
pub struct SaeGpuPlan<'a> {
    exp: &'a SaeExperiment,
    /// The adapter's number in `tms devices`.
    adapter: usize,
    blocks: Blocks,
}

impl<'a> SaeGpuPlan<'a> {
    /// Lays out every SAE of `exp` for adapter `adapter` (its number or a name substring; the best
    /// adapter when absent), refusing, as a usage error, buffers past the adapter's binding or u32
    /// offsets, grids past its workgroups per dimension, and on a software adapter passes over its
    /// loop budget.
    pub fn new(exp: &'a SaeExperiment, adapter: Option<&str>) -> Result<Self, UsageError> {
        let (position, adapter) = find_adapter(adapter)?;
        let refuse = |why: String| Err(UsageError(why));
        let (n, d, b) = (exp.features, exp.toys[0].hidden, exp.batch);
        let first = exp
            .toys
            .iter()
            .map(|t| t.global_index)
            .min()
            .expect("a toy");
        let last = exp
            .toys
            .iter()
            .map(|t| t.global_index)
            .max()
            .expect("a toy");
        let span = (last - first) as usize + 1;
        let shapes: Vec<SaeShape> = exp.saes.iter().map(|s| exp.shape(s)).collect();
        let saes = shapes.len();
        let latent_total: usize = shapes.iter().map(|s| s.latents).sum();
        let param_total: usize = shapes.iter().map(param_count).sum();

        // Each SAE's blocks, one after the other in each buffer.
        let mut entries = Vec::with_capacity(saes);
        let (mut state_at, mut work_at, mut grad_at, mut active_at) = (0, 0, 0, saes);
        for (q, (spec, shape)) in exp.saes.iter().zip(&shapes).enumerate() {
            let count = param_count(shape);
            entries.push(SaeEntry {
                toy: exp.toys[spec.toy].global_index - first,
                latents: shape.latents as u32,
                kind: match shape.kind {
                    SaeKind::L1 => SAE_L1,
                    SaeKind::Topk => SAE_TOPK,
                    SaeKind::Jumprelu => SAE_JUMPRELU,
                },
                k: shape.k as u32,
                coefficient: shape.coefficient,
                bandwidth: JUMP_BANDWIDTH,
                state: offset(state_at)?,
                work: offset(work_at)?,
                grad: offset(grad_at)?,
                samples: offset(param_total + 2 * b * q)?,
                activity: offset(active_at)?,
            });
            state_at += 3 * count;
            work_at += 3 * b * shape.latents + b * d;
            grad_at += count;
            active_at += shape.latents;
        }
        let sizes = [
            ("state", state_at),
            ("work", work_at),
            ("gradient", param_total + 2 * b * saes),
            ("losses", saes + latent_total),
            ("batch", span * b * (n + d)),
            ("shard", span * (n + 1 + d * n) + 4 + 2 * n + 16),
        ];
        let max_binding = adapter.max_storage_binding.min(adapter.max_buffer);
        for (name, words) in sizes {
            offset(words)?;
            if 4 * words as u64 > max_binding {
                return refuse(format!("the {name} buffer of these SAEs needs {} bytes, more than the adapter's {max_binding} per buffer; train fewer SAEs at once or use --backend cpu", 4 * words));
            }
        }

        // Grids: generate over (sample, chunk of features) × toys, then the passes of PASSES.
        let k_max = shapes.iter().map(|s| s.latents).max().expect("an SAE");
        let p_max = shapes.iter().map(param_count).max().expect("an SAE");
        let wg = SAE_WG as usize;
        let grid = |threads: usize, y: usize, z: usize| (threads.div_ceil(wg), y, z);
        let grids = [
            (sampler_workgroups(b, n), 1, span),
            grid(b * d, 1, span),
            grid(b * k_max, saes, 1),
            grid(b, saes, 1),
            grid(b * d, saes, 1),
            grid(b * k_max, saes, 1),
            grid(p_max, saes, 1),
            (saes, 1, 1),
        ];
        let max_groups = adapter.max_workgroups_per_dimension as usize;
        if let Some(&(x, y, z)) = grids
            .iter()
            .find(|&&(x, y, z)| x.max(y).max(z) > max_groups)
        {
            return refuse(format!("these SAEs need a grid of {x} × {y} × {z} workgroups, more than the adapter's {max_groups} per dimension; train fewer SAEs, fewer latents or a smaller batch at once, or use --backend cpu"));
        }
        // llvmpipe leaves every loop after 65,535 iterations per invocation: the busiest
        // invocation of each pass must stay within the budget.
        if adapter.software() {
            let topk = shapes
                .iter()
                .filter(|s| s.kind == SaeKind::Topk)
                .map(|s| (s.k + 1) * s.latents)
                .max()
                .unwrap_or(0);
            let update = k_max + p_max.div_ceil(wg) + 2 * d * k_max.div_ceil(wg);
            // The sampler: the distribution's own loops (exactly-K ranks every mask word of the
            // sample), then the sixteen features of its chunk.
            let sampler = sampler_loop_iterations(&exp.toy_data, n) as usize + CHUNK_FEATURES;
            let iterations = [sampler, n, d, topk, k_max, 2 * d + k_max, b, update]
                .into_iter()
                .max()
                .expect("passes") as u64;
            if iterations > LOOP_BUDGET {
                return refuse(format!("these SAEs need {iterations} loop iterations per invocation, more than the software adapter {} runs; use --backend cpu", adapter.name));
            }
        }

        Ok(SaeGpuPlan {
            exp,
            adapter: position,
            blocks: Blocks {
                first,
                span,
                shapes,
                entries,
                state_at,
                work_at,
                param_total,
                latent_total,
                grids,
            },
        })
    }
}

impl<'a> SaeGpuTrainer<'a> {
    /// Opens the adapter `plan` was checked against and uploads the initial state.
    pub fn new(plan: &SaeGpuPlan<'a>) -> anyhow::Result<Self> {
        Gpu::open_and_build(plan.adapter, "SAE kernels", |gpu| Self::build(gpu, plan))
    }

    fn build(gpu: Gpu, plan: &SaeGpuPlan<'a>) -> Self {
        let exp = plan.exp;
        let (n, d, b) = (exp.features, exp.toys[0].hidden, exp.batch);
        let blocks = plan.blocks.clone();
        let saes = blocks.shapes.len();
        let streams = [Stream::SaePresence, Stream::SaeMask, Stream::SaeValue];
        let config = Config {
            hidden_relu: u32::from(exp.toy_hidden_relu),
            ..Config::sampler(n, b, blocks.span, blocks.first, exp.toy_seed, streams).training(
                d,
                &exp.optimizer,
                exp.log_every,
                exp.steps,
                1.0 / b as f32,
            )
        };
        // Shard words: (unused, zero) importances, presence thresholds, the layout of the toy run's
        // feature distribution, then W of every toy slot; slots of instances no SAE reads stay
        // empty (threshold 0, W zero).
        let mut thresholds = vec![0u32; blocks.span];
        for toy in &exp.toys {
            thresholds[(toy.global_index - blocks.first) as usize] =
                presence_threshold(toy.density);
        }
        let no_importance = vec![0.0f32; n];
        let mut words = shard_words(
            thresholds.iter().map(|&t| (&no_importance[..], t)),
            &exp.toy_data,
            n,
        );
        let weights_at = words.len();
        words.resize(weights_at + blocks.span * d * n, 0);
        for toy in &exp.toys {
            let slot = (toy.global_index - blocks.first) as usize;
            let w = &mut words[weights_at + slot * d * n..][..d * n];
            for (word, v) in w.iter_mut().zip(&toy.w) {
                *word = v.to_bits();
            }
        }
        let mut state = Vec::with_capacity(blocks.state_at);
        for (q, shape) in blocks.shapes.iter().enumerate() {
            flatten(&initial_params(exp, q), &mut state);
            state.resize(state.len() + 2 * param_count(shape), 0.0);
        }

        let state_buffer = gpu.storage("sae state", &state);
        let losses = gpu.storage_zeroed("sae losses", 4 * (saes + blocks.latent_total) as u64);
        let grads = gpu.storage_zeroed(
            "sae gradients",
            4 * (blocks.param_total + 2 * b * saes) as u64,
        );
        let batch = gpu.storage_zeroed("sae batch", 4 * (blocks.span * b * (n + d)) as u64);
        let work = gpu.storage_zeroed("sae work", 4 * blocks.work_at as u64);
        let table = gpu.storage("sae table", &blocks.entries);
        let dispatch_stride = dispatch_stride(1, gpu.storage_alignment());
        let dispatches =
            gpu.storage_zeroed("sae dispatches", dispatch_stride * u64::from(SUBMIT_STEPS));
        let readback_words = [
            blocks.state_at,
            saes + blocks.latent_total,
            2 * b * saes,
            blocks.span * b * (n + d),
        ]
        .into_iter()
        .max()
        .expect("sizes");
        let readback = gpu.readback("sae read-back", 4 * readback_words as u64);
        let (group_layout, layout) = gpu.layout();
        let bind_group = gpu.bind_group(
            &group_layout,
            Bindings {
                state: &state_buffer,
                shard: &gpu.storage("sae shard", &shard_bytes(&config, &words)),
                dispatch: &dispatches,
                dispatch_stride,
                losses: &losses,
                hidden: &table,
                delta: &work,
                grad: &grads,
                batch: &batch,
            },
        );
        let sampler = gpu.module("features.wgsl");
        let kernels = gpu.module("sae.wgsl");
        let topk = blocks.shapes.iter().any(|s| s.kind == SaeKind::Topk);
        let steps = std::iter::once(gpu.pipeline(&layout, &sampler, "generate"))
            .chain(
                PASSES
                    .iter()
                    .map(|entry| gpu.pipeline(&layout, &kernels, entry)),
            )
            .zip(blocks.grids)
            .zip(std::iter::once("generate").chain(PASSES))
            .filter(|(_, entry)| topk || *entry != "sae_select")
            .map(|((pipeline, (x, y, z)), _)| (pipeline, [x as u32, y as u32, z as u32]))
            .collect();
        SaeGpuTrainer {
            steps,
            loss: gpu.pipeline(&layout, &kernels, "sae_loss"),
            exp,
            gpu,
            blocks,
            bind_group,
            state: state_buffer,
            losses,
            grads,
            batch,
            dispatches,
            dispatch_stride,
            readback,
        }
    }

    /// Writes the dispatch slots of steps `from..to`: each step's index and Adam constants.
    fn write_dispatches(&self, from: u32, to: u32) {
        let mut bytes = vec![];
        for step in from..to {
            let params = Params {
                first_step: step,
                steps: 1,
                log_slot: 0,
            };
            let constants = optimizer_constants(&self.exp.optimizer, 1.0, step);
            bytes.extend(dispatch_bytes(&params, &[constants], self.dispatch_stride));
        }
        self.gpu.queue.write_buffer(&self.dispatches, 0, &bytes);
    }

    /// Records the first `passes` kernels of the step in dispatch slot `slot` (2: its data only).
    fn encode_step(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32, passes: usize) {
        let offset = (u64::from(slot) * self.dispatch_stride) as u32;
        pass.set_bind_group(0, &self.bind_group, &[offset]);
        for (pipeline, [x, y, z]) in self.steps.iter().take(passes) {
            pass.set_pipeline(pipeline);
            pass.dispatch_workgroups(*x, *y, *z);
        }
    }

    /// Runs steps `from..to` in one command buffer and waits for it; with `log`, the loss pass
    /// after the last step and its losses, read back.
    fn submit(&self, from: u32, to: u32, log: bool) -> anyhow::Result<Option<Vec<f32>>> {
        self.write_dispatches(from, to);
        let saes = self.blocks.entries.len();
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let mut step = from;
        while step < to {
            // The activity counts restart before the first step of a window (not at the end of
            // the step before: a resampling after that step reads them first).
            if step > 0 && window_opens_after(self.exp, step - 1) {
                encoder.clear_buffer(&self.losses, 4 * saes as u64, None);
            }
            // One compute pass up to the next such step.
            let mut pass = encoder.begin_compute_pass(&Default::default());
            loop {
                self.encode_step(&mut pass, step - from, self.steps.len());
                step += 1;
                if log && step == to {
                    pass.set_pipeline(&self.loss);
                    pass.dispatch_workgroups(saes.div_ceil(SAE_WG as usize) as u32, 1, 1);
                }
                if step == to || window_opens_after(self.exp, step - 1) {
                    break;
                }
            }
        }
        if log {
            encoder.copy_buffer_to_buffer(&self.losses, 0, &self.readback, 0, 4 * saes as u64);
        }
        self.gpu.queue.submit([encoder.finish()]);
        if log {
            return Ok(Some(self.gpu.read(&self.readback, saes)?));
        }
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU")?;
        Ok(None)
    }

    /// `len` floats of `buffer` from float `at`.
    fn download(&self, buffer: &wgpu::Buffer, at: usize, len: usize) -> anyhow::Result<Vec<f32>> {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 4 * at as u64, &self.readback, 0, 4 * len as u64);
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.read(&self.readback, len)
    }

    /// Every SAE's (params, m, v), read back.
    fn states(&self) -> anyhow::Result<Vec<[SaeParams; 3]>> {
        let data = self.download(&self.state, 0, self.blocks.param_total * 3)?;
        Ok(self
            .blocks
            .entries
            .iter()
            .zip(&self.blocks.shapes)
            .map(|(e, shape)| {
                let count = param_count(shape);
                let block = &data[e.state as usize..][..3 * count];
                [0, 1, 2].map(|i| unflatten(shape, &block[i * count..][..count]))
            })
            .collect())
    }

    /// Uploads every SAE's (params, m, v).
    fn upload(&self, states: &[[SaeParams; 3]]) {
        let mut data = Vec::with_capacity(self.blocks.param_total * 3);
        for state in states {
            for p in state {
                flatten(p, &mut data);
            }
        }
        self.gpu
            .queue
            .write_buffer(&self.state, 0, bytemuck::cast_slice(&data));
    }

    /// Resamples the dead latents of every SAE after step `step` on the host (see the module
    /// doc); returns how many each had.
    fn resample_all(&self, step: u32) -> anyhow::Result<Vec<usize>> {
        let (exp, b, d) = (self.exp, self.exp.batch, self.exp.toys[0].hidden);
        let saes = self.blocks.entries.len();
        let mut states = self.states()?;
        let active = self.download(&self.losses, saes, self.blocks.latent_total)?;
        let samples = self.download(&self.grads, self.blocks.param_total, 2 * b * saes)?;
        let hidden = self.hidden()?;
        let mut counts = vec![];
        for (q, (e, [p, m, v])) in self.blocks.entries.iter().zip(&mut states).enumerate() {
            let active: Vec<u32> = active[e.activity as usize - saes..][..e.latents as usize]
                .iter()
                .map(|&c| c as u32)
                .collect();
            let inputs = &hidden[e.toy as usize * b * d..][..b * d];
            let recon = &samples[2 * b * q..][..b];
            counts.push(resample(exp, q, step, p, [m, v], &active, inputs, recon));
        }
        self.upload(&states);
        Ok(counts)
    }

    /// H of every toy slot from the last step run, [toys][batch][m].
    fn hidden(&self) -> anyhow::Result<Vec<f32>> {
        let (n, d, b) = (self.exp.features, self.exp.toys[0].hidden, self.exp.batch);
        self.download(
            &self.batch,
            self.blocks.span * b * n,
            self.blocks.span * b * d,
        )
    }

    /// The data of step `step` as the kernels see it: (X [toys][batch][n], H [toys][batch][m]),
    /// toys by slot (global instance − the first toy's). Overwrites the batch buffer: for tests,
    /// before or instead of training.
    pub fn sample_batch(&self, step: u32) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        self.write_dispatches(step, step + 1);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.encode_step(&mut pass, 0, 2);
        }
        self.gpu.queue.submit([encoder.finish()]);
        let x_len = self.blocks.span * self.exp.batch * self.exp.features;
        Ok((self.download(&self.batch, 0, x_len)?, self.hidden()?))
    }

    /// Trains to the end: returns every SAE's state.
    pub fn run(&mut self) -> anyhow::Result<Vec<SaeState>> {
        let exp = self.exp;
        let saes = self.blocks.entries.len();
        let mut curves = vec![vec![]; saes];
        let mut resampled = vec![0; saes];
        let mut step = 0;
        while step < exp.steps {
            // Up to and including the next step that logs or resamples.
            let mut to = step;
            while to < exp.steps && to - step < SUBMIT_STEPS {
                to += 1;
                if logs_after(exp, to - 1) || resamples_after(exp, to - 1) {
                    break;
                }
            }
            let last = to - 1;
            if let Some(losses) = self.submit(step, to, logs_after(exp, last))? {
                for (curve, loss) in curves.iter_mut().zip(losses) {
                    curve.push((to, loss));
                }
            }
            if resamples_after(exp, last) {
                for (total, count) in resampled.iter_mut().zip(self.resample_all(last)?) {
                    *total += count;
                }
            }
            step = to;
        }
        Ok(self
            .states()?
            .into_iter()
            .zip(curves)
            .zip(resampled)
            .map(|(([params, m, v], loss_curve), resampled)| SaeState {
                params,
                m,
                v,
                loss_curve,
                resampled,
            })
            .collect())
    }
}
