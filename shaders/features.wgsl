// Writes the batch of step `dispatch.params.first_step` of every instance of the shard to a buffer: the
// tiled trainer's first pass (its kernels then read X instead of drawing it again), and what the tests
// compare with FeatureSource::sample bit for bit. Invocation = (sample · chunks + chunk, 1, instance),
// one per chunk of 16 features (one presence call; src/gpu/abi.rs, sampler_workgroups);
// batch [instances][samples][features].

@group(0) @binding(BATCH_BINDING) var<storage, read_write> batch: array<f32>;

@compute @workgroup_size(SAMPLER_WG)
fn generate(@builtin(global_invocation_id) id: vec3<u32>) {
    let chunks = (shard.config.features + 15u) / 16u;
    let chunk = id.x % chunks;
    let sample = id.x / chunks;
    let instance = id.z;
    if sample >= shard.config.batch {
        return;
    }
    let x = sample_chunk(shard.config.first_instance + instance, dispatch.params.first_step, sample, chunk, threshold_of(instance));
    let row = (instance * shard.config.batch + sample) * shard.config.features;
    store_group(row, 4u * chunk, x.g0);
    store_group(row, 4u * chunk + 1u, x.g1);
    store_group(row, 4u * chunk + 2u, x.g2);
    store_group(row, 4u * chunk + 3u, x.g3);
}

// Features 4·group + 0..3 of the sample whose row starts at `row`, those before the last feature.
fn store_group(row: u32, group: u32, x: vec4<f32>) {
    for (var lane = 0u; lane < 4u; lane++) {
        let feature = group * 4u + lane;
        if feature < shard.config.features {
            batch[row + feature] = x[lane];
        }
    }
}
