// The small-model trainer: one workgroup owns one instance and runs `dispatch.params.steps` training steps in
// a single dispatch, with W and b in workgroup memory and each thread's share of the Adam moments in
// registers, written back to the state buffer only at the end.
//
// Each step the batch is taken SMALL_SMALL_WG samples at a time ("rounds"): thread t generates sample
// round·SMALL_WG + t from the counters, runs its forward and backward pass and stages x, δ, h and Wδ in its
// row of workgroup memory. Then every thread sums, for the parameters it owns (p = t, t + SMALL_WG, ...),
// the gradient terms h_k δ_j + (Wδ)_k x_j over the staged rows in row order: a fixed order, so runs are
// deterministic. All-zero samples are not staged: they are counted and their bias gradient added in
// closed form (model::zero_sample), as the CPU trainer does.

// SMALL_WG threads per workgroup, at most SMALL_PPT parameters per thread (the small path takes models
// with m·n + n ≤ SMALL_WG · SMALL_PPT) and SMALL_SHM_FLOATS floats of staging memory: see src/gpu/abi.rs.

// [params | first moments | second moments], each [instances][m·n + n] with W before b.
@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
// [log slot][instance]
@group(0) @binding(LOSSES_BINDING) var<storage, read_write> losses: array<f32>;

var<workgroup> shm: array<f32, SMALL_SHM_FLOATS>;
// 1 where the staged row holds a sample with a present feature.
var<workgroup> flags: array<u32, SMALL_WG>;
var<workgroup> red: array<f32, SMALL_WG>;

// Forward and backward pass of the sample staged at `row` (x already there); returns its scaled loss.
fn sample_pass(instance: u32, row: u32) -> f32 {
    let n = shard.config.features;
    let m = shard.config.hidden;
    let x_at = row;
    let d_at = row + n;
    let h_at = row + 2u * n;
    let dh_at = h_at + m;
    // h = W x, skipping absent features (adding their zero terms changes nothing).
    for (var k = 0u; k < m; k++) {
        shm[h_at + k] = 0.0;
    }
    for (var j = 0u; j < n; j++) {
        let xj = shm[x_at + j];
        if xj != 0.0 {
            for (var k = 0u; k < m; k++) {
                shm[h_at + k] += shm[k * n + j] * xj;
            }
        }
    }
    // y = Wᵀh + b, then δ and the loss.
    var loss = 0.0;
    for (var j = 0u; j < n; j++) {
        var y = shm[m * n + j];
        for (var k = 0u; k < m; k++) {
            y += shm[k * n + j] * shm[h_at + k];
        }
        let xj = shm[x_at + j];
        let importance = importance_at(instance, j);
        loss += sq_error(y, xj, importance);
        shm[d_at + j] = delta_of(y, xj, importance);
    }
    // Wδ
    for (var k = 0u; k < m; k++) {
        var acc = 0.0;
        for (var j = 0u; j < n; j++) {
            acc += shm[k * n + j] * shm[d_at + j];
        }
        shm[dh_at + k] = acc;
    }
    return loss * shard.config.scale;
}

@compute @workgroup_size(SMALL_WG)
fn train(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let instance = wid.x;
    let n = shard.config.features;
    let m = shard.config.hidden;
    let mn = m * n;
    let count = mn + n;
    let total = shard.config.instances * count;
    let threshold = threshold_of(instance);
    let global_instance = shard.config.first_instance + instance;
    let groups = (n + 3u) / 4u;
    // Workgroup memory: W [0, mn), b [mn, mn + n), zero-sample δ [mn + n, mn + 2n), then SMALL_WG rows of
    // x, δ, h, Wδ.
    let zd_at = mn + n;
    let rows_at = mn + 2u * n;
    let row_len = 2u * n + 2u * m;

    var m1: array<f32, SMALL_PPT>;
    var m2: array<f32, SMALL_PPT>;
    for (var q = 0u; q < SMALL_PPT; q++) {
        let p = tid + q * SMALL_WG;
        if p < count {
            shm[p] = state[instance * count + p];
            m1[q] = state[total + instance * count + p];
            m2[q] = state[2u * total + instance * count + p];
        }
    }

    var log_slot = dispatch.params.log_slot;
    for (var t = 0u; t < dispatch.params.steps; t++) {
        let step = dispatch.params.first_step + t;
        let log_now = is_log_step(step);
        workgroupBarrier();
        for (var j = tid; j < n; j += SMALL_WG) {
            shm[zd_at + j] = delta_of(shm[mn + j], 0.0, importance_at(instance, j));
        }
        workgroupBarrier();

        var grad: array<f32, SMALL_PPT>;
        var loss = 0.0;
        var own_zeros = 0u;
        var zero_rows = 0u;
        for (var first = 0u; first < shard.config.batch; first += SMALL_WG) {
            let sample = first + tid;
            let row = rows_at + tid * row_len;
            var present = false;
            if sample < shard.config.batch {
                for (var g = 0u; g < groups; g++) {
                    let x = sample_group(global_instance, step, sample, g, threshold);
                    for (var lane = 0u; lane < 4u; lane++) {
                        let j = g * 4u + lane;
                        if j < n {
                            shm[row + j] = x[lane];
                            present = present || x[lane] != 0.0;
                        }
                    }
                }
                if present {
                    loss += sample_pass(instance, row);
                } else {
                    own_zeros += 1u;
                }
            }
            flags[tid] = select(0u, 1u, present);
            workgroupBarrier();

            let rows = min(SMALL_WG, shard.config.batch - first);
            for (var r = 0u; r < rows; r++) {
                zero_rows += 1u - flags[r];
            }
            for (var q = 0u; q < SMALL_PPT; q++) {
                let p = tid + q * SMALL_WG;
                if p < mn {
                    let k = p / n;
                    let j = p % n;
                    var acc = 0.0;
                    for (var r = 0u; r < rows; r++) {
                        if flags[r] != 0u {
                            let at = rows_at + r * row_len;
                            acc += shm[at + 2u * n + k] * shm[at + n + j] + shm[at + 2u * n + m + k] * shm[at + j];
                        }
                    }
                    grad[q] += acc;
                } else if p < count {
                    let j = p - mn;
                    var acc = 0.0;
                    for (var r = 0u; r < rows; r++) {
                        if flags[r] != 0u {
                            acc += shm[rows_at + r * row_len + n + j];
                        }
                    }
                    grad[q] += acc;
                }
            }
            workgroupBarrier();
        }

        if log_now {
            // Every all-zero sample has the loss of y = b.
            var zero_loss = 0.0;
            for (var j = 0u; j < n; j++) {
                zero_loss += sq_error(shm[mn + j], 0.0, importance_at(instance, j));
            }
            red[tid] = loss + f32(own_zeros) * (zero_loss * shard.config.scale);
            for (var stride = SMALL_WG / 2u; stride > 0u; stride /= 2u) {
                workgroupBarrier();
                if tid < stride {
                    red[tid] += red[tid + stride];
                }
            }
            if tid == 0u {
                losses[log_slot * shard.config.instances + instance] = red[0];
            }
            log_slot += 1u;
        }

        let c = dispatch.constants[t];
        for (var q = 0u; q < SMALL_PPT; q++) {
            let p = tid + q * SMALL_WG;
            if p < count {
                var g = grad[q];
                if p >= mn {
                    g += f32(zero_rows) * shm[zd_at + p - mn];
                }
                let updated = adam(shm[p], g, m1[q], m2[q], c);
                shm[p] = updated.x;
                m1[q] = updated.y;
                m2[q] = updated.z;
            }
        }
    }

    for (var q = 0u; q < SMALL_PPT; q++) {
        let p = tid + q * SMALL_WG;
        if p < count {
            state[instance * count + p] = shm[p];
            state[total + instance * count + p] = m1[q];
            state[2u * total + instance * count + p] = m2[q];
        }
    }
}
