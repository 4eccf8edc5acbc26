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
// every thread multiplies a 4 × 4 block of the output in registers (two vec4 reads per 16
// multiply-adds, against two scalar reads per multiply-add of a thread per output). Workgroup memory
// is what software adapters pay for most (llvmpipe turns every access into a loop over its SIMD
// lanes), and a GPU's shared-memory bandwidth is what bounded the one-output-per-thread kernels.
// Threads whose outputs are all padding (m = 30 in a block of 64) skip the multiply-adds.
// The hidden products (batch × m outputs) also come in NARROW_ROWS × NARROW_COLS blocks (128 × 32,
// threads 8 × 32, the same 4 × 4 per thread) that the host picks where they pad m less: m = 30
// fills 30 of 32 columns instead of 30 of 64.
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

// One round's slices of the two operands: a[d][r] holds rows 4r..4r + 3 of the left operand at
// depth d, b[d][c] columns 4c..4c + 3 of the right one. Rows of TILE / 4 + 1 vec4: the padding
// vec4 spreads the transposing stores over the banks of a GPU's shared memory. tile_a has room
// for the narrow blocks' NARROW_ROWS rows.
var<workgroup> tile_a: array<array<vec4<f32>, NARROW_ROWS / 4u + 1u>, TILE_DEPTH>;
var<workgroup> tile_b: array<array<vec4<f32>, TILE / 4u + 1u>, TILE_DEPTH>;
var<workgroup> red: array<f32, TILE_THREADS * TILE_THREADS>;

// A thread's 4 × 4 block of the output: rows r0..r3, four columns each.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
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

// acc + this round's products for the thread's rows 4·tr.. and columns 4·tc.., in depth order.
fn multiply(acc: Block, tr: u32, tc: u32) -> Block {
    var out = acc;
    for (var d = 0u; d < TILE_DEPTH; d++) {
        let a = tile_a[d][tr];
        let b = tile_b[d][tc];
        out.r0 += a.x * b;
        out.r1 += a.y * b;
        out.r2 += a.z * b;
        out.r3 += a.w * b;
    }
    return out;
}

// Row i of a block.
fn row_of(acc: Block, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return acc.r0; }
        case 1u: { return acc.r1; }
        case 2u: { return acc.r2; }
        default: { return acc.r3; }
    }
}

// out[s][k] = Σ_j A[s][j] V[k][j] with A = X and V = W (H), or A = δ and V = U (dH), with the
// hidden ReLU (and its gate on dH) where the model has one, over a `rows` × `cols` block (samples ×
// hidden units) of a workgroup of (cols / 4) × (rows / 4) threads.
fn hidden_block(wid: vec3<u32>, lid: vec2<u32>, backward: bool, rows: u32, cols: u32) {
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let s0 = wid.y * rows;
    let k0 = wid.x * cols;
    let t = lid.y * (cols / 4u) + lid.x;
    let live = k0 + 4u * lid.x < m;
    var acc = Block();
    for (var j0 = 0u; j0 < n; j0 += TILE_DEPTH) {
        for (var q = 0u; q < rows * TILE_DEPTH / (TILE_THREADS * TILE_THREADS); q++) {
            let at = depth_fastest(t, q);
            if backward {
                put_a(at, delta_at(instance, s0 + at.x, j0 + at.y));
            } else {
                put_a(at, x_at(instance, s0 + at.x, j0 + at.y));
            }
        }
        for (var q = 0u; q < cols * TILE_DEPTH / (TILE_THREADS * TILE_THREADS); q++) {
            let at = depth_fastest(t, q);
            if backward {
                put_b(at, u_at(instance, k0 + at.x, j0 + at.y));
            } else {
                put_b(at, w_at(instance, k0 + at.x, j0 + at.y));
            }
        }
        workgroupBarrier();
        if live {
            acc = multiply(acc, lid.y, lid.x);
        }
        workgroupBarrier();
    }
    let gated = shard.config.hidden_relu != 0u;
    for (var i = 0u; i < 4u; i++) {
        let s = s0 + 4u * lid.y + i;
        let row = row_of(acc, i);
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + 4u * lid.x + c;
            if s < shard.config.batch && k < m {
                let at = (instance * shard.config.batch + s) * m + k;
                // ReLU and its gate as the CPU computes them: +0 unless > 0 (h > 0 iff W x > 0).
                var value = row[c];
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
    hidden_block(wid, lid.xy, false, TILE, TILE);
}

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn hidden_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_block(wid, lid.xy, true, TILE, TILE);
}

@compute @workgroup_size(NARROW_COLS / 4u, NARROW_ROWS / 4u)
fn hidden_forward_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_block(wid, lid.xy, false, NARROW_ROWS, NARROW_COLS);
}

@compute @workgroup_size(NARROW_COLS / 4u, NARROW_ROWS / 4u)
fn hidden_backward_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_block(wid, lid.xy, true, NARROW_ROWS, NARROW_COLS);
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
    var bias = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let j = j0 + 4u * lid.x + c;
        if j < n {
            bias[c] = state[instance * params_per_instance() + (1u + shard.config.untied) * m * n + j];
        }
    }
    var acc = Block(bias, bias, bias, bias);
    let live = j0 + 4u * lid.x < n;
    for (var k0 = 0u; k0 < m; k0 += TILE_DEPTH) {
        for (var q = 0u; q < TILE_COPIES; q++) {
            let a = depth_fastest(t, q);
            put_a(a, hidden_at(0u, instance, s0 + a.x, k0 + a.y));
            let b = depth_slowest(t, q);
            put_b(b, u_at(instance, k0 + b.y, j0 + b.x));
        }
        workgroupBarrier();
        if live {
            acc = multiply(acc, lid.y, lid.x);
        }
        workgroupBarrier();
    }
    var loss = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let s = s0 + 4u * lid.y + i;
        let y = row_of(acc, i);
        for (var c = 0u; c < 4u; c++) {
            let j = j0 + 4u * lid.x + c;
            if s < shard.config.batch && j < n {
                let x = target_of(x_at(instance, s, j));
                let importance = importance_at(instance, j);
                loss += sq_error(y[c], x, importance) * shard.config.scale;
                delta[(instance * shard.config.batch + s) * n + j] = delta_of(y[c], x, importance);
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
    let sums_bias = k0 == 0u && lid.y == 0u && first == 0u;
    let live = k0 + 4u * lid.y < m && j0 + 4u * lid.x < n;
    var acc = Block();
    var bias = vec4<f32>(0.0);
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
            acc = multiply(acc, lid.y, lid.x);
        }
        if sums_bias && second == 0u {
            for (var d = 0u; d < TILE_DEPTH; d++) {
                bias += tile_b[d][lid.x];
            }
        }
        workgroupBarrier();
    }
    let base = instance * params_per_instance();
    var dest = base;
    if untied && part == 1u {
        dest += m * n;
    }
    for (var i = 0u; i < 4u; i++) {
        let k = k0 + 4u * lid.y + i;
        let row = row_of(acc, i);
        for (var c = 0u; c < 4u; c++) {
            let j = j0 + 4u * lid.x + c;
            if k < m && j < n {
                grad[dest + k * n + j] = row[c];
            }
        }
    }
    if sums_bias {
        for (var c = 0u; c < 4u; c++) {
            let j = j0 + 4u * lid.x + c;
            if j < n {
                grad[base + (1u + shard.config.untied) * m * n + j] = bias[c];
            }
        }
    }
}
