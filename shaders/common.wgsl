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

// Features 16·chunk + 0..15 of one sample, four per group (g0 holds features 16·chunk + 0..3).
struct Chunk {
    g0: vec4<f32>,
    g1: vec4<f32>,
    g2: vec4<f32>,
    g3: vec4<f32>,
}

// The mask words of a chunk's four groups (zero where no call was made).
struct ChunkMasks {
    g0: vec4<u32>,
    g1: vec4<u32>,
    g2: vec4<u32>,
    g3: vec4<u32>,
}

// Features 16·chunk + 0..15 of one sample, exactly as FeatureSource::sample: zero where absent and
// past the last feature. Plain distributions: presence from the bytes of one call of the presence
// stream, the mask call of a group made only where one of its bytes ties with the threshold's top
// byte (and not when every tie passes); sets and exactly-K: every group's mask words. Then ⌈p / 4⌉
// value calls for the chunk's p present features, the k-th of them taking word k mod 4 of call
// k / 4. Each kind of call, and the rules of sets and exactly-K, from one call site in a loop:
// llvmpipe runs every branch of straight-line code masked, so a site costs whether a lane takes it
// or not, while a loop runs as many iterations as its busiest lane needs (as a warp does); its loop
// budget counts them (at most gpu::abi::SAMPLER_CHUNK_LOOPS per chunk).
fn sample_chunk(instance: u32, step: u32, sample: u32, chunk: u32, threshold: u32) -> Chunk {
    let n = shard.config.features;
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    let plain = shard.words[layout_at() + 3u] != 0u;
    let group = 4u * chunk;
    let groups_here = min((n + 3u) / 4u - group, 4u);
    var bytes = vec4<u32>(0u);
    // Groups whose mask call is needed, bit g for group 4·chunk + g.
    var pending = (1u << groups_here) - 1u;
    if plain {
        let index = sample * ((n + 15u) / 16u) + chunk;
        bytes = philox4x32_10(vec4<u32>(index, step, instance, shard.config.presence_stream), key);
        let top = threshold >> 24u;
        pending = u32(any(tie_lanes(bytes.x, top, group))) | (u32(any(tie_lanes(bytes.y, top, group + 1u))) << 1u)
            | (u32(any(tie_lanes(bytes.z, top, group + 2u))) << 2u) | (u32(any(tie_lanes(bytes.w, top, group + 3u))) << 3u);
        if (threshold & 0xFFFFFFu) == 0xFFFFFFu {
            pending = 0u;
        }
    }
    // The mask calls, lowest group first, from one call site in a loop: a warp (an llvmpipe SIMD
    // group) runs as many iterations as its busiest lane needs, none in most chunks.
    var masks = ChunkMasks(vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u), vec4<u32>(0u));
    while pending != 0u {
        masks = with_next_mask(masks, pending, instance, step, sample, group);
        pending &= pending - 1u;
    }
    // Bit i: feature 16·chunk + i is present.
    var bits = 0u;
    if plain {
        bits = plain_bits(bytes.x, masks.g0, threshold, group) | (plain_bits(bytes.y, masks.g1, threshold, group + 1u) << 4u)
            | (plain_bits(bytes.z, masks.g2, threshold, group + 2u) << 8u) | (plain_bits(bytes.w, masks.g3, threshold, group + 3u) << 12u);
    } else {
        // The distribution's rules from one call site, in a loop over the chunk's groups (each
        // inlined copy costs llvmpipe its run, taken or not).
        for (var g = 0u; g < groups_here; g++) {
            let on = present_general(instance, step, sample, group + g, threshold, mask_of(masks, g));
            bits |= packed(on & lanes_valid(group + g)) << (4u * g);
        }
    }
    let present = countOneBits(bits);
    var out = Chunk(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if present == 0u {
        return out;
    }
    // FeatureSource::value_calls: call q serves ranks 4q .. 4q + 3 (one call site in a loop, as the
    // mask calls).
    let index = sample * ((n + 3u) / 4u) + group;
    var v0 = vec4<u32>(0u);
    var v1 = vec4<u32>(0u);
    var v2 = vec4<u32>(0u);
    var v3 = vec4<u32>(0u);
    for (var q = 0u; 4u * q < present; q++) {
        let words = philox4x32_10(vec4<u32>(index + q, step, instance, shard.config.value_stream), key);
        v0 = select(v0, words, q == 0u);
        v1 = select(v1, words, q == 1u);
        v2 = select(v2, words, q == 2u);
        v3 = select(v3, words, q == 3u);
    }
    out.g0 = group_values(v0, v1, v2, v3, bits, 0u);
    out.g1 = group_values(v0, v1, v2, v3, bits, 1u);
    out.g2 = group_values(v0, v1, v2, v3, bits, 2u);
    out.g3 = group_values(v0, v1, v2, v3, bits, 3u);
    return out;
}

// Which features 4·group + 0..3 exist (are below n).
fn lanes_valid(group: u32) -> vec4<bool> {
    return vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(4u * group) < vec4<u32>(shard.config.features);
}

// The four presence bytes of `word` (byte j for feature 4·group + j).
fn bytes_of(word: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
}

// Which features 4·group + 0..3 tie: presence byte (of `word`) equal to `top`.
fn tie_lanes(word: u32, top: u32, group: u32) -> vec4<bool> {
    return (bytes_of(word) == vec4<u32>(top)) & lanes_valid(group);
}

// `masks` with the mask words of the lowest group of `pending` (bit g: group first + g, pending ≠ 0)
// filled in.
fn with_next_mask(masks: ChunkMasks, pending: u32, instance: u32, step: u32, sample: u32, first: u32) -> ChunkMasks {
    let g = firstTrailingBit(pending);
    let words = mask_words(instance, step, sample, first + g);
    var out = masks;
    out.g0 = select(out.g0, words, g == 0u);
    out.g1 = select(out.g1, words, g == 1u);
    out.g2 = select(out.g2, words, g == 2u);
    out.g3 = select(out.g3, words, g == 3u);
    return out;
}

// The presence bits of features 4·group + 0..3 of a plain distribution (bit j for feature
// 4·group + j, none past the last feature), FeatureSource::sample: byte j of `word` (the chunk's
// presence word for this group) below the threshold's top byte, or equal to it and the mask word's
// top 24 bits ≤ its low 24 bits (`mask` is zero where no call was made: every tie passes then).
fn plain_bits(word: u32, mask: vec4<u32>, threshold: u32, group: u32) -> u32 {
    let bytes = bytes_of(word);
    let top = vec4<u32>(threshold >> 24u);
    let passes = (mask >> vec4<u32>(8u)) <= vec4<u32>(threshold & 0xFFFFFFu);
    return packed(((bytes < top) | ((bytes == top) & passes)) & lanes_valid(group));
}

// Four flags as bits 0..3.
fn packed(on: vec4<bool>) -> u32 {
    let bits = select(vec4<u32>(0u), vec4<u32>(1u, 2u, 4u, 8u), on);
    return bits.x | bits.y | bits.z | bits.w;
}

// The mask words of group 4·chunk + g.
fn mask_of(masks: ChunkMasks, g: u32) -> vec4<u32> {
    let low = select(masks.g0, masks.g1, g == 1u);
    let high = select(masks.g2, masks.g3, g == 3u);
    return select(low, high, g >= 2u);
}

// Features 4·group + 0..3 of the chunk (group g of it) whose presence bits are `bits`: zero where
// absent, else the value of word k mod 4 of value call k / 4 (v0 .. v3), k the feature's rank among
// the chunk's present features.
fn group_values(v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, bits: u32, g: u32) -> vec4<f32> {
    let lane = vec4<u32>(4u * g) + vec4<u32>(0u, 1u, 2u, 3u);
    let on = ((vec4<u32>(bits) >> lane) & vec4<u32>(1u)) != vec4<u32>(0u);
    let ranks = countOneBits(vec4<u32>(bits) & ((vec4<u32>(1u) << lane) - vec4<u32>(1u)));
    return select(vec4<f32>(0.0), values_of(ranked_words(v0, v1, v2, v3, ranks)), on);
}

// The value words of ranks `ranks`: word k mod 4 of value call k / 4 (v0 .. v3), lane by lane.
fn ranked_words(v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, ranks: vec4<u32>) -> vec4<u32> {
    let call = ranks >> vec4<u32>(2u);
    let word = ranks & vec4<u32>(3u);
    let low = select(word_of(v0, word), word_of(v1, word), call == vec4<u32>(1u));
    let high = select(word_of(v2, word), word_of(v3, word), call == vec4<u32>(3u));
    return select(low, high, call >= vec4<u32>(2u));
}

// Word `word[lane]` of `v` in each lane.
fn word_of(v: vec4<u32>, word: vec4<u32>) -> vec4<u32> {
    let low = select(vec4<u32>(v.x), vec4<u32>(v.y), word == vec4<u32>(1u));
    let high = select(vec4<u32>(v.z), vec4<u32>(v.w), word == vec4<u32>(3u));
    return select(low, high, word >= vec4<u32>(2u));
}

// Distribution::value of four value words (uniform, binary, normal or signed, by the layout's
// first word).
fn values_of(value: vec4<u32>) -> vec4<f32> {
    let values = shard.words[layout_at()];
    if values == 1u {
        return vec4<f32>(1.0);
    } else if values == 2u {
        return vec4<f32>(normal_value(value.x), normal_value(value.y), normal_value(value.z), normal_value(value.w));
    } else if values == 3u {
        // Signed (the abs model's): features::signed_float, 2⁻²³ · (word >> 8) − 1.
        return vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 8388608.0) - vec4<f32>(1.0);
    }
    return vec4<f32>(value >> vec4<u32>(8u)) * (1.0 / 16777216.0);
}

// Distribution::value for normal values: 0.5 + 0.2·z in units of 2⁻²⁴, z from the sum of the word's
// four bytes, clipped to [0, 1], all in integers.
fn normal_value(word: u32) -> f32 {
    let sum = i32((word & 255u) + ((word >> 8u) & 255u) + ((word >> 16u) & 255u) + (word >> 24u));
    let fixed = clamp(0x800000i + (sum - 510i) * 22703i, 0i, 0x1000000i);
    return f32(fixed) * (1.0 / 16777216.0);
}

// Presence of features 4·group + 0..3 for a distribution other than the default, following
// FeatureSource::present_features: exactly-K by rank among the sample's mask words, else each feature
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

// ---- Pieces of `sample_chunk`'s plain path for the register kernel's cooperative sampler
// (src/gpu/register.rs, `Variant::cooperative`): there the lanes of a subgroup share out the tie
// mask calls and the value calls of their samples, each lane making the calls of other lanes, and
// each result goes back to the lane that needs it. Same counters, same words, same features.
// (Subgroup operations only in the generated kernel: every kernel includes this file.)

// The presence words of chunk `chunk` of `sample` (one call of the presence stream).
fn presence_words(instance: u32, step: u32, sample: u32, chunk: u32) -> vec4<u32> {
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    let index = sample * ((shard.config.features + 15u) / 16u) + chunk;
    return philox4x32_10(vec4<u32>(index, step, instance, shard.config.presence_stream), key);
}

// Two sets of 16 bits for the features 16·chunk + i of a chunk with presence words `bytes`, bit i
// only where the feature exists: its byte below the threshold's top byte (present), equal to it (a
// tie, settled by the group's mask call).
fn chunk_flags(bytes: vec4<u32>, threshold: u32, chunk: u32) -> vec2<u32> {
    let top = threshold >> 24u;
    let group = 4u * chunk;
    let below = packed((bytes_of(bytes.x) < vec4<u32>(top)) & lanes_valid(group))
        | (packed((bytes_of(bytes.y) < vec4<u32>(top)) & lanes_valid(group + 1u)) << 4u)
        | (packed((bytes_of(bytes.z) < vec4<u32>(top)) & lanes_valid(group + 2u)) << 8u)
        | (packed((bytes_of(bytes.w) < vec4<u32>(top)) & lanes_valid(group + 3u)) << 12u);
    let ties = packed(tie_lanes(bytes.x, top, group)) | (packed(tie_lanes(bytes.y, top, group + 1u)) << 4u)
        | (packed(tie_lanes(bytes.z, top, group + 2u)) << 8u) | (packed(tie_lanes(bytes.w, top, group + 3u)) << 12u);
    return vec2<u32>(below, ties);
}

// The calls a chunk (`chunk_flags` = `flags`) needs besides its presence call, as eight bits: bit g
// (g < 4) the mask call of its group g (one of its features ties, and not every tie passes: as
// `sample_chunk`), bit 4 + q the value call q, for q below ⌈p / 4⌉ with p its features present or
// tied, so that the calls cover the present features however the ties fall (a value call past the
// last present feature is made for nothing; no call changes another).
fn chunk_needs(flags: vec2<u32>, threshold: u32) -> u32 {
    var pending = 0u;
    if (threshold & 0xFFFFFFu) != 0xFFFFFFu {
        let ties = vec4<u32>(flags.y) >> vec4<u32>(0u, 4u, 8u, 12u);
        pending = packed((ties & vec4<u32>(15u)) != vec4<u32>(0u));
    }
    let values = (countOneBits(flags.x | flags.y) + 3u) / 4u;
    return pending | (((1u << values) - 1u) << 4u);
}

// Bits 0..3: which features of a group pass their tie given the group's mask words (the top 24 bits
// of word j at most the threshold's low 24 bits).
fn tie_passes(mask: vec4<u32>, threshold: u32) -> u32 {
    return packed((mask >> vec4<u32>(8u)) <= vec4<u32>(threshold & 0xFFFFFFu));
}

// The call in slot `slot` of the chunks from `first_chunk` on (as `chunk_needs` numbers them, eight
// slots per chunk) for `sample`: a mask call (`mask_words`) or a value call (`sample_chunk`'s).
fn slot_call(instance: u32, step: u32, sample: u32, first_chunk: u32, slot: u32) -> vec4<u32> {
    let key = vec2<u32>(shard.config.seed_lo, shard.config.seed_hi);
    let groups = (shard.config.features + 3u) / 4u;
    let group = 4u * (first_chunk + slot / 8u) + (slot & 3u);
    let stream = select(shard.config.mask_stream, shard.config.value_stream, (slot & 4u) != 0u);
    return philox4x32_10(vec4<u32>(sample * groups + group, step, instance, stream), key);
}

// Features 16·chunk + 0..15 of a sample (zero where absent) from the chunk's presence bits and its
// value calls 0..3 (`values`, zero where none was made): as `sample_chunk` places them.
fn chunk_values(bits: u32, values: ChunkMasks) -> Chunk {
    let v = values;
    return Chunk(group_values(v.g0, v.g1, v.g2, v.g3, bits, 0u), group_values(v.g0, v.g1, v.g2, v.g3, bits, 1u),
        group_values(v.g0, v.g1, v.g2, v.g3, bits, 2u), group_values(v.g0, v.g1, v.g2, v.g3, bits, 3u));
}
