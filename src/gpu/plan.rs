//! What the GPU trainer will do with an experiment on one adapter, decided before any device is
//! opened or any run directory touched: the kernel, its variant, steps per dispatch and instances
//! per shard, or the one-line refusal of what the adapter cannot train.
//!
//! [`GpuPlan::new`] is the only place these rules live and the only way to get a [`GpuPlan`];
//! [`super::GpuTrainer::new`] takes one, so no trainer is built unchecked and none is checked twice.
//! The rules read only the adapter's description ([`AdapterSummary`], the limits the device will be
//! opened with), so [`decide`] is also testable with an adapter that is not there.

use super::abi::{
    loss_tiles, narrow_hidden, sampler_loop_iterations, sampler_workgroups, NARROW_COLS,
    NARROW_ROWS, REGISTER_WG, TILE, TILE_COPIES, TILE_DEPTH, TILE_THREADS,
};
use super::register::{self, fits_register, Variant};
use super::{find_adapter, AdapterSummary};
use crate::error::UsageError;
use crate::experiment::Experiment;
use crate::features::CHUNK_FEATURES;

/// Steps one small-model dispatch runs at most: long enough to amortise the launch, short enough to
/// stay far from GPU watchdog timeouts.
const SMALL_DISPATCH_STEPS: u32 = 100;
/// Loop iterations one invocation may run on a software adapter. Mesa's llvmpipe (lavapipe, and its
/// OpenGL driver) counts every loop back-edge of an invocation against one limit of 65,535 and then
/// silently leaves all loops: a long small-model dispatch would stop training midway. Dispatches
/// there are cut to stay below this, with a margin for the estimate in [`register::loop_iterations`].
pub const LOOP_BUDGET: u64 = 50_000;
/// wgpu does not report an adapter's compute units: a hardware GPU is taken to have about this many
/// (an H100 has 132 SMs, an RTX 4090 128), so that fewer instances than this leave most of it idle
/// unless each is split over several workgroups, enough to give it about this many in all.
const SPLIT_BELOW: usize = 128;
/// Log points per command buffer (sizes the loss buffers).
pub(super) const LOG_SLOTS: usize = 64;

/// The kernels that train an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Generated per (n, m), gradient sums in registers: m·n + n ≤ 256.
    Register,
    /// The register kernel with each instance split over `slices` workgroups of samples.
    Split { slices: u32 },
    /// `shaders/tiled.wgsl` + `shaders/tiled_adam.wgsl`, any size.
    Tiled,
}

/// Choices a caller may make about the device and the kernels.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Adapter number or name substring (case-insensitive); the best adapter when absent.
    pub adapter: Option<String>,
    /// A cap on the bytes of one storage binding below the adapter's (tests force splits with it).
    pub max_binding_bytes: Option<u64>,
    /// Use this kernel even where a faster one fits (tests); the fastest that fits when absent.
    pub kernel: Option<Kernel>,
    /// Keep W in registers in the register kernel (default: on software adapters only).
    pub w_in_registers: Option<bool>,
    /// Sum the register kernel's gradients with subgroup operations (default: where the adapter has
    /// them; `Some(false)` forces the workgroup reduction).
    pub subgroups: Option<bool>,
    /// Share the register kernel's Philox calls among the lanes of a subgroup
    /// ([`Variant::cooperative`]; default: with subgroup operations, for plain distributions of
    /// more than 16 features; `Some(true)` forces it where it can run, `Some(false)` keeps one
    /// lane's calls to itself).
    pub cooperative: Option<bool>,
    /// Run at most this many steps per small-model dispatch (tests: many dispatches quickly).
    pub max_steps_per_dispatch: Option<u32>,
}

/// What [`decide`] settles for one experiment on one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub kernel: Kernel,
    /// The register kernel's variant (unused by the tiled path).
    pub variant: Variant,
    /// Steps per dispatch (1 for the split and tiled kernels).
    pub per_dispatch: u32,
    /// Instances per shard: as many as keep every buffer within one storage binding and the
    /// instance grid dimension within the adapter's workgroups per dimension.
    pub per_shard: usize,
}

/// An experiment checked against the adapter that will train it, with the [`Decision`]: what
/// [`super::GpuTrainer::new`] takes.
#[derive(Clone, Debug)]
pub struct GpuPlan {
    pub(super) exp: Experiment,
    /// The adapter's number in [`super::list_adapters`].
    pub(super) adapter: usize,
    pub(super) decision: Decision,
}

impl GpuPlan {
    /// Checks `exp` against the adapter `options` names (the best one when none): refused, as a
    /// usage error, when there is no such adapter or the adapter cannot train it.
    pub fn new(exp: &Experiment, options: &GpuOptions) -> Result<GpuPlan, UsageError> {
        let (adapter, summary) = find_adapter(options.adapter.as_deref())?;
        Ok(GpuPlan {
            decision: decide(exp, &summary, options)?,
            exp: exp.clone(),
            adapter,
        })
    }

    /// The experiment checked.
    pub fn experiment(&self) -> &Experiment {
        &self.exp
    }

    /// The kernels that will train the experiment.
    pub fn kernel(&self) -> Kernel {
        self.decision.kernel
    }
}

/// The kernel that trains `instances` models of n features, m hidden dimensions and `batch`
/// samples: the register kernel where it fits (`register_fits`: the model, and on software
/// adapters the loop budget), split over several workgroups per instance on hardware adapters
/// that few instances would leave idle; the tiled kernels otherwise.
pub fn default_kernel(
    n: usize,
    m: usize,
    batch: usize,
    instances: usize,
    software: bool,
    register_fits: bool,
) -> Kernel {
    let slices = batch
        .div_ceil(REGISTER_WG as usize)
        .min(SPLIT_BELOW.div_ceil(instances)) as u32;
    if !register_fits || !fits_register(n, m) {
        Kernel::Tiled
    } else if !software && slices > 1 {
        Kernel::Split { slices }
    } else {
        Kernel::Register
    }
}

/// Whether the register kernel shares its Philox calls among a subgroup's lanes by default (where
/// it can: subgroup operations, a plain distribution) for n features: above one chunk of 16, where
/// it pays on lavapipe (measured) and on the modelled GPUs (benches/cost_model.rs); at one chunk
/// the model has it a little slower.
pub fn default_cooperative(n: usize) -> bool {
    n > CHUNK_FEATURES
}

/// Decides how `adapter` trains `exp`, or refuses it in one line: a model whose largest buffer per
/// instance is over the adapter's storage binding, a grid over its workgroups per dimension, and on
/// a software adapter (llvmpipe, lavapipe) a step over the loop budget on the path it would take;
/// also a kernel or reduction `options` forces where it cannot train the model.
pub fn decide(
    exp: &Experiment,
    adapter: &AdapterSummary,
    options: &GpuOptions,
) -> Result<Decision, UsageError> {
    let (n, m, batch) = (exp.features, exp.hidden, exp.batch);
    let software = adapter.software();
    let refuse = |why: String| Err(UsageError(why));
    // On llvmpipe a step of a one-workgroup-per-instance kernel must fit the loop budget.
    let in_budget = |iterations: u64| !software || iterations <= LOOP_BUDGET;
    let with_subgroups = Variant {
        w_in_registers: options.w_in_registers.unwrap_or(software),
        subgroup_min_size: adapter.subgroup_min_size,
        split: false,
        hidden_relu: exp.model.hidden_relu(),
        abs: exp.model.untied(),
        cooperative: false,
    };
    // Subgroup partial sums take a row per subgroup: fall back where they do not fit.
    let subgroups_fit = adapter.subgroup_min_size.is_some()
        && register::workgroup_bytes(n, m, with_subgroups) <= adapter.max_workgroup_storage;
    if options.subgroups == Some(true) && !subgroups_fit {
        return refuse(format!(
            "the GPU adapter {} cannot sum n = {n}, m = {m} with subgroup operations",
            adapter.name
        ));
    }
    let variant = match subgroups_fit && options.subgroups != Some(false) {
        true => with_subgroups,
        false => Variant {
            subgroup_min_size: None,
            ..with_subgroups
        },
    };
    // Cooperative calls need subgroup operations and the plain distribution's presence bytes
    // (results/bench/bench.md, "Cooperative random calls in the register kernel").
    let can_cooperate = variant.subgroup_min_size.is_some() && exp.distribution().is_plain();
    if options.cooperative == Some(true) && !can_cooperate {
        return refuse(format!(
            "the GPU adapter {} cannot share the sampler's calls among subgroup lanes for this experiment (it needs subgroup operations and a plain feature distribution)",
            adapter.name
        ));
    }
    let variant = Variant {
        cooperative: can_cooperate && options.cooperative.unwrap_or(default_cooperative(n)),
        ..variant
    };
    // The register kernel's loop iterations per step, its samples' draws included.
    let sampler = match variant.cooperative {
        true => register::cooperative_loop_iterations(n),
        false => sampler_loop_iterations(&exp.distribution(), n),
    };
    let register_iterations = register::loop_iterations(n, m, batch, variant)
        + batch.div_ceil(REGISTER_WG as usize) as u64 * sampler;
    let register_fits = register::fits(n, m, variant) && in_budget(register_iterations);
    let kernel = match options.kernel {
        Some(Kernel::Register) if !register_fits => {
            return refuse(format!(
                "the register kernel cannot train n = {n}, m = {m}, batch {batch}"
            ))
        }
        Some(Kernel::Split { slices })
            if !fits_register(n, m) || slices == 0 || exp.model.untied() =>
        {
            return refuse(format!(
                "the split register kernel cannot train --model {} with n = {n}, m = {m} in {slices} slices",
                exp.model.name()
            ))
        }
        Some(kernel) => kernel,
        // The abs model's U and its bias offset are the whole-instance register kernel's, not
        // the split one's (shaders/split_adam.wgsl knows one W).
        None if exp.model.untied() && register_fits => Kernel::Register,
        None if exp.model.untied() => Kernel::Tiled,
        None => default_kernel(n, m, batch, exp.instances.len(), software, register_fits),
    };
    let variant = Variant {
        split: matches!(kernel, Kernel::Split { .. }),
        ..variant
    };
    let max_groups = adapter.max_workgroups_per_dimension as usize;
    // A shard holds as many instances as keep the largest binding within one binding.
    let per_instance = bytes_per_instance(exp, kernel);
    let max_binding = adapter
        .max_storage_binding
        .min(adapter.max_buffer)
        .min(options.max_binding_bytes.unwrap_or(u64::MAX));
    let per_shard = ((max_binding / per_instance) as usize).min(max_groups);
    if per_shard == 0 {
        return refuse(format!("one instance needs {per_instance} bytes in one storage buffer, more than the GPU adapter's {max_binding}; use --backend cpu or a smaller --batch"));
    }
    let tiled = kernel == Kernel::Tiled;
    if tiled && !in_budget(tiled_loop_iterations(exp)) {
        return refuse(format!(
            "n = {n}, m = {m}, batch {batch} needs more loop iterations per invocation than the software adapter {} runs; use --backend cpu",
            adapter.name
        ));
    }
    let samplers = sampler_workgroups(batch, n);
    if tiled && samplers > max_groups {
        return refuse(format!("batch {batch} of {n} features needs {samplers} sampler workgroups, more than the adapter's {max_groups} per dimension"));
    }
    let sample_tiles = batch.div_ceil(TILE as usize);
    if tiled && sample_tiles > max_groups {
        return refuse(format!("batch {batch} needs {sample_tiles} tiles of samples, more than the adapter's {max_groups} workgroups per dimension"));
    }

    let per_dispatch = if kernel != Kernel::Register {
        1
    } else if software {
        (LOOP_BUDGET / register_iterations).clamp(1, u64::from(SMALL_DISPATCH_STEPS)) as u32
    } else {
        SMALL_DISPATCH_STEPS
    }
    .min(options.max_steps_per_dispatch.unwrap_or(u32::MAX).max(1));
    Ok(Decision {
        kernel,
        variant,
        per_dispatch,
        per_shard,
    })
}

/// An upper estimate of the loop iterations of the busiest invocation of the tiled path: the
/// gradient tile's loop over the batch, the hidden tiles' loop over features, the loss sum over
/// output_delta's tiles, or the sampler pass with the distribution's own loops (exactly-K ranks
/// every mask word of the sample), counted as the SAE trainer counts them.
fn tiled_loop_iterations(exp: &Experiment) -> u64 {
    let (n, m, batch) = (exp.features, exp.hidden, exp.batch);
    let depth = TILE_DEPTH as usize;
    // A round: its copies, the multiply-adds over its depth, and the loop's own back-edge (the
    // hidden products' narrow blocks copy NARROW_ROWS + NARROW_COLS rows).
    let round = TILE_COPIES as usize + depth + 1;
    let threads = (TILE_THREADS * TILE_THREADS) as usize;
    let narrow_copies = (NARROW_ROWS + NARROW_COLS) as usize * depth / threads;
    let hidden_round = if narrow_hidden(m) {
        narrow_copies + depth + 1
    } else {
        round + TILE_COPIES as usize
    };
    // The epilogue's loops over a thread's 4 × 4 outputs.
    let epilogue = 4 + 16;
    let gradient = 2 * batch.div_ceil(depth) * (round + depth) + epilogue + 4;
    let hidden = n.div_ceil(depth) * hidden_round + epilogue;
    let delta = m.div_ceil(depth) * round + 4 + epilogue + 8;
    let losses = loss_tiles(n, batch);
    let sampler = sampler_loop_iterations(&exp.distribution(), n) as usize + CHUNK_FEATURES;
    gradient.max(hidden).max(delta).max(losses).max(sampler) as u64
}

/// Bytes per instance of the largest storage binding `kernel` needs to train `exp`: the parameters
/// and moments, the shard's words, the losses, and the split kernel's partial sums or the tiled
/// path's H and dH, δ and X, and gradients and partial losses.
fn bytes_per_instance(exp: &Experiment, kernel: Kernel) -> u64 {
    let (n, m, batch) = (exp.features, exp.hidden, exp.batch);
    let count = exp.params_per_instance();
    let mut bytes = vec![3 * count * 4, (n + 1) * 4, LOG_SLOTS * 4];
    if let Kernel::Split { slices } = kernel {
        bytes.push(slices as usize * (count + 2) * 4);
    }
    if kernel == Kernel::Tiled {
        bytes.extend([
            2 * batch * m * 4,
            batch * n * 4,
            (count + loss_tiles(n, batch)) * 4,
        ]);
    }
    *bytes.iter().max().expect("non-empty") as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Settings;

    /// lavapipe as `tms devices` describes it (Mesa 22.3, no subgroups).
    fn software_adapter() -> AdapterSummary {
        AdapterSummary {
            name: "llvmpipe".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            max_storage_binding: 1 << 27,
            max_buffer: 1 << 30,
            max_workgroup_storage: 32 << 10,
            max_invocations: 1024,
            max_workgroups_per_dimension: 65535,
            subgroup_min_size: None,
        }
    }

    fn experiment(features: usize, hidden: usize, batch: usize) -> Experiment {
        Settings {
            features: Some(features),
            hidden: Some(hidden),
            batch: Some(batch),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    /// A model that fits the register kernel by size but not by the software adapter's loop budget
    /// goes to the tiled path, and is refused where that is over the budget too: the same rule the
    /// trainer follows, so the refusal comes before the run directory is claimed.
    #[test]
    fn the_path_and_its_budget_are_decided_together() {
        let (software, options) = (software_adapter(), GpuOptions::default());
        let small = decide(&experiment(20, 5, 1024), &software, &options).unwrap();
        assert_eq!(small.kernel, Kernel::Register);
        // 1,875 runs of 64 samples per step are over the register kernel's budget, and 7,500
        // rounds of 16 samples over the tiled gradient's.
        let refused = decide(&experiment(20, 5, 120_000), &software, &options).unwrap_err();
        assert!(refused.0.contains("loop iterations"), "{}", refused.0);
        // On a hardware adapter the same model is the split register kernel's.
        let hardware = AdapterSummary {
            device_type: "DiscreteGpu".into(),
            ..software
        };
        let fast = decide(&experiment(20, 5, 120_000), &hardware, &options).unwrap();
        assert!(matches!(fast.kernel, Kernel::Split { .. }), "{fast:?}");
    }
}
