// Writes the batch of step `dispatch.params.first_step` of every instance of the shard to a buffer: the
// tiled trainer's first pass (its kernels then read X instead of drawing it again), and what the tests
// compare with FeatureSource::sample bit for bit. Invocation = (sample · groups + group, 1, instance);
// batch [instances][samples][features].

@group(0) @binding(BATCH_BINDING) var<storage, read_write> batch: array<f32>;

@compute @workgroup_size(SAMPLER_WG)
fn generate(@builtin(global_invocation_id) id: vec3<u32>) {
    let groups = (shard.config.features + 3u) / 4u;
    let group = id.x % groups;
    let sample = id.x / groups;
    let instance = id.z;
    if sample >= shard.config.batch {
        return;
    }
    let x = sample_group(shard.config.first_instance + instance, dispatch.params.first_step, sample, group, threshold_of(instance));
    let row = (instance * shard.config.batch + sample) * shard.config.features;
    for (var lane = 0u; lane < 4u; lane++) {
        let feature = group * 4u + lane;
        if feature < shard.config.features {
            batch[row + feature] = x[lane];
        }
    }
}
