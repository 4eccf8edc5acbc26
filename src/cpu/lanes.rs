//! The lane types of the CPU trainer's block pass: eight samples side by side, one per lane, with
//! the arithmetic of [`crate::model`] done eight samples at a time.
//!
//! One type per instruction set, each a real vector type whose operations are single vector
//! instructions: `Avx8` (one 256-bit AVX register) and `Sse8` (two 128-bit SSE registers) on
//! x86-64, and the portable `F32x8` elsewhere (eight-float arrays that the compiler vectorizes, for
//! NEON on aarch64). A plain `[f32; 8]` with lane loops is not enough on x86-64: the compiler's loop
//! vectorizer then vectorizes the loops over features across samples' lanes with shuffles, which
//! measured 1.6× slower than these types on the geometry workload.
//!
//! Every type has eight lanes and no fused multiply-adds, so all of them compute the same numbers
//! bit for bit (the tests in `cpu.rs` check it). The two x86 types are one macro over their
//! intrinsics' names. Each type also names the batched Philox generator of its instruction set
//! (`philox::Avx2Philox` for `Avx8`, the portable one elsewhere), which chunks draw their data with.

use crate::features::{PhiloxLanes, Portable, LANES};
use crate::model::Real;

/// What the block pass needs of its lane type beyond [`Real`]: single lanes in and out.
pub trait Lanes: Real<Scalar = f32> + Send + Sync {
    /// The batched Philox generator of this instruction set (the same words on every one).
    type Philox: PhiloxLanes;
    fn from_array(values: [f32; LANES]) -> Self;
    fn to_array(self) -> [f32; LANES];
    /// Sets lane `lane` to `value`.
    fn set(&mut self, lane: usize, value: f32);
    /// The sum of the lanes in lane order (fixed, so that results do not depend on the type).
    #[inline(always)]
    fn sum(self) -> f32 {
        self.to_array().iter().sum()
    }
}

/// Eight floats with lane-by-lane loops: the lane type where no intrinsics are written out.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(32))]
pub struct F32x8(pub [f32; LANES]);

macro_rules! lanewise {
    ($trait:ident, $method:ident, $op:tt) => {
        impl std::ops::$trait for F32x8 {
            type Output = F32x8;
            #[inline(always)]
            fn $method(self, other: F32x8) -> F32x8 {
                F32x8(std::array::from_fn(|l| self.0[l] $op other.0[l]))
            }
        }
    };
}
lanewise!(Add, add, +);
lanewise!(Sub, sub, -);
lanewise!(Mul, mul, *);

impl std::ops::AddAssign for F32x8 {
    #[inline(always)]
    fn add_assign(&mut self, other: F32x8) {
        *self = *self + other;
    }
}

impl Real for F32x8 {
    type Scalar = f32;
    const ZERO: F32x8 = F32x8([0.0; LANES]);
    #[inline(always)]
    fn splat(v: f32) -> F32x8 {
        F32x8([v; LANES])
    }
    #[inline(always)]
    fn relu(self) -> F32x8 {
        F32x8(self.0.map(f32::relu))
    }
    #[inline(always)]
    fn where_positive(self, value: F32x8) -> F32x8 {
        F32x8(std::array::from_fn(|l| {
            self.0[l].where_positive(value.0[l])
        }))
    }
}

impl Lanes for F32x8 {
    type Philox = Portable;
    #[inline(always)]
    fn from_array(values: [f32; LANES]) -> F32x8 {
        F32x8(values)
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        self.0
    }
    #[inline(always)]
    fn set(&mut self, lane: usize, value: f32) {
        self.0[lane] = value;
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx8, Sse8};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::philox::Avx2Philox;
    use super::{Lanes, Real, LANES};
    use crate::features::Portable;
    use std::arch::x86_64::*;

    /// A lane type of `$parts` x86 registers of type `$reg` holding the eight lanes, its operations
    /// one intrinsic per register, and `$philox` as its batched Philox generator.
    macro_rules! x86_lanes {
        (
            $(#[$doc:meta])*
            $name:ident([$reg:ty; $parts:literal], parts $($part:literal)+), philox $philox:ty,
            $zero:ident, $splat:ident, $add:ident, $sub:ident, $mul:ident, $max:ident,
            $and:ident, $greater:expr
        ) => {
            $(#[$doc])*
            #[derive(Clone, Copy, Debug)]
            #[repr(C, align(32))]
            pub struct $name([$reg; $parts]);

            x86_lanes!(@op $name, Add, add, $add, $($part)+);
            x86_lanes!(@op $name, Sub, sub, $sub, $($part)+);
            x86_lanes!(@op $name, Mul, mul, $mul, $($part)+);

            impl std::ops::AddAssign for $name {
                #[inline(always)]
                fn add_assign(&mut self, other: $name) {
                    *self = *self + other;
                }
            }

            impl Real for $name {
                type Scalar = f32;
                const ZERO: $name =
                    $name(unsafe { std::mem::transmute::<[f32; LANES], [$reg; $parts]>([0.0; LANES]) });
                #[inline(always)]
                fn splat(v: f32) -> $name {
                    // SAFETY: the type's instructions are there wherever a value of it exists.
                    unsafe { $name([$splat(v); $parts]) }
                }
                #[inline(always)]
                fn relu(self) -> $name {
                    // SAFETY: as in splat. max(self, 0) is +0 where self is NaN, −0 or ≤ 0.
                    unsafe { $name([$($max(self.0[$part], $zero())),+]) }
                }
                #[inline(always)]
                fn where_positive(self, value: $name) -> $name {
                    // SAFETY: as in splat.
                    unsafe { $name([$($and(($greater)(self.0[$part], $zero()), value.0[$part])),+]) }
                }
            }

            impl Lanes for $name {
                type Philox = $philox;
                #[inline(always)]
                fn from_array(values: [f32; LANES]) -> $name {
                    $name(bytemuck::cast(values))
                }
                #[inline(always)]
                fn to_array(self) -> [f32; LANES] {
                    bytemuck::cast(self.0)
                }
                #[inline(always)]
                fn set(&mut self, lane: usize, value: f32) {
                    bytemuck::cast_mut::<_, [f32; LANES]>(&mut self.0)[lane] = value;
                }
            }
        };
        (@op $name:ident, $trait:ident, $method:ident, $intrinsic:ident, $($part:literal)+) => {
            impl std::ops::$trait for $name {
                type Output = $name;
                #[inline(always)]
                fn $method(self, other: $name) -> $name {
                    // SAFETY: the type's instructions are there wherever a value of it exists.
                    unsafe { $name([$($intrinsic(self.0[$part], other.0[$part])),+]) }
                }
            }
        };
    }

    x86_lanes!(
        /// Eight floats in two SSE registers. SSE2 is part of every x86-64 processor, so these
        /// intrinsics are always safe to run.
        Sse8([__m128; 2], parts 0 1), philox Portable,
        _mm_setzero_ps, _mm_set1_ps, _mm_add_ps, _mm_sub_ps, _mm_mul_ps, _mm_max_ps,
        _mm_and_ps, _mm_cmpgt_ps
    );

    x86_lanes!(
        /// Eight floats in one AVX register. Only ever created inside chunks that run under
        /// `pulp::x86::V3` (which checked that the processor has AVX2): see `cpu::Chunks`.
        Avx8([__m256; 1], parts 0), philox Avx2Philox,
        _mm256_setzero_ps, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps,
        _mm256_max_ps, _mm256_and_ps, _mm256_cmp_ps::<_CMP_GT_OQ>
    );
}
