// Shared by every kernel (prepended after philox.wgsl): the uniforms, the feature sampler, the
// output delta of src/model.rs and the Adam step of src/optim.rs.

// Per shard of instances, constant for the whole run (mirrors `Config` in src/gpu/mod.rs).
struct Config {
    features: u32,
    hidden: u32,
    batch: u32,
    // Instances in this shard, and the global index of its first one (the Philox instance word).
    instances: u32,
    first_instance: u32,
    relu: u32,
    log_every: u32,
    total_steps: u32,
    seed_lo: u32,
    seed_hi: u32,
    mask_stream: u32,
    value_stream: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // c = 1 / (batch · features), the notebook's mean.
    scale: f32,
}

// Per dispatch (a uniform with a dynamic offset): which steps it runs and where their constants and
// losses go.
struct Params {
    first_step: u32,
    steps: u32,
    table_offset: u32,
    log_slot: u32,
}

// Mirrors optim::StepConstants.
struct StepConstants {
    step_size: f32,
    bias2_sqrt: f32,
    decay_factor: f32,
    l2: f32,
}

// The bindings every kernel shares (one layout for all: `layout` in src/gpu/mod.rs); kernels declare the
// others (2 and 4–8) as they use them.
@group(0) @binding(0) var<uniform> config: Config;
@group(0) @binding(1) var<uniform> params: Params;
// The importances (f32 bits, [instances][features]) followed by the presence thresholds ([instances]).
@group(0) @binding(3) var<storage, read> inst: array<u32>;

fn importance_at(instance: u32, feature: u32) -> f32 {
    return bitcast<f32>(inst[instance * config.features + feature]);
}

fn threshold_of(instance: u32) -> u32 {
    return inst[config.instances * config.features + instance];
}

// Whether `step` is a log point (trainer::is_log_step).
fn is_log_step(step: u32) -> bool {
    return step % config.log_every == 0u || step + 1u == config.total_steps;
}

// Features 4·group + 0..3 of one sample, exactly as FeatureSource::sample: zero where absent and past
// the last feature; the value call is skipped when no valid lane is present.
fn sample_group(instance: u32, step: u32, sample: u32, group: u32, threshold: u32) -> vec4<f32> {
    let groups = (config.features + 3u) / 4u;
    let index = sample * groups + group;
    let key = vec2<u32>(config.seed_lo, config.seed_hi);
    let mask = philox4x32_10(vec4<u32>(index, step, instance, config.mask_stream), key);
    let lanes = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(group * 4u);
    let on = (mask <= vec4<u32>(threshold)) & (lanes < vec4<u32>(config.features));
    if !any(on) {
        return vec4<f32>(0.0);
    }
    let value = philox4x32_10(vec4<u32>(index, step, instance, config.value_stream), key);
    return select(vec4<f32>(0.0), vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 16777216.0), on);
}

// ∂loss/∂y for one feature (model::output_delta): 2c·I·(x' − x), zero where the ReLU is off.
fn delta_of(y: f32, x: f32, importance: f32) -> f32 {
    if config.relu != 0u && !(y > 0.0) {
        return 0.0;
    }
    let two_c = config.scale + config.scale;
    return two_c * importance * (y - x);
}

// I·(x' − x)², unscaled (model::output_delta multiplies the sum by c).
fn sq_error(y: f32, x: f32, importance: f32) -> f32 {
    var out = y;
    if config.relu != 0u && !(y > 0.0) {
        out = 0.0;
    }
    let err = out - x;
    return importance * err * err;
}

// One Adam/AdamW update in optim::adam_update's order; returns (param, m, v).
fn adam(param: f32, grad: f32, m: f32, v: f32, c: StepConstants) -> vec3<f32> {
    let g = grad + c.l2 * param;
    var p = param * c.decay_factor;
    let m2 = config.beta1 * m + (1.0 - config.beta1) * g;
    let v2 = config.beta2 * v + (1.0 - config.beta2) * g * g;
    let denom = sqrt(v2) / c.bias2_sqrt + config.eps;
    p = p - c.step_size * (m2 / denom);
    return vec3<f32>(p, m2, v2);
}
