// The tiled trainer for models too large for one workgroup: six dispatches per step, four of them
// register-blocked matrix products over TILE × TILE blocks of their output (z = instance).
//
//   generate         X                   [batch × n], in features.wgsl: sampled once per step
//   hidden_forward   H  = X Wᵀ, or ReLU(X Wᵀ) with a hidden ReLU        [batch × m]
//   output_delta     Y  = b + H U, then (fused) δ = ∂loss/∂Y and the block's partial loss  [batch × n]
//   hidden_backward  dH = δ Uᵀ, gated by H > 0 with a hidden ReLU       [batch × m]
//   gradient         ∂W = [H | dH]ᵀ [δ ; X], one product over 2·batch (tied), or ∂W₁ = dHᵀ X and
//                    ∂U = Hᵀ δ (untied); ∂b = Σ δ, summed by the blocks of the first rows
//   adam_step        in tiled_adam.wgsl
//
// U, the output weights, is W for the tied models and W₂ᵀ (after W in the state) for the untied abs
// model, whose target is |x| (src/model.rs states the maths).
//
// Each product runs in rounds of TILE_DEPTH along its inner dimension: the workgroup's
// TILE_THREADS² threads copy a TILE_DEPTH-deep slice of both operands into workgroup memory, then
// every thread multiplies an 8 × 8 block of the output in registers (four vec4 reads per 64
// multiply-adds, against two scalar reads per multiply-add of a thread per output). Workgroup memory
// is what software adapters pay for most (llvmpipe turns every access into a loop over its SIMD
// lanes), and a GPU's shared-memory bandwidth is what bounded the one-output-per-thread kernels.
// Threads whose outputs are all padding (m = 30 in a block of 64) skip the multiply-adds; the
// threads of one llvmpipe SIMD group (consecutive lid.x) share the padded dimension's block, so
// that the whole group skips.
//
// Every sum runs in a fixed order (no atomics), so runs are deterministic.

@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
// [H | dH], each [instances][batch][m]
@group(0) @binding(HIDDEN_BINDING) var<storage, read_write> hidden: array<f32>;
// [instances][batch][n]
@group(0) @binding(DELTA_BINDING) var<storage, read_write> delta: array<f32>;
// [gradients [instances][params] | partial losses [instances][blocks of output_delta]]
@group(0) @binding(GRAD_BINDING) var<storage, read_write> grad: array<f32>;
// [instances][batch][n]: this step's X, written by features.wgsl's generate.
@group(0) @binding(BATCH_BINDING) var<storage, read_write> batch: array<f32>;

// One round's slices of the two operands: tile_a[d][r] holds rows 4r..4r + 3 of the left operand
// at depth d, tile_b[d][c] columns 4c..4c + 3 of the right one. Rows of TILE / 4 + 1 vec4: the padding
// vec4 spreads the transposing stores over the banks of a GPU's shared memory.
var<workgroup> tile_a: array<array<vec4<f32>, TILE / 4u + 1u>, TILE_DEPTH>;
var<workgroup> tile_b: array<array<vec4<f32>, TILE / 4u + 1u>, TILE_DEPTH>;
var<workgroup> red: array<f32, TILE_THREADS * TILE_THREADS>;

// A thread's 8 × 8 block of the output: row i's columns 0..3 in li, 4..7 in ri (named values, not
// an array: llvmpipe keeps runtime-indexed private arrays in memory).
struct Block {
    l0: vec4<f32>, r0: vec4<f32>,
    l1: vec4<f32>, r1: vec4<f32>,
    l2: vec4<f32>, r2: vec4<f32>,
    l3: vec4<f32>, r3: vec4<f32>,
    l4: vec4<f32>, r4: vec4<f32>,
    l5: vec4<f32>, r5: vec4<f32>,
    l6: vec4<f32>, r6: vec4<f32>,
    l7: vec4<f32>, r7: vec4<f32>,
}

// A block whose every row is (left, right).
fn block_of(left: vec4<f32>, right: vec4<f32>) -> Block {
    return Block(left, right, left, right, left, right, left, right, left, right, left, right, left, right, left, right);
}

// Parameters per instance: W (and U when untied), then b.
fn params_per_instance() -> u32 {
    return (1u + shard.config.untied) * shard.config.hidden * shard.config.features + shard.config.features;
}

fn w_at(instance: u32, k: u32, j: u32) -> f32 {
    if k < shard.config.hidden && j < shard.config.features {
        return state[instance * params_per_instance() + k * shard.config.features + j];
    }
    return 0.0;
}

// U[k][j]: W's entry for a tied model, W₂ᵀ's (after W) for an untied one.
fn u_at(instance: u32, k: u32, j: u32) -> f32 {
    if k < shard.config.hidden && j < shard.config.features {
        let at = instance * params_per_instance() + shard.config.untied * shard.config.hidden * shard.config.features;
        return state[at + k * shard.config.features + j];
    }
    return 0.0;
}

// X[s][j] and δ[s][j] of an instance, zero outside the batch and the features.
fn x_at(instance: u32, s: u32, j: u32) -> f32 {
    if s < shard.config.batch && j < shard.config.features {
        return batch[(instance * shard.config.batch + s) * shard.config.features + j];
    }
    return 0.0;
}

fn delta_at(instance: u32, s: u32, j: u32) -> f32 {
    if s < shard.config.batch && j < shard.config.features {
        return delta[(instance * shard.config.batch + s) * shard.config.features + j];
    }
    return 0.0;
}

// H[s][k] (part 0) or dH[s][k] (part 1) of an instance, zero outside the batch and hidden units.
fn hidden_at(part: u32, instance: u32, s: u32, k: u32) -> f32 {
    if s < shard.config.batch && k < shard.config.hidden {
        let at = part * shard.config.instances * shard.config.batch * shard.config.hidden;
        return hidden[at + (instance * shard.config.batch + s) * shard.config.hidden + k];
    }
    return 0.0;
}

// The training target of input feature x: x, or |x| for the abs model.
fn target_of(x: f32) -> f32 {
    if shard.config.untied != 0u {
        return abs(x);
    }
    return x;
}

// Where copy `q` of thread `t` goes in a round's slice: (row or column, depth), with the depth
// varying fastest (operands whose inner dimension is contiguous in memory) or the row or column.
fn depth_fastest(t: u32, q: u32) -> vec2<u32> {
    let e = t + q * TILE_THREADS * TILE_THREADS;
    return vec2<u32>(e / TILE_DEPTH, e % TILE_DEPTH);
}

fn depth_slowest(t: u32, q: u32) -> vec2<u32> {
    let e = t + q * TILE_THREADS * TILE_THREADS;
    return vec2<u32>(e % TILE, e / TILE);
}

fn put_a(at: vec2<u32>, value: f32) {
    tile_a[at.y][at.x / 4u][at.x % 4u] = value;
}

fn put_b(at: vec2<u32>, value: f32) {
    tile_b[at.y][at.x / 4u][at.x % 4u] = value;
}

// acc + this round's products for the thread's rows 8·tr.. and columns 8·tc.., in depth order.
fn multiply(acc: Block, tr: u32, tc: u32) -> Block {
    var o = acc;
    for (var d = 0u; d < TILE_DEPTH; d++) {
        let a = tile_a[d][2u * tr];
        let e = tile_a[d][2u * tr + 1u];
        let bl = tile_b[d][2u * tc];
        let br = tile_b[d][2u * tc + 1u];
        o.l0 += a.x * bl;
        o.r0 += a.x * br;
        o.l1 += a.y * bl;
        o.r1 += a.y * br;
        o.l2 += a.z * bl;
        o.r2 += a.z * br;
        o.l3 += a.w * bl;
        o.r3 += a.w * br;
        o.l4 += e.x * bl;
        o.r4 += e.x * br;
        o.l5 += e.y * bl;
        o.r5 += e.y * br;
        o.l6 += e.z * bl;
        o.r6 += e.z * br;
        o.l7 += e.w * bl;
        o.r7 += e.w * br;
    }
    return o;
}

// Columns 0..3 and 4..7 of row i of a block.
fn left_of(acc: Block, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return acc.l0; }
        case 1u: { return acc.l1; }
        case 2u: { return acc.l2; }
        case 3u: { return acc.l3; }
        case 4u: { return acc.l4; }
        case 5u: { return acc.l5; }
        case 6u: { return acc.l6; }
        default: { return acc.l7; }
    }
}

fn right_of(acc: Block, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return acc.r0; }
        case 1u: { return acc.r1; }
        case 2u: { return acc.r2; }
        case 3u: { return acc.r3; }
        case 4u: { return acc.r4; }
        case 5u: { return acc.r5; }
        case 6u: { return acc.r6; }
        default: { return acc.r7; }
    }
}

// Entry (i, c) of a block.
fn entry(acc: Block, i: u32, c: u32) -> f32 {
    if c < 4u {
        return left_of(acc, i)[c];
    }
    return right_of(acc, i)[c - 4u];
}

// out[s][k] = Σ_j A[s][j] V[k][j] with A = X and V = W (H), or A = δ and V = U (dH), with the
// hidden ReLU (and its gate on dH) where the model has one.
fn hidden_block(wid: vec3<u32>, lid: vec2<u32>, backward: bool) {
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let s0 = wid.y * TILE;
    let k0 = wid.x * TILE;
    let t = lid.y * TILE_THREADS + lid.x;
    // Rows (samples) vary along lid.x, so that an llvmpipe SIMD group shares its hidden units.
    let tr = lid.x;
    let tc = lid.y;
    let live = k0 + 8u * tc < m;
    var acc = Block();
    for (var j0 = 0u; j0 < n; j0 += TILE_DEPTH) {
        for (var q = 0u; q < TILE_COPIES; q++) {
            let at = depth_fastest(t, q);
            if backward {
                put_a(at, delta_at(instance, s0 + at.x, j0 + at.y));
                put_b(at, u_at(instance, k0 + at.x, j0 + at.y));
            } else {
                put_a(at, x_at(instance, s0 + at.x, j0 + at.y));
                put_b(at, w_at(instance, k0 + at.x, j0 + at.y));
            }
        }
        workgroupBarrier();
        if live {
            acc = multiply(acc, tr, tc);
        }
        workgroupBarrier();
    }
    let gated = shard.config.hidden_relu != 0u;
    for (var i = 0u; i < 8u; i++) {
        let s = s0 + 8u * tr + i;
        for (var c = 0u; c < 8u; c++) {
            let k = k0 + 8u * tc + c;
            if s < shard.config.batch && k < m {
                let at = (instance * shard.config.batch + s) * m + k;
                // ReLU and its gate as the CPU computes them: +0 unless > 0 (h > 0 iff W x > 0).
                var value = entry(acc, i, c);
                if backward {
                    if gated && !(hidden[at] > 0.0) {
                        value = 0.0;
                    }
                    hidden[at + shard.config.instances * shard.config.batch * m] = value;
                } else {
                    if gated && !(value > 0.0) {
                        value = 0.0;
                    }
                    hidden[at] = value;
                }
            }
        }
    }
}

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn hidden_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_block(wid, lid.xy, false);
}

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn hidden_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_block(wid, lid.xy, true);
}

// Y = b + H U for a block of samples × features (b first, then the products in k order, as the
// CPU sums y), then δ and, at log steps, the block's summed loss.
@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn output_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = lid3.xy;
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let s0 = wid.y * TILE;
    let j0 = wid.x * TILE;
    let t = lid.y * TILE_THREADS + lid.x;
    // Rows (samples) vary along lid.x, so that an llvmpipe SIMD group shares its features.
    let tr = lid.x;
    let tc = lid.y;
    var bias = array<f32, 8>();
    for (var c = 0u; c < 8u; c++) {
        let j = j0 + 8u * tc + c;
        if j < n {
            bias[c] = state[instance * params_per_instance() + (1u + shard.config.untied) * m * n + j];
        }
    }
    var acc = block_of(vec4<f32>(bias[0], bias[1], bias[2], bias[3]), vec4<f32>(bias[4], bias[5], bias[6], bias[7]));
    let live = j0 + 8u * tc < n;
    for (var k0 = 0u; k0 < m; k0 += TILE_DEPTH) {
        for (var q = 0u; q < TILE_COPIES; q++) {
            let a = depth_fastest(t, q);
            put_a(a, hidden_at(0u, instance, s0 + a.x, k0 + a.y));
            let b = depth_slowest(t, q);
            put_b(b, u_at(instance, k0 + b.y, j0 + b.x));
        }
        workgroupBarrier();
        if live {
            acc = multiply(acc, tr, tc);
        }
        workgroupBarrier();
    }
    var loss = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let s = s0 + 8u * tr + i;
        for (var c = 0u; c < 8u; c++) {
            let j = j0 + 8u * tc + c;
            if s < shard.config.batch && j < n {
                let y = entry(acc, i, c);
                let x = target_of(x_at(instance, s, j));
                let importance = importance_at(instance, j);
                loss += sq_error(y, x, importance) * shard.config.scale;
                delta[(instance * shard.config.batch + s) * n + j] = delta_of(y, x, importance);
            }
        }
    }
    if is_log_step(dispatch.params.first_step) {
        red[t] = loss;
        for (var stride = TILE_THREADS * TILE_THREADS / 2u; stride > 0u; stride /= 2u) {
            workgroupBarrier();
            if t < stride {
                red[t] += red[t + stride];
            }
        }
        if t == 0u {
            let blocks = groups.x * groups.y;
            let parts_at = shard.config.instances * params_per_instance();
            grad[parts_at + instance * blocks + wid.y * groups.x + wid.x] = red[0];
        }
    }
}

// One TILE × TILE block of ∂W (rows k, columns j), or of ∂W₁ or ∂U when untied (y = part · row
// blocks + row block), summed over the batch TILE_DEPTH samples at a time. The inner dimension is
// [H | dH]ᵀ against [δ ; X]: depth s' < padded batch is sample s' of H and δ, beyond it sample
// s' − padded batch of dH and X (the padded batch is a multiple of TILE_DEPTH, so each round lies
// in one half). Tied models run over both halves; untied ones over the dH, X half for ∂W₁ and the
// H, δ half for ∂U. The blocks of the first row that run over δ also sum ∂b.
@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.xy;
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let row_blocks = (m + TILE - 1u) / TILE;
    let part = wid.y / row_blocks;
    let k0 = (wid.y % row_blocks) * TILE;
    let j0 = wid.x * TILE;
    let t = lid.y * TILE_THREADS + lid.x;
    let padded = (shard.config.batch + TILE_DEPTH - 1u) / TILE_DEPTH * TILE_DEPTH;
    let untied = shard.config.untied != 0u;
    var first = 0u;
    var last = 2u * padded;
    if untied && part == 0u {
        first = padded;
    } else if untied {
        last = padded;
    }
    // Rows (hidden units) vary along lid.y, columns (features) along lid.x: an llvmpipe SIMD group
    // shares its hidden units, the dimension padded to a block.
    let tr = lid.y;
    let tc = lid.x;
    let sums_bias = k0 == 0u && tr == 0u && first == 0u;
    let live = k0 + 8u * tr < m && j0 + 8u * tc < n;
    var acc = Block();
    var bias_l = vec4<f32>(0.0);
    var bias_r = vec4<f32>(0.0);
    for (var d0 = first; d0 < last; d0 += TILE_DEPTH) {
        let second = d0 / padded;
        for (var q = 0u; q < TILE_COPIES; q++) {
            let at = depth_slowest(t, q);
            let s = d0 - second * padded + at.y;
            put_a(at, hidden_at(second, instance, s, k0 + at.x));
            if second == 0u {
                put_b(at, delta_at(instance, s, j0 + at.x));
            } else {
                put_b(at, x_at(instance, s, j0 + at.x));
            }
        }
        workgroupBarrier();
        if live {
            acc = multiply(acc, tr, tc);
        }
        if sums_bias && second == 0u {
            for (var d = 0u; d < TILE_DEPTH; d++) {
                bias_l += tile_b[d][2u * tc];
                bias_r += tile_b[d][2u * tc + 1u];
            }
        }
        workgroupBarrier();
    }
    let base = instance * params_per_instance();
    var dest = base;
    if untied && part == 1u {
        dest += m * n;
    }
    for (var i = 0u; i < 8u; i++) {
        let k = k0 + 8u * tr + i;
        for (var c = 0u; c < 8u; c++) {
            let j = j0 + 8u * tc + c;
            if k < m && j < n {
                grad[dest + k * n + j] = entry(acc, i, c);
            }
        }
    }
    if sums_bias {
        for (var c = 0u; c < 8u; c++) {
            let j = j0 + 8u * tc + c;
            if j < n {
                var b = bias_r[c % 4u];
                if c < 4u {
                    b = bias_l[c];
                }
                grad[base + (1u + shard.config.untied) * m * n + j] = b;
            }
        }
    }
}
