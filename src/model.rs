//! The toy models and their analytic gradients, for one sample, written out by hand.
//!
//! For one sample x (n features) of an instance with weights W (m × n, row-major), output weights U
//! (m × n: U = W for the tied models, U = W₂ᵀ for the untied `abs` model) and bias b (n):
//!
//! ```text
//! h  = W x,  or ReLU(W x) for the models with a privileged hidden basis (relu-hidden, abs)   (m)
//! y  = Uᵀ h + b            (n)
//! x' = y  or  ReLU(y)
//! t  = x,  or |x| for the abs model (computation in superposition)
//! loss = c Σ_i I_i (t_i − x'_i)²            c = 1 / (batch · n), the notebook's mean
//! δ_i  = ∂loss/∂y_i = 2 c I_i (x'_i − t_i) · [linear or y_i > 0]
//! ∂loss/∂b = δ
//! g    = ∂loss/∂(W x) = U δ, gated by [h > 0] where h has a ReLU
//! ∂loss/∂U = h δᵀ,   ∂loss/∂W = g xᵀ       (tied: U = W, so ∂loss/∂W = h δᵀ + g xᵀ)
//! ```
//!
//! That is 10·n·m flops per sample (Wx, Uᵀh, Uδ and the two outer products). An all-zero sample has
//! h = 0 and y = b (ReLU(0) = 0 and |0| = 0), so its only gradient is δ(b) on the bias: the trainers
//! handle such samples in closed form ([`zero_sample`]).
//!
//! An instance's weights are one slice of m·n values (W) for the tied models and 2·m·n (W, then
//! U = W₂ᵀ) for the untied one, so the optimizer and the trainers treat every kind alike.
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

/// Forward pass of a `kind` model with weights `w` (see the module's notes): fills `s.h` (after the
/// hidden ReLU, if any) and `s.y` (pre-activation) for sample `x`.
#[inline(always)]
pub fn forward<T: Real>(
    kind: ModelKind,
    w: &[T::Scalar],
    b: &[T::Scalar],
    x: &[T],
    s: &mut Scratch<T>,
) {
    forward_over(kind, w, b, x, 0..x.len(), s)
}

/// [`forward`] when x is zero outside `columns` (ascending): W x skips the zero columns, which
/// changes nothing in the result (adding w · 0 = ±0 to a sum that is never −0 leaves it as it is).
#[inline(always)]
pub fn forward_over<T: Real>(
    kind: ModelKind,
    w: &[T::Scalar],
    b: &[T::Scalar],
    x: &[T],
    columns: impl Iterator<Item = usize> + Clone,
    s: &mut Scratch<T>,
) {
    let n = x.len();
    let m = s.h.len();
    hidden(w, x, columns, &mut s.h);
    if kind.hidden_relu() {
        s.h.iter_mut().for_each(|hk| *hk = hk.relu());
    }
    let u = output_weights(kind, w, m * n);
    for (yi, &bi) in s.y.iter_mut().zip(b) {
        *yi = T::splat(bi);
    }
    for (k, &hk) in s.h.iter().enumerate() {
        let row = &u[k * n..(k + 1) * n];
        for (yi, &uki) in s.y.iter_mut().zip(row) {
            *yi += T::splat(uki) * hk;
        }
    }
}

/// U, the output weights (m × n) within an instance's weights `w` whose W has `mn` entries: W
/// itself for a tied model, the second half of `w` (W₂ᵀ) for an untied one.
#[inline(always)]
fn output_weights<S>(kind: ModelKind, w: &[S], mn: usize) -> &[S] {
    if kind.untied() {
        &w[mn..2 * mn]
    } else {
        &w[..mn]
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
    row_dots(w, n, x, columns, h);
}

/// `out[k]` = Σ_{j in `columns`} w[k, j] · v[j] for each row k of the m × n matrix `w` (m =
/// out.len()), each sum from zero in the order of `columns`, so rounded exactly as a row alone
/// would be; but up to [`ROWS_AT_ONCE`] rows at a time (m split into equal blocks), so that their
/// chains of dependent adds run side by side instead of one after another (one chain of n adds at
/// 3–4 cycles each bounded the block pass at m = 5).
#[inline(always)]
fn row_dots<T: Real>(
    w: &[T::Scalar],
    n: usize,
    v: &[T],
    columns: impl Iterator<Item = usize> + Clone,
    out: &mut [T],
) {
    let m = out.len();
    let per_block = m.div_ceil(m.div_ceil(ROWS_AT_ONCE).max(1));
    for (block, outs) in out.chunks_mut(per_block.max(1)).enumerate() {
        let (k, c) = (block * per_block, columns.clone());
        macro_rules! rows {
            ($($r:literal)+) => {
                match outs.len() {
                    $($r => outs.copy_from_slice(&dots::<T, $r>(w, n, k, v, c)),)+
                    _ => unreachable!("blocks hold at most ROWS_AT_ONCE rows"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8);
    }
}

/// Rows whose sums [`row_dots`] keeps in registers side by side.
const ROWS_AT_ONCE: usize = 8;

/// The R sums of [`row_dots`] for rows k .. k + R of `w`, side by side.
#[inline(always)]
fn dots<T: Real, const R: usize>(
    w: &[T::Scalar],
    n: usize,
    k: usize,
    v: &[T],
    columns: impl Iterator<Item = usize>,
) -> [T; R] {
    let mut rows: [&[T::Scalar]; R] = [&[]; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = &w[(k + r) * n..(k + r + 1) * n];
    }
    let mut acc = [T::ZERO; R];
    for j in columns {
        let vj = v[j];
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a += T::splat(row[j]) * vj;
        }
    }
    acc
}

/// The model output x' for pre-activation y.
#[inline(always)]
pub fn activate<T: Real>(kind: ModelKind, y: T) -> T {
    if kind.output_relu() {
        y.relu()
    } else {
        y
    }
}

/// `value` where the gradient flows through the activation at pre-activation y, else 0.
#[inline(always)]
pub fn gate<T: Real>(kind: ModelKind, y: T, value: T) -> T {
    if kind.output_relu() {
        y.where_positive(value)
    } else {
        value
    }
}

/// What the model is trained to output for input feature x: x itself, or |x| for the abs model.
#[inline(always)]
pub fn target<T: Real>(kind: ModelKind, x: T) -> T {
    if kind.computes_abs() {
        // One of the two terms is +0, so the sum is |x| exactly.
        x.relu() + (T::ZERO - x).relu()
    } else {
        x
    }
}

/// One output's contribution to the loss (before the factor c) and its ∂loss/∂y, for pre-activation
/// y, input feature x and importance; `two_c` = 2c. Shared by [`output_delta`], [`zero_sample`]
/// and the CPU trainer's matrix path (which holds eight features of one sample in its lanes).
#[inline(always)]
pub fn output_term<T: Real>(kind: ModelKind, y: T, x: T, importance: T, two_c: T) -> (T, T) {
    let err = activate(kind, y) - target(kind, x);
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

/// Adds one sample's gradient to `grad_w` (laid out as `w`) and `grad_b` after [`output_delta`].
#[inline(always)]
pub fn backward<T: Real>(
    kind: ModelKind,
    w: &[T::Scalar],
    x: &[T],
    s: &mut Scratch<T>,
    grad_w: &mut [T],
    grad_b: &mut [T],
) {
    let n = x.len();
    let mn = s.h.len() * n;
    for (gb, &d) in grad_b.iter_mut().zip(&s.delta) {
        *gb += d;
    }
    let u = output_weights(kind, w, mn);
    row_dots(u, n, &s.delta, 0..n, &mut s.dh);
    if kind.hidden_relu() {
        for (dhk, &hk) in s.dh.iter_mut().zip(&s.h) {
            *dhk = hk.where_positive(*dhk);
        }
    }
    if kind.untied() {
        let (grad_w1, grad_u) = grad_w[..2 * mn].split_at_mut(mn);
        for k in 0..s.h.len() {
            let (hk, dhk) = (s.h[k], s.dh[k]);
            let rows = grad_w1[k * n..(k + 1) * n]
                .iter_mut()
                .zip(&mut grad_u[k * n..(k + 1) * n]);
            for (((g1, gu), &di), &xi) in rows.zip(&s.delta).zip(x) {
                *g1 += dhk * xi;
                *gu += hk * di;
            }
        }
        return;
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
        let mut s = Scratch::new(b.len(), w.len() / b.len() / kind.weight_rows(1));
        xs.iter()
            .map(|x| {
                forward(kind, w, b, x, &mut s);
                output_delta(kind, imp, x, c, &mut s)
            })
            .sum()
    }

    /// Central finite differences in f64 against the analytic gradient, every model kind (the abs
    /// model on signed samples).
    #[test]
    fn gradients_match_finite_differences() {
        let (n, m, batch) = (7, 3, 5);
        for kind in [
            ModelKind::Linear,
            ModelKind::Relu,
            ModelKind::ReluHidden,
            ModelKind::Abs,
        ] {
            let params = kind.weight_rows(m) * n;
            let w = random(1, params, 0.5, 0.0);
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
                            } else if kind.computes_abs() && (j * s) % 2 == 1 {
                                -v.abs()
                            } else {
                                v.abs()
                            }
                        })
                        .collect()
                })
                .collect();
            let c = 1.0 / (batch * n) as f64;
            let (mut gw, mut gb) = (vec![0.0; params], vec![0.0; n]);
            let mut s = Scratch::new(n, m);
            for x in &xs {
                if x.iter().all(|v| *v == 0.0) {
                    let mut delta = vec![0.0; n];
                    zero_sample(kind, &imp, &b, c, &mut delta);
                    gb.iter_mut().zip(&delta).for_each(|(g, d)| *g += d);
                    continue;
                }
                forward(kind, &w, &b, x, &mut s);
                output_delta(kind, &imp, x, c, &mut s);
                backward(kind, &w, x, &mut s, &mut gw, &mut gb);
            }
            let eps = 1e-6;
            let fd = |w2: &[f64], b2: &[f64]| loss_of(kind, w2, b2, &xs, &imp, c);
            for p in 0..params {
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
        forward(ModelKind::Relu, &w, &b, &x, &mut s);
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

    /// The hidden ReLU and the |x| target by hand: n = 2, m = 2, W₁ = [[1, 0], [−1, 0]] (one neuron
    /// per sign of feature 0), W₂ = [[1, 1], [0, 0]] (U = W₂ᵀ = [[1, 0], [1, 0]]), b = 0, x = [−0.5, 0].
    #[test]
    fn abs_model_by_hand() {
        let w = [1.0f64, 0.0, -1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let (b, x) = ([0.0, 0.0], [-0.5, 0.0]);
        let mut s = Scratch::new(2, 2);
        forward(ModelKind::Abs, &w, &b, &x, &mut s);
        // h = ReLU([−0.5, 0.5]) = [0, 0.5]; y = W₂ h = [0.5, 0]: exactly |x|, no loss.
        assert_eq!(s.h, vec![0.0, 0.5]);
        assert_eq!(s.y, vec![0.5, 0.0]);
        assert_eq!(
            output_delta(ModelKind::Abs, &[1.0, 1.0], &x, 0.5, &mut s),
            0.0
        );
        // The tied privileged-basis model on the same W₁: x = [0.5, 0] gives h = [0.5, 0] and
        // y = Wᵀ h = [0.5, 0]; x = [−0.5, 0] gives h = [0, 0.5] and y = [−0.5, 0], x' = ReLU(y) = 0,
        // so the loss is 0.5 · 0.25 and nothing flows back through the output ReLU.
        forward(ModelKind::ReluHidden, &w[..4], &b, &[0.5, 0.0], &mut s);
        assert_eq!(s.y, vec![0.5, 0.0]);
        forward(ModelKind::ReluHidden, &w[..4], &b, &x, &mut s);
        assert_eq!(s.y, vec![-0.5, 0.0]);
        assert_eq!(
            output_delta(ModelKind::ReluHidden, &[1.0, 1.0], &x, 0.5, &mut s),
            0.125
        );
        assert_eq!(s.delta, vec![0.0, 0.0]);
    }
}
