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
//! bit for bit (the tests in `cpu.rs` check it).

use crate::features::LANES;
use crate::model::Real;

/// What the block pass needs of its lane type beyond [`Real`]: single lanes in and out.
pub trait Lanes: Real<Scalar = f32> + Send + Sync {
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
    use super::{Lanes, Real, LANES};
    use std::arch::x86_64::*;

    /// Eight floats in two SSE registers. SSE2 is part of every x86-64 processor, so these
    /// intrinsics are always safe to run.
    #[derive(Clone, Copy, Debug)]
    #[repr(C, align(32))]
    pub struct Sse8([__m128; 2]);

    macro_rules! sse_op {
        ($trait:ident, $method:ident, $intrinsic:ident) => {
            impl std::ops::$trait for Sse8 {
                type Output = Sse8;
                #[inline(always)]
                fn $method(self, other: Sse8) -> Sse8 {
                    // SAFETY: SSE2 is in the x86-64 baseline.
                    unsafe {
                        Sse8([
                            $intrinsic(self.0[0], other.0[0]),
                            $intrinsic(self.0[1], other.0[1]),
                        ])
                    }
                }
            }
        };
    }
    sse_op!(Add, add, _mm_add_ps);
    sse_op!(Sub, sub, _mm_sub_ps);
    sse_op!(Mul, mul, _mm_mul_ps);

    impl std::ops::AddAssign for Sse8 {
        #[inline(always)]
        fn add_assign(&mut self, other: Sse8) {
            *self = *self + other;
        }
    }

    impl Real for Sse8 {
        type Scalar = f32;
        const ZERO: Sse8 = Sse8([unsafe { std::mem::transmute::<[f32; 4], __m128>([0.0; 4]) }; 2]);
        #[inline(always)]
        fn splat(v: f32) -> Sse8 {
            // SAFETY: SSE2 is in the x86-64 baseline.
            unsafe { Sse8([_mm_set1_ps(v); 2]) }
        }
        #[inline(always)]
        fn relu(self) -> Sse8 {
            // SAFETY: SSE2 is in the x86-64 baseline. maxps(self, 0) is +0 where self is NaN, −0
            // or ≤ 0.
            unsafe {
                let zero = _mm_setzero_ps();
                Sse8([_mm_max_ps(self.0[0], zero), _mm_max_ps(self.0[1], zero)])
            }
        }
        #[inline(always)]
        fn where_positive(self, value: Sse8) -> Sse8 {
            // SAFETY: SSE2 is in the x86-64 baseline.
            unsafe {
                let zero = _mm_setzero_ps();
                Sse8([
                    _mm_and_ps(_mm_cmpgt_ps(self.0[0], zero), value.0[0]),
                    _mm_and_ps(_mm_cmpgt_ps(self.0[1], zero), value.0[1]),
                ])
            }
        }
    }

    impl Lanes for Sse8 {
        #[inline(always)]
        fn from_array(values: [f32; LANES]) -> Sse8 {
            Sse8(bytemuck::cast(values))
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

    /// Eight floats in one AVX register. Only ever created inside chunks that run under
    /// `pulp::x86::V3` (which checked that the processor has AVX2): see `cpu::Chunks`.
    #[derive(Clone, Copy, Debug)]
    #[repr(transparent)]
    pub struct Avx8(__m256);

    macro_rules! avx_op {
        ($trait:ident, $method:ident, $intrinsic:ident) => {
            impl std::ops::$trait for Avx8 {
                type Output = Avx8;
                #[inline(always)]
                fn $method(self, other: Avx8) -> Avx8 {
                    // SAFETY: Avx8 exists only where the processor has AVX (see the type).
                    unsafe { Avx8($intrinsic(self.0, other.0)) }
                }
            }
        };
    }
    avx_op!(Add, add, _mm256_add_ps);
    avx_op!(Sub, sub, _mm256_sub_ps);
    avx_op!(Mul, mul, _mm256_mul_ps);

    impl std::ops::AddAssign for Avx8 {
        #[inline(always)]
        fn add_assign(&mut self, other: Avx8) {
            *self = *self + other;
        }
    }

    impl Real for Avx8 {
        type Scalar = f32;
        const ZERO: Avx8 = Avx8(unsafe { std::mem::transmute::<[f32; 8], __m256>([0.0; 8]) });
        #[inline(always)]
        fn splat(v: f32) -> Avx8 {
            // SAFETY: Avx8 exists only where the processor has AVX (see the type).
            unsafe { Avx8(_mm256_set1_ps(v)) }
        }
        #[inline(always)]
        fn relu(self) -> Avx8 {
            // SAFETY: as in splat. maxps(self, 0) is +0 where self is NaN, −0 or ≤ 0.
            unsafe { Avx8(_mm256_max_ps(self.0, _mm256_setzero_ps())) }
        }
        #[inline(always)]
        fn where_positive(self, value: Avx8) -> Avx8 {
            // SAFETY: as in splat.
            unsafe {
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, _mm256_setzero_ps());
                Avx8(_mm256_and_ps(positive, value.0))
            }
        }
    }

    impl Lanes for Avx8 {
        #[inline(always)]
        fn from_array(values: [f32; LANES]) -> Avx8 {
            Avx8(bytemuck::cast(values))
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
}
