// Writes one batch of features to a buffer: used only by the tests, to check that the kernels' sampler
// reproduces FeatureSource::sample bit for bit. Invocation = (group, sample); batch [samples][features].

@group(0) @binding(STATE_BINDING) var<storage, read_write> batch: array<f32>;

@compute @workgroup_size(SAMPLER_WG)
fn generate(@builtin(global_invocation_id) id: vec3<u32>) {
    let groups = (shard.config.features + 3u) / 4u;
    let group = id.x % groups;
    let sample = id.x / groups;
    if sample >= shard.config.batch {
        return;
    }
    let x = sample_group(shard.config.first_instance, dispatch.params.first_step, sample, group, threshold_of(0u));
    for (var lane = 0u; lane < 4u; lane++) {
        let feature = group * 4u + lane;
        if feature < shard.config.features {
            batch[sample * shard.config.features + feature] = x[lane];
        }
    }
}
