// The tiled trainer for models too large for one workgroup: six dispatches per step, each a grid of
// TILE × TILE tiles (z = instance) like a textbook shared-memory matmul.
//
//   generate         X                   [batch × n], in features.wgsl: sampled once per step
//   hidden_forward   H  = X Wᵀ           [batch × m]
//   output_delta     δ  = ∂loss/∂(H W + b) [batch × n], and per-tile partial losses
//   hidden_backward  dH = δ Wᵀ           [batch × m]
//   gradient         ∂W = Hᵀ δ + dHᵀ X,  ∂b = Σ δ  (sums over the batch in sample order)
//   adam_step        in tiled_adam.wgsl
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

fn w_at(instance: u32, k: u32, j: u32) -> f32 {
    if k < shard.config.hidden && j < shard.config.features {
        return state[instance * (shard.config.hidden * shard.config.features + shard.config.features) + k * shard.config.features + j];
    }
    return 0.0;
}

// out[s][k] = Σ_j A[s][j] W[k][j] with A = X (generated) or δ; out is H or dH.
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
        tile_b[lid.y][lid.x] = w_at(instance, k0 + lid.y, j0 + lid.x);
        workgroupBarrier();
        for (var jj = 0u; jj < TILE; jj++) {
            acc += tile_b[lid.x][jj] * tile_a[lid.y][jj];
        }
        workgroupBarrier();
    }
    let s = s0 + lid.y;
    let k = k0 + lid.x;
    if s < shard.config.batch && k < m {
        var at = (instance * shard.config.batch + s) * m + k;
        if backward {
            at += shard.config.instances * shard.config.batch * m;
        }
        hidden[at] = acc;
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

// y = b + H W for a tile of samples × features, then δ and the tile's summed loss.
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
        y = state[instance * (m * n + n) + m * n + j];
    }
    for (var k0 = 0u; k0 < m; k0 += TILE) {
        var h = 0.0;
        if s < shard.config.batch && k0 + lid.x < m {
            h = hidden[(instance * shard.config.batch + s) * m + k0 + lid.x];
        }
        tile_c[lid.y][lid.x] = h;
        tile_b[lid.y][lid.x] = w_at(instance, k0 + lid.y, j);
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
        let x = tile_a[lid.y][lid.x];
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
            let parts_at = shard.config.instances * (m * n + n);
            grad[parts_at + instance * tiles + wid.y * groups.x + wid.x] = red[0];
        }
    }
}

// One 16 × 16 tile of ∂W (rows k, columns j), summed over the batch 16 samples at a time; the tiles of
// the first row also sum ∂b.
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
    var acc_b = 0.0;
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
        for (var ss = 0u; ss < TILE; ss++) {
            acc += tile_c[ss][lid.y] * tile_b[ss][lid.x] + tile_d[ss][lid.y] * tile_a[ss][lid.x];
        }
        if wid.y == 0u && lid.y == 0u {
            for (var ss = 0u; ss < TILE; ss++) {
                acc_b += tile_b[ss][lid.x];
            }
        }
        workgroupBarrier();
    }
    let base = instance * (m * n + n);
    if k < m && j < n {
        grad[base + k * n + j] = acc;
    }
    if wid.y == 0u && lid.y == 0u && j < n {
        grad[base + m * n + j] = acc_b;
    }
}
