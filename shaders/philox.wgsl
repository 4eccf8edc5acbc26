// Philox4x32-10 (Salmon et al., SC 2011), bit for bit the generator of src/features.rs.
// WGSL has no 64-bit integers, so the 32×32 → 64-bit products are built from 16-bit halves.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

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

// The ten rounds are written out, with the round keys key + i·(W0, W1) mod 2^32 precomputed: besides
// sparing the loop, this keeps kernels well within llvmpipe's budget of 65,535 loop iterations per
// invocation (see LOOP_BUDGET in src/gpu/trainer.rs).
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = philox_round(counter, key);
    c = philox_round(c, key + vec2<u32>(PHILOX_W0, PHILOX_W1));
    c = philox_round(c, key + vec2<u32>(0x3C6EF372u, 0x76CF5D0Au));
    c = philox_round(c, key + vec2<u32>(0xDAA66D2Bu, 0x32370B8Fu));
    c = philox_round(c, key + vec2<u32>(0x78DDE6E4u, 0xED9EBA14u));
    c = philox_round(c, key + vec2<u32>(0x1715609Du, 0xA9066899u));
    c = philox_round(c, key + vec2<u32>(0xB54CDA56u, 0x646E171Eu));
    c = philox_round(c, key + vec2<u32>(0x5384540Fu, 0x1FD5C5A3u));
    c = philox_round(c, key + vec2<u32>(0xF1BBCDC8u, 0xDB3D7428u));
    return philox_round(c, key + vec2<u32>(0x8FF34781u, 0x96A522ADu));
}
