// Shared by every kernel (after the generated prelude of src/gpu/abi.rs, which declares the structs
// Config, Params and StepConstants, the kernel constants and the binding numbers): the shard and
// dispatch buffers, the feature sampler, the output delta of src/model.rs and the Adam step of
// src/optim.rs. Config and Params are read from storage, never from uniforms: Mesa 22's lavapipe
// re-specialises a kernel, and never frees the copy, every time a uniform buffer is rebound.

// One shard's run constants, then its instances' importances (f32 bits, [instances][features]) and
// presence thresholds ([instances]).
struct Shard {
    config: Config,
    words: array<u32>,
}

// One dispatch (bound at a dynamic offset): which steps it runs, then their optimizer constants.
struct Dispatch {
    params: Params,
    constants: array<StepConstants>,
}

@group(0) @binding(SHARD_BINDING) var<storage, read> shard: Shard;
@group(0) @binding(DISPATCH_BINDING) var<storage, read> dispatch: Dispatch;

fn importance_at(instance: u32, feature: u32) -> f32 {
    return bitcast<f32>(shard.words[instance * shard.config.features + feature]);
}

fn threshold_of(instance: u32) -> u32 {
    return shard.words[shard.config.instances * shard.config.features + instance];
}

// Whether `step` is a log point (trainer::is_log_step).
fn is_log_step(step: u32) -> bool {
    return step % shard.config.log_every == 0u || step + 1u == shard.config.total_steps;
}

// Features 4·group + 0..3 of one sample, exactly as FeatureSource::sample: zero where absent and past
// the last feature; the value call is skipped when no valid lane is present.
fn sample_group(instance: u32, step: u32, sample: u32, group: u32, threshold: u32) -> vec4<f32> {
    let groups = (shard.config.features + 3u) / 4u;
    let index = sample * groups + group;
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    let mask = philox4x32_10(vec4<u32>(index, step, instance, shard.config.mask_stream), key);
    let lanes = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(group * 4u);
    let on = (mask <= vec4<u32>(threshold)) & (lanes < vec4<u32>(shard.config.features));
    if !any(on) {
        return vec4<f32>(0.0);
    }
    let value = philox4x32_10(vec4<u32>(index, step, instance, shard.config.value_stream), key);
    return select(vec4<f32>(0.0), vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 16777216.0), on);
}

// ∂loss/∂y for one feature (model::output_delta): 2c·I·(x' − x), zero where the ReLU is off.
fn delta_of(y: f32, x: f32, importance: f32) -> f32 {
    if shard.config.relu != 0u && !(y > 0.0) {
        return 0.0;
    }
    let two_c = shard.config.scale + shard.config.scale;
    return two_c * importance * (y - x);
}

// I·(x' − x)², unscaled (model::output_delta multiplies the sum by c).
fn sq_error(y: f32, x: f32, importance: f32) -> f32 {
    var out = y;
    if shard.config.relu != 0u && !(y > 0.0) {
        out = 0.0;
    }
    let err = out - x;
    return importance * err * err;
}

// One Adam/AdamW update in optim::adam_update's order; returns (param, m, v).
fn adam(param: f32, grad: f32, m: f32, v: f32, c: StepConstants) -> vec3<f32> {
    let g = grad + c.l2 * param;
    var p = param * c.decay_factor;
    let m2 = shard.config.beta1 * m + (1.0 - shard.config.beta1) * g;
    let v2 = shard.config.beta2 * v + (1.0 - shard.config.beta2) * g * g;
    let denom = sqrt(v2) / c.bias2_sqrt + shard.config.eps;
    p = p - c.step_size * (m2 / denom);
    return vec3<f32>(p, m2, v2);
}
