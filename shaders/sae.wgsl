// Sparse autoencoders on toy hidden vectors (src/sae/gpu.rs): many SAEs at once, each with its own
// latent count and kind, the maths of src/sae/model.rs. One step is these passes over every SAE
// (after features.wgsl's `generate` has drawn X of every toy instance from the SAE streams):
//
//   sae_hidden     H = X Wᵀ of each toy instance        thread per (sample, hidden unit), z = toy
//   sae_encode     z = W_enc (h − b_dec) + b_enc, and a for L1 and JumpReLU
//                                                        thread per (sample, latent), y = SAE
//   sae_select     a of Top-K SAEs: the k largest z      thread per sample
//   sae_decode     error = W_decᵀ a + b_dec − h          thread per (sample, hidden unit)
//   sae_delta      ∂loss/∂z and ∂loss/∂θ per sample; the sample's loss terms
//                                                        thread per (sample, latent)
//   sae_gradient   sums over the batch in sample order   thread per parameter
//   sae_update     b_dec's encoder term, Adam, decoder rows to unit norm
//                                                        workgroup per SAE
//   sae_loss       (log steps) the mean loss             thread per SAE
//
// Every sum runs in a fixed order (no atomics), so runs are deterministic. Buffers (offsets per SAE
// in its SaeEntry):
// - state: [params | first moments | second moments], params in SaeParams::groups order
//   [W_enc (K × d) | b_enc (K) | W_dec (K × d) | b_dec (d) | log θ (K)];
// - shard words: importances (unused, zero) and presence thresholds of the toy instances, the layout
//   words of the toy run's feature distribution, then the toys' W ([toys][d][n], f32 bits);
// - batch: X [toys][batch][n] (features.wgsl), then H [toys][batch][d];
// - work: a, dz and z (then ∂/∂θ), [batch][K] each, then the error [batch][d];
// - grads: gradients (the params' layout), and per SAE [reconstruction | penalty] per sample;
// - losses: [SAEs] mean loss of the log step, then per-latent activity counts (the host clears
//   them when a resampling window opens).

@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
@group(0) @binding(LOSSES_BINDING) var<storage, read_write> losses: array<f32>;
@group(0) @binding(HIDDEN_BINDING) var<storage, read_write> saes: array<SaeEntry>;
@group(0) @binding(DELTA_BINDING) var<storage, read_write> work: array<f32>;
@group(0) @binding(GRAD_BINDING) var<storage, read_write> grads: array<f32>;
@group(0) @binding(BATCH_BINDING) var<storage, read_write> batch: array<f32>;

// Where the toy instances' W start in the shard words: after the layout words of the toy run's
// feature distribution (4 header words and 2 per feature; see common.wgsl).
fn toy_weights_at() -> u32 {
    return layout_at() + 4u + 2u * shard.config.features;
}

// Offsets of the parameter groups in an SAE's block of K latents.
fn b_enc_at(e: SaeEntry) -> u32 {
    return e.latents * shard.config.hidden;
}

fn w_dec_at(e: SaeEntry) -> u32 {
    return b_enc_at(e) + e.latents;
}

fn b_dec_at(e: SaeEntry) -> u32 {
    return w_dec_at(e) + e.latents * shard.config.hidden;
}

fn log_theta_at(e: SaeEntry) -> u32 {
    return b_dec_at(e) + shard.config.hidden;
}

fn param_count(e: SaeEntry) -> u32 {
    return log_theta_at(e) + e.latents;
}

// Hidden unit i of sample s of toy slot `toy` (after X in the batch buffer).
fn h_at(toy: u32, s: u32, i: u32) -> u32 {
    let x_len = shard.config.instances * shard.config.batch * shard.config.features;
    return x_len + (toy * shard.config.batch + s) * shard.config.hidden + i;
}

// Work arrays of sample s: a, dz and z/∂θ at latent j, the error at hidden unit i.
fn a_at(e: SaeEntry, s: u32, j: u32) -> u32 {
    return e.work + s * e.latents + j;
}

fn dz_at(e: SaeEntry, s: u32, j: u32) -> u32 {
    return a_at(e, s, j) + shard.config.batch * e.latents;
}

fn z_at(e: SaeEntry, s: u32, j: u32) -> u32 {
    return a_at(e, s, j) + 2u * shard.config.batch * e.latents;
}

fn error_at(e: SaeEntry, s: u32, i: u32) -> u32 {
    return e.work + 3u * shard.config.batch * e.latents + s * shard.config.hidden + i;
}

fn theta_of(e: SaeEntry, j: u32) -> f32 {
    return exp(state[e.state + log_theta_at(e) + j]);
}

@compute @workgroup_size(SAE_WG)
fn sae_hidden(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = shard.config.features;
    let d = shard.config.hidden;
    let s = id.x / d;
    let k = id.x % d;
    let toy = id.z;
    if s >= shard.config.batch {
        return;
    }
    // SaeExperiment::toy_hidden: h_k = Σ_j W[k][j] x_j in feature order, then the ReLU of the toy
    // models with a privileged hidden basis.
    let w = toy_weights_at() + (toy * d + k) * n;
    let x = (toy * shard.config.batch + s) * n;
    var acc = 0.0;
    for (var j = 0u; j < n; j++) {
        acc += bitcast<f32>(shard.words[w + j]) * batch[x + j];
    }
    if shard.config.hidden_relu != 0u {
        // Real::relu: +0 for anything not > 0.
        acc = select(0.0, acc, acc > 0.0);
    }
    batch[h_at(toy, s, k)] = acc;
}

@compute @workgroup_size(SAE_WG)
fn sae_encode(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = saes[id.y];
    let d = shard.config.hidden;
    let s = id.x / e.latents;
    let j = id.x % e.latents;
    if s >= shard.config.batch {
        return;
    }
    var z = 0.0;
    for (var i = 0u; i < d; i++) {
        let centred = batch[h_at(e.toy, s, i)] - state[e.state + b_dec_at(e) + i];
        z += state[e.state + j * d + i] * centred;
    }
    z += state[e.state + b_enc_at(e) + j];
    work[z_at(e, s, j)] = z;
    if e.kind == SAE_L1 {
        work[a_at(e, s, j)] = max(z, 0.0);
    } else if e.kind == SAE_JUMPRELU {
        work[a_at(e, s, j)] = select(0.0, z, z > theta_of(e, j));
    }
}

// Whether latent (z, j) ranks before latent (z2, j2): larger first, ties to the lower index.
fn ranks_before(z: f32, j: u32, z2: f32, j2: u32) -> bool {
    return z > z2 || (z == z2 && j < j2);
}

@compute @workgroup_size(SAE_WG)
fn sae_select(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = saes[id.y];
    let s = id.x;
    if e.kind != SAE_TOPK || s >= shard.config.batch {
        return;
    }
    // The k-th latent in rank order, found k times over: each round takes the first latent after
    // the previous round's.
    var last_z = 0.0;
    var last_j = 0u;
    for (var round = 0u; round < e.k; round++) {
        var found = false;
        var best_z = 0.0;
        var best_j = 0u;
        for (var j = 0u; j < e.latents; j++) {
            let z = work[z_at(e, s, j)];
            let after = round == 0u || ranks_before(last_z, last_j, z, j);
            if after && (!found || ranks_before(z, j, best_z, best_j)) {
                found = true;
                best_z = z;
                best_j = j;
            }
        }
        last_z = best_z;
        last_j = best_j;
    }
    for (var j = 0u; j < e.latents; j++) {
        let z = work[z_at(e, s, j)];
        let kept = j == last_j || ranks_before(z, j, last_z, last_j);
        work[a_at(e, s, j)] = select(0.0, max(z, 0.0), kept);
    }
}

@compute @workgroup_size(SAE_WG)
fn sae_decode(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = saes[id.y];
    let d = shard.config.hidden;
    let s = id.x / d;
    let i = id.x % d;
    if s >= shard.config.batch {
        return;
    }
    var r = state[e.state + b_dec_at(e) + i];
    for (var j = 0u; j < e.latents; j++) {
        r += work[a_at(e, s, j)] * state[e.state + w_dec_at(e) + j * d + i];
    }
    work[error_at(e, s, i)] = r - batch[h_at(e.toy, s, i)];
}

@compute @workgroup_size(SAE_WG)
fn sae_delta(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = saes[id.y];
    let d = shard.config.hidden;
    let s = id.x / e.latents;
    let j = id.x % e.latents;
    if s >= shard.config.batch {
        return;
    }
    let two_over_d = 2.0 / f32(d);
    var dot = 0.0;
    for (var i = 0u; i < d; i++) {
        dot += state[e.state + w_dec_at(e) + j * d + i] * work[error_at(e, s, i)];
    }
    // model::backward: da_j = (2/d) W_dec[j] · error (+ λ for L1).
    var da = two_over_d * dot;
    let a = work[a_at(e, s, j)];
    var dz = 0.0;
    var dtheta = 0.0;
    if e.kind == SAE_JUMPRELU {
        let theta = theta_of(e, j);
        let z = work[z_at(e, s, j)];
        let window = select(0.0, 1.0, abs((z - theta) / e.bandwidth) < 0.5);
        dtheta = -(theta / e.bandwidth) * window * da - e.coefficient / e.bandwidth * window;
        dz = select(0.0, da, z > theta);
    } else {
        if e.kind == SAE_L1 {
            da += e.coefficient;
        }
        dz = select(0.0, da, a > 0.0);
    }
    work[dz_at(e, s, j)] = dz;
    if j == 0u {
        // The sample's loss terms (model::forward), by the thread of its first latent.
        var recon = 0.0;
        for (var i = 0u; i < d; i++) {
            let err = work[error_at(e, s, i)];
            recon += err * err;
        }
        var penalty = 0.0;
        if e.kind == SAE_L1 {
            for (var l = 0u; l < e.latents; l++) {
                penalty += work[a_at(e, s, l)];
            }
        } else if e.kind == SAE_JUMPRELU {
            // Open gates (z > θ > 0) are exactly the non-zero activations; z itself is being
            // overwritten by the other threads of this sample.
            for (var l = 0u; l < e.latents; l++) {
                penalty += select(0.0, 1.0, work[a_at(e, s, l)] != 0.0);
            }
        }
        grads[e.samples + s] = recon / f32(d);
        grads[e.samples + shard.config.batch + s] = penalty * e.coefficient;
    }
    // No later pass reads z: ∂/∂θ takes its place.
    work[z_at(e, s, j)] = dtheta;
}

@compute @workgroup_size(SAE_WG)
fn sae_gradient(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = saes[id.y];
    let p = id.x;
    if p >= param_count(e) {
        return;
    }
    let d = shard.config.hidden;
    let batch_size = shard.config.batch;
    let scale = shard.config.scale;
    let two_over_d = 2.0 / f32(d);
    var g = 0.0;
    if p < b_enc_at(e) {
        let j = p / d;
        let i = p % d;
        let b_dec = state[e.state + b_dec_at(e) + i];
        for (var s = 0u; s < batch_size; s++) {
            g += scale * work[dz_at(e, s, j)] * (batch[h_at(e.toy, s, i)] - b_dec);
        }
    } else if p < w_dec_at(e) {
        let j = p - b_enc_at(e);
        var fired = 0.0;
        for (var s = 0u; s < batch_size; s++) {
            g += scale * work[dz_at(e, s, j)];
            fired += select(0.0, 1.0, work[a_at(e, s, j)] != 0.0);
        }
        losses[e.activity + j] += fired;
    } else if p < b_dec_at(e) {
        let j = (p - w_dec_at(e)) / d;
        let i = (p - w_dec_at(e)) % d;
        for (var s = 0u; s < batch_size; s++) {
            g += scale * two_over_d * work[a_at(e, s, j)] * work[error_at(e, s, i)];
        }
    } else if p < log_theta_at(e) {
        // The decoder's term; sae_update adds the encoder's (through h − b_dec).
        let i = p - b_dec_at(e);
        for (var s = 0u; s < batch_size; s++) {
            g += scale * two_over_d * work[error_at(e, s, i)];
        }
    } else {
        let j = p - log_theta_at(e);
        let theta = theta_of(e, j);
        for (var s = 0u; s < batch_size; s++) {
            g += scale * work[z_at(e, s, j)] * theta;
        }
    }
    grads[e.grad + p] = g;
}

@compute @workgroup_size(SAE_WG)
fn sae_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let e = saes[wid.x];
    let d = shard.config.hidden;
    let count = param_count(e);
    // ∂/∂b_dec through h − b_dec: −Σ_j W_enc[j][i] ∂/∂b_enc[j] (before W_enc changes).
    for (var i = tid; i < d; i += SAE_WG) {
        var g = grads[e.grad + b_dec_at(e) + i];
        for (var j = 0u; j < e.latents; j++) {
            g -= grads[e.grad + b_enc_at(e) + j] * state[e.state + j * d + i];
        }
        grads[e.grad + b_dec_at(e) + i] = g;
    }
    storageBarrier();
    let c = dispatch.constants[0];
    for (var p = tid; p < count; p += SAE_WG) {
        let at = e.state + p;
        let updated = adam(state[at], grads[e.grad + p], state[at + count], state[at + 2u * count], c);
        state[at] = updated.x;
        state[at + count] = updated.y;
        state[at + 2u * count] = updated.z;
    }
    storageBarrier();
    // SaeParams::normalise_decoder.
    for (var j = tid; j < e.latents; j += SAE_WG) {
        let row = e.state + w_dec_at(e) + j * d;
        var sum = 0.0;
        for (var i = 0u; i < d; i++) {
            sum += state[row + i] * state[row + i];
        }
        let norm = sqrt(sum);
        if norm > 0.0 {
            for (var i = 0u; i < d; i++) {
                state[row + i] = state[row + i] / norm;
            }
        }
    }
}

@compute @workgroup_size(SAE_WG)
fn sae_loss(@builtin(global_invocation_id) id: vec3<u32>) {
    let q = id.x;
    if q >= arrayLength(&saes) {
        return;
    }
    let e = saes[q];
    var total = 0.0;
    for (var s = 0u; s < shard.config.batch; s++) {
        total += grads[e.samples + s] + grads[e.samples + shard.config.batch + s];
    }
    losses[q] = total / f32(shard.config.batch);
}
