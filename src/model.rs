//! The two toy models and their analytic gradients, for one sample, written out by hand.
//!
//! For one sample x (n features) of an instance with weights W (m × n, row-major) and bias b (n):
//!
//! ```text
//! h  = W x                 (m)
//! y  = Wᵀ h + b            (n)
//! x' = y  or  ReLU(y)
//! loss = c Σ_i I_i (x_i − x'_i)²            c = 1 / (batch · n), the notebook's mean
//! δ_i  = ∂loss/∂y_i = 2 c I_i (x'_i − x_i) · [linear or y_i > 0]
//! ∂loss/∂b = δ
//! ∂loss/∂W = h δᵀ + (W δ) xᵀ               (W appears twice: in h and in Wᵀ)
//! ```
//!
//! That is 10·n·m flops per sample (Wx, Wᵀh, Wδ and the two outer products). An all-zero sample has
//! h = 0 and y = b, so its only gradient is δ(b) on the bias: the trainers handle such samples in
//! closed form ([`zero_sample`]).
//!
//! This module is the one Rust statement of the maths. Its functions are generic over a [`Real`]
//! lane type: f32 and f64 hold one sample (the finite-difference tests and evaluation run in f64),
//! and the CPU trainer's SIMD lane types (`cpu::lanes`) hold eight samples, one per lane, so its block
//! pass is these very functions with every operation done eight samples at a time.

use crate::experiment::ModelKind;
use std::ops::{Add, AddAssign, Mul, Sub};

/// A number, or a vector of numbers computed lane by lane, that the model runs in.
pub trait Real:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign
{
    /// What one lane holds: the type of the weights, bias and importance that every lane shares.
    type Scalar: Copy;
    const ZERO: Self;
    /// Every lane set to `v`.
    fn splat(v: Self::Scalar) -> Self;
    /// ReLU: `self` where it is > 0, else +0 (also for −0 and NaN, as x86's `maxps(self, 0)`).
    fn relu(self) -> Self;
    /// `value` where `self` > 0, else +0: the ReLU derivative as a gate.
    fn where_positive(self, value: Self) -> Self;
}

macro_rules! real_float {
    ($t:ty) => {
        impl Real for $t {
            type Scalar = $t;
            const ZERO: $t = 0.0;
            #[inline(always)]
            fn splat(v: $t) -> $t {
                v
            }
            #[inline(always)]
            fn relu(self) -> $t {
                if self > 0.0 {
                    self
                } else {
                    0.0
                }
            }
            #[inline(always)]
            fn where_positive(self, value: $t) -> $t {
                if self > 0.0 {
                    value
                } else {
                    0.0
                }
            }
        }
    };
}
real_float!(f32);
real_float!(f64);

/// Scratch vectors of one sample's (or one lane group's) forward and backward pass, allocated once.
#[derive(Clone, Debug)]
pub struct Scratch<T> {
    pub h: Vec<T>,
    pub y: Vec<T>,
    pub delta: Vec<T>,
    pub dh: Vec<T>,
}

impl<T: Real> Scratch<T> {
    pub fn new(features: usize, hidden: usize) -> Self {
        Scratch {
            h: vec![T::ZERO; hidden],
            y: vec![T::ZERO; features],
            delta: vec![T::ZERO; features],
            dh: vec![T::ZERO; hidden],
        }
    }
}

/// Forward pass: fills `s.h` and `s.y` (pre-activation) for sample `x`.
#[inline(always)]
pub fn forward<T: Real>(w: &[T::Scalar], b: &[T::Scalar], x: &[T], s: &mut Scratch<T>) {
    forward_over(w, b, x, 0..x.len(), s)
}

/// [`forward`] when x is zero outside `columns` (ascending): W x skips the zero columns, which
/// changes nothing in the result (adding w · 0 = ±0 to a sum that is never −0 leaves it as it is).
#[inline(always)]
pub fn forward_over<T: Real>(
    w: &[T::Scalar],
    b: &[T::Scalar],
    x: &[T],
    columns: impl Iterator<Item = usize> + Clone,
    s: &mut Scratch<T>,
) {
    let n = x.len();
    hidden(w, x, columns, &mut s.h);
    for (yi, &bi) in s.y.iter_mut().zip(b) {
        *yi = T::splat(bi);
    }
    for (k, &hk) in s.h.iter().enumerate() {
        let row = &w[k * n..(k + 1) * n];
        for (yi, &wki) in s.y.iter_mut().zip(row) {
            *yi += T::splat(wki) * hk;
        }
    }
}

/// h = W x (W: m rows of n), when x is zero outside `columns` (ascending; see [`forward_over`]).
#[inline(always)]
pub fn hidden<T: Real>(
    w: &[T::Scalar],
    x: &[T],
    columns: impl Iterator<Item = usize> + Clone,
    h: &mut [T],
) {
    let n = x.len();
    for (k, hk) in h.iter_mut().enumerate() {
        let row = &w[k * n..(k + 1) * n];
        let mut acc = T::ZERO;
        for j in columns.clone() {
            acc += T::splat(row[j]) * x[j];
        }
        *hk = acc;
    }
}

/// The model output x' for pre-activation y.
#[inline(always)]
pub fn activate<T: Real>(kind: ModelKind, y: T) -> T {
    match kind {
        ModelKind::Linear => y,
        ModelKind::Relu => y.relu(),
    }
}

/// `value` where the gradient flows through the activation at pre-activation y, else 0.
#[inline(always)]
pub fn gate<T: Real>(kind: ModelKind, y: T, value: T) -> T {
    match kind {
        ModelKind::Linear => value,
        ModelKind::Relu => y.where_positive(value),
    }
}

/// One output's contribution to the loss (before the factor c) and its ∂loss/∂y, for pre-activation
/// y, target x and importance; `two_c` = 2c. Shared by [`output_delta`] and [`zero_sample`].
#[inline(always)]
fn output_term<T: Real>(kind: ModelKind, y: T, x: T, importance: T, two_c: T) -> (T, T) {
    let err = activate(kind, y) - x;
    (
        importance * err * err,
        gate(kind, y, two_c * importance * err),
    )
}

/// Loss of one sample (scaled by `c`) after [`forward`]; fills `s.delta` with ∂loss/∂y.
/// For the SIMD type, `c` is zero in padding lanes, which zeroes their loss and gradient.
#[inline(always)]
pub fn output_delta<T: Real>(
    kind: ModelKind,
    importance: &[T::Scalar],
    x: &[T],
    c: T,
    s: &mut Scratch<T>,
) -> T {
    loss_and_delta(kind, importance, x, &s.y, c, &mut s.delta)
}

/// [`output_delta`] on plain slices: the loss of the sample x with pre-activation y, and its
/// ∂loss/∂y written into `delta` (the CPU trainer's matrix path keeps a batch of them as rows).
#[inline(always)]
pub fn loss_and_delta<T: Real>(
    kind: ModelKind,
    importance: &[T::Scalar],
    x: &[T],
    y: &[T],
    c: T,
    delta: &mut [T],
) -> T {
    let mut loss = T::ZERO;
    let two_c = c + c;
    for (((d, &y), &xi), &ii) in delta.iter_mut().zip(y).zip(x).zip(importance) {
        let (term, delta) = output_term(kind, y, xi, T::splat(ii), two_c);
        loss += term;
        *d = delta;
    }
    loss * c
}

/// Adds one sample's gradient to `grad_w` and `grad_b` after [`output_delta`].
#[inline(always)]
pub fn backward<T: Real>(
    w: &[T::Scalar],
    x: &[T],
    s: &mut Scratch<T>,
    grad_w: &mut [T],
    grad_b: &mut [T],
) {
    let n = x.len();
    for (gb, &d) in grad_b.iter_mut().zip(&s.delta) {
        *gb += d;
    }
    for (k, dhk) in s.dh.iter_mut().enumerate() {
        let row = &w[k * n..(k + 1) * n];
        let mut acc = T::ZERO;
        for (&wki, &di) in row.iter().zip(&s.delta) {
            acc += T::splat(wki) * di;
        }
        *dhk = acc;
    }
    for k in 0..s.h.len() {
        let (hk, dhk) = (s.h[k], s.dh[k]);
        let grow = &mut grad_w[k * n..(k + 1) * n];
        for ((g, &di), &xi) in grow.iter_mut().zip(&s.delta).zip(x) {
            *g += hk * di + dhk * xi;
        }
    }
}

/// Loss and bias gradient of one all-zero sample (h = 0, y = b): returns the loss and fills `delta`.
#[inline(always)]
pub fn zero_sample<T: Real>(
    kind: ModelKind,
    importance: &[T::Scalar],
    b: &[T::Scalar],
    c: T,
    delta: &mut [T],
) -> T {
    let mut loss = T::ZERO;
    let two_c = c + c;
    for ((d, &bi), &ii) in delta.iter_mut().zip(b).zip(importance) {
        let (term, delta) = output_term(kind, T::splat(bi), T::ZERO, T::splat(ii), two_c);
        loss += term;
        *d = delta;
    }
    loss * c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::init_normal;

    fn random(seed: u64, count: usize, scale: f64, offset: f64) -> Vec<f64> {
        (0..count)
            .map(|i| offset + scale * init_normal(seed, 0, i as u32))
            .collect()
    }

    fn loss_of(kind: ModelKind, w: &[f64], b: &[f64], xs: &[Vec<f64>], imp: &[f64], c: f64) -> f64 {
        let mut s = Scratch::new(b.len(), w.len() / b.len());
        xs.iter()
            .map(|x| {
                forward(w, b, x, &mut s);
                output_delta(kind, imp, x, c, &mut s)
            })
            .sum()
    }

    /// Central finite differences in f64 against the analytic gradient, both model kinds.
    #[test]
    fn gradients_match_finite_differences() {
        let (n, m, batch) = (7, 3, 5);
        for kind in [ModelKind::Linear, ModelKind::Relu] {
            let w = random(1, m * n, 0.5, 0.0);
            let b = random(2, n, 0.3, 0.0);
            let imp: Vec<f64> = random(3, n, 0.3, 1.0).iter().map(|v| v.abs()).collect();
            // Mix of sparse and dense samples, one all zero.
            let xs: Vec<Vec<f64>> = (0..batch)
                .map(|s| {
                    random(10 + s as u64, n, 0.5, 0.5)
                        .iter()
                        .enumerate()
                        .map(|(j, v)| {
                            if (j + s) % 3 == 0 || s == 4 {
                                0.0
                            } else {
                                v.abs()
                            }
                        })
                        .collect()
                })
                .collect();
            let c = 1.0 / (batch * n) as f64;
            let (mut gw, mut gb) = (vec![0.0; m * n], vec![0.0; n]);
            let mut s = Scratch::new(n, m);
            for x in &xs {
                if x.iter().all(|v| *v == 0.0) {
                    let mut delta = vec![0.0; n];
                    zero_sample(kind, &imp, &b, c, &mut delta);
                    gb.iter_mut().zip(&delta).for_each(|(g, d)| *g += d);
                    continue;
                }
                forward(&w, &b, x, &mut s);
                output_delta(kind, &imp, x, c, &mut s);
                backward(&w, x, &mut s, &mut gw, &mut gb);
            }
            let eps = 1e-6;
            let fd = |w2: &[f64], b2: &[f64]| loss_of(kind, w2, b2, &xs, &imp, c);
            for p in 0..m * n {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[p] += eps;
                wm[p] -= eps;
                let numeric = (fd(&wp, &b) - fd(&wm, &b)) / (2.0 * eps);
                assert!(
                    (numeric - gw[p]).abs() < 1e-7 * (1.0 + numeric.abs()),
                    "{kind:?} dW[{p}]: fd {numeric} analytic {}",
                    gw[p]
                );
            }
            for p in 0..n {
                let (mut bp, mut bm) = (b.clone(), b.clone());
                bp[p] += eps;
                bm[p] -= eps;
                let numeric = (fd(&w, &bp) - fd(&w, &bm)) / (2.0 * eps);
                assert!(
                    (numeric - gb[p]).abs() < 1e-7 * (1.0 + numeric.abs()),
                    "{kind:?} db[{p}]: fd {numeric} analytic {}",
                    gb[p]
                );
            }
        }
    }

    /// A hand-computed sample: n = 2, m = 1, W = [1, -1], b = [0.5, -0.25], x = [1, 0].
    #[test]
    fn forward_by_hand() {
        let (w, b, x) = ([1.0f64, -1.0], [0.5, -0.25], [1.0, 0.0]);
        let mut s = Scratch::new(2, 1);
        forward(&w, &b, &x, &mut s);
        assert_eq!(s.h, vec![1.0]);
        assert_eq!(s.y, vec![1.5, -1.25]);
        let loss = output_delta(ModelKind::Relu, &[1.0, 1.0], &x, 0.5, &mut s);
        // ReLU: x' = [1.5, 0]; loss = 0.5 · (0.25 + 0) ; δ = [2·0.5·0.5, 0]
        assert_eq!(loss, 0.125);
        assert_eq!(s.delta, vec![0.5, 0.0]);
        let loss = output_delta(ModelKind::Linear, &[1.0, 1.0], &x, 0.5, &mut s);
        assert_eq!(loss, 0.5 * (0.25 + 1.5625));
        assert_eq!(s.delta, vec![0.5, -1.25]);
    }
}
