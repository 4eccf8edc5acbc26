// Philox4x32-10 (Salmon et al., SC 2011), bit for bit the generator of src/features.rs.
// WGSL has no 64-bit integers, so the 32×32 → 64-bit products are built from 16-bit halves.

// The multipliers PHILOX_M0/M1 and the round-key increments PHILOX_KEY_STEP_r = r·(W0, W1) come
// from the generated prelude (src/gpu/abi.rs), which takes them from src/features.rs.

// The high 32 bits of a · b (the low half is the wrapping product a * b).
fn mulhi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // Sum of the middle terms plus the carry out of the low half; each term is < 2^32 and the sum
    // of three 16-bit quantities cannot overflow.
    let cross = (lo_lo >> 16u) + (hi_lo & 0xFFFFu) + (lo_hi & 0xFFFFu);
    return hi_hi + (hi_lo >> 16u) + (lo_hi >> 16u) + (cross >> 16u);
}

// One Philox round with round key k.
fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let hi0 = mulhi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = mulhi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    return vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

// The ten rounds are written out, with the round keys key + r·(W0, W1) mod 2^32 precomputed: besides
// sparing the loop, this keeps kernels well within llvmpipe's budget of 65,535 loop iterations per
// invocation (see LOOP_BUDGET in src/gpu/trainer.rs).
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = philox_round(counter, key);
    c = philox_round(c, key + PHILOX_KEY_STEP_1);
    c = philox_round(c, key + PHILOX_KEY_STEP_2);
    c = philox_round(c, key + PHILOX_KEY_STEP_3);
    c = philox_round(c, key + PHILOX_KEY_STEP_4);
    c = philox_round(c, key + PHILOX_KEY_STEP_5);
    c = philox_round(c, key + PHILOX_KEY_STEP_6);
    c = philox_round(c, key + PHILOX_KEY_STEP_7);
    c = philox_round(c, key + PHILOX_KEY_STEP_8);
    return philox_round(c, key + PHILOX_KEY_STEP_9);
}
