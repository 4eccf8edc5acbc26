//! Random features: the synthetic sparse data every trainer sees, as a pure function of counters.
//!
//! Every entry x[instance, step, sample, feature] (whether it is present, and its value) is computed
//! from (seed, instance, step, sample, feature) alone, with no generator state. The CPU trainer, the
//! WGSL kernels (`shaders/philox.wgsl`, `shaders/features.wgsl`) and a resumed run therefore see the
//! very same batch, bit for bit, in any order.
//!
//! The generator is Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
//! 1, 2, 3", SC 2011; reference implementation and known-answer vectors in Random123,
//! `tests/kat_vectors`). It needs only 32-bit integer multiplies (the high half of a 32×32 product,
//! which WGSL builds from 16-bit halves) and xors, and passes BigCrush with 7 rounds; we use the
//! standard 10.
//!
//! Layout of one Philox call (four 32-bit words out):
//! - key = (seed low 32 bits, seed high 32 bits);
//! - counter = (sample · groups + group, step, instance, stream), where features are taken four at a
//!   time (`group` = feature / 4, `groups` = ⌈n / 4⌉) and the four output words belong to features
//!   4·group + 0..3.
//! - stream [`Stream::TrainMask`] gives presence: feature present iff word ≤ `presence_threshold(density)`;
//!   stream [`Stream::TrainValue`] gives values: (word >> 8) · 2⁻²⁴, exactly uniform on [0, 1) in f32.
//!   The evaluation batch uses the Eval streams with step 0, and initial weights the Init stream.
//!
//! Value words are only needed where a mask word said "present"; both trainers skip the value call
//! for groups of four absent features, which is what makes very sparse data cheap.

/// Philox4x32 round multipliers and Weyl key increments (Random123, philox.h).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32 with `rounds` rounds. The trainers use [`philox4x32_10`]; other round counts exist only
/// to check the published known-answer vectors of Philox4x32-7.
pub fn philox4x32(rounds: u32, counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for round in 0..rounds {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c0);
        let p1 = u64::from(PHILOX_M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
    }
    [c0, c1, c2, c3]
}

/// Philox4x32-10, the generator behind every random number in `tms`.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    philox4x32(10, counter, key)
}

/// Counters per call of the batched generator [`philox4x32_10_lanes`].
pub const LANES: usize = 8;

/// Philox4x32-10 of [`LANES`] counters that differ only in their first word. Returns
/// words[word][lane]; equal, lane for lane, to [`philox4x32_10`] of `[first[lane], rest[0], rest[1],
/// rest[2]]`. Inlined into the CPU trainer's chunk, which `pulp` compiles once per instruction set.
///
/// Each counter word of the eight lanes is held as four u64, two lanes each (lane 2k in the low
/// half of u64 k), so that the 32×32 → 64-bit products are plain u64 multiplies of 32-bit values,
/// which every x86-64 level has as a vector instruction (`pmuludq`), and every other step is a u64
/// shift, mask or xor: loops the compiler vectorizes whatever the level.
#[inline(always)]
pub fn philox4x32_10_lanes(
    first: [u32; LANES],
    rest: [u32; 3],
    key: [u32; 2],
) -> [[u32; LANES]; 4] {
    type Pairs = [u64; LANES / 2];
    const LOW: u64 = 0xFFFF_FFFF;
    let both = |v: u32| u64::from(v) | u64::from(v) << 32;
    let (mut c0, mut c1, mut c2, mut c3): (Pairs, Pairs, Pairs, Pairs) = (
        std::array::from_fn(|k| u64::from(first[2 * k]) | u64::from(first[2 * k + 1]) << 32),
        [both(rest[0]); LANES / 2],
        [both(rest[1]); LANES / 2],
        [both(rest[2]); LANES / 2],
    );
    // (high halves, low halves) of the products of the multiplier with each lane of `c`.
    let products = |c: &Pairs, multiplier: u32| -> (Pairs, Pairs) {
        let multiplier = u64::from(multiplier);
        let even: Pairs = std::array::from_fn(|k| (c[k] & LOW) * multiplier);
        let odd: Pairs = std::array::from_fn(|k| (c[k] >> 32) * multiplier);
        (
            std::array::from_fn(|k| even[k] >> 32 | odd[k] & !LOW),
            std::array::from_fn(|k| even[k] & LOW | odd[k] << 32),
        )
    };
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = products(&c0, PHILOX_M0);
        let (hi1, lo1) = products(&c2, PHILOX_M1);
        let (key0, key1) = (both(k0), both(k1));
        c0 = std::array::from_fn(|k| hi1[k] ^ c1[k] ^ key0);
        c2 = std::array::from_fn(|k| hi0[k] ^ c3[k] ^ key1);
        (c1, c3) = (lo1, lo0);
    }
    let lanes =
        |c: Pairs| -> [u32; LANES] { std::array::from_fn(|l| (c[l / 2] >> (32 * (l % 2))) as u32) };
    [lanes(c0), lanes(c1), lanes(c2), lanes(c3)]
}

/// Which independent stream of random numbers a counter belongs to (the fourth counter word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stream {
    TrainMask = 0,
    TrainValue = 1,
    EvalMask = 2,
    EvalValue = 3,
    Init = 4,
    /// The data sparse autoencoders are trained on (`tms sae`), apart from the toy model's own.
    SaeMask = 5,
    SaeValue = 6,
    /// Initial SAE weights and the draws of dead-latent resampling.
    SaeInit = 7,
}

/// The Philox key for a seed.
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// A feature is present iff its mask word is ≤ this threshold, so it is present with probability
/// (threshold + 1) / 2³² = ⌈density · 2³²⌉ / 2³² (density 1 → always). Computed once on the host in
/// f64 and handed to the kernels as an integer, so both sides agree exactly.
pub fn presence_threshold(density: f64) -> u32 {
    let cut = (density * 4_294_967_296.0).ceil();
    (cut.clamp(1.0, 4_294_967_296.0) - 1.0) as u32
}

/// A value word to a float exactly uniform on the 2²⁴ multiples of 2⁻²⁴ in [0, 1).
#[inline]
pub fn unit_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A value word to a float exactly uniform on the 2²⁴ multiples of 2⁻²³ in [−1, 1): the signed
/// features of the abs model (the same 24 bits as [`unit_float`], so x = 2u − 1 exactly).
#[inline]
pub fn signed_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0
}

/// Generates batches of one instance: a sample of n features at a time, from the counters alone.
#[derive(Clone, Copy, Debug)]
pub struct FeatureSource {
    key: [u32; 2],
    instance: u32,
    threshold: u32,
    features: usize,
    mask_stream: Stream,
    value_stream: Stream,
    /// Present features are [`signed_float`] of their value word, not [`unit_float`].
    signed: bool,
}

impl FeatureSource {
    /// The training data of `instance`: a fresh batch every step.
    pub fn train(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        Self::new(
            seed,
            instance,
            density,
            features,
            Stream::TrainMask,
            Stream::TrainValue,
        )
    }

    /// The held-out evaluation data of `instance` (step 0 of its own streams, never used for training).
    pub fn eval(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        Self::new(
            seed,
            instance,
            density,
            features,
            Stream::EvalMask,
            Stream::EvalValue,
        )
    }

    /// The data a sparse autoencoder on `instance` trains on: the instance's own distribution,
    /// drawn from streams of its own (the toy model's training batches are not reused).
    pub fn sae(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        Self::new(
            seed,
            instance,
            density,
            features,
            Stream::SaeMask,
            Stream::SaeValue,
        )
    }

    fn new(
        seed: u64,
        instance: u32,
        density: f64,
        features: usize,
        mask_stream: Stream,
        value_stream: Stream,
    ) -> Self {
        FeatureSource {
            key: seed_key(seed),
            instance,
            threshold: presence_threshold(density),
            features,
            mask_stream,
            value_stream,
            signed: false,
        }
    }

    /// This source with signed values (uniform on [−1, 1) when present) if `signed`: the same
    /// presence and value words, mapped by [`signed_float`].
    pub fn signed(self, signed: bool) -> Self {
        FeatureSource { signed, ..self }
    }

    /// The value of a present feature whose value word is `word`.
    #[inline(always)]
    pub fn value(&self, word: u32) -> f32 {
        if self.signed {
            signed_float(word)
        } else {
            unit_float(word)
        }
    }

    /// Number of four-feature groups per sample.
    pub fn groups(&self) -> usize {
        self.features.div_ceil(4)
    }

    /// 64-bit words of presence bits per sample (⌈n / 64⌉).
    pub fn presence_words(&self) -> usize {
        self.features.div_ceil(64)
    }

    /// Length of the presence stream of `samples` samples (see [`FeatureSource::presence`]): one
    /// word per Philox call, and two words of padding read by [`FeatureSource::presence_word`].
    pub fn presence_stream_len(&self, samples: usize) -> usize {
        (samples * self.groups()).div_ceil(LANES) + 2
    }

    /// Presence of every feature of the samples `samples` at `step`, as a stream of bits batched
    /// [`LANES`] Philox calls at a time: bit 4·(index − first) + w of the stream (bit b is bit b % 32
    /// of `stream[b / 32]`) is set iff feature w of the group whose counter first word is `index`
    /// is present, where first = samples.start · groups. As the counter first word is
    /// sample · groups + group, the bits of one sample are contiguous: feature f of local sample s is
    /// bit 4·groups·s + f. One call's eight groups are one word of the stream, packed in vector registers.
    #[inline(always)]
    pub fn presence(&self, step: u32, samples: std::ops::Range<u32>, stream: &mut [u32]) {
        let groups = self.groups() as u32;
        let (start, end) = (samples.start * groups, samples.end * groups);
        let calls = (end - start).div_ceil(LANES as u32) as usize;
        let mut first = [start; LANES];
        for (l, f) in first.iter_mut().enumerate() {
            *f += l as u32;
        }
        for word in &mut stream[..calls] {
            let mask = philox4x32_10_lanes(
                first,
                [step, self.instance, self.mask_stream as u32],
                self.key,
            );
            let mut nibbles = [0u32; LANES];
            for (w, words) in mask.iter().enumerate() {
                for (nibble, &word) in nibbles.iter_mut().zip(words) {
                    *nibble |= u32::from(word <= self.threshold) << w;
                }
            }
            for (l, nibble) in nibbles.iter_mut().enumerate() {
                *nibble <<= 4 * l;
            }
            *word = nibbles.iter().fold(0, |bits, &nibble| bits | nibble);
            for f in &mut first {
                *f += LANES as u32;
            }
        }
    }

    /// Word `k` of the presence bits of local sample `s` in a stream from [`FeatureSource::presence`]:
    /// bit j is set iff feature 64·k + j is present (features past n read as absent).
    #[inline(always)]
    pub fn presence_word(&self, stream: &[u32], s: usize, k: usize) -> u64 {
        let bit = 4 * self.groups() * s + 64 * k;
        let (i, shift) = (bit / 32, bit % 32);
        let window = u128::from(stream[i])
            | u128::from(stream[i + 1]) << 32
            | u128::from(stream[i + 2]) << 64;
        let bits = (window >> shift) as u64;
        match self.features - 64 * k {
            left if left >= 64 => bits,
            left => bits & ((1 << left) - 1),
        }
    }

    /// The value words of [`LANES`] groups at `step` whose counter first words (sample · groups +
    /// group) are `indices`: words[word][lane] for feature 4 · group + word.
    #[inline(always)]
    pub fn value_lanes(&self, step: u32, indices: [u32; LANES]) -> [[u32; LANES]; 4] {
        philox4x32_10_lanes(
            indices,
            [step, self.instance, self.value_stream as u32],
            self.key,
        )
    }

    /// Writes sample `sample` of step `step` into `x` (length n) and returns how many features are
    /// present (zero means the whole sample is zero).
    #[inline]
    pub fn sample(&self, step: u32, sample: u32, x: &mut [f32]) -> usize {
        debug_assert_eq!(x.len(), self.features);
        let groups = self.groups() as u32;
        let mut present = 0;
        for (group, chunk) in x.chunks_mut(4).enumerate() {
            let index = sample * groups + group as u32;
            let mask = philox4x32_10(
                [index, step, self.instance, self.mask_stream as u32],
                self.key,
            );
            let live = |lane: usize| mask[lane] <= self.threshold;
            if (0..chunk.len()).any(live) {
                let value = philox4x32_10(
                    [index, step, self.instance, self.value_stream as u32],
                    self.key,
                );
                for (lane, out) in chunk.iter_mut().enumerate() {
                    *out = if live(lane) {
                        self.value(value[lane])
                    } else {
                        0.0
                    };
                    present += usize::from(live(lane));
                }
            } else {
                chunk.fill(0.0);
            }
        }
        present
    }
}

/// Standard normal draws for weight initialisation: Box–Muller on Philox words of the Init stream,
/// entry `index` of `instance`. Computed in f64 on the host only (initial weights are uploaded).
pub fn init_normal(seed: u64, instance: u32, index: u32) -> f64 {
    normal_of(Stream::Init, seed, instance, index)
}

/// A draw uniform on [−1, 1) for weight initialisation (the Kaiming-uniform weights of the abs
/// model): 53 bits of the Init stream's words for entry `index` of `instance`.
pub fn init_uniform(seed: u64, instance: u32, index: u32) -> f64 {
    let words = philox4x32_10([index, 0, instance, Stream::Init as u32], seed_key(seed));
    let u = ((u64::from(words[0]) << 21) ^ u64::from(words[1] >> 11)) as f64 / (1u64 << 53) as f64;
    2.0 * u - 1.0
}

/// A standard normal draw of `stream`, entry `index` of `instance` (see [`init_normal`]).
pub fn normal_of(stream: Stream, seed: u64, instance: u32, index: u32) -> f64 {
    let words = philox4x32_10([index, 0, instance, stream as u32], seed_key(seed));
    let u1 = ((u64::from(words[0]) << 21) ^ u64::from(words[1] >> 11)) as f64 / (1u64 << 53) as f64;
    let u2 = ((u64::from(words[2]) << 21) ^ u64::from(words[3] >> 11)) as f64 / (1u64 << 53) as f64;
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (rounds, counter, key, expected output).
    type KnownAnswer = (u32, [u32; 4], [u32; 2], [u32; 4]);

    /// Random123 tests/kat_vectors, the philox4x32 lines.
    const KAT: [KnownAnswer; 6] = [
        (
            7,
            [0, 0, 0, 0],
            [0, 0],
            [0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48],
        ),
        (
            7,
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662],
        ),
        (
            7,
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a],
        ),
        (
            10,
            [0, 0, 0, 0],
            [0, 0],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            10,
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            10,
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];

    #[test]
    fn philox_matches_published_known_answers() {
        for (rounds, counter, key, expected) in KAT {
            assert_eq!(
                philox4x32(rounds, counter, key),
                expected,
                "philox4x32-{rounds} {counter:x?}"
            );
        }
    }

    #[test]
    fn batched_generator_equals_the_scalar_one() {
        let key = [0x243f6a88, 0x85a308d3];
        let first = [0, 1, 2, 7, 1000, u32::MAX, 12345, 99];
        let lanes = philox4x32_10_lanes(first, [5, 6, 7], key);
        for (l, &f) in first.iter().enumerate() {
            let scalar = philox4x32_10([f, 5, 6, 7], key);
            assert_eq!([lanes[0][l], lanes[1][l], lanes[2][l], lanes[3][l]], scalar);
        }
        let (n, samples) = (9, 3..14u32);
        let source = FeatureSource::train(3, 1, 0.4, n);
        let mut present = vec![0u32; source.presence_stream_len(samples.len())];
        source.presence(2, samples.clone(), &mut present);
        let mut x = vec![0.0; n];
        for (k, s) in samples.enumerate() {
            source.sample(2, s, &mut x);
            let want = x
                .iter()
                .enumerate()
                .fold(0u64, |bits, (f, &v)| bits | u64::from(v != 0.0) << f);
            assert_eq!(source.presence_word(&present, k, 0), want, "sample {s}");
            let indices = std::array::from_fn(|g| s * 3 + (g as u32).min(2));
            let words = source.value_lanes(2, indices);
            for (f, &v) in x.iter().enumerate() {
                if v != 0.0 {
                    assert_eq!(unit_float(words[f % 4][f / 4]), v);
                }
            }
        }
    }

    #[test]
    fn presence_threshold_edges() {
        assert_eq!(presence_threshold(1.0), u32::MAX);
        assert_eq!(presence_threshold(0.5), 0x7FFF_FFFF);
        assert_eq!(presence_threshold(1e-30), 0);
        assert_eq!(unit_float(u32::MAX), 1.0 - 2f32.powi(-24));
        assert_eq!(unit_float(0), 0.0);
        assert_eq!(signed_float(0), -1.0);
        assert_eq!(signed_float(u32::MAX), 1.0 - 2f32.powi(-23));
        assert_eq!(signed_float(0x8000_0000), 0.0);
        // The same word unsigned and signed: x = 2u − 1, exactly.
        for word in [0x1234_5678, 0xDEAD_BEEF, 0x0000_0100] {
            assert_eq!(signed_float(word), 2.0 * unit_float(word) - 1.0);
        }
    }

    /// Draws `samples` samples of `n` features and returns (presence rate, mean, variance of present
    /// values, histogram of present values in 10 bins).
    fn moments(density: f64, n: usize, samples: u32) -> (f64, f64, f64, [u64; 10]) {
        let source = FeatureSource::train(42, 3, density, n);
        let mut x = vec![0.0; n];
        let (mut present, mut sum, mut sq, mut bins) = (0u64, 0.0, 0.0, [0u64; 10]);
        for s in 0..samples {
            source.sample(7, s, &mut x);
            for &v in x.iter().filter(|v| **v != 0.0) {
                present += 1;
                sum += f64::from(v);
                sq += f64::from(v) * f64::from(v);
                bins[(v * 10.0) as usize] += 1;
            }
        }
        let mean = sum / present as f64;
        (
            present as f64 / (f64::from(samples) * n as f64),
            mean,
            sq / present as f64 - mean * mean,
            bins,
        )
    }

    #[test]
    fn presence_rate_is_the_density_and_values_are_uniform() {
        for density in [1.0, 0.3, 0.05, 0.01] {
            let draws = 20_000 * 20;
            let (rate, mean, var, bins) = moments(density, 20, 20_000);
            let sd = (density * (1.0 - density) / draws as f64).sqrt();
            assert!(
                (rate - density).abs() <= 5.0 * sd + 1e-9,
                "density {density}: rate {rate}"
            );
            let present = (rate * draws as f64) as u64;
            let tol = 5.0 / (12.0 * present as f64).sqrt();
            assert!((mean - 0.5).abs() < tol, "density {density}: mean {mean}");
            assert!(
                (var - 1.0 / 12.0).abs() < 0.01,
                "density {density}: var {var}"
            );
            // Chi-square of the histogram, 9 degrees of freedom: 99.99 % quantile ≈ 33.7.
            let expect = present as f64 / 10.0;
            let chi2: f64 = bins
                .iter()
                .map(|&b| (b as f64 - expect).powi(2) / expect)
                .sum();
            assert!(chi2 < 33.7, "density {density}: chi2 {chi2} bins {bins:?}");
        }
    }

    /// Pearson correlation of value pairs drawn at neighbouring counters.
    fn correlation(pairs: &[(f64, f64)]) -> f64 {
        let n = pairs.len() as f64;
        let (ma, mb) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / n,
            pairs.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov: f64 = pairs.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum::<f64>() / n;
        let va: f64 = pairs.iter().map(|p| (p.0 - ma).powi(2)).sum::<f64>() / n;
        let vb: f64 = pairs.iter().map(|p| (p.1 - mb).powi(2)).sum::<f64>() / n;
        cov / (va * vb).sqrt()
    }

    #[test]
    fn neighbouring_counters_are_uncorrelated() {
        let n = 9; // not a multiple of four, so groups straddle samples
        let draws = 40_000u32;
        let sample = |instance: u32, step: u32, s: u32| {
            let mut x = vec![0.0; n];
            FeatureSource::train(7, instance, 0.5, n).sample(step, s, &mut x);
            x
        };
        let mut by_feature = vec![];
        let mut by_sample = vec![];
        let mut by_instance = vec![];
        let mut by_step = vec![];
        for s in 0..draws {
            let a = sample(0, 0, s);
            let (b, c, d) = (sample(0, 0, s + 1), sample(1, 0, s), sample(0, 1, s));
            for f in 0..n {
                if f + 1 < n {
                    by_feature.push((f64::from(a[f]), f64::from(a[f + 1])));
                }
                by_sample.push((f64::from(a[f]), f64::from(b[f])));
                by_instance.push((f64::from(a[f]), f64::from(c[f])));
                by_step.push((f64::from(a[f]), f64::from(d[f])));
            }
        }
        for (what, pairs) in [
            ("feature", by_feature),
            ("sample", by_sample),
            ("instance", by_instance),
            ("step", by_step),
        ] {
            let r = correlation(&pairs);
            let bound = 5.0 / (pairs.len() as f64).sqrt();
            assert!(
                r.abs() < bound,
                "neighbouring {what}s correlate: r = {r}, bound {bound}"
            );
        }
    }

    #[test]
    fn batches_are_pure_functions_of_their_counters() {
        let source = FeatureSource::train(1, 2, 0.1, 20);
        let (mut a, mut b) = (vec![0.0; 20], vec![0.0; 20]);
        source.sample(5, 100, &mut a);
        for s in (0..200).rev() {
            source.sample(5, s, &mut b);
        }
        source.sample(5, 100, &mut b);
        assert_eq!(a, b);
        let eval = FeatureSource::eval(1, 2, 0.1, 20);
        let mut differs = false;
        for s in 0..100 {
            source.sample(0, s, &mut a);
            eval.sample(0, s, &mut b);
            differs |= a != b;
        }
        assert!(differs, "evaluation data must be its own stream");
    }

    #[test]
    fn init_normals_have_unit_variance() {
        let draws: Vec<f64> = (0..100_000).map(|i| init_normal(9, 1, i)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "mean {mean} var {var}"
        );
    }
}
