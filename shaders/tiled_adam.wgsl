// The tiled trainer's optimizer pass: one thread per parameter, Adam/AdamW in optim::adam_update's
// order; at log steps the first thread of each instance also sums the partial losses of
// output_delta, in tile order.

@group(0) @binding(STATE_BINDING) var<storage, read_write> state: array<f32>;
@group(0) @binding(LOSSES_BINDING) var<storage, read_write> losses: array<f32>;
@group(0) @binding(GRAD_BINDING) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(ADAM_WG)
fn adam_step(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let count = (1u + shard.config.untied) * shard.config.hidden * shard.config.features + shard.config.features;
    let total = shard.config.instances * count;
    let index = id.y * groups.x * ADAM_WG + id.x;
    if index >= total {
        return;
    }
    let c = dispatch.constants[0];
    let updated = adam(state[index], grad[index], state[total + index], state[2u * total + index], c);
    state[index] = updated.x;
    state[total + index] = updated.y;
    state[2u * total + index] = updated.z;

    if index % count == 0u && is_log_step(dispatch.params.first_step) {
        let instance = index / count;
        let tiles = ((shard.config.features + TILE - 1u) / TILE) * ((shard.config.batch + TILE - 1u) / TILE);
        var loss = 0.0;
        for (var t = 0u; t < tiles; t++) {
            loss += grad[total + instance * tiles + t];
        }
        losses[dispatch.params.log_slot * shard.config.instances + instance] = loss;
    }
}
