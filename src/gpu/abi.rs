//! The interface between the host and the WGSL kernels, declared once, here: the structs the host
//! writes and the kernels read, the kernel constants (workgroup sizes, tile sizes, budgets) and the
//! binding numbers. [`prelude`] generates their WGSL text, which [`super::shaders`] puts in front of
//! every kernel, so a kernel file never repeats a number or a field list by hand.
//!
//! Why generated rather than mirrored: inserting a field on one side of a hand-kept mirror compiles,
//! validates in naga, and silently shifts every read after it. Here the Rust struct is the only
//! declaration; `tests/shaders.rs` still compares naga's layout of every generated struct with
//! [`WgslStruct::FIELDS`] (offsets from `offset_of!`), and [`StepConstants`], which the optimizer
//! owns, is checked against its field list at compile time.
//!
//! Buffers that carry a struct followed by an array (the shard's config before its instance words,
//! a dispatch's params before its step constants) are declared in `shaders/common.wgsl` as structs of
//! the generated struct and a runtime-sized array; the host lays them out with [`shard_bytes`] and
//! [`dispatch_bytes`].

use crate::experiment::Optimizer;
use crate::features::{
    seed_key, Distribution, Stream, CHUNK_FEATURES, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1,
};
use crate::optim::StepConstants;
use bytemuck::{Pod, Zeroable};

/// A Rust scalar type and its WGSL name (every interface field is a 4-byte scalar, so the WGSL
/// storage layout equals `#[repr(C)]`: consecutive, 4-byte aligned).
pub trait WgslScalar {
    const WGSL: &'static str;
}

impl WgslScalar for u32 {
    const WGSL: &'static str = "u32";
}

impl WgslScalar for f32 {
    const WGSL: &'static str = "f32";
}

/// One field of an interface struct: its name, WGSL type and byte offset on the Rust side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WgslField {
    pub name: &'static str,
    pub ty: &'static str,
    pub offset: usize,
}

/// A `#[repr(C)]` struct the kernels read, with the facts needed to write its WGSL declaration.
pub trait WgslStruct: Pod {
    const NAME: &'static str;
    const FIELDS: &'static [WgslField];

    /// `struct Name { field: type, ... }` in WGSL.
    fn wgsl() -> String {
        let fields: String = Self::FIELDS
            .iter()
            .map(|f| format!("    {}: {},\n", f.name, f.ty))
            .collect();
        format!("struct {} {{\n{fields}}}\n", Self::NAME)
    }
}

/// Declares a `#[repr(C)]` interface struct of 4-byte scalars and its [`WgslStruct`] facts.
macro_rules! interface_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ident,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl WgslStruct for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [WgslField] = &[$(WgslField {
                name: stringify!($field),
                ty: <$ty as WgslScalar>::WGSL,
                offset: std::mem::offset_of!($name, $field),
            },)*];
        }
    };
}

/// [`WgslStruct`] facts for a struct declared elsewhere; fails to compile unless the list names
/// every field of the struct in declaration order.
macro_rules! interface_of {
    ($name:ident { $($field:ident: $ty:ident,)* }) => {
        impl WgslStruct for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [WgslField] = &[$(WgslField {
                name: stringify!($field),
                ty: <$ty as WgslScalar>::WGSL,
                offset: std::mem::offset_of!($name, $field),
            },)*];
        }
        const _: () = {
            let fields = <$name as WgslStruct>::FIELDS;
            assert!(std::mem::size_of::<$name>() == 4 * fields.len(), "a field is missing");
            let mut i = 0;
            while i < fields.len() {
                assert!(fields[i].offset == 4 * i, "fields out of declaration order");
                i += 1;
            }
        };
    };
}

/// Declares kernel constants: Rust `pub const`s and their WGSL `const` lines.
macro_rules! interface_constants {
    ($($(#[$meta:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$meta])* pub const $name: u32 = $value;)*

        /// The constants as (name, value), in declaration order.
        pub const CONSTANTS: &[(&str, u32)] = &[$((stringify!($name), $name),)*];
    };
}

interface_struct! {
    /// Per shard of instances, constant for the whole run: the head of the shard buffer.
    pub struct Config {
        pub features: u32,
        pub hidden: u32,
        pub batch: u32,
        /// Instances in this shard, and the global index of its first one (the Philox instance word).
        pub instances: u32,
        pub first_instance: u32,
        /// Workgroups per instance of the split register kernel (1 for the other kernels).
        pub slices: u32,
        /// The model (`experiment::ModelKind`): an output ReLU, a hidden ReLU (h = ReLU(W x)), and
        /// untied output weights (U = W₂ᵀ after W in the state; the abs model, whose target is |x|).
        pub relu: u32,
        pub hidden_relu: u32,
        pub untied: u32,
        pub log_every: u32,
        pub total_steps: u32,
        pub seed_lo: u32,
        pub seed_hi: u32,
        /// The data's streams (`features::Stream`): presence bytes, mask words, value words.
        pub presence_stream: u32,
        pub mask_stream: u32,
        pub value_stream: u32,
        pub beta1: f32,
        pub beta2: f32,
        pub eps: f32,
        /// c = 1 / (batch · features), the notebook's mean.
        pub scale: f32,
    }
}

impl Config {
    /// The fields the sampler reads (the head of every kernel's config): `batch` samples of
    /// `features` features per step for `instances` instances from global instance
    /// `first_instance`, drawn from `streams` (presence, mask, value) of `seed`; one slice, every
    /// step a log step, and the model's and the optimizer's fields zero until [`Config::training`].
    pub fn sampler(
        features: usize,
        batch: usize,
        instances: usize,
        first_instance: u32,
        seed: u64,
        [presence, mask, value]: [Stream; 3],
    ) -> Config {
        let [seed_lo, seed_hi] = seed_key(seed);
        Config {
            features: features as u32,
            batch: batch as u32,
            instances: instances as u32,
            first_instance,
            slices: 1,
            log_every: 1,
            seed_lo,
            seed_hi,
            presence_stream: presence as u32,
            mask_stream: mask as u32,
            value_stream: value as u32,
            ..Default::default()
        }
    }

    /// This config for training `hidden` dimensions with `optimizer`'s Adam constants, `steps`
    /// steps in all logged every `log_every`, the loss's mean taken with `scale`.
    pub fn training(
        self,
        hidden: usize,
        optimizer: &Optimizer,
        log_every: u32,
        steps: u32,
        scale: f32,
    ) -> Config {
        Config {
            hidden: hidden as u32,
            log_every,
            total_steps: steps,
            beta1: optimizer.beta1 as f32,
            beta2: optimizer.beta2 as f32,
            eps: optimizer.eps as f32,
            scale,
            ..self
        }
    }
}

interface_struct! {
    /// Per dispatch: which steps it runs and where their losses go; the head of a dispatch slot,
    /// followed by the [`StepConstants`] of those steps.
    pub struct Params {
        pub first_step: u32,
        pub steps: u32,
        pub log_slot: u32,
    }
}

interface_struct! {
    /// One sparse autoencoder of a `tms sae` run on the GPU (src/sae/gpu.rs, shaders/sae.wgsl): its
    /// shape and where its blocks start in the buffers it shares with the other SAEs.
    pub struct SaeEntry {
        /// Its toy instance's slot in the batch buffer (global index − the first toy's).
        pub toy: u32,
        pub latents: u32,
        /// SAE_L1, SAE_TOPK or SAE_JUMPRELU.
        pub kind: u32,
        pub k: u32,
        /// λ of the L1 or L0 penalty.
        pub coefficient: f32,
        /// JumpReLU's straight-through bandwidth ε.
        pub bandwidth: f32,
        /// Offset of [params | first moments | second moments] in the state buffer.
        pub state: u32,
        /// Offset of [a | dz | z, then ∂/∂θ | error] ([batch][latents] each, error [batch][m]) in
        /// the work buffer.
        pub work: u32,
        /// Offset of its gradient in the gradient buffer, and of [reconstruction | penalty]
        /// ([batch] each) there.
        pub grad: u32,
        pub samples: u32,
        /// Offset of its per-latent activity counts in the losses buffer.
        pub activity: u32,
    }
}

interface_of! {
    StepConstants {
        step_size: f32,
        bias2_sqrt: f32,
        decay_factor: f32,
        l2: f32,
    }
}

interface_constants! {
    /// Bindings of the one layout every kernel shares (kernels declare the subset they use). Eight
    /// storage buffers, WebGPU's default limit per stage; no uniform buffer, because
    /// Mesa 22's lavapipe re-specialises a kernel (and leaks it) whenever a uniform is rebound.
    /// [params | first moments | second moments], each [instances][m·n + n] with W before b.
    STATE_BINDING = 0;
    /// [`Config`], then the importances (f32 bits, [instances][features]), then the presence
    /// thresholds ([instances]), then the feature distribution's layout
    /// (`features::Distribution::layout_words`).
    SHARD_BINDING = 1;
    /// [`Params`] and the step constants of one dispatch, at a dynamic offset.
    DISPATCH_BINDING = 2;
    /// Losses of log points, [log slot][instance].
    LOSSES_BINDING = 3;
    /// Tiled path only: [H | dH], δ, and [gradients | partial losses].
    HIDDEN_BINDING = 4;
    DELTA_BINDING = 5;
    GRAD_BINDING = 6;
    /// The step's batch X, [instances][batch][features], written by features.wgsl: sampled once
    /// per step on the tiled path, read back by the sampler test.
    BATCH_BINDING = 7;
    /// Threads per workgroup of the generated register kernel (src/gpu/register.rs), and the
    /// largest model it takes (m·n + n: gradient accumulators per thread).
    REGISTER_WG = 64;
    REGISTER_MAX_PARAMS = 256;
    /// tiled.wgsl's blocks: TILE × TILE outputs per workgroup of TILE_THREADS × TILE_THREADS
    /// threads (4 × 4 outputs each), in rounds of TILE_DEPTH along the inner dimension.
    TILE = 64;
    TILE_THREADS = 16;
    TILE_DEPTH = 16;
    /// Elements of a round's slice of each operand that each thread copies.
    TILE_COPIES = TILE * TILE_DEPTH / (TILE_THREADS * TILE_THREADS);
    /// The hidden products' narrow blocks (samples × hidden units, the same 4 × 4 outputs per
    /// thread), picked by the host where they pad m less than TILE does ([`narrow_hidden`]).
    NARROW_ROWS = 128;
    NARROW_COLS = 32;
    /// Threads per workgroup of tiled_adam.wgsl and of the sampler kernel.
    ADAM_WG = 256;
    SAMPLER_WG = 64;
    /// Threads per workgroup of shaders/sae.wgsl, and its codes of the SAE kinds.
    SAE_WG = 64;
    SAE_L1 = 0;
    SAE_TOPK = 1;
    SAE_JUMPRELU = 2;
}

/// Whether the tiled path runs its hidden products (batch × m outputs) in NARROW_ROWS × NARROW_COLS
/// blocks: where they leave fewer padding columns than TILE-wide ones (m = 30: 2 against 34).
pub fn narrow_hidden(m: usize) -> bool {
    m.next_multiple_of(NARROW_COLS as usize) < m.next_multiple_of(TILE as usize)
}

/// The (samples, hidden units) of one block of the tiled path's hidden products for `m` hidden
/// units: narrow where [`narrow_hidden`], else TILE × TILE.
pub fn hidden_block(m: usize) -> (usize, usize) {
    if narrow_hidden(m) {
        (NARROW_ROWS as usize, NARROW_COLS as usize)
    } else {
        (TILE as usize, TILE as usize)
    }
}

/// Tiles of output_delta's partial losses per instance: TILE × TILE blocks of features × samples,
/// each writing one partial sum after the gradients in the gradient buffer.
pub fn loss_tiles(features: usize, batch: usize) -> usize {
    features.div_ceil(TILE as usize) * batch.div_ceil(TILE as usize)
}

/// Workgroups of the sampler kernel (shaders/features.wgsl) for `samples` samples of `features`
/// features: one thread per sample and chunk of [`CHUNK_FEATURES`] features (one presence call).
pub fn sampler_workgroups(samples: usize, features: usize) -> usize {
    (samples * features.div_ceil(CHUNK_FEATURES)).div_ceil(SAMPLER_WG as usize)
}

/// Loop iterations per chunk of 16 features that `sample_chunk` (shaders/common.wgsl) may run:
/// up to four mask calls, four value calls and (sets, exactly-K) four groups' presence rules, an
/// iteration each, and the three loops' exits.
pub const SAMPLER_CHUNK_LOOPS: u64 = 15;

/// Loop iterations per sample of the sampler (llvmpipe's loop budget counts them): the
/// distribution's own ([`Distribution::sampler_loop_iterations`]) and [`SAMPLER_CHUNK_LOOPS`] per
/// chunk.
pub fn sampler_loop_iterations(distribution: &Distribution, features: usize) -> u64 {
    distribution.sampler_loop_iterations(features)
        + SAMPLER_CHUNK_LOOPS * features.div_ceil(CHUNK_FEATURES) as u64
}

/// The WGSL text every kernel starts with: the interface structs, the constants, and Philox's
/// round-key increments (from the generator of [`crate::features`]).
pub fn prelude() -> String {
    let mut out =
        String::from("// Generated by src/gpu/abi.rs: edit the Rust declarations there.\n");
    for text in [
        Config::wgsl(),
        Params::wgsl(),
        StepConstants::wgsl(),
        SaeEntry::wgsl(),
    ] {
        out += &text;
    }
    for (name, value) in CONSTANTS {
        out += &format!("const {name}: u32 = {value}u;\n");
    }
    for (name, value) in [("PHILOX_M0", PHILOX_M0), ("PHILOX_M1", PHILOX_M1)] {
        out += &format!("const {name}: u32 = {value:#010X}u;\n");
    }
    // Round r of Philox4x32 uses key + r·(W0, W1) (mod 2³²).
    for round in 1..10u32 {
        out += &format!(
            "const PHILOX_KEY_STEP_{round}: vec2<u32> = vec2<u32>({:#010X}u, {:#010X}u);\n",
            PHILOX_W0.wrapping_mul(round),
            PHILOX_W1.wrapping_mul(round)
        );
    }
    out
}

/// The shard's instance words, in the order common.wgsl reads them: every instance's n
/// importances (f32 bits), then every instance's presence threshold, then the layout words of the
/// feature distribution ([`Distribution::layout_words`]). `instances` are (importances, threshold).
pub fn shard_words<'a>(
    instances: impl Iterator<Item = (&'a [f32], u32)> + Clone,
    distribution: &Distribution,
    n: usize,
) -> Vec<u32> {
    let mut words: Vec<u32> = instances
        .clone()
        .flat_map(|(importance, _)| importance.iter().map(|v| v.to_bits()))
        .collect();
    words.extend(instances.map(|(_, threshold)| threshold));
    words.extend(distribution.layout_words(n));
    words
}

/// The shard buffer: `config`, then `words` (see [`SHARD_BINDING`]).
pub fn shard_bytes(config: &Config, words: &[u32]) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(config).to_vec();
    bytes.extend_from_slice(bytemuck::cast_slice(words));
    bytes
}

/// Bytes of one dispatch slot holding `steps` step constants, rounded up to `alignment` (the
/// adapter's minimum storage offset alignment), so that slots can follow each other in one buffer.
pub fn dispatch_stride(steps: u32, alignment: u32) -> u64 {
    let bytes =
        std::mem::size_of::<Params>() + steps as usize * std::mem::size_of::<StepConstants>();
    (bytes as u64).next_multiple_of(u64::from(alignment))
}

/// One dispatch slot: `params`, then `constants` (see [`DISPATCH_BINDING`]), padded to `stride`.
pub fn dispatch_bytes(params: &Params, constants: &[StepConstants], stride: u64) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(params).to_vec();
    bytes.extend_from_slice(bytemuck::cast_slice(constants));
    assert!(bytes.len() as u64 <= stride, "a dispatch slot overflows");
    bytes.resize(stride as usize, 0);
    bytes
}
