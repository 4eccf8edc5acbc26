//! The register kernel for small models (m·n + n ≤ [`REGISTER_MAX_PARAMS`]): WGSL generated on the
//! host for one (n, m), so that every feature, hidden unit and gradient accumulator is a named scalar
//! (straight-line code, no runtime-indexed arrays: registers on a GPU, SIMD values on llvmpipe).
//!
//! One workgroup of [`REGISTER_WG`] threads owns one instance and runs many steps per dispatch. Per
//! step each thread draws its own samples (s = tid, tid + WG, …) from the counters, runs the forward
//! and backward pass and adds the sample's gradient terms h_k δ_j + (Wδ)_k x_j and δ_j to its private
//! accumulators; all-zero samples are only counted (their bias gradient is added in closed form, as
//! the CPU trainer does). The workgroup then sums the accumulators once per step in a fixed order,
//! so runs are deterministic, and the parameters' owners apply Adam. Two ways to sum:
//! - with subgroup operations (where the adapter has them): `subgroupAdd` of every accumulator, one
//!   row of partial sums per subgroup in workgroup memory, then a sum over the rows in subgroup order;
//! - without (GL, WebGPU without the feature): rounds of [`CHUNK`] values, each thread writing its
//!   accumulators to workgroup memory and the first threads summing them in thread order.
//!
//! Few instances on a big GPU ([`Variant::split`]): each instance is split over several
//! workgroups ("slices") that take every slices-th run of WG samples, sum their share as above and
//! write it to a partials buffer; `shaders/split_adam.wgsl` then sums the slices in slice order
//! and applies Adam. Two dispatches per step, but every compute unit busy.
//!
//! The samples' random numbers: per chunk of 16 features a presence call, tie mask calls and value
//! calls (`sample_chunk` in shaders/common.wgsl, one lane's calls in loops), or, where the adapter
//! has subgroup operations and the distribution is plain, the cooperative sampler
//! ([`Variant::cooperative`]): the lanes of a subgroup share out their tie mask and value calls, so
//! a warp pays for their sum over its width instead of its busiest lane's count.
//!
//! Where W lives: on software adapters every thread copies W and b into registers once per step
//! (llvmpipe turns each workgroup-memory access into a loop over its SIMD lanes); on GPUs W is read
//! from workgroup memory at constant addresses, a broadcast that costs no registers.
//!
//! Why generated, not a static file: WGSL has no generics over array sizes that keep values in
//! registers; loops over runtime-indexed private arrays spill to memory (design/gpu-kernels.md §2.3:
//! 12 ms/step with loops against 2.5 ms straight-line on lavapipe).

use super::abi::{REGISTER_MAX_PARAMS, REGISTER_WG};
use crate::features::CHUNK_FEATURES;

/// Values each thread writes per round of the workgroup reduction.
const CHUNK: usize = 32;

/// The choices that shape one generated kernel besides (n, m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// W and b copied into registers each step (software adapters), else read from workgroup memory.
    pub w_in_registers: bool,
    /// Sum with subgroup operations, given the adapter's smallest subgroup size; the workgroup
    /// reduction when `None`.
    pub subgroup_min_size: Option<u32>,
    /// One step per dispatch with each instance split over `Config::slices` workgroups, which
    /// write partial sums for `shaders/split_adam.wgsl` (entry point `train_slice`); else many steps
    /// per dispatch with Adam in the kernel (entry point `train`).
    pub split: bool,
    /// h = ReLU(W x), the privileged-basis model (`relu-hidden`): h and the gradient through it gated
    /// by h > 0, as `crate::model` computes them.
    pub hidden_relu: bool,
    /// The untied abs model: W₁ then U = W₂ᵀ (m × n each) before b, target |x| of signed features
    /// (`features::Values::Signed`, drawn by `sample_chunk`)
    /// (with `hidden_relu`); whole instances only (`split` and `shaders/split_adam.wgsl` know one W).
    pub abs: bool,
    /// The lanes of a subgroup share out their samples' tie mask calls and value calls (plain
    /// distributions, with `subgroup_min_size`): see [`cooperative_sampler`].
    pub cooperative: bool,
}

impl Variant {
    /// Weights per instance: m·n, or 2·m·n for the abs model.
    fn weights(self, n: usize, m: usize) -> usize {
        if self.abs {
            2 * m * n
        } else {
            m * n
        }
    }
}

/// Whether the register kernel takes n features and m hidden dimensions (of a tied model).
pub fn fits_register(n: usize, m: usize) -> bool {
    m * n + n <= REGISTER_MAX_PARAMS as usize
}

/// Whether the register kernel of `variant` takes n features and m hidden dimensions.
pub fn fits(n: usize, m: usize, variant: Variant) -> bool {
    variant.weights(n, m) + n <= REGISTER_MAX_PARAMS as usize
}

/// The loop iterations one invocation runs per step (llvmpipe's budget counts them): its samples,
/// the reduction's loops and the log step's loss.
pub fn loop_iterations(n: usize, m: usize, batch: usize, variant: Variant) -> u64 {
    let wg = REGISTER_WG as usize;
    let values = reduced_values(n, m, variant);
    let reduction = match variant.subgroup_min_size {
        Some(size) => values.div_ceil(wg) * (wg / size as usize + 1),
        None => values.div_ceil(CHUNK) * (wg + 1),
    };
    (batch.div_ceil(wg) + reduction + n + 4) as u64
}

/// Bytes of workgroup memory the kernel declares: the parameters, the partial sums and the totals.
pub fn workgroup_bytes(n: usize, m: usize, variant: Variant) -> u32 {
    ((variant.weights(n, m) + n + part_len(n, m, variant) + reduced_values(n, m, variant)) * 4)
        as u32
}

/// Floats of partial sums: one row of all values per subgroup, or [`CHUNK`] values per thread.
fn part_len(n: usize, m: usize, variant: Variant) -> usize {
    let wg = REGISTER_WG as usize;
    match variant.subgroup_min_size {
        Some(size) => wg / size as usize * reduced_values(n, m, variant),
        None => CHUNK * wg,
    }
}

/// Values the workgroup sums per step: the gradient of W (and U) and b, then the loss and the zero
/// count.
fn reduced_values(n: usize, m: usize, variant: Variant) -> usize {
    variant.weights(n, m) + n + 2
}

/// WGSL text built line by line.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, text: impl AsRef<str>) {
        self.0 += text.as_ref();
        self.0.push('\n');
    }
}

/// `terms` joined by ` + `.
fn sum(terms: impl Iterator<Item = String>) -> String {
    terms.collect::<Vec<_>>().join(" + ")
}

/// The kernel text for n features and m hidden dimensions (to follow the prelude).
pub fn kernel(n: usize, m: usize, variant: Variant) -> String {
    assert!(
        fits(n, m, variant)
            && !(variant.abs && variant.split)
            && !(variant.cooperative && variant.subgroup_min_size.is_none()),
        "n {n}, m {m} is too large for the register kernel {variant:?}"
    );
    let wg = REGISTER_WG as usize;
    let (mn, wn) = (m * n, variant.weights(n, m));
    let count = wn + n;
    let values = reduced_values(n, m, variant);
    let (loss_acc, zero_acc) = (count, count + 1);
    let owned = count.div_ceil(wg);
    let in_registers = variant.w_in_registers;
    let w = |k: usize, j: usize| match in_registers {
        true => format!("w{k}_{j}"),
        false => format!("pshm[{}u]", k * n + j),
    };
    // The output weights: W itself for the tied models, U = W₂ᵀ after W for the abs model.
    let u = |k: usize, j: usize| match (variant.abs, in_registers) {
        (false, _) => w(k, j),
        (true, true) => format!("u{k}_{j}"),
        (true, false) => format!("pshm[{}u]", mn + k * n + j),
    };
    let b = |j: usize| match in_registers {
        true => format!("b{j}"),
        false => format!("pshm[{}u]", wn + j),
    };
    let mut o = Text::default();

    o.line(format!(
        "// Generated by src/gpu/register.rs for n = {n}, m = {m}: {variant:?}."
    ));
    o.line("@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;");
    o.line("@group(0) @binding(LOSSES_BINDING) var<storage, read_write> losses: array<f32>;");
    o.line("// W then b of this workgroup's instance.");
    o.line(format!("var<workgroup> pshm: array<f32, {count}>;"));
    o.line("// Partial sums: one row per subgroup, or CHUNK values per thread of one round.");
    o.line(format!(
        "var<workgroup> part: array<f32, {}>;",
        part_len(n, m, variant)
    ));
    o.line("// The step's sums: ∂W, ∂b, loss, all-zero samples.");
    o.line(format!("var<workgroup> total: array<f32, {values}>;"));
    if variant.split {
        o.line("// [instances][slices][values]: each slice's sums (split_adam.wgsl adds them up).");
        o.line("@group(0) @binding(GRAD_BINDING) var<storage, read_write> partials: array<f32>;");
    }
    o.line("@compute @workgroup_size(REGISTER_WG)");
    let subgroup_inputs = match variant.subgroup_min_size {
        Some(_) => ", @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_id) subgroup: u32, @builtin(num_subgroups) subgroups: u32",
        None => "",
    };
    let entry = if variant.split {
        "train_slice"
    } else {
        "train"
    };
    o.line(format!("fn {entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32{subgroup_inputs}) {{"));
    o.line("    let instance = wid.x;");
    o.line(format!("    let count = {count}u;"));
    o.line("    let total_count = shard.config.instances * count;");
    o.line("    let threshold = threshold_of(instance);");
    o.line("    let global_instance = shard.config.first_instance + instance;");
    for j in 0..n {
        o.line(format!("    let imp{j} = importance_at(instance, {j}u);"));
    }
    // Owners: parameter p = tid + q·WG, with its Adam moments in registers (split: no moments,
    // Adam runs in split_adam.wgsl).
    for q in 0..owned {
        o.line(format!("    let p{q} = tid + {}u;", q * wg));
        if !variant.split {
            o.line(format!("    var m1_{q} = 0.0;"));
            o.line(format!("    var m2_{q} = 0.0;"));
        }
        o.line(format!("    if p{q} < count {{"));
        o.line(format!(
            "        pshm[p{q}] = state[instance * count + p{q}];"
        ));
        if !variant.split {
            o.line(format!(
                "        m1_{q} = state[total_count + instance * count + p{q}];"
            ));
            o.line(format!(
                "        m2_{q} = state[2u * total_count + instance * count + p{q}];"
            ));
        }
        o.line("    }");
    }
    if variant.split {
        o.line("    let slice = wid.y;");
        o.line("    {");
        o.line("        let step = dispatch.params.first_step;");
    } else {
        o.line("    var log_slot = dispatch.params.log_slot;");
        o.line("    for (var t = 0u; t < dispatch.params.steps; t++) {");
        o.line("        let step = dispatch.params.first_step + t;");
    }
    o.line("        workgroupBarrier();");
    if in_registers {
        for k in 0..m {
            for j in 0..n {
                o.line(format!("        let w{k}_{j} = pshm[{}u];", k * n + j));
            }
        }
        if variant.abs {
            for k in 0..m {
                for j in 0..n {
                    o.line(format!("        let u{k}_{j} = pshm[{}u];", mn + k * n + j));
                }
            }
        }
        for j in 0..n {
            o.line(format!("        let b{j} = pshm[{}u];", wn + j));
        }
    }
    for i in 0..values {
        o.line(format!("        var a{i} = 0.0;"));
    }

    // Each thread's samples: forward, backward, and the gradient terms into its accumulators.
    let group = |g: usize| format!("xc{}.g{}", g / 4, g % 4);
    let present = (0..n.div_ceil(4))
        .map(|g| format!("any({} != vec4<f32>(0.0))", group(g)))
        .collect::<Vec<_>>()
        .join(" || ");
    if variant.cooperative {
        // Every lane of a subgroup runs every iteration (a lane past the batch draws nothing), so
        // that the subgroup operations of the sampler see the whole subgroup; the sample's work is
        // then under an `if`, after which the lanes are together again.
        let (first, stride) = match variant.split {
            true => ("slice * REGISTER_WG", "shard.config.slices * REGISTER_WG"),
            false => ("0u", "REGISTER_WG"),
        };
        o.line(format!(
            "        for (var run = {first}; run < shard.config.batch; run += {stride}) {{"
        ));
        o.line("            let s = run + tid;");
        o.line("            let live = s < shard.config.batch;");
        // The subgroup's lanes (all of them run here): fewer than its size where the workgroup
        // is smaller than a subgroup.
        o.line("            let lanes = subgroupAdd(1u);");
        cooperative_sampler(&mut o, n);
        o.line(format!("            let nonzero = live && ({present});"));
        o.line("            if live && !nonzero {");
        o.line(format!("                a{zero_acc} += 1.0;"));
        o.line("            }");
        o.line("            if nonzero {");
    } else {
        if variant.split {
            o.line("        for (var s = slice * REGISTER_WG + tid; s < shard.config.batch; s += shard.config.slices * REGISTER_WG) {");
        } else {
            o.line("        for (var s = tid; s < shard.config.batch; s += REGISTER_WG) {");
        }
        // One `sample_chunk` per 16 features (one presence call each); x{j} is lane j % 4 of its
        // group.
        for c in 0..n.div_ceil(CHUNK_FEATURES) {
            o.line(format!(
                "            let xc{c} = sample_chunk(global_instance, step, s, {c}u, threshold);"
            ));
        }
        o.line(format!("            if !({present}) {{"));
        o.line(format!("                a{zero_acc} += 1.0;"));
        o.line("                continue;");
        o.line("            }");
    }
    const LANES: [&str; 4] = ["x", "y", "z", "w"];
    for j in 0..n {
        o.line(format!(
            "            let x{j} = {}.{};",
            group(j / 4),
            LANES[j % 4]
        ));
    }
    for k in 0..m {
        let terms = (0..n).map(|j| format!("{} * x{j}", w(k, j)));
        if variant.hidden_relu {
            // ReLU as the CPU computes it: +0 unless > 0 (also for −0 and NaN).
            o.line(format!("            let hp{k} = {};", sum(terms)));
            o.line(format!(
                "            let h{k} = select(0.0, hp{k}, hp{k} > 0.0);"
            ));
        } else {
            o.line(format!("            let h{k} = {};", sum(terms)));
        }
    }
    // The target: x, or |x| for the abs model.
    let target = |j: usize| match variant.abs {
        true => format!("abs(x{j})"),
        false => format!("x{j}"),
    };
    for j in 0..n {
        let terms = (0..m).map(|k| format!("{} * h{k}", u(k, j)));
        o.line(format!("            let y{j} = {} + {};", b(j), sum(terms)));
        o.line(format!(
            "            let d{j} = delta_of(y{j}, {}, imp{j});",
            target(j)
        ));
    }
    let errors = (0..n).map(|j| format!("sq_error(y{j}, {}, imp{j})", target(j)));
    o.line(format!("            a{loss_acc} += {};", sum(errors)));
    for k in 0..m {
        let terms = (0..n).map(|j| format!("{} * d{j}", u(k, j)));
        if variant.hidden_relu {
            o.line(format!(
                "            let dh{k} = select(0.0, {}, h{k} > 0.0);",
                sum(terms)
            ));
        } else {
            o.line(format!("            let dh{k} = {};", sum(terms)));
        }
    }
    for k in 0..m {
        for j in 0..n {
            if variant.abs {
                o.line(format!("            a{} += dh{k} * x{j};", k * n + j));
                o.line(format!("            a{} += h{k} * d{j};", mn + k * n + j));
            } else {
                o.line(format!(
                    "            a{} += h{k} * d{j} + dh{k} * x{j};",
                    k * n + j
                ));
            }
        }
    }
    for j in 0..n {
        o.line(format!("            a{} += d{j};", wn + j));
    }
    if variant.cooperative {
        o.line("            }");
    }
    o.line("        }");

    match variant.subgroup_min_size {
        Some(_) => subgroup_reduction(&mut o, values),
        None => workgroup_reduction(&mut o, values),
    }

    if variant.split {
        split_epilogue(&mut o, n, wn);
    } else {
        adam_epilogue(&mut o, n, wn);
    }
    o.0
}

/// The loss of a log step into `total` (unscaled): every all-zero sample has the loss of y = b;
/// `wn` weights come before b.
fn log_loss(o: &mut Text, n: usize, wn: usize) {
    let (loss_acc, zero_acc) = (wn + n, wn + n + 1);
    o.line("            var zero_loss = 0.0;");
    o.line(format!("            for (var j = 0u; j < {n}u; j++) {{"));
    o.line(format!(
        "                zero_loss += sq_error(pshm[{wn}u + j], 0.0, importance_at(instance, j));"
    ));
    o.line("            }");
    o.line(format!(
        "            total[{loss_acc}u] += total[{zero_acc}u] * zero_loss;"
    ));
}

/// The rest of a whole-instance step: the loss, then Adam by the owners with the bias gradient of
/// the all-zero samples in closed form; after the last step, the state back to memory (`wn`
/// weights before b).
fn adam_epilogue(o: &mut Text, n: usize, wn: usize) {
    let (count, wg) = (wn + n, REGISTER_WG as usize);
    let owned = count.div_ceil(wg);
    o.line("        workgroupBarrier();");
    o.line("        if tid == 0u && is_log_step(step) {");
    log_loss(o, n, wn);
    o.line(format!(
        "            losses[log_slot * shard.config.instances + instance] = total[{count}u] * shard.config.scale;"
    ));
    o.line("        }");
    o.line("        if is_log_step(step) {");
    o.line("            log_slot += 1u;");
    o.line("        }");
    o.line("        workgroupBarrier();");
    o.line(format!("        let zeros = total[{}u];", count + 1));
    o.line("        let c = dispatch.constants[t];");
    for q in 0..owned {
        o.line(format!("        if p{q} < count {{"));
        o.line(format!("            var g = total[p{q}];"));
        o.line(format!("            if p{q} >= {wn}u {{"));
        o.line(format!(
            "                g += zeros * delta_of(pshm[p{q}], 0.0, importance_at(instance, p{q} - {wn}u));"
        ));
        o.line("            }");
        o.line(format!(
            "            let updated = adam(pshm[p{q}], g, m1_{q}, m2_{q}, c);"
        ));
        o.line(format!("            pshm[p{q}] = updated.x;"));
        o.line(format!("            m1_{q} = updated.y;"));
        o.line(format!("            m2_{q} = updated.z;"));
        o.line("        }");
    }
    o.line("    }");
    for q in 0..owned {
        o.line(format!("    if p{q} < count {{"));
        o.line(format!(
            "        state[instance * count + p{q}] = pshm[p{q}];"
        ));
        o.line(format!(
            "        state[total_count + instance * count + p{q}] = m1_{q};"
        ));
        o.line(format!(
            "        state[2u * total_count + instance * count + p{q}] = m2_{q};"
        ));
        o.line("    }");
    }
    o.line("}");
}

/// The rest of a split step: the slice's sums (its loss with its all-zero samples' share) to the
/// partials buffer (a tied model's: `wn` = m·n weights before b).
fn split_epilogue(o: &mut Text, n: usize, wn: usize) {
    let values = wn + n + 2;
    o.line("        workgroupBarrier();");
    o.line("        if tid == 0u && is_log_step(step) {");
    log_loss(o, n, wn);
    o.line("        }");
    o.line("        workgroupBarrier();");
    o.line(format!(
        "        let at = (instance * shard.config.slices + slice) * {values}u;"
    ));
    o.line(format!(
        "        for (var i = tid; i < {values}u; i += REGISTER_WG) {{"
    ));
    o.line("            partials[at + i] = total[i];");
    o.line("        }");
    o.line("    }");
    o.line("}");
}

/// Sums accumulators a0.. of every thread into `total`: within each subgroup by `subgroupAdd`, then
/// the subgroups' rows in subgroup order.
fn subgroup_reduction(o: &mut Text, values: usize) {
    for i in 0..values {
        o.line(format!("        let s{i} = subgroupAdd(a{i});"));
    }
    o.line("        if lane == 0u {");
    for i in 0..values {
        o.line(format!(
            "            part[subgroup * {values}u + {i}u] = s{i};"
        ));
    }
    o.line("        }");
    o.line("        workgroupBarrier();");
    o.line(format!(
        "        for (var i = tid; i < {values}u; i += REGISTER_WG) {{"
    ));
    o.line("            var acc = 0.0;");
    o.line("            for (var r = 0u; r < subgroups; r++) {");
    o.line(format!("                acc += part[r * {values}u + i];"));
    o.line("            }");
    o.line("            total[i] = acc;");
    o.line("        }");
}

/// Sums accumulators a0.. of every thread into `total` with workgroup memory only: rounds of
/// [`CHUNK`] values, each summed over the threads in thread order.
fn workgroup_reduction(o: &mut Text, values: usize) {
    for first in (0..values).step_by(CHUNK) {
        let len = CHUNK.min(values - first);
        o.line("        workgroupBarrier();");
        for i in 0..len {
            o.line(format!(
                "        part[tid * {CHUNK}u + {i}u] = a{};",
                first + i
            ));
        }
        o.line("        workgroupBarrier();");
        o.line(format!("        if tid < {len}u {{"));
        o.line("            var acc = 0.0;");
        o.line("            for (var r = 0u; r < REGISTER_WG; r++) {");
        o.line(format!("                acc += part[r * {CHUNK}u + tid];"));
        o.line("            }");
        o.line(format!("            total[{first}u + tid] = acc;"));
        o.line("        }");
    }
}

/// Chunks of 16 features whose calls one cooperative round shares out (eight slots each in one
/// u32 of needs, as `chunk_needs` numbers them).
const COOPERATIVE_CHUNKS: usize = 4;

/// Powers of two below WGSL's largest subgroup (128), largest first: the owner search's steps.
const SEARCH_STEPS: [u32; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Features 16·c + 0..15 of sample `s` as xc{c} (plain distributions): what `sample_chunk` returns,
/// with the calls shared out among the lanes of the subgroup. Each lane makes its presence call of
/// each chunk (one per sample and chunk, by the data layout: nothing to share), then lists the
/// other calls its chunks need (`chunk_needs`: the tie groups' mask calls and the value calls, as
/// bits of a u32, eight slots per chunk, up to [`COOPERATIVE_CHUNKS`] chunks at a time). The
/// subgroup numbers its calls slot by slot, and within a slot in lane order (`subgroupExclusiveAdd`
/// of one byte per slot, four slots per word), and makes them ⌈total / subgroup size⌉ rounds at a
/// time, lane i of round r making call r·size + i. For each slot whose calls fall in the round
/// (subgroup-uniform), a lane finds the call's owner (the last lane whose rank in that slot is not
/// past the call's: a binary search over the lanes by `subgroupShuffle`) and its sample; after the
/// call, each lane takes its own call of each such slot from the lane that made it (one shuffle
/// per slot and round, into the slot's own variables: no runtime indexing). A warp thus pays for
/// the sum of its lanes' calls over its width instead of the busiest lane's (design/gpu-kernels.md;
/// benches/cost_model.rs). Same counters, same words, same features.
fn cooperative_sampler(o: &mut Text, n: usize) {
    let chunks = n.div_ceil(CHUNK_FEATURES);
    let groups_in = |c: usize| (n - c * CHUNK_FEATURES).min(CHUNK_FEATURES).div_ceil(4);
    for first in (0..chunks).step_by(COOPERATIVE_CHUNKS) {
        let block = first..chunks.min(first + COOPERATIVE_CHUNKS);
        // The block's slots: (bit in the needs, chunk, mask group or value call, is a mask call).
        let mut slots = vec![];
        for c in block.clone() {
            o.line(format!(
                "            let fl{c} = chunk_flags(presence_words(global_instance, step, s, {c}u), threshold, {c}u);"
            ));
            o.line(format!("            var ps{c} = 0xFFFFu;"));
            for q in 0..groups_in(c) {
                o.line(format!("            var vw{c}_{q} = vec4<u32>(0u);"));
            }
            slots.extend((0..groups_in(c)).map(|g| (8 * (c - first) + g, c, g, true)));
            slots.extend((0..groups_in(c)).map(|q| (8 * (c - first) + 4 + q, c, q, false)));
        }
        let needs = block
            .clone()
            .map(|c| format!("(chunk_needs(fl{c}, threshold) << {}u)", 8 * (c - first)))
            .collect::<Vec<_>>()
            .join(" | ");
        o.line("            {");
        o.line(format!(
            "                let needs = select(0u, {needs}, live);"
        ));
        // Slot k's byte: byte k % 4 of ranks{k / 4} (this lane's rank among the lanes needing it)
        // and counts{k / 4} (how many need it).
        for (w, four) in slots.chunks(4).enumerate() {
            let bits = four
                .iter()
                .enumerate()
                .map(|(b, &(bit, ..))| format!("(((needs >> {bit}u) & 1u) << {}u)", 8 * b))
                .collect::<Vec<_>>()
                .join(" | ");
            o.line(format!("                let wants{w} = {bits};"));
            o.line(format!(
                "                let ranks{w} = subgroupExclusiveAdd(wants{w});"
            ));
            o.line(format!(
                "                let counts{w} = subgroupAdd(wants{w});"
            ));
        }
        let byte = |word: &str, k: usize| format!("(({word}{} >> {}u) & 255u)", k / 4, 8 * (k % 4));
        for k in 0..slots.len() {
            let start = match k {
                0 => "0u".to_string(),
                _ => format!("end{}", k - 1),
            };
            o.line(format!("                let start{k} = {start};"));
            o.line(format!(
                "                let end{k} = start{k} + {};",
                byte("counts", k)
            ));
        }
        o.line(format!(
            "                let total = end{};",
            slots.len() - 1
        ));
        o.line("                for (var base = 0u; base < total; base += lanes) {");
        o.line("                    let j = base + lane;");
        o.line("                    var call_sample = 0u;");
        o.line("                    var call_slot = 0u;");
        for (k, &(bit, ..)) in slots.iter().enumerate() {
            o.line(format!(
                "                    let in{k} = start{k} < base + lanes && end{k} > base;"
            ));
            o.line(format!("                    if in{k} {{"));
            o.line(format!("                        let want = j - start{k};"));
            o.line("                        var owner = 0u;");
            for width in SEARCH_STEPS {
                o.line(format!("                        if lanes > {width}u {{"));
                o.line(format!(
                    "                            let next = owner + {width}u;"
                ));
                o.line(format!(
                    "                            let rank = (subgroupShuffle(ranks{}, next) >> {}u) & 255u;",
                    k / 4,
                    8 * (k % 4)
                ));
                o.line("                            owner = select(owner, next, next < lanes && rank <= want);");
                o.line("                        }");
            }
            o.line("                        let found = subgroupShuffle(s, owner);");
            o.line(format!(
                "                        let here = j >= start{k} && j < end{k};"
            ));
            o.line("                        call_sample = select(call_sample, found, here);");
            o.line(format!(
                "                        call_slot = select(call_slot, {bit}u, here);"
            ));
            o.line("                    }");
        }
        o.line("                    var words = vec4<u32>(0u);");
        o.line("                    if j < total {");
        o.line(format!(
            "                        words = slot_call(global_instance, step, call_sample, {first}u, call_slot);"
        ));
        o.line("                        if (call_slot & 4u) == 0u {");
        o.line("                            words.x = tie_passes(words, threshold);");
        o.line("                        }");
        o.line("                    }");
        for (k, &(bit, c, t, mask)) in slots.iter().enumerate() {
            o.line(format!("                    if in{k} {{"));
            o.line(format!(
                "                        let at = start{k} + {};",
                byte("ranks", k)
            ));
            o.line("                        let got = subgroupShuffle(words, min(at - base, lanes - 1u));");
            o.line(format!("                        if ((needs >> {bit}u) & 1u) != 0u && at >= base && at < base + lanes {{"));
            if mask {
                o.line(format!(
                    "                            ps{c} = (ps{c} & {:#X}u) | (got.x << {}u);",
                    !(0xFu32 << (4 * t)) & 0xFFFF,
                    4 * t
                ));
            } else {
                o.line(format!("                            vw{c}_{t} = got;"));
            }
            o.line("                        }");
            o.line("                    }");
        }
        o.line("                }");
        o.line("            }");
        for c in block {
            let words = (0..4)
                .map(|q| match q < groups_in(c) {
                    true => format!("vw{c}_{q}"),
                    false => "vec4<u32>(0u)".into(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            o.line(format!(
                "            let xc{c} = chunk_values(fl{c}.x | (fl{c}.y & ps{c}), ChunkMasks({words}));"
            ));
        }
    }
}

/// Loop iterations per sample of [`cooperative_sampler`] at most (llvmpipe's budget counts them):
/// per block of chunks, its rounds (at most the most calls one lane lists: all its groups' mask
/// and value calls, as the subgroup's calls are at most its width times that) and the loop's exit.
pub fn cooperative_loop_iterations(n: usize) -> u64 {
    let groups = n.div_ceil(4) as u64;
    let per_block = 4 * COOPERATIVE_CHUNKS as u64;
    (0..groups)
        .step_by(per_block as usize)
        .map(|first| 2 * (groups - first).min(per_block) + 1)
        .sum()
}
