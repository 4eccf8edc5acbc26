// Shared by every kernel (after the generated prelude of src/gpu/abi.rs, which declares the structs
// Config, Params and StepConstants, the kernel constants and the binding numbers): the shard and
// dispatch buffers, the feature sampler, the output delta of src/model.rs and the Adam step of
// src/optim.rs. Config and Params are read from storage, never from uniforms: Mesa 22's lavapipe
// re-specialises a kernel, and never frees the copy, every time a uniform buffer is rebound.

// One shard's run constants, then its instances' importances (f32 bits, [instances][features]),
// presence thresholds ([instances]) and the feature distribution's layout words
// (features::Distribution::layout_words: values (0 uniform, 1 binary, 2 normal, 3 signed), exactly-K,
// anticorrelated mode, plain; then per feature its set's first feature and size | kind << 30).
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

// Where the layout words start.
fn layout_at() -> u32 {
    return shard.config.instances * (shard.config.features + 1u);
}

// The four mask words of group `group` of `sample`.
fn mask_words(instance: u32, step: u32, sample: u32, group: u32) -> vec4<u32> {
    let groups = (shard.config.features + 3u) / 4u;
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    return philox4x32_10(vec4<u32>(sample * groups + group, step, instance, shard.config.mask_stream), key);
}

// Features 4·group + 0..3 of one sample, exactly as FeatureSource::sample: zero where absent and past
// the last feature; the value call is skipped when no valid lane is present.
fn sample_group(instance: u32, step: u32, sample: u32, group: u32, threshold: u32) -> vec4<f32> {
    let groups = (shard.config.features + 3u) / 4u;
    let index = sample * groups + group;
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    let mask = philox4x32_10(vec4<u32>(index, step, instance, shard.config.mask_stream), key);
    let lanes = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(group * 4u);
    let valid = lanes < vec4<u32>(shard.config.features);
    let at = layout_at();
    var on = (mask <= vec4<u32>(threshold)) & valid;
    if shard.words[at + 3u] == 0u {
        on = present_general(instance, step, sample, group, threshold, mask) & valid;
    }
    if !any(on) {
        return vec4<f32>(0.0);
    }
    let value = philox4x32_10(vec4<u32>(index, step, instance, shard.config.value_stream), key);
    var x = vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 16777216.0);
    let values = shard.words[at];
    if values == 1u {
        x = vec4<f32>(1.0);
    } else if values == 2u {
        x = vec4<f32>(normal_value(value.x), normal_value(value.y), normal_value(value.z), normal_value(value.w));
    } else if values == 3u {
        // Signed (the abs model's): features::signed_float, 2⁻²³ · (word >> 8) − 1.
        x = vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 8388608.0) - vec4<f32>(1.0);
    }
    return select(vec4<f32>(0.0), x, on);
}

// Distribution::value for normal values: 0.5 + 0.2·z in units of 2⁻²⁴, z from the sum of the word's
// four bytes, clipped to [0, 1], all in integers.
fn normal_value(word: u32) -> f32 {
    let sum = i32((word & 255u) + ((word >> 8u) & 255u) + ((word >> 16u) & 255u) + (word >> 24u));
    let fixed = clamp(0x800000i + (sum - 510i) * 22703i, 0i, 0x1000000i);
    return f32(fixed) * (1.0 / 16777216.0);
}

// Presence of features 4·group + 0..3 for a distribution other than the default, following
// FeatureSource::sample_general: exactly-K by rank among the sample's mask words, else each feature
// by its set (independent: its own word; correlated: the first member's; anticorrelated: the first
// member's word and, in paper mode, the second member's for the choice).
fn present_general(instance: u32, step: u32, sample: u32, group: u32, threshold: u32, own: vec4<u32>) -> vec4<bool> {
    let at = layout_at();
    let n = shard.config.features;
    let k = shard.words[at + 1u];
    if k != 0u {
        var ranks = vec4<u32>(0u);
        let groups = (n + 3u) / 4u;
        let mine = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(group * 4u);
        for (var other = 0u; other < groups; other++) {
            var keys = own;
            if other != group {
                keys = mask_words(instance, step, sample, other);
            }
            for (var j = 0u; j < 4u; j++) {
                let feature = other * 4u + j;
                if feature >= n {
                    break;
                }
                let key = vec4<u32>(keys[j]);
                let smaller = (key < own) | ((key == own) & (vec4<u32>(feature) < mine));
                ranks += select(vec4<u32>(0u), vec4<u32>(1u), smaller);
            }
        }
        return ranks < vec4<u32>(k);
    }
    var on = own <= vec4<u32>(threshold);
    for (var lane = 0u; lane < 4u; lane++) {
        let feature = group * 4u + lane;
        if feature >= n {
            break;
        }
        let start = shard.words[at + 4u + 2u * feature];
        let size_kind = shard.words[at + 5u + 2u * feature];
        let kind = size_kind >> 30u;
        if kind == 0u {
            continue;
        }
        let size = size_kind & 0x3FFFFFFFu;
        var first = own[start % 4u];
        if start / 4u != group {
            first = mask_words(instance, step, sample, start / 4u)[start % 4u];
        }
        if kind == 1u {
            on[lane] = first <= threshold;
        } else if shard.words[at + 2u] == 0u {
            let second_feature = start + 1u;
            var second = own[second_feature % 4u];
            if second_feature / 4u != group {
                second = mask_words(instance, step, sample, second_feature / 4u)[second_feature % 4u];
            }
            on[lane] = first <= threshold && mulhi(second, size) == feature - start;
        } else {
            on[lane] = first / (threshold + 1u) == feature - start;
        }
    }
    return on;
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
