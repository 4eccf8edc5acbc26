// The tiled trainer's optimizer pass: one thread per parameter, Adam/AdamW in optim::adam_update's
// order; at log steps the first thread of each instance also sums the partial losses of
// output_delta, in tile order.

@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read> table: array<StepConstants>;
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let count = config.hidden * config.features + config.features;
    let total = config.instances * count;
    let index = id.y * groups.x * 256u + id.x;
    if index >= total {
        return;
    }
    let c = table[params.table_offset];
    let updated = adam(state[index], grad[index], state[total + index], state[2u * total + index], c);
    state[index] = updated.x;
    state[total + index] = updated.y;
    state[2u * total + index] = updated.z;

    if index % count == 0u && is_log_step(params.first_step) {
        let instance = index / count;
        let tiles = ((config.features + 15u) / 16u) * ((config.batch + 15u) / 16u);
        var loss = 0.0;
        for (var t = 0u; t < tiles; t++) {
            loss += grad[total + instance * tiles + t];
        }
        losses[params.log_slot * config.instances + instance] = loss;
    }
}
