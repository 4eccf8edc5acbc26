//! The GPU trainer: keeps every instance's W, b and Adam moments on the device and records many
//! training steps per command buffer, reading back only the losses of log points (and the state when
//! [`Trainer::state`] asks).
//!
//! Two kernels do the work ([`Kernel`]):
//! - small models (the seed's n = 20, m = 5; m·n + n ≤ 256): the register kernel generated for each
//!   (n, m) by [`super::register`], one workgroup per instance running up to 100 steps per dispatch
//!   (fewer on llvmpipe, see [`super::plan::LOOP_BUDGET`]) with each thread's gradient sums in
//!   registers; on a hardware GPU with few instances, each instance split over several
//!   workgroups instead (partial sums, then `shaders/split_adam.wgsl`: two dispatches per step);
//! - everything else: `shaders/features.wgsl`, `shaders/tiled.wgsl` + `shaders/tiled_adam.wgsl`, six
//!   dispatches per step: the batch X sampled once into a device buffer, then register-blocked
//!   matrix products over 64 × 64 blocks with H, dH and δ of the batch in device buffers.
//!
//! Splitting: instances are cut into shards, each with its own buffers and bind group, holding as
//! many instances as keep every buffer within one storage binding (the adapter's limit, or a smaller
//! cap for tests) and the instance grid dimension within the adapter's workgroups per dimension.
//! Shards never interact; each dispatch runs over one shard.

use super::abi::{
    dispatch_bytes, dispatch_stride, hidden_block, loss_tiles, narrow_hidden, sampler_workgroups,
    shard_bytes, shard_words, Config, Params, ADAM_WG, TILE,
};
use super::plan::{Decision, GpuPlan, Kernel, LOG_SLOTS};
use super::register;
use super::{shaders, Bindings, Gpu};
use crate::experiment::Experiment;
use crate::features::{presence_threshold, Stream};
use crate::optim::step_table;
use crate::trainer::{is_log_step, LossRecord, TrainState, Trainer};
use anyhow::Context;

/// Steps per command buffer (sizes the step table and the dispatch buffer).
const SUBMIT_STEPS: u32 = 1000;

/// A contiguous range of instances with its own buffers.
struct Shard {
    first: usize,
    count: usize,
    /// [params | first moments | second moments], each [count][m·n + n] with W before b.
    state: wgpu::Buffer,
    /// [log slot][instance]
    losses: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// The device's own clock around each command buffer's compute pass (timestamp queries).
struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// Device seconds of all passes so far.
    seconds: f64,
}

impl Timer {
    fn new(gpu: &Gpu) -> Option<Timer> {
        gpu.has_timestamps().then(|| Timer {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.readback("timestamp read-back", 16),
            period: f64::from(gpu.queue.get_timestamp_period()),
            seconds: 0.0,
        })
    }

    fn pass_writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Records the copy of the pass's two timestamps to the read-back buffer.
    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, 16);
    }

    /// Adds the finished pass's time (call after the queue is done with it).
    fn add(&mut self, gpu: &Gpu) -> anyhow::Result<()> {
        let ticks: Vec<u64> = gpu.read(&self.readback, 2)?;
        self.seconds += ticks[1].saturating_sub(ticks[0]) as f64 * self.period * 1e-9;
        Ok(())
    }
}

/// Trains all instances of an experiment on one GPU.
pub struct GpuTrainer {
    gpu: Gpu,
    exp: Experiment,
    step: u32,
    kernel: Kernel,
    /// register: [train]; split: [train_slice, apply_partials]; tiled: [generate, hidden_forward, output_delta, hidden_backward, gradient, adam_step].
    pipelines: Vec<wgpu::ComputePipeline>,
    shards: Vec<Shard>,
    /// One slot per dispatch of a command buffer: [`Params`] and the step constants of its steps.
    dispatches: wgpu::Buffer,
    dispatch_stride: u64,
    /// Steps per dispatch (1 for the split and tiled kernels).
    per_dispatch: u32,
    loss_readback: wgpu::Buffer,
    state_readback: wgpu::Buffer,
    /// Times every pass where the device has timestamp queries.
    timer: Option<Timer>,
}

impl GpuTrainer {
    /// Opens the adapter `plan` was checked against and uploads `state`.
    pub fn new(plan: &GpuPlan, state: TrainState) -> anyhow::Result<GpuTrainer> {
        Gpu::open_and_build(plan.adapter, "kernels", |gpu| {
            GpuTrainer::build(gpu, plan, state)
        })
    }

    fn build(gpu: Gpu, plan: &GpuPlan, state: TrainState) -> GpuTrainer {
        let exp = &plan.exp;
        let Decision {
            kernel,
            variant,
            per_dispatch,
            per_shard,
        } = plan.decision;
        let (n, m, batch) = (exp.features, exp.hidden, exp.batch);
        let count = exp.weights_per_instance() + n;
        let instances = exp.instances.len();
        let slices = match kernel {
            Kernel::Split { slices } => slices,
            _ => 1,
        };

        let (group_layout, layout) = gpu.layout();
        let pipelines = match kernel {
            Kernel::Tiled => {
                let sampler = gpu.module("features.wgsl");
                let main = gpu.module("tiled.wgsl");
                let adam = gpu.module("tiled_adam.wgsl");
                let mut p = vec![gpu.pipeline(&layout, &sampler, "generate")];
                let (forward, backward) = match narrow_hidden(m) {
                    true => ("hidden_forward_narrow", "hidden_backward_narrow"),
                    false => ("hidden_forward", "hidden_backward"),
                };
                p.extend(
                    [forward, "output_delta", backward, "gradient"]
                        .iter()
                        .map(|e| gpu.pipeline(&layout, &main, e)),
                );
                p.push(gpu.pipeline(&layout, &adam, "adam_step"));
                p
            }
            Kernel::Register => {
                let source = shaders::with_prelude(&register::kernel(n, m, variant));
                let module = gpu.module_of("register kernel", source);
                vec![gpu.pipeline(&layout, &module, "train")]
            }
            Kernel::Split { .. } => {
                let source = shaders::with_prelude(&register::kernel(n, m, variant));
                let module = gpu.module_of("split register kernel", source);
                let adam = gpu.module("split_adam.wgsl");
                vec![
                    gpu.pipeline(&layout, &module, "train_slice"),
                    gpu.pipeline(&layout, &adam, "apply_partials"),
                ]
            }
        };

        let dispatch_stride = dispatch_stride(per_dispatch, gpu.storage_alignment());
        let dispatches = gpu.storage_zeroed(
            "dispatches",
            dispatch_stride * u64::from(SUBMIT_STEPS.div_ceil(per_dispatch)),
        );
        let loss_readback = gpu.readback("loss read-back", (LOG_SLOTS * instances * 4) as u64);
        let state_readback = gpu.readback(
            "state read-back",
            (3 * count * 4 * per_shard.min(instances)) as u64,
        );

        let streams = [Stream::TrainPresence, Stream::TrainMask, Stream::TrainValue];
        let mut shards = vec![];
        for first in (0..instances).step_by(per_shard) {
            let len = per_shard.min(instances - first);
            let shard_config =
                Config::sampler(n, batch, len, exp.global_index(first), exp.seed, streams)
                    .training(
                        m,
                        &exp.optimizer,
                        exp.log_every,
                        exp.steps,
                        1.0 / (batch * n) as f32,
                    );
            let config = Config {
                slices,
                relu: u32::from(exp.model.output_relu()),
                hidden_relu: u32::from(exp.model.hidden_relu()),
                untied: u32::from(exp.model.untied()),
                ..shard_config
            };
            let inst = &exp.instances[first..first + len];
            let words = shard_words(
                inst.iter()
                    .map(|i| (&i.importance[..], presence_threshold(i.density))),
                &exp.distribution(),
                n,
            );
            let state_buffer = gpu.storage("state", &pack(&state, exp, first, len));
            let losses = gpu.storage_zeroed("losses", (LOG_SLOTS * len * 4) as u64);
            let (hidden, delta, grad, samples) = match kernel {
                Kernel::Tiled => (
                    gpu.storage_zeroed("hidden", (2 * len * batch * m * 4) as u64),
                    gpu.storage_zeroed("delta", (len * batch * n * 4) as u64),
                    gpu.storage_zeroed(
                        "gradients",
                        (len * (count + loss_tiles(n, batch)) * 4) as u64,
                    ),
                    gpu.storage_zeroed("batch", (len * batch * n * 4) as u64),
                ),
                _ => (
                    gpu.storage_zeroed("unused", 16),
                    gpu.storage_zeroed("unused", 16),
                    gpu.storage_zeroed(
                        "partials",
                        (len * slices as usize * (count + 2) * 4) as u64,
                    ),
                    gpu.storage_zeroed("unused", 16),
                ),
            };
            let bind_group = gpu.bind_group(
                &group_layout,
                Bindings {
                    state: &state_buffer,
                    shard: &gpu.storage("shard", &shard_bytes(&config, &words)),
                    dispatch: &dispatches,
                    dispatch_stride,
                    losses: &losses,
                    hidden: &hidden,
                    delta: &delta,
                    grad: &grad,
                    batch: &samples,
                },
            );
            shards.push(Shard {
                first,
                count: len,
                state: state_buffer,
                losses,
                bind_group,
            });
        }
        GpuTrainer {
            exp: exp.clone(),
            step: state.step,
            kernel,
            pipelines,
            shards,
            dispatches,
            dispatch_stride,
            per_dispatch,
            loss_readback,
            state_readback,
            timer: Timer::new(&gpu),
            gpu,
        }
    }

    /// The number of shards the instances were split into.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The kernels that train this experiment.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Whether no submitted work is still in flight on the device (a non-blocking poll): after
    /// [`Trainer::advance`] returns it always is, which is what makes timing `advance` time the work.
    pub fn idle(&self) -> anyhow::Result<bool> {
        let status = self
            .gpu
            .device
            .poll(wgpu::PollType::Poll)
            .context("polling the GPU")?;
        Ok(status.is_queue_empty())
    }

    /// Encodes the dispatches of one dispatch slot for every shard.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32) {
        let (n, m, batch) = (self.exp.features, self.exp.hidden, self.exp.batch);
        let offset = (u64::from(slot) * self.dispatch_stride) as u32;
        for shard in &self.shards {
            pass.set_bind_group(0, &shard.bind_group, &[offset]);
            let count = shard.count as u32;
            match self.kernel {
                Kernel::Register => {
                    pass.set_pipeline(&self.pipelines[0]);
                    pass.dispatch_workgroups(count, 1, 1);
                    continue;
                }
                Kernel::Split { slices } => {
                    pass.set_pipeline(&self.pipelines[0]);
                    pass.dispatch_workgroups(count, slices, 1);
                    pass.set_pipeline(&self.pipelines[1]);
                    pass.dispatch_workgroups(count, 1, 1);
                    continue;
                }
                Kernel::Tiled => {}
            }
            let tiles = |len: usize| len.div_ceil(TILE as usize) as u32;
            // The hidden products' blocks: samples × hidden units.
            let (rows, cols) = hidden_block(m);
            let hidden_grid = (m.div_ceil(cols) as u32, batch.div_ceil(rows) as u32, count);
            let params = self.exp.params_per_instance();
            let adam_groups = (shard.count * params).div_ceil(ADAM_WG as usize);
            let adam_x =
                adam_groups.min(self.gpu.limits.max_compute_workgroups_per_dimension as usize);
            let samplers = sampler_workgroups(batch, n) as u32;
            let grids = [
                (samplers, 1, count),
                hidden_grid,
                (tiles(n), tiles(batch), count),
                hidden_grid,
                (
                    tiles(n),
                    tiles(m) * self.exp.model.weight_rows(1) as u32,
                    count,
                ),
                (adam_x as u32, adam_groups.div_ceil(adam_x) as u32, 1),
            ];
            for (pipeline, (x, y, z)) in self.pipelines.iter().zip(grids) {
                pass.set_pipeline(pipeline);
                pass.dispatch_workgroups(x, y, z);
            }
        }
    }

    /// Runs steps `from..to` (at most SUBMIT_STEPS of them with at most LOG_SLOTS log points) in one
    /// command buffer and waits for it (so that benchmarks time completed work).
    fn submit(&mut self, from: u32, to: u32, logs: &[u32]) -> anyhow::Result<Vec<LossRecord>> {
        let constants = step_table(&self.exp, from, to);
        let per_dispatch = self.per_dispatch;
        let mut bytes = vec![];
        let mut first = from;
        while first < to {
            let steps = per_dispatch.min(to - first);
            let params = Params {
                first_step: first,
                steps,
                log_slot: logs.iter().filter(|&&s| s < first).count() as u32,
            };
            let at = (first - from) as usize;
            bytes.extend(dispatch_bytes(
                &params,
                &constants[at..at + steps as usize],
                self.dispatch_stride,
            ));
            first += steps;
        }
        let slots = (bytes.len() as u64 / self.dispatch_stride) as u32;
        let gpu = &self.gpu;
        gpu.queue.write_buffer(&self.dispatches, 0, &bytes);

        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("steps"),
                timestamp_writes: self.timer.as_ref().map(Timer::pass_writes),
            });
            for slot in 0..slots {
                self.encode(&mut pass, slot);
            }
        }
        for shard in &self.shards {
            let bytes = (logs.len() * shard.count * 4) as u64;
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(
                    &shard.losses,
                    0,
                    &self.loss_readback,
                    (LOG_SLOTS * shard.first * 4) as u64,
                    bytes,
                );
            }
        }
        if let Some(timer) = &self.timer {
            timer.resolve(&mut encoder);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU")?;
        if let Some(timer) = &mut self.timer {
            timer.add(&self.gpu)?;
        }
        let gpu = &self.gpu;
        if logs.is_empty() {
            return Ok(vec![]);
        }
        let all: Vec<f32> = gpu.read(&self.loss_readback, LOG_SLOTS * self.exp.instances.len())?;
        Ok(logs
            .iter()
            .enumerate()
            .map(|(slot, &step)| {
                let losses = self
                    .shards
                    .iter()
                    .flat_map(|s| {
                        all[LOG_SLOTS * s.first + slot * s.count..][..s.count]
                            .iter()
                            .copied()
                    })
                    .collect();
                LossRecord { step, losses }
            })
            .collect())
    }
}

/// Shard `first..first + count` of `state` in the device layout.
fn pack(state: &TrainState, exp: &Experiment, first: usize, count: usize) -> Vec<f32> {
    let (n, mn) = (exp.features, exp.weights_per_instance());
    let mut out = Vec::with_capacity(3 * count * (mn + n));
    for (w, b) in [
        (&state.w, &state.b),
        (&state.m_w, &state.m_b),
        (&state.v_w, &state.v_b),
    ] {
        for i in first..first + count {
            out.extend_from_slice(&w[i * mn..(i + 1) * mn]);
            out.extend_from_slice(&b[i * n..(i + 1) * n]);
        }
    }
    out
}

/// The inverse of [`pack`]: writes a shard read back from the device into `state`.
fn unpack(data: &[f32], state: &mut TrainState, exp: &Experiment, first: usize, count: usize) {
    let (n, mn) = (exp.features, exp.weights_per_instance());
    let mut chunks = data.chunks_exact(mn + n);
    for (w, b) in [
        (&mut state.w, &mut state.b),
        (&mut state.m_w, &mut state.m_b),
        (&mut state.v_w, &mut state.v_b),
    ] {
        for i in first..first + count {
            let chunk = chunks.next().expect("a full shard");
            w[i * mn..(i + 1) * mn].copy_from_slice(&chunk[..mn]);
            b[i * n..(i + 1) * n].copy_from_slice(&chunk[mn..]);
        }
    }
}

impl Trainer for GpuTrainer {
    fn device(&self) -> String {
        format!("{} ({})", self.gpu.adapter.name, self.gpu.adapter.backend)
    }

    fn device_bytes(&self) -> u64 {
        self.gpu.allocated_bytes()
    }

    fn device_seconds(&self) -> Option<f64> {
        self.timer.as_ref().map(|t| t.seconds)
    }

    fn advance(&mut self, until: u32) -> anyhow::Result<Vec<LossRecord>> {
        let mut records = vec![];
        while self.step < until {
            let from = self.step;
            let mut to = from;
            let mut logs = vec![];
            while to < until && to - from < SUBMIT_STEPS {
                if is_log_step(&self.exp, to) {
                    if logs.len() == LOG_SLOTS {
                        break;
                    }
                    logs.push(to);
                }
                to += 1;
            }
            records.extend(self.submit(from, to, &logs)?);
            self.step = to;
        }
        Ok(records)
    }

    fn state(&mut self) -> anyhow::Result<TrainState> {
        let exp = &self.exp;
        let (len_w, len_b) = (
            exp.instances.len() * exp.weights_per_instance(),
            exp.instances.len() * exp.features,
        );
        let mut state = TrainState {
            step: self.step,
            w: vec![0.0; len_w],
            b: vec![0.0; len_b],
            m_w: vec![0.0; len_w],
            v_w: vec![0.0; len_w],
            m_b: vec![0.0; len_b],
            v_b: vec![0.0; len_b],
        };
        for shard in &self.shards {
            let len = 3 * shard.count * (exp.weights_per_instance() + exp.features);
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(
                &shard.state,
                0,
                &self.state_readback,
                0,
                (len * 4) as u64,
            );
            self.gpu.queue.submit([encoder.finish()]);
            let data: Vec<f32> = self
                .gpu
                .read(&self.state_readback, len)
                .context("reading the state back")?;
            unpack(&data, &mut state, exp, shard.first, shard.count);
        }
        Ok(state)
    }
}
