// The second pass of a split step (src/gpu/register.rs, Variant::split): one workgroup per instance
// sums the partial sums its slices wrote, in slice order (so runs are deterministic), and applies
// Adam/AdamW in optim::adam_update's order, with the bias gradient of the all-zero samples in closed
// form; at log steps it writes the loss (each slice's partial already holds its zero samples' loss).

// [params | first moments | second moments], each [instances][m·n + n] with W before b.
@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
// [log slot][instance]
@group(0) @binding(LOSSES_BINDING) var<storage, read_write> losses: array<f32>;
// [instances][slices][values]: per slice ∂W, ∂b, the loss and the count of all-zero samples.
@group(0) @binding(GRAD_BINDING) var<storage, read_write> partials: array<f32>;

// Value `i` of `instance` summed over its slices in slice order.
fn slice_sum(instance: u32, i: u32, values: u32) -> f32 {
    var acc = 0.0;
    for (var s = 0u; s < shard.config.slices; s++) {
        acc += partials[(instance * shard.config.slices + s) * values + i];
    }
    return acc;
}

@compute @workgroup_size(REGISTER_WG)
fn apply_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let instance = wid.x;
    let mn = shard.config.hidden * shard.config.features;
    let count = mn + shard.config.features;
    let values = count + 2u;
    let total_count = shard.config.instances * count;
    let step = dispatch.params.first_step;
    let zeros = slice_sum(instance, count + 1u, values);
    let c = dispatch.constants[0];
    for (var p = tid; p < count; p += REGISTER_WG) {
        let at = instance * count + p;
        var g = slice_sum(instance, p, values);
        if p >= mn {
            g += zeros * delta_of(state[at], 0.0, importance_at(instance, p - mn));
        }
        let updated = adam(state[at], g, state[total_count + at], state[2u * total_count + at], c);
        state[at] = updated.x;
        state[total_count + at] = updated.y;
        state[2u * total_count + at] = updated.z;
    }
    if tid == 0u && is_log_step(step) {
        let slot = dispatch.params.log_slot;
        losses[slot * shard.config.instances + instance] = slice_sum(instance, count, values) * shard.config.scale;
    }
}
