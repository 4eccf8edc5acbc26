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
//! Layout of the Philox calls (four 32-bit words out each), with key = (seed low 32 bits, seed high
//! 32 bits) and counter = (index, step, instance, stream). A sample's features are taken sixteen at
//! a time in *chunks* (chunk c holds features 16c .. 16c + 15, `chunks` = ⌈n / 16⌉) and four at a
//! time in *groups* (`groups` = ⌈n / 4⌉; chunk c is groups 4c .. 4c + 3):
//! - presence ([`Stream::TrainPresence`]): one call per chunk, index sample · chunks + c. Feature
//!   16c + 4w + j reads byte j (bits 8j .. 8j + 7) of word w, b. With the density's threshold t
//!   (`presence_threshold`) split as t = t_hi · 2²⁴ + t_lo, the feature is present iff b < t_hi, or
//!   b = t_hi and M >> 8 ≤ t_lo, where M is the feature's *mask word*: word f mod 4 of the call of
//!   index sample · groups + f / 4 in [`Stream::TrainMask`]. That is, present iff the 32-bit word
//!   b · 2²⁴ + (M >> 8) ≤ t: uniform on 2³² values, so each feature is present independently with
//!   probability exactly (t + 1) / 2³², and the mask call is made only on a tie (1 byte in 256).
//!   Sixteen features per call instead of four: the cost of sparse data is mostly these calls;
//! - values ([`Stream::TrainValue`]): the present features of a chunk take value words in order: the
//!   k-th present one (k from 0) reads word k mod 4 of the call of index sample · groups + 4c + k / 4.
//!   A chunk with p present features makes ⌈p / 4⌉ value calls (none when p = 0). The value of a word
//!   is (word >> 8) · 2⁻²⁴, exactly uniform on [0, 1) in f32.
//!
//! The evaluation batch uses the Eval streams with step 0, sparse autoencoders the Sae streams, and
//! initial weights the Init stream.
//!
//! ## Feature sets, value distributions and exactly-K samples ([`Distribution`])
//!
//! Independent features (no set, no exactly-K; values of any kind) are exactly the layout above.
//! Sets and exactly-K decide presence from the features' full 32-bit mask words M instead (every mask
//! call of the sample is made) and take value words as above, so every kind is still a pure
//! function of the counters:
//! - a set ([`FeatureSet`]) covers consecutive features; its presence is decided by the mask words
//!   of its first members: `correlated`: every member is present iff the first member's mask word
//!   ≤ threshold (one shared draw; values stay independent); `anticorrelated`, mode `paper`: the set
//!   is active iff the first member's word ≤ threshold, and the one present member is
//!   ⌊w₂ · size / 2³²⌋, w₂ the second member's mask word (a word of its own, independent of the
//!   first); mode `marginal`: member ⌊w₁ / cut⌋ is present when that is below the set's size,
//!   cut = threshold + 1, so each member keeps the marginal cut / 2³² = 1 − S and at most one is
//!   present (needs size · cut ≤ 2³²);
//! - `--exactly-k K`: the mask words are random keys, and a feature is present iff fewer than K
//!   features of its sample have a smaller (key, index): the K smallest keys, a uniformly chosen
//!   K-subset. Each GPU thread recomputes the sample's ⌈n/4⌉ mask calls for its group (n/4 Philox
//!   calls per group: fine for toy sizes, quadratic in n);
//! - values ([`Values`]): `uniform` as above; `binary`: 1; `normal`: clip(0.5 + 0.2·z, 0, 1) with z
//!   the standardised sum of the value word's four bytes (Irwin–Hall of four uniforms: mean and
//!   variance exact, support ±3.46σ, a grid step of 0.00135 in the value), computed in integers
//!   so that the WGSL gives the same bits as the CPU (WGSL's `log` and `cos` are not correctly
//!   rounded, so Box–Muller could not match); `signed` (the abs model's, and a choice
//!   for any model): 2u − 1 of the uniform value u, exactly uniform on the multiples of 2⁻²³ in
//!   [−1, 1).
//!
//! The CPU trainer draws the presence bytes ([`FeatureSource::presence`]), or for sets and
//! exactly-K the mask words ([`FeatureSource::presence_general`], applying the very rules
//! [`FeatureSource::sample`] uses), batched eight calls at a time into a stream of presence bits,
//! then the value words of every chunk ([`FeatureSource::value_calls`]) batched the same way; the
//! kernels branch on the shard's layout words ([`Distribution::layout_words`]).

use serde::{Deserialize, Serialize};

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

/// How a caller computes the batched generator: [`Portable`] ([`philox4x32_10_lanes`] itself), or
/// an implementation with one instruction set's intrinsics that the CPU trainer picks with its lane
/// type. Every implementation returns the very same words.
pub trait PhiloxLanes {
    /// [`philox4x32_10_lanes`].
    fn words(first: [u32; LANES], rest: [u32; 3], key: [u32; 2]) -> [[u32; LANES]; 4];

    /// The presence bytes of the call's eight chunks against `top` (the threshold's top byte), as
    /// [`FeatureSource::presence`] packs them: (below, equal), where bit 16·(lane % 2) + 4·w + j of
    /// word lane / 2 is set iff byte j of `words(..)[w][lane]` is < `top`, or = `top`.
    #[inline(always)]
    fn presence_bytes(
        first: [u32; LANES],
        rest: [u32; 3],
        key: [u32; 2],
        top: u32,
    ) -> ([u32; LANES / 2], [u32; LANES / 2]) {
        let words = Self::words(first, rest, key);
        let (mut below, mut equal) = ([0u32; LANES / 2], [0u32; LANES / 2]);
        for (w, lanes) in words.iter().enumerate() {
            for (l, &word) in lanes.iter().enumerate() {
                for j in 0..4 {
                    let byte = word >> (8 * j) & 0xFF;
                    let bit = 16 * (l % 2) + 4 * w + j;
                    below[l / 2] |= u32::from(byte < top) << bit;
                    equal[l / 2] |= u32::from(byte == top) << bit;
                }
            }
        }
        (below, equal)
    }
}

/// [`philox4x32_10_lanes`] as the compiler vectorizes it, for any instruction set.
pub struct Portable;

impl PhiloxLanes for Portable {
    #[inline(always)]
    fn words(first: [u32; LANES], rest: [u32; 3], key: [u32; 2]) -> [[u32; LANES]; 4] {
        philox4x32_10_lanes(first, rest, key)
    }
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
    /// The presence bytes of the training, evaluation and SAE data (the mask streams above then
    /// only break ties, and give sets and exactly-K their words).
    TrainPresence = 8,
    EvalPresence = 9,
    SaePresence = 10,
}

/// The Philox key for a seed.
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// A feature is present iff its 32-bit presence word (its presence byte and 24 bits of its mask word;
/// sets and exactly-K: its mask word) is ≤ this threshold, so it is present with probability
/// (threshold + 1) / 2³² = ⌈density · 2³²⌉ / 2³² (density 1 → always). Computed once on the host in
/// f64 and handed to the kernels as an integer, so both sides agree exactly.
pub fn presence_threshold(density: f64) -> u32 {
    let cut = (density * 4_294_967_296.0).ceil();
    (cut.clamp(1.0, 4_294_967_296.0) - 1.0) as u32
}

/// A value word to a float exactly uniform on the 2²⁴ multiples of 2⁻²⁴ in [0, 1).
#[inline(always)]
pub fn unit_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// How a set of consecutive features is drawn (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    Independent,
    Correlated,
    Anticorrelated,
}

/// The value of a present feature: U[0, 1), always 1, clip(0.5 + 0.2·N(0, 1), 0, 1), or U[−1, 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Values {
    #[default]
    Uniform,
    Binary,
    Normal,
    /// [`signed_float`] of the value word: uniform on [−1, 1). The abs model's features (what
    /// `Experiment::distribution` gives that model for `uniform`), and a choice for any model.
    Signed,
}

/// How an anticorrelated set is drawn: `paper` (active with probability 1 − S, then one member
/// uniformly) or `marginal` (each member present with probability 1 − S, never two at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AnticorrelatedMode {
    #[default]
    Paper,
    Marginal,
}

/// One set of `size` consecutive features (written `KIND:SIZE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub kind: SetKind,
    pub size: u32,
}

/// Most feature sets in one experiment (the sampler keeps them in a fixed array, so that a
/// [`FeatureSource`] stays `Copy`).
pub const MAX_FEATURE_SETS: usize = 64;

impl FeatureSet {
    /// Parses a `--feature-sets` list, "KIND:SIZE,KIND:SIZE,...".
    pub fn parse_list(text: &str) -> Result<Vec<FeatureSet>, String> {
        if text.trim().is_empty() {
            return Ok(vec![]);
        }
        text.split(',')
            .map(|item| {
                let (kind, size) = item.trim().split_once(':').ok_or("each set is KIND:SIZE")?;
                let kind = match kind.trim() {
                    "independent" => SetKind::Independent,
                    "correlated" => SetKind::Correlated,
                    "anticorrelated" => SetKind::Anticorrelated,
                    _ => return Err("KIND is independent, correlated or anticorrelated"),
                };
                let size = size
                    .trim()
                    .parse()
                    .map_err(|_| "SIZE is a count of features")?;
                Ok(FeatureSet { kind, size })
            })
            .collect::<Result<_, _>>()
            .map_err(String::from)
    }

    /// "correlated:2,correlated:2", as [`FeatureSet::parse_list`] reads it.
    pub fn list_text(sets: &[FeatureSet]) -> String {
        let kind = |k: SetKind| format!("{k:?}").to_lowercase();
        let items: Vec<String> = sets
            .iter()
            .map(|s| format!("{}:{}", kind(s.kind), s.size))
            .collect();
        items.join(",")
    }
}

/// The distribution of every instance's features besides its density: feature sets laid over
/// features 0.. (the rest independent), the anticorrelated mode, the values and exactly-K
/// samples. The default is the paper's (independent, uniform values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Distribution {
    sets: [FeatureSet; MAX_FEATURE_SETS],
    set_count: usize,
    pub anticorrelated: AnticorrelatedMode,
    pub values: Values,
    /// Every sample has exactly this many present features (0: each feature by its density).
    pub exactly_k: u32,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            sets: [FeatureSet {
                kind: SetKind::Independent,
                size: 0,
            }; MAX_FEATURE_SETS],
            set_count: 0,
            anticorrelated: AnticorrelatedMode::Paper,
            values: Values::Uniform,
            exactly_k: 0,
        }
    }
}

impl Distribution {
    /// The distribution with these settings; `sets` beyond [`MAX_FEATURE_SETS`] are an error.
    pub fn new(
        sets: &[FeatureSet],
        anticorrelated: AnticorrelatedMode,
        values: Values,
        exactly_k: u32,
    ) -> Result<Distribution, String> {
        if sets.len() > MAX_FEATURE_SETS {
            return Err(format!("at most {MAX_FEATURE_SETS} sets"));
        }
        let mut out = Distribution {
            set_count: sets.len(),
            anticorrelated,
            values,
            exactly_k,
            ..Default::default()
        };
        out.sets[..sets.len()].copy_from_slice(sets);
        Ok(out)
    }

    /// The feature sets, in order from feature 0.
    pub fn sets(&self) -> &[FeatureSet] {
        &self.sets[..self.set_count]
    }

    /// Whether every feature is present independently at the density (no dependent set, no
    /// exactly-K; values of any kind): then presence comes from the presence bytes, which both
    /// trainers draw on their fast path.
    pub fn is_plain(&self) -> bool {
        self.exactly_k == 0 && self.sets().iter().all(|s| s.kind == SetKind::Independent)
    }

    /// The (first feature, kind, size) of every set that is not independent.
    fn dependent_sets(&self) -> impl Iterator<Item = (usize, SetKind, usize)> + '_ {
        self.sets()
            .iter()
            .scan(0usize, |start, set| {
                let at = *start;
                *start += set.size as usize;
                Some((at, set.kind, set.size as usize))
            })
            .filter(|(_, kind, _)| *kind != SetKind::Independent)
    }

    /// The value of a present feature from its value word.
    #[inline(always)]
    pub fn value(&self, word: u32) -> f32 {
        match self.values {
            Values::Uniform => unit_float(word),
            Values::Binary => 1.0,
            Values::Normal => {
                // 0.5 + 0.2·z in units of 2⁻²⁴, z = (sum − 510) / 147.80 (the sum of four bytes has
                // mean 510 and variance 4·(256² − 1)/12): 0.2 · 2²⁴ / 147.80 = 22703.
                let sum = word
                    .to_le_bytes()
                    .iter()
                    .map(|&b| i32::from(b))
                    .sum::<i32>();
                let fixed = (0x80_0000 + (sum - 510) * 22_703).clamp(0, 0x100_0000);
                fixed as f32 * (1.0 / 16_777_216.0)
            }
            Values::Signed => signed_float(word),
        }
    }

    /// The words the kernels read after the shard's thresholds: a header (values kind 0/1/2/3,
    /// exactly-K, anticorrelated mode 0/1, whether the distribution is the plain one), then per
    /// feature of `features` the first feature of its set and (size | kind << 30), kind 0 for
    /// independent, 1 correlated, 2 anticorrelated.
    pub fn layout_words(&self, features: usize) -> Vec<u32> {
        let mut words = vec![
            self.values as u32,
            self.exactly_k,
            self.anticorrelated as u32,
            u32::from(self.is_plain()),
        ];
        let mut per_feature: Vec<[u32; 2]> = (0..features as u32).map(|f| [f, 1]).collect();
        for (start, kind, size) in self.dependent_sets() {
            for slot in &mut per_feature[start..start + size] {
                *slot = [start as u32, size as u32 | (kind as u32) << 30];
            }
        }
        words.extend(per_feature.iter().flatten());
        words
    }

    /// Loop iterations per sample that `shaders/common.wgsl`'s sampler adds for this distribution
    /// on the register kernel (llvmpipe's loop budget counts them): per group, the loop over its
    /// four features, and for exactly-K the loops over every group's four keys.
    pub fn sampler_loop_iterations(&self, features: usize) -> u64 {
        let groups = features.div_ceil(4) as u64;
        match (self.is_plain(), self.exactly_k) {
            (true, _) => 0,
            (false, 0) => 5 * groups,
            (false, _) => groups * (5 * groups + 1),
        }
    }
}

/// A value word to a float exactly uniform on the 2²⁴ multiples of 2⁻²³ in [−1, 1): the signed
/// features of the abs model (the same 24 bits as [`unit_float`], so x = 2u − 1 exactly).
#[inline(always)]
pub fn signed_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0
}

/// The version of the layout in the module documentation: 1 until 2026-11-25 (a 32-bit mask word per
/// feature), 2 since (presence bytes). Checkpoints and config.json record it, so that a run is never
/// resumed or merged on other draws than it started with.
pub const DATA_STREAM: u32 = 2;

/// Philox calls waiting to be made [`LANES`] at a time by a [`PhiloxLanes`] generator: each call's
/// counter first word, and what its words are for (`T`: where the caller puts them).
pub struct PendingCalls<T> {
    indices: [u32; LANES],
    targets: [T; LANES],
    count: usize,
}

impl<T: Copy + Default> Default for PendingCalls<T> {
    fn default() -> Self {
        PendingCalls {
            indices: [0; LANES],
            targets: [T::default(); LANES],
            count: 0,
        }
    }
}

impl<T: Copy> PendingCalls<T> {
    /// Adds the call of counter first word `index`; true when the batch is full (then make them: [`PendingCalls::calls`]).
    #[inline(always)]
    pub fn push(&mut self, index: u32, target: T) -> bool {
        self.indices[self.count] = index;
        self.targets[self.count] = target;
        self.count += 1;
        self.count == LANES
    }

    /// The pending calls' first words (lanes past the pending ones repeat earlier words, whose
    /// results nobody reads) and their targets, in order. Not a closure-taking drain: a closure
    /// is compiled outside the caller's instruction set, and its intrinsics would become calls.
    #[inline(always)]
    pub fn calls(&self) -> ([u32; LANES], &[T]) {
        (self.indices, &self.targets[..self.count])
    }

    /// Empties the batch once its calls are made.
    #[inline(always)]
    pub fn clear(&mut self) {
        self.count = 0;
    }
}

/// The positions of the set bits of `bits`, lowest first: the features a value call serves, in the
/// order of its words (see [`FeatureSource::value_calls`]).
#[inline(always)]
pub fn set_bits(bits: u32) -> impl Iterator<Item = usize> {
    let mut rest = bits;
    std::iter::from_fn(move || {
        (rest != 0).then(|| {
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            bit
        })
    })
}

/// [`FeatureSource::present_chunks`]: the nonzero 16-bit units of a presence stream as (local
/// sample, chunk, bits).
pub struct PresentChunks<'a> {
    stream: &'a [u32],
    units: usize,
    chunks: usize,
    shift: Option<u32>,
    /// The next word to read, and the units of the word before it still to hand out (bit 16·h + i
    /// of unit 2·(word − 1) + h).
    word: usize,
    pending: u32,
}

impl Iterator for PresentChunks<'_> {
    type Item = (usize, usize, u32);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize, u32)> {
        loop {
            if self.pending & 0xFFFF != 0 || self.pending >> 16 != 0 {
                let half = usize::from(self.pending & 0xFFFF == 0);
                let bits = self.pending >> (16 * half) & 0xFFFF;
                self.pending &= !(0xFFFF << (16 * half));
                let unit = 2 * (self.word - 1) + half;
                if unit >= self.units {
                    return None;
                }
                let (s, c) = match self.shift {
                    Some(shift) => (unit >> shift, unit & (self.chunks - 1)),
                    None => (unit / self.chunks, unit % self.chunks),
                };
                return Some((s, c, bits));
            }
            self.pending = *self.stream.get(self.word)?;
            self.word += 1;
        }
    }
}

/// Features per presence call: sixteen, a byte each (see the module documentation).
pub const CHUNK_FEATURES: usize = 16;

/// Generates batches of one instance: a sample of n features at a time, from the counters alone.
#[derive(Clone, Copy, Debug)]
pub struct FeatureSource {
    key: [u32; 2],
    instance: u32,
    threshold: u32,
    features: usize,
    presence_stream: Stream,
    mask_stream: Stream,
    value_stream: Stream,
    distribution: Distribution,
}

impl FeatureSource {
    /// The training data of `instance`: a fresh batch every step.
    pub fn train(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        let streams = [Stream::TrainPresence, Stream::TrainMask, Stream::TrainValue];
        Self::new(seed, instance, density, features, streams)
    }

    /// The held-out evaluation data of `instance` (step 0 of its own streams, never used for training).
    pub fn eval(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        let streams = [Stream::EvalPresence, Stream::EvalMask, Stream::EvalValue];
        Self::new(seed, instance, density, features, streams)
    }

    /// The data a sparse autoencoder on `instance` trains on: the instance's own distribution,
    /// drawn from streams of its own (the toy model's training batches are not reused).
    pub fn sae(seed: u64, instance: u32, density: f64, features: usize) -> Self {
        let streams = [Stream::SaePresence, Stream::SaeMask, Stream::SaeValue];
        Self::new(seed, instance, density, features, streams)
    }

    /// The source of the (presence, mask, value) `streams`.
    fn new(seed: u64, instance: u32, density: f64, features: usize, streams: [Stream; 3]) -> Self {
        let [presence_stream, mask_stream, value_stream] = streams;
        FeatureSource {
            key: seed_key(seed),
            instance,
            threshold: presence_threshold(density),
            features,
            presence_stream,
            mask_stream,
            value_stream,
            distribution: Distribution::default(),
        }
    }

    /// The value of a present feature whose value word is `word`.
    #[inline(always)]
    pub fn value(&self, word: u32) -> f32 {
        self.distribution.value(word)
    }

    /// The same source drawing from `distribution` instead of the default one.
    pub fn with(self, distribution: &Distribution) -> Self {
        FeatureSource {
            distribution: *distribution,
            ..self
        }
    }

    /// Whether features are present independently (presence from the presence bytes: the trainers'
    /// fast path; see [`Distribution::is_plain`]).
    pub fn is_plain(&self) -> bool {
        self.distribution.is_plain()
    }

    /// Number of four-feature groups per sample (mask and value calls are indexed by group).
    pub fn groups(&self) -> usize {
        self.features.div_ceil(4)
    }

    /// Number of sixteen-feature chunks per sample (one presence call each).
    pub fn chunks(&self) -> usize {
        self.features.div_ceil(CHUNK_FEATURES)
    }

    /// 64-bit words of presence bits per sample (⌈n / 64⌉).
    pub fn presence_words(&self) -> usize {
        self.features.div_ceil(64)
    }

    /// Length of the presence stream of `samples` samples (see [`FeatureSource::presence`]): 16 bits
    /// per chunk in whole calls of [`LANES`] chunks.
    pub fn presence_stream_len(&self, samples: usize) -> usize {
        (samples * self.chunks()).div_ceil(LANES) * LANES / 2
    }

    /// Presence of every feature of the samples `samples` at `step`, as a stream of bits, from the
    /// presence bytes of [`LANES`] chunks per call: feature f of local sample s is bit
    /// 16 · chunks · s + f of the stream (bit b is bit b % 32 of `stream[b / 32]`), so chunk c of
    /// local sample s is the 16 bits from 16 · (chunks · s + c); the bits of the bytes past n in a
    /// sample's last chunk are clear. `P` computes the Philox calls (the same bits
    /// whichever it is), including the mask words of the rare ties ([`FeatureSource::break_ties`]).
    #[inline(always)]
    pub fn presence<P: PhiloxLanes>(
        &self,
        step: u32,
        samples: std::ops::Range<u32>,
        stream: &mut [u32],
    ) {
        let chunks = self.chunks() as u32;
        let (start, end) = (samples.start * chunks, samples.end * chunks);
        let calls = (end - start).div_ceil(LANES as u32) as usize;
        let rest = [step, self.instance, self.presence_stream as u32];
        let (top, low) = (self.threshold >> 24, self.threshold & 0xFF_FFFF);
        // The bits of real features: all but the bytes past n in each sample's last chunk. Each
        // lane's chunk (index mod chunks) is kept up to date by adding LANES mod chunks.
        let last = (1u32 << (self.features - CHUNK_FEATURES * (chunks as usize - 1))) - 1;
        let mut chunk_of: [u32; LANES] = std::array::from_fn(|l| (start + l as u32) % chunks);
        let advance = LANES as u32 % chunks;
        let mut ties = PendingCalls::default();
        let mut first: [u32; LANES] = std::array::from_fn(|l| start + l as u32);
        for call in 0..calls {
            let (below, equal) = P::presence_bytes(first, rest, self.key, top);
            let real: [u32; LANES / 2] = if last == 0xFFFF {
                [u32::MAX; LANES / 2]
            } else {
                let valid = |l: usize| {
                    if chunk_of[l] == chunks - 1 {
                        last
                    } else {
                        0xFFFF
                    }
                };
                std::array::from_fn(|k| valid(2 * k) | valid(2 * k + 1) << 16)
            };
            for k in 0..LANES / 2 {
                let at = call * LANES / 2 + k;
                stream[at] = below[k] & real[k];
                let mut tied = equal[k] & real[k];
                if low == 0xFF_FFFF {
                    // Every tie is present: M >> 8 ≤ 2²⁴ − 1 always.
                    stream[at] |= tied;
                    continue;
                }
                while tied != 0 {
                    let bit = tied.trailing_zeros();
                    tied &= tied - 1;
                    let lane = 2 * k + bit as usize / 16;
                    let feature = chunk_of[lane] * CHUNK_FEATURES as u32 + bit % 16;
                    let group = first[lane] / chunks * self.groups() as u32 + feature / 4;
                    if ties.push(group, (at, bit, feature as usize % 4)) {
                        self.break_ties::<P>(step, &mut ties, stream);
                    }
                }
            }
            for (f, c) in first.iter_mut().zip(&mut chunk_of) {
                *f += LANES as u32;
                *c += advance;
                if *c >= chunks {
                    *c -= chunks;
                }
            }
        }
        self.break_ties::<P>(step, &mut ties, stream);
    }

    /// Settles the pending ties of [`FeatureSource::presence`] with one batched call of their mask
    /// words: sets the stream bit of every tied feature that is present.
    #[inline(always)]
    fn break_ties<P: PhiloxLanes>(
        &self,
        step: u32,
        ties: &mut PendingCalls<(usize, u32, usize)>,
        stream: &mut [u32],
    ) {
        let (groups, targets) = ties.calls();
        if targets.is_empty() {
            return;
        }
        let rest = [step, self.instance, self.mask_stream as u32];
        let words = P::words(groups, rest, self.key);
        let low = self.threshold & 0xFF_FFFF;
        for (lane, &(at, bit, word)) in targets.iter().enumerate() {
            stream[at] |= u32::from(words[word][lane] >> 8 <= low) << bit;
        }
        ties.clear();
    }

    /// Whether `feature` of `sample`, whose presence byte equals the threshold's top byte, is
    /// present: its mask word's top 24 bits against the threshold's low 24 (no call when every
    /// value passes).
    fn tie_present(&self, step: u32, sample: u32, feature: usize) -> bool {
        let low = self.threshold & 0xFF_FFFF;
        low == 0xFF_FFFF || self.mask_words(step, sample, feature / 4)[feature % 4] >> 8 <= low
    }

    /// The presence bits of chunk `c` of local sample `s` in a presence stream: bit i is set iff
    /// feature 16·c + i is present.
    #[inline(always)]
    pub fn chunk_bits(&self, stream: &[u32], s: usize, c: usize) -> u32 {
        let index = self.chunks() * s + c;
        stream[index / 2] >> (16 * (index % 2)) & 0xFFFF
    }

    /// The chunks of the first `samples` local samples that have a present feature, in order: (s, c,
    /// [`FeatureSource::chunk_bits`]), reading the stream a word at a time, so that the zero words of
    /// a sparse instance cost one test each.
    #[inline(always)]
    pub fn present_chunks<'a>(&self, stream: &'a [u32], samples: usize) -> PresentChunks<'a> {
        let chunks = self.chunks();
        let shift = chunks.trailing_zeros();
        PresentChunks {
            stream,
            units: samples * chunks,
            chunks,
            // Sample and chunk by a shift and a mask where chunks is a power of two (n ≤ 32 has
            // one or two): a division (20–40 cycles) per present chunk otherwise.
            shift: (chunks == 1 << shift).then_some(shift),
            word: 0,
            pending: 0,
        }
    }

    /// The value calls of chunk `chunk` of `sample`, whose presence bits are `bits` (bit i for
    /// feature 16·chunk + i): for each call, its counter's first word and the bits of the present
    /// features it serves (ranks 4q .. 4q + 3 in the chunk: word j of the call to the j-th of them).
    #[inline(always)]
    pub fn value_calls(
        &self,
        sample: u32,
        chunk: usize,
        bits: u32,
    ) -> impl Iterator<Item = (u32, u32)> {
        let first = sample * self.groups() as u32 + 4 * chunk as u32;
        let mut rest = bits;
        (first..).map_while(move |index| {
            (rest != 0).then(|| {
                let mut after = rest;
                for _ in 0..4 {
                    after &= after.wrapping_sub(1);
                }
                let served = rest & !after;
                rest = after;
                (index, served)
            })
        })
    }

    /// The value words of [`LANES`] value calls at `step` whose counter first words are
    /// `indices` (from [`FeatureSource::value_calls`]): words[word][lane], computed by `P`.
    #[inline(always)]
    pub fn value_lanes<P: PhiloxLanes>(
        &self,
        step: u32,
        indices: [u32; LANES],
    ) -> [[u32; LANES]; 4] {
        P::words(
            indices,
            [step, self.instance, self.value_stream as u32],
            self.key,
        )
    }

    /// Makes the pending value calls at `step` ([`FeatureSource::value_calls`], each with its target
    /// and the bits of the features it serves) with `P`, and hands every served feature's value to
    /// `put(target, bit, value)`.
    #[inline(always)]
    pub fn make_value_calls<P: PhiloxLanes, T: Copy>(
        &self,
        step: u32,
        pending: &mut PendingCalls<(T, u32)>,
        mut put: impl FnMut(T, usize, f32),
    ) {
        let (indices, targets) = pending.calls();
        if targets.is_empty() {
            return;
        }
        // Every word to its value first (branch-free, so vectorized), then the served ones.
        // (Plain loops, not `array::map`: its closure is compiled outside the caller's instruction
        // set and was a call per word group, 10 % of the seed experiment's time.)
        let words = self.value_lanes::<P>(step, indices);
        let mut values = [[0.0f32; LANES]; 4];
        for (out, words) in values.iter_mut().zip(&words) {
            for (value, &word) in out.iter_mut().zip(words) {
                *value = self.value(word);
            }
        }
        for (call, &(target, served)) in targets.iter().enumerate() {
            // `set_bits(served).zip(&values)`, written out: the step's hottest loop, where the
            // iterator's extra test measured 1.5 % of the seed experiment's instructions.
            let mut rest = served;
            for value in &values {
                if rest == 0 {
                    break;
                }
                put(target, rest.trailing_zeros() as usize, value[call]);
                rest &= rest - 1;
            }
        }
        pending.clear();
    }

    /// Writes sample `sample` of step `step` into `x` (length n) and returns how many features are
    /// present (zero means the whole sample is zero). The reference the batched paths and the
    /// kernels are tested against: presence into `x` as 1 / 0 first, then the values chunk by chunk.
    pub fn sample(&self, step: u32, sample: u32, x: &mut [f32]) -> usize {
        assert_eq!(x.len(), self.features);
        let mark = |present: bool| f32::from(u8::from(present));
        if self.is_plain() {
            let (chunks, top) = (self.chunks() as u32, self.threshold >> 24);
            for (c, chunk) in x.chunks_mut(CHUNK_FEATURES).enumerate() {
                let index = sample * chunks + c as u32;
                let counter = [index, step, self.instance, self.presence_stream as u32];
                let bytes = philox4x32_10(counter, self.key);
                for (i, out) in chunk.iter_mut().enumerate() {
                    let byte = bytes[i / 4] >> (8 * (i % 4)) & 0xFF;
                    let feature = CHUNK_FEATURES * c + i;
                    *out =
                        mark(byte < top || byte == top && self.tie_present(step, sample, feature));
                }
            }
        } else {
            let words: Vec<u32> = (0..self.groups())
                .flat_map(|group| self.mask_words(step, sample, group))
                .collect();
            self.present_features(&words, |feature, present| x[feature] = mark(present));
        }
        let mut present = 0;
        for (c, chunk) in x.chunks_mut(CHUNK_FEATURES).enumerate() {
            let bits =
                (chunk.iter().enumerate()).fold(0, |bits, (i, &v)| bits | u32::from(v != 0.0) << i);
            present += bits.count_ones() as usize;
            for (index, served) in self.value_calls(sample, c, bits) {
                let counter = [index, step, self.instance, self.value_stream as u32];
                for (i, word) in set_bits(served).zip(philox4x32_10(counter, self.key)) {
                    chunk[i] = self.value(word);
                }
            }
        }
        present
    }

    /// The four mask words of group `group` of `sample`.
    fn mask_words(&self, step: u32, sample: u32, group: usize) -> [u32; 4] {
        let index = sample * self.groups() as u32 + group as u32;
        philox4x32_10(
            [index, step, self.instance, self.mask_stream as u32],
            self.key,
        )
    }

    /// The distribution's presence rules for sets and exactly-K (see the module documentation)
    /// for one sample whose mask words are `words` (4 per group, word f for feature f): calls
    /// `mark(feature, present)` for every feature, in order, then again for the members of each
    /// dependent set (the later call wins). Shared by [`FeatureSource::sample`] and the CPU
    /// trainer's batched [`FeatureSource::presence_general`].
    #[inline]
    fn present_features(&self, words: &[u32], mut mark: impl FnMut(usize, bool)) {
        let dist = &self.distribution;
        let n = self.features;
        if dist.exactly_k > 0 {
            // Present iff fewer than K features have a smaller (mask word, index): the K smallest.
            for feature in 0..n {
                let mine = (words[feature], feature);
                let rank = (0..n).filter(|&j| (words[j], j) < mine).count();
                mark(feature, rank < dist.exactly_k as usize);
            }
            return;
        }
        for (feature, &word) in words[..n].iter().enumerate() {
            mark(feature, word <= self.threshold);
        }
        for (start, kind, size) in dist.dependent_sets() {
            let first = words[start];
            let chosen = match (kind, dist.anticorrelated) {
                (SetKind::Correlated, _) => {
                    let all = first <= self.threshold;
                    (start..start + size).for_each(|f| mark(f, all));
                    continue;
                }
                (_, AnticorrelatedMode::Paper) => (first <= self.threshold)
                    .then(|| ((u64::from(words[start + 1]) * size as u64) >> 32) as usize),
                (_, AnticorrelatedMode::Marginal) => {
                    let cut = u64::from(self.threshold) + 1;
                    Some((u64::from(first) / cut) as usize).filter(|&c| c < size)
                }
            };
            (0..size).for_each(|c| mark(start + c, chosen == Some(c)));
        }
    }

    /// [`FeatureSource::presence`] for sets and exactly-K: the mask words of each sample drawn
    /// [`LANES`] groups per call by `P` into `words` (4 · groups of them), then the
    /// distribution's rules, packed the same way (bit 16 · chunks · s + f of the stream for feature
    /// f of local sample s).
    #[inline(always)]
    pub fn presence_general<P: PhiloxLanes>(
        &self,
        step: u32,
        samples: std::ops::Range<u32>,
        stream: &mut [u32],
        words: &mut [u32],
    ) {
        let groups = self.groups();
        let rest = [step, self.instance, self.mask_stream as u32];
        stream.fill(0);
        for (local, sample) in samples.enumerate() {
            let first_index = sample * groups as u32;
            for call in (0..groups).step_by(LANES) {
                // Lanes past the sample's last group repeat it; their words are not kept.
                let indices =
                    std::array::from_fn(|l| first_index + (call + l).min(groups - 1) as u32);
                let out = P::words(indices, rest, self.key);
                for l in 0..LANES.min(groups - call) {
                    for (w, word) in out.iter().enumerate() {
                        words[4 * (call + l) + w] = word[l];
                    }
                }
            }
            let first_bit = CHUNK_FEATURES * self.chunks() * local;
            self.present_features(words, |feature, present| {
                let (i, bit) = ((first_bit + feature) / 32, (first_bit + feature) % 32);
                stream[i] = stream[i] & !(1 << bit) | u32::from(present) << bit;
            });
        }
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
    }

    /// Sample `sample` of the training data written straight from the module documentation's
    /// layout, feature by feature: present iff the 32-bit word (presence byte · 2²⁴ + mask word's
    /// top 24 bits) ≤ the threshold; the k-th present feature of a chunk reads word k mod 4 of value
    /// call sample · groups + 4 · chunk + k / 4.
    fn layout_sample(
        seed: u64,
        instance: u32,
        density: f64,
        n: usize,
        step: u32,
        sample: u32,
    ) -> Vec<f32> {
        let (key, threshold) = (seed_key(seed), presence_threshold(density));
        let (chunks, groups) = (n.div_ceil(16) as u32, n.div_ceil(4) as u32);
        let call =
            |index: u32, stream: Stream| philox4x32_10([index, step, instance, stream as u32], key);
        let mut present = vec![false; n];
        let mut x = vec![0.0; n];
        for f in 0..n {
            let (c, i) = (f / 16, f % 16);
            let byte = call(sample * chunks + c as u32, Stream::TrainPresence)[i / 4]
                >> (8 * (i % 4))
                & 0xFF;
            let mask = call(sample * groups + f as u32 / 4, Stream::TrainMask)[f % 4];
            present[f] = (byte << 24 | mask >> 8) <= threshold;
            if present[f] {
                let rank = (16 * c..f).filter(|&g| present[g]).count() as u32;
                let word = call(
                    sample * groups + 4 * c as u32 + rank / 4,
                    Stream::TrainValue,
                )[rank as usize % 4];
                x[f] = unit_float(word);
            }
        }
        x
    }

    /// [`FeatureSource::sample`] and the batched presence and value calls give the layout's samples,
    /// at densities with ties refined by the mask word (0.3), decided by the byte alone (1) and
    /// made of ties only (1e-4), over one, two and three chunks.
    #[test]
    fn samples_follow_the_documented_layout() {
        for (n, density) in [
            (9, 0.3),
            (20, 0.3),
            (37, 0.3),
            (37, 1.0),
            (20, 1e-4),
            (64, 0.05),
        ] {
            let samples = 3..260u32;
            let source = FeatureSource::train(3, 1, density, n);
            let mut present = vec![0u32; source.presence_stream_len(samples.len())];
            source.presence::<Portable>(2, samples.clone(), &mut present);
            let mut x = vec![0.0; n];
            for (local, s) in samples.enumerate() {
                let want = layout_sample(3, 1, density, n, 2, s);
                let count = source.sample(2, s, &mut x);
                assert_eq!(x, want, "n {n} density {density} sample {s}");
                let bits = (0..source.chunks())
                    .map(|c| source.chunk_bits(&present, local, c).count_ones())
                    .sum::<u32>();
                assert_eq!(bits as usize, count, "n {n} density {density} sample {s}");
                for c in 0..source.chunks() {
                    let bits = source.chunk_bits(&present, local, c);
                    for (index, served) in source.value_calls(s, c, bits) {
                        let words = source.value_lanes::<Portable>(2, [index; LANES]);
                        for (i, word) in set_bits(served).zip(words) {
                            let f = 16 * c + i;
                            assert_eq!(
                                unit_float(word[0]),
                                want[f],
                                "n {n} sample {s} feature {f}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The batched presence of every distribution marks exactly the features that
    /// [`FeatureSource::sample`] draws (normal values can be clipped to 0 while present).
    #[test]
    fn batched_presence_of_every_distribution_equals_the_samples() {
        let set = |text: &str| FeatureSet::parse_list(text).unwrap();
        let (n, samples) = (21, 5..70u32);
        for (sets, mode, values, k) in [
            (
                set("correlated:3,independent:2,correlated:5"),
                AnticorrelatedMode::Paper,
                Values::Uniform,
                0,
            ),
            (
                set("anticorrelated:4,anticorrelated:2"),
                AnticorrelatedMode::Paper,
                Values::Binary,
                0,
            ),
            (
                set("anticorrelated:3,correlated:2"),
                AnticorrelatedMode::Marginal,
                Values::Uniform,
                0,
            ),
            (vec![], AnticorrelatedMode::Paper, Values::Uniform, 4),
            (vec![], AnticorrelatedMode::Paper, Values::Normal, 0),
        ] {
            let dist = Distribution::new(&sets, mode, values, k).unwrap();
            let density = if k > 0 { f64::from(k) / n as f64 } else { 0.3 };
            let source = FeatureSource::train(3, 1, density, n).with(&dist);
            let mut present = vec![0u32; source.presence_stream_len(samples.len())];
            let mut words = vec![0u32; 4 * source.groups()];
            if source.is_plain() {
                source.presence::<Portable>(2, samples.clone(), &mut present);
            } else {
                source.presence_general::<Portable>(2, samples.clone(), &mut present, &mut words);
            }
            let mut x = vec![0.0; n];
            for (local, s) in samples.clone().enumerate() {
                let count = source.sample(2, s, &mut x);
                let bits = (0..source.chunks()).fold(0u64, |bits, c| {
                    bits | u64::from(source.chunk_bits(&present, local, c)) << (16 * c)
                });
                let drawn = x
                    .iter()
                    .enumerate()
                    .fold(0u64, |b, (f, &v)| b | u64::from(v != 0.0) << f);
                assert_eq!(bits.count_ones() as usize, count, "{dist:?} sample {s}");
                assert_eq!(bits & drawn, drawn, "{dist:?} sample {s}");
                if values != Values::Normal {
                    assert_eq!(bits, drawn, "{dist:?} sample {s}");
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

    /// `samples` samples of `n` features at `density` drawn from `dist`: the presence of each
    /// feature per sample (a non-zero value), and every value.
    fn draws(
        dist: &Distribution,
        density: f64,
        n: usize,
        samples: u32,
    ) -> (Vec<Vec<bool>>, Vec<f32>) {
        let source = FeatureSource::train(5, 2, density, n).with(dist);
        let mut x = vec![0.0; n];
        let (mut present, mut values) = (vec![], vec![]);
        for s in 0..samples {
            let count = source.sample(3, s, &mut x);
            // Uniform values are 0 only with probability 2⁻²⁴ per draw (none in these tests); normal
            // ones are clipped to 0 with probability 0.6 %, and still counted present.
            present.push(x.iter().map(|&v| v != 0.0).collect::<Vec<_>>());
            assert!(count >= present.last().unwrap().iter().filter(|&&p| p).count());
            values.extend(&x);
        }
        (present, values)
    }

    /// Asserts that feature `f` is present at `rate` within five standard errors.
    fn assert_rate(present: &[Vec<bool>], f: usize, rate: f64, what: &str) {
        let n = present.len() as f64;
        let seen = present.iter().filter(|p| p[f]).count() as f64 / n;
        let sd = (rate * (1.0 - rate) / n).sqrt();
        assert!(
            (seen - rate).abs() <= 5.0 * sd,
            "{what}: feature {f} present at {seen}, want {rate}"
        );
    }

    fn sets(text: &str) -> Vec<FeatureSet> {
        FeatureSet::parse_list(text).unwrap()
    }

    #[test]
    fn correlated_members_are_present_together_at_the_density() {
        let dist = Distribution::new(
            &sets("correlated:2,independent:1,correlated:3"),
            AnticorrelatedMode::Paper,
            Values::Uniform,
            0,
        )
        .unwrap();
        let (present, _) = draws(&dist, 0.3, 9, 20_000);
        for p in &present {
            assert!(p[0] == p[1] && p[3] == p[4] && p[4] == p[5], "{p:?}");
        }
        for f in 0..9 {
            assert_rate(&present, f, 0.3, "correlated");
        }
        // The sets' draws are independent of each other.
        let both = present.iter().filter(|p| p[0] && p[3]).count() as f64 / 20_000.0;
        assert!((both - 0.09).abs() < 0.01, "two sets together at {both}");
    }

    #[test]
    fn anticorrelated_members_are_never_together() {
        for (mode, density, member_rate) in [
            (AnticorrelatedMode::Paper, 0.3, 0.1),
            (AnticorrelatedMode::Marginal, 0.3, 0.3),
        ] {
            let dist = Distribution::new(
                &sets("anticorrelated:3,anticorrelated:2"),
                mode,
                Values::Uniform,
                0,
            )
            .unwrap();
            let (present, _) = draws(&dist, density, 6, 20_000);
            for p in &present {
                assert!(
                    p[..3].iter().filter(|&&v| v).count() <= 1 && !(p[3] && p[4]),
                    "{mode:?}: {p:?}"
                );
            }
            for f in 0..3 {
                assert_rate(&present, f, member_rate, &format!("{mode:?}"));
            }
            let pair = if mode == AnticorrelatedMode::Paper {
                0.15
            } else {
                0.3
            };
            assert_rate(&present, 3, pair, &format!("{mode:?}"));
            assert_rate(&present, 5, density, &format!("{mode:?} independent"));
        }
    }

    #[test]
    fn exactly_k_samples_have_k_features_chosen_uniformly() {
        let dist = Distribution::new(&[], AnticorrelatedMode::Paper, Values::Uniform, 3).unwrap();
        let (present, _) = draws(&dist, 0.3, 10, 20_000);
        assert!(present
            .iter()
            .all(|p| p.iter().filter(|&&v| v).count() == 3));
        for f in 0..10 {
            assert_rate(&present, f, 0.3, "exactly-k");
        }
        let pair = present.iter().filter(|p| p[0] && p[9]).count() as f64 / 20_000.0;
        // P(two given features) = K(K − 1) / (n(n − 1)) = 6/90.
        assert!((pair - 6.0 / 90.0).abs() < 0.01, "pair at {pair}");
    }

    #[test]
    fn binary_and_normal_values() {
        let binary = Distribution::new(&[], AnticorrelatedMode::Paper, Values::Binary, 0).unwrap();
        let (present, values) = draws(&binary, 0.2, 7, 5_000);
        assert!(values.iter().all(|&v| v == 1.0 || v == 0.0));
        assert_rate(&present, 6, 0.2, "binary");
        let normal = Distribution::new(&[], AnticorrelatedMode::Paper, Values::Normal, 0).unwrap();
        let (_, values) = draws(&normal, 1.0, 8, 5_000);
        let (len, values) = (values.len() as f64, values.iter().map(|&v| f64::from(v)));
        let mean = values.clone().sum::<f64>() / len;
        let sd = (values.clone().map(|v| (v - mean).powi(2)).sum::<f64>() / len).sqrt();
        // clip(0.5 + 0.2 z, 0, 1) has mean 0.5 and sd 0.2 · 0.98 (the clip at ±2.5σ).
        assert!(
            (mean - 0.5).abs() < 0.005 && (sd - 0.196).abs() < 0.004,
            "mean {mean} sd {sd}"
        );
        assert!(values.clone().all(|v| (0.0..=1.0).contains(&v)));
        let edge = values.filter(|&v| v >= 1.0).count() as f64 / len;
        assert!(edge > 0.002 && edge < 0.012, "clipped at 1: {edge}");
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
