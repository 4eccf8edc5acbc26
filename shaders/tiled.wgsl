// The tiled trainer for models too large for one workgroup: six dispatches per step, each a grid of
// TILE × TILE tiles (z = instance) like a textbook shared-memory matmul.
//
//   generate         X                   [batch × n], in features.wgsl: sampled once per step
//   hidden_forward   H  = X Wᵀ, or ReLU(X Wᵀ) with a hidden ReLU        [batch × m]
//   output_delta     δ  = ∂loss/∂(H U + b) [batch × n], and per-tile partial losses
//   hidden_backward  dH = δ Uᵀ, gated by H > 0 with a hidden ReLU       [batch × m]
//   gradient         ∂W = Hᵀ δ + dHᵀ X (tied), or ∂W₁ = dHᵀ X and ∂U = Hᵀ δ (untied);
//                    ∂b = Σ δ  (sums over the batch in sample order)
//   adam_step        in tiled_adam.wgsl
//
// U, the output weights, is W for the tied models and W₂ᵀ (after W in the state) for the untied abs
// model, whose target is |x| (src/model.rs states the maths).
//
// Every sum runs in a fixed order (no atomics), so runs are deterministic.


@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
// [H | dH], each [instances][batch][m]
@group(0) @binding(HIDDEN_BINDING) var<storage, read_write> hidden: array<f32>;
// [instances][batch][n]
@group(0) @binding(DELTA_BINDING) var<storage, read_write> delta: array<f32>;
// [gradients [instances][m·n + n] | partial losses [instances][tiles of output_delta]]
@group(0) @binding(GRAD_BINDING) var<storage, read_write> grad: array<f32>;
// [instances][batch][n]: this step's X, written by features.wgsl's generate.
@group(0) @binding(BATCH_BINDING) var<storage, read_write> batch: array<f32>;

var<workgroup> tile_a: array<array<f32, TILE>, TILE>;
// One padding column: hidden_tile reads tile_b[lid.x][jj], a column across the warp's threads; rows of
// TILE + 1 floats put those reads in distinct memory banks (TILE floats would share two banks, an 8-way
// conflict on 32-bank GPUs).
var<workgroup> tile_b: array<array<f32, TILE + 1u>, TILE>;
var<workgroup> tile_c: array<array<f32, TILE>, TILE>;
var<workgroup> tile_d: array<array<f32, TILE>, TILE>;
var<workgroup> red: array<f32, TILE * TILE>;

// Fills tile_a[r][c] with X[first_sample + r][first_feature + c] (zero outside the batch).
fn load_x_tile(instance: u32, first_sample: u32, first_feature: u32, lid: vec2<u32>) {
    let sample = first_sample + lid.y;
    let feature = first_feature + lid.x;
    var x = 0.0;
    if sample < shard.config.batch && feature < shard.config.features {
        x = batch[(instance * shard.config.batch + sample) * shard.config.features + feature];
    }
    tile_a[lid.y][lid.x] = x;
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

// The training target of input feature x: x, or |x| for the abs model.
fn target_of(x: f32) -> f32 {
    if shard.config.untied != 0u {
        return abs(x);
    }
    return x;
}

// out[s][k] = Σ_j A[s][j] V[k][j] with A = X (sampled) and V = W, or A = δ and V = U; out is H or
// dH, with the hidden ReLU (and its gate on dH) where the model has one.
fn hidden_tile(wid: vec3<u32>, lid: vec2<u32>, backward: bool) {
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let s0 = wid.y * TILE;
    let k0 = wid.x * TILE;
    var acc = 0.0;
    for (var j0 = 0u; j0 < n; j0 += TILE) {
        if backward {
            let s = s0 + lid.y;
            let j = j0 + lid.x;
            var d = 0.0;
            if s < shard.config.batch && j < n {
                d = delta[(instance * shard.config.batch + s) * n + j];
            }
            tile_a[lid.y][lid.x] = d;
        } else {
            load_x_tile(instance, s0, j0, lid);
        }
        if backward {
            tile_b[lid.y][lid.x] = u_at(instance, k0 + lid.y, j0 + lid.x);
        } else {
            tile_b[lid.y][lid.x] = w_at(instance, k0 + lid.y, j0 + lid.x);
        }
        workgroupBarrier();
        for (var jj = 0u; jj < TILE; jj++) {
            acc += tile_b[lid.x][jj] * tile_a[lid.y][jj];
        }
        workgroupBarrier();
    }
    let s = s0 + lid.y;
    let k = k0 + lid.x;
    if s < shard.config.batch && k < m {
        let at = (instance * shard.config.batch + s) * m + k;
        // ReLU and its gate as the CPU computes them: +0 unless > 0 (h > 0 iff W x > 0).
        if backward {
            if shard.config.hidden_relu != 0u && !(hidden[at] > 0.0) {
                acc = 0.0;
            }
            hidden[at + shard.config.instances * shard.config.batch * m] = acc;
        } else {
            if shard.config.hidden_relu != 0u && !(acc > 0.0) {
                acc = 0.0;
            }
            hidden[at] = acc;
        }
    }
}

@compute @workgroup_size(TILE, TILE)
fn hidden_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_tile(wid, lid.xy, false);
}

@compute @workgroup_size(TILE, TILE)
fn hidden_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    hidden_tile(wid, lid.xy, true);
}

// y = b + H U for a tile of samples × features, then δ and the tile's summed loss.
@compute @workgroup_size(TILE, TILE)
fn output_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = lid3.xy;
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let s0 = wid.y * TILE;
    let j0 = wid.x * TILE;
    let s = s0 + lid.y;
    let j = j0 + lid.x;
    let inside = s < shard.config.batch && j < n;
    var y = 0.0;
    if j < n {
        y = state[instance * params_per_instance() + (1u + shard.config.untied) * m * n + j];
    }
    for (var k0 = 0u; k0 < m; k0 += TILE) {
        var h = 0.0;
        if s < shard.config.batch && k0 + lid.x < m {
            h = hidden[(instance * shard.config.batch + s) * m + k0 + lid.x];
        }
        tile_c[lid.y][lid.x] = h;
        tile_b[lid.y][lid.x] = u_at(instance, k0 + lid.y, j);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            y += tile_b[kk][lid.x] * tile_c[lid.y][kk];
        }
        workgroupBarrier();
    }
    load_x_tile(instance, s0, j0, lid);
    workgroupBarrier();
    var loss = 0.0;
    if inside {
        let x = target_of(tile_a[lid.y][lid.x]);
        let importance = importance_at(instance, j);
        loss = sq_error(y, x, importance) * shard.config.scale;
        delta[(instance * shard.config.batch + s) * n + j] = delta_of(y, x, importance);
    }
    if is_log_step(dispatch.params.first_step) {
        let t = lid.y * TILE + lid.x;
        red[t] = loss;
        for (var stride = TILE * TILE / 2u; stride > 0u; stride /= 2u) {
            workgroupBarrier();
            if t < stride {
                red[t] += red[t + stride];
            }
        }
        if t == 0u {
            let tiles = groups.x * groups.y;
            let parts_at = shard.config.instances * params_per_instance();
            grad[parts_at + instance * tiles + wid.y * groups.x + wid.x] = red[0];
        }
    }
}

// One 16 × 16 tile of ∂W (rows k, columns j), and of ∂U when untied, summed over the batch 16 samples
// at a time; the tiles of the first row also sum ∂b.
@compute @workgroup_size(TILE, TILE)
fn gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.xy;
    let n = shard.config.features;
    let m = shard.config.hidden;
    let instance = wid.z;
    let j0 = wid.x * TILE;
    let k0 = wid.y * TILE;
    let j = j0 + lid.x;
    let k = k0 + lid.y;
    let dh_at = shard.config.instances * shard.config.batch * m;
    var acc = 0.0;
    // Untied: acc sums dH x (∂W₁) and acc_u sums h δ (∂U); tied: acc sums both, per sample as the CPU.
    var acc_u = 0.0;
    var acc_b = 0.0;
    let untied = shard.config.untied != 0u;
    for (var s0 = 0u; s0 < shard.config.batch; s0 += TILE) {
        let s = s0 + lid.y;
        // tile_c[s][k] = H, tile_d[s][k] = dH, tile_b[s][j] = δ, tile_a[s][j] = X
        var h = 0.0;
        var dh = 0.0;
        var d = 0.0;
        if s < shard.config.batch {
            let kk = k0 + lid.x;
            if kk < m {
                h = hidden[(instance * shard.config.batch + s) * m + kk];
                dh = hidden[dh_at + (instance * shard.config.batch + s) * m + kk];
            }
            if j < n {
                d = delta[(instance * shard.config.batch + s) * n + j];
            }
        }
        tile_c[lid.y][lid.x] = h;
        tile_d[lid.y][lid.x] = dh;
        tile_b[lid.y][lid.x] = d;
        load_x_tile(instance, s0, j0, lid);
        workgroupBarrier();
        if untied {
            for (var ss = 0u; ss < TILE; ss++) {
                acc += tile_d[ss][lid.y] * tile_a[ss][lid.x];
                acc_u += tile_c[ss][lid.y] * tile_b[ss][lid.x];
            }
        } else {
            for (var ss = 0u; ss < TILE; ss++) {
                acc += tile_c[ss][lid.y] * tile_b[ss][lid.x] + tile_d[ss][lid.y] * tile_a[ss][lid.x];
            }
        }
        if wid.y == 0u && lid.y == 0u {
            for (var ss = 0u; ss < TILE; ss++) {
                acc_b += tile_b[ss][lid.x];
            }
        }
        workgroupBarrier();
    }
    let base = instance * params_per_instance();
    let weights = (1u + shard.config.untied) * m * n;
    if k < m && j < n {
        grad[base + k * n + j] = acc;
        if untied {
            grad[base + m * n + k * n + j] = acc_u;
        }
    }
    if wid.y == 0u && lid.y == 0u && j < n {
        grad[base + weights + j] = acc_b;
    }
}
