//! Philox4x32-10 of eight counters in AVX2 registers, for the chunks that run under AVX2: the same
//! words as [`crate::features::philox4x32_10_lanes`], in about half the instructions.
//!
//! The portable generator holds each counter word as four u64 pairs and leaves the compiler to
//! vectorize the loops; measured with callgrind, that took about 380 instructions per call of eight
//! lanes on AVX2, a third of the `basic` step. Here each counter word of the eight lanes is one
//! 256-bit register: the high and low halves of the 32×32-bit products come from `vpmuludq` on the
//! even lanes and on the odd lanes shifted down, merged with one blend each; the presence bytes
//! are transposed to one lane's sixteen bytes per register half and compared with the threshold's
//! top byte (`vpmaxub`, `vpcmpeqb`), each register giving two lanes' bits by `vpmovmskb`.

use crate::features::{PhiloxLanes, LANES, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1};
use std::arch::x86_64::*;

/// The AVX2 generator. Used only as the generator of `lanes::Avx8`, which exists only inside
/// chunks that run under `pulp::x86::V3` (which checked that the processor has AVX2).
pub struct Avx2Philox;

/// The high and low 32 bits of the products of every lane of `c` with `multiplier` (every lane).
#[inline(always)]
unsafe fn products(c: __m256i, multiplier: __m256i) -> (__m256i, __m256i) {
    let even = _mm256_mul_epu32(c, multiplier);
    let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(c), multiplier);
    (
        _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd),
        _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd)),
    )
}

/// The four output words of the eight counters `[first[lane], rest[0], rest[1], rest[2]]`.
#[inline(always)]
unsafe fn rounds(first: [u32; LANES], rest: [u32; 3], key: [u32; 2]) -> [__m256i; 4] {
    let splat = |v: u32| _mm256_set1_epi32(v as i32);
    let mut c0 = _mm256_loadu_si256(first.as_ptr().cast());
    let (mut c1, mut c2, mut c3) = (splat(rest[0]), splat(rest[1]), splat(rest[2]));
    let (m0, m1) = (splat(PHILOX_M0), splat(PHILOX_M1));
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = products(c0, m0);
        let (hi1, lo1) = products(c2, m1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), splat(k0));
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), splat(k1));
        (c1, c3) = (lo1, lo0);
    }
    [c0, c1, c2, c3]
}

impl PhiloxLanes for Avx2Philox {
    #[inline(always)]
    fn words(first: [u32; LANES], rest: [u32; 3], key: [u32; 2]) -> [[u32; LANES]; 4] {
        // SAFETY: only reached from chunks running under AVX2 (see the type).
        unsafe { rounds(first, rest, key).map(bytemuck::cast) }
    }

    #[inline(always)]
    fn presence_bytes(
        first: [u32; LANES],
        rest: [u32; 3],
        key: [u32; 2],
        top: u32,
    ) -> ([u32; LANES / 2], [u32; LANES / 2]) {
        // SAFETY: as in `words`.
        unsafe {
            // Transpose (word, lane) to (lane, word): register k holds lane k's four words in its
            // low half and lane k + 4's in its high half, so that byte j of word w of a lane is byte
            // 4w + j of its half, and its movemask bit.
            let [c0, c1, c2, c3] = rounds(first, rest, key);
            let (t0, t1) = (_mm256_unpacklo_epi32(c0, c1), _mm256_unpackhi_epi32(c0, c1));
            let (t2, t3) = (_mm256_unpacklo_epi32(c2, c3), _mm256_unpackhi_epi32(c2, c3));
            let lanes = [
                _mm256_unpacklo_epi64(t0, t2),
                _mm256_unpackhi_epi64(t0, t2),
                _mm256_unpacklo_epi64(t1, t3),
                _mm256_unpackhi_epi64(t1, t3),
            ];
            let top = _mm256_set1_epi8(top as u8 as i8);
            let (mut below, mut equal) = ([0u32; 4], [0u32; 4]);
            for (k, bytes) in lanes.into_iter().enumerate() {
                // byte ≤ top (unsigned) iff max(byte, top) = top.
                let at_most = _mm256_cmpeq_epi8(_mm256_max_epu8(bytes, top), top);
                equal[k] = _mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, top)) as u32;
                below[k] = _mm256_movemask_epi8(at_most) as u32 & !equal[k];
            }
            // (lane k | lane k + 4 << 16) to (lane 2k | lane 2k + 1 << 16).
            let pair = |m: [u32; 4]| {
                [
                    m[0] & 0xFFFF | m[1] << 16,
                    m[2] & 0xFFFF | m[3] << 16,
                    m[0] >> 16 | m[1] & 0xFFFF_0000,
                    m[2] >> 16 | m[3] & 0xFFFF_0000,
                ]
            };
            (pair(below), pair(equal))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{philox4x32_10_lanes, Portable};

    /// Words and presence bytes equal the portable generator's, over counters and top bytes that
    /// include the edges (0, 0xFF, a lane that wraps).
    #[test]
    fn avx2_generator_equals_the_portable_one() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        let key = [0x243f_6a88, 0x85a3_08d3];
        for base in [0u32, 1, 12_345, u32::MAX - 3] {
            let first = std::array::from_fn(|l| base.wrapping_add(l as u32 * 7));
            for rest in [[0, 0, 0], [5, 6, 7], [u32::MAX; 3]] {
                assert_eq!(
                    Avx2Philox::words(first, rest, key),
                    philox4x32_10_lanes(first, rest, key)
                );
                for top in [0, 1, 0x7F, 0x80, 0xC0, 0xFF] {
                    assert_eq!(
                        Avx2Philox::presence_bytes(first, rest, key, top),
                        Portable::presence_bytes(first, rest, key, top),
                        "top byte {top:#x}"
                    );
                }
            }
        }
    }
}
