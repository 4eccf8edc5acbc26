//! The GPU backend: adapter discovery and device setup on any wgpu backend, the buffer and pipeline
//! plumbing shared by the kernels, and the [`GpuTrainer`].
//!
//! Reading order: [`abi`] (the structs, constants and bindings the host shares with the kernels),
//! [`shaders`] (the WGSL sources), [`register`] (the small-model kernel generated per model size), this module (device, layout, buffers),
//! [`plan`] (what an adapter can train and how, decided before anything is written),
//! [`trainer`] (the training loop on the device), [`batch`] (the sampler kernel the tests check
//! against the CPU). No optional feature is required, so the same kernels run on Vulkan, Metal, DX12
//! and GL; where the adapter has them, subgroup operations sum the small-model gradients and
//! timestamp queries time the work.

pub mod abi;
pub mod batch;
pub mod plan;
pub mod register;
pub mod shaders;
pub mod trainer;

pub use plan::{GpuOptions, GpuPlan, Kernel};
pub use trainer::GpuTrainer;

use crate::error::UsageError;
use abi::{
    BATCH_BINDING, DELTA_BINDING, DISPATCH_BINDING, GRAD_BINDING, HIDDEN_BINDING, LOSSES_BINDING,
    SHARD_BINDING, STATE_BINDING,
};
use anyhow::Context;
use bytemuck::Pod;
use wgpu::util::DeviceExt;

/// An adapter as `tms devices` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub max_storage_binding: u64,
    /// The largest buffer the adapter creates (a binding is also within it).
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub max_workgroups_per_dimension: u32,
    /// The smallest subgroup the adapter may run, where it has subgroup operations.
    pub subgroup_min_size: Option<u32>,
}

impl AdapterSummary {
    /// A CPU implementation (llvmpipe, lavapipe): its loops stop after 65,535 iterations in all
    /// per invocation, and it trains slower than the CPU trainer.
    pub fn software(&self) -> bool {
        self.device_type == "Cpu"
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}): storage binding {} MiB, workgroup storage {} KiB, {} invocations per workgroup, subgroups {}",
            self.name,
            self.backend,
            self.device_type,
            self.max_storage_binding >> 20,
            self.max_workgroup_storage >> 10,
            self.max_invocations,
            if self.subgroup_min_size.is_some() {
                "yes"
            } else {
                "no"
            }
        )
    }
}

/// A wgpu instance on the backends WGPU_BACKEND names (all by default).
fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn summary(adapter: &wgpu::Adapter) -> AdapterSummary {
    let (info, limits) = (adapter.get_info(), adapter.limits());
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations: limits.max_compute_invocations_per_workgroup,
        max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        subgroup_min_size: adapter
            .features()
            .contains(wgpu::Features::SUBGROUP)
            .then_some(info.subgroup_min_size),
    }
}

/// Every adapter wgpu finds, best first. Enumerated once per process: checking the flags and opening
/// the device then see the same list, and drivers are asked only once (slow on some, e.g. lavapipe).
fn adapters() -> &'static [wgpu::Adapter] {
    static FOUND: std::sync::OnceLock<Vec<wgpu::Adapter>> = std::sync::OnceLock::new();
    FOUND.get_or_init(enumerate_adapters)
}

fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    let mut found = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    // Real GPUs before software rasterisers; the sort is stable, so wgpu's order breaks ties.
    found.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    found
}

/// Which of the adapters named `names` (best first) `want` picks: an index into `tms devices`' list,
/// or the first whose name contains it (case-insensitive).
pub fn adapter_position(names: &[String], want: &str) -> Option<usize> {
    match want.trim().parse::<usize>() {
        Ok(index) => (index < names.len()).then_some(index),
        Err(_) => names
            .iter()
            .position(|name| name.to_lowercase().contains(&want.to_lowercase())),
    }
}

/// The adapters `tms devices` lists, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().map(summary).collect()
}

/// The adapter `want` picks (see [`adapter_position`]; the best one when `None`) as its number in
/// [`list_adapters`] and its description; refused when there is none.
pub fn find_adapter(want: Option<&str>) -> Result<(usize, AdapterSummary), UsageError> {
    let adapters = list_adapters();
    let names: Vec<String> = adapters.iter().map(|a| a.name.clone()).collect();
    let position = match want {
        Some(want) => adapter_position(&names, want).ok_or_else(|| {
            UsageError(format!("no GPU adapter matches {want:?} (see tms devices)"))
        })?,
        None if adapters.is_empty() => {
            return Err(UsageError("no GPU adapter found (see tms devices)".into()))
        }
        None => 0,
    };
    Ok((position, adapters[position].clone()))
}

/// A device and its queue, with the adapter's description and the limits the device was given.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// Bytes of all buffers created through this `Gpu` (what `tms bench` reports as device memory).
    allocated: std::sync::atomic::AtomicU64,
}

impl Gpu {
    /// Opens the best adapter, adapter number `name` of [`list_adapters`], or the first whose name
    /// contains `name` (case-insensitive), asking for
    /// all of its limits (storage binding and workgroup storage are often far above the defaults).
    pub fn open(name: Option<&str>) -> anyhow::Result<Gpu> {
        let all = adapters();
        let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
        let position = match name {
            Some(want) => adapter_position(&names, want)
                .with_context(|| format!("no GPU adapter matches {want:?} (see tms devices)"))?,
            None => 0,
        };
        let adapter = all.get(position).context("no GPU adapter found")?;
        let limits = adapter.limits();
        // Optional features the kernels and the timer use where the adapter has them.
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("tms"),
            required_limits: limits.clone(),
            required_features: features,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .context("cannot open the GPU device")?;
        Ok(Gpu {
            device,
            queue,
            adapter: summary(adapter),
            limits,
            allocated: Default::default(),
        })
    }

    /// Opens adapter number `adapter` of [`list_adapters`] and builds what runs there with
    /// `build`, reporting validation errors (a backend that cannot run `kernels`) as errors, not
    /// panics.
    pub(crate) fn open_and_build<T>(
        adapter: usize,
        kernels: &str,
        build: impl FnOnce(Gpu) -> T,
    ) -> anyhow::Result<T> {
        let gpu = Gpu::open(Some(&adapter.to_string()))?;
        let name = gpu.adapter.name.clone();
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = build(gpu);
        if let Some(error) = pollster::block_on(scope.pop()) {
            anyhow::bail!(
                "the GPU adapter {name} cannot run the {kernels}: {}",
                error.to_string().replace('\n', " ")
            );
        }
        Ok(built)
    }

    /// Whether the device can time passes with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Bytes of all buffers created so far.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, buffer: wgpu::Buffer) -> wgpu::Buffer {
        self.allocated
            .fetch_add(buffer.size(), std::sync::atomic::Ordering::Relaxed);
        buffer
    }

    /// A storage buffer holding `data` (also a copy source, for read-back).
    pub fn storage<T: Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        self.count(
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                }),
        )
    }

    /// An uninitialised storage buffer of `bytes` (at least 16, so that unused bindings stay valid).
    pub fn storage_zeroed(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.count(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A buffer the host maps to read results back.
    pub fn readback(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.count(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Waits for the queue, then copies the first `len` values out of a mapped read-back buffer.
    pub fn read<T: Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> anyhow::Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(vec![]);
        }
        let slice = buffer.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = tx.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the GPU")?;
        rx.recv()
            .context("read-back callback dropped")?
            .context("cannot map the read-back buffer")?;
        let values =
            bytemuck::cast_slice::<u8, T>(&slice.get_mapped_range().context("mapped range")?)
                .to_vec();
        buffer.unmap();
        Ok(values)
    }

    /// A compute pipeline for entry point `entry` of kernel file `kernel`, with the shared layout.
    pub(crate) fn pipeline(
        &self,
        layout: &wgpu::PipelineLayout,
        module: &wgpu::ShaderModule,
        entry: &str,
    ) -> wgpu::ComputePipeline {
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    pub(crate) fn module(&self, kernel: &str) -> wgpu::ShaderModule {
        self.module_of(kernel, shaders::assembled(kernel))
    }

    /// A shader module of WGSL `source` (complete, prelude included).
    pub(crate) fn module_of(&self, label: &str, source: String) -> wgpu::ShaderModule {
        self.device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
    }

    /// The one bind group layout every kernel uses (the bindings of [`abi`]): eight storage buffers,
    /// WebGPU's default limit; the dispatch buffer is bound at a dynamic offset, one slot
    /// per dispatch. Kernels declare the subset they use.
    pub(crate) fn layout(&self) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let entry = |binding: u32, read_only: bool, dynamic: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: dynamic,
                min_binding_size: None,
            },
            count: None,
        };
        let entries = [
            entry(STATE_BINDING, false, false),
            entry(SHARD_BINDING, true, false),
            entry(DISPATCH_BINDING, true, true),
            entry(LOSSES_BINDING, false, false),
            entry(HIDDEN_BINDING, false, false),
            entry(DELTA_BINDING, false, false),
            entry(GRAD_BINDING, false, false),
            entry(BATCH_BINDING, false, false),
        ];
        let group = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("tms"),
                entries: &entries,
            });
        let pipeline = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("tms"),
                bind_group_layouts: &[Some(&group)],
                immediate_size: 0,
            });
        (group, pipeline)
    }

    /// The adapter's alignment of dynamic storage offsets (dispatch slots start at its multiples).
    pub(crate) fn storage_alignment(&self) -> u32 {
        self.limits.min_storage_buffer_offset_alignment
    }
}

/// The buffers behind one bind group of the shared layout. The tiled path's `hidden`, `delta` and
/// `grad` are small placeholders elsewhere; every binding gets its own buffer, since one buffer bound
/// both read-only and read-write would be a usage conflict.
pub(crate) struct Bindings<'a> {
    pub state: &'a wgpu::Buffer,
    pub shard: &'a wgpu::Buffer,
    pub dispatch: &'a wgpu::Buffer,
    /// Bytes of one dispatch slot (the size bound at each dynamic offset).
    pub dispatch_stride: u64,
    pub losses: &'a wgpu::Buffer,
    pub hidden: &'a wgpu::Buffer,
    pub delta: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub batch: &'a wgpu::Buffer,
}

impl Gpu {
    pub(crate) fn bind_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        b: Bindings<'_>,
    ) -> wgpu::BindGroup {
        fn whole(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            }
        }
        let entries = [
            whole(STATE_BINDING, b.state),
            whole(SHARD_BINDING, b.shard),
            wgpu::BindGroupEntry {
                binding: DISPATCH_BINDING,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.dispatch,
                    offset: 0,
                    size: wgpu::BufferSize::new(b.dispatch_stride),
                }),
            },
            whole(LOSSES_BINDING, b.losses),
            whole(HIDDEN_BINDING, b.hidden),
            whole(DELTA_BINDING, b.delta),
            whole(GRAD_BINDING, b.grad),
            whole(BATCH_BINDING, b.batch),
        ];
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("tms"),
            layout,
            entries: &entries,
        })
    }
}
