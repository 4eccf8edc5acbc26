//! The matrix path of the CPU trainer, for models too large for the block pass's per-lane
//! accumulators to stay in cache (m·n·8 floats per chunk: 16 MiB at 2048 × 256).
//!
//! A chunk's samples are materialised once per step as the rows of a dense matrix X (B × n), and the
//! step is four matrix products over the batch, done by `matrixmultiply` (cache-blocked, with the
//! processor's widest vectors and fused multiply-adds chosen at run time):
//!
//! ```text
//! H  = X Wᵀ          (B × m)        Y = H W + b     (B × n; b added in the Δ pass)
//! Δ  = ∂loss/∂Y      (row by row: model::loss_and_delta, eight features at a time if no loss is read)
//! dH = Δ Wᵀ          (B × m)        ∂W = [H ; dH]ᵀ [Δ ; X] = Hᵀ Δ + dHᵀ X,  ∂b = Σ rows of Δ
//! ```
//!
//! The buffers are the worker thread's, not the chunk's, so that they stay in the core's cache
//! from one chunk to the next.
//!
//! The sums run in another order, and with fused multiply-adds, so results differ from the block
//! pass in the last bits: the tests hold the two within the GPU trainer's tolerance of the reference.

use super::lanes::Lanes;
use super::StepInputs;
use crate::features::{FeatureSource, PendingCalls, PhiloxLanes, CHUNK_FEATURES, LANES};
use crate::model::{loss_and_delta, output_term};

/// The matrix path's buffers. Each pair a step's ∂W multiplies is stacked in one buffer, so that
/// ∂W = Hᵀ Δ + dHᵀ X is one product of inner size 2B.
#[derive(Default)]
pub struct Dense {
    /// Δ (B × n) above the samples as rows, X (B × n): [Δ ; X].
    delta_x: Vec<f32>,
    /// Y = H W, before the bias (B × n).
    y: Vec<f32>,
    /// H (B × m) above dH (B × m): [H ; dH].
    h_dh: Vec<f32>,
}

thread_local! {
    /// One set of buffers per worker thread, not per chunk: a chunk's 1.2 MiB (geometry) stays in
    /// the core's L2 for the next chunk, where 128 chunks' own buffers (150 MiB) streamed through
    /// memory every step.
    static BUFFERS: std::cell::RefCell<Dense> = std::cell::RefCell::default();
}

impl Dense {
    /// The bytes of the buffers for chunks of up to `samples` samples (one set per thread).
    pub fn bytes(samples: usize, n: usize, m: usize) -> usize {
        (3 * samples * n + 2 * samples * m) * std::mem::size_of::<f32>()
    }

    /// [`Dense::compute`] with this thread's buffers, sized for the chunk on first use (a trainer's
    /// chunks have at most [`super::CHUNK_SAMPLES`] samples, so they are allocated once).
    #[inline(always)]
    pub fn compute_on_this_thread<L: Lanes>(
        source: &FeatureSource,
        samples: std::ops::Range<u32>,
        present: &[u32],
        at: StepInputs,
        grad_w: &mut [f32],
        grad_b: &mut [f32],
    ) -> f64 {
        // Taken out of the cell and put back rather than used in a closure, so that the step is
        // compiled inline with the caller's instruction set.
        let mut buffers = BUFFERS.take();
        let (rows, n) = (samples.len(), at.b.len());
        let m = at.w.len() / n;
        buffers.delta_x.resize(2 * rows * n, 0.0);
        buffers.y.resize(rows * n, 0.0);
        buffers.h_dh.resize(2 * rows * m, 0.0);
        let loss = buffers.compute::<L>(source, samples, present, at, grad_w, grad_b);
        BUFFERS.set(buffers);
        loss
    }

    /// Loss and gradient of the chunk's samples `samples` (their presence bits in `present`, as
    /// [`FeatureSource::presence`] packs them), written into `grad_w` and `grad_b`; value words
    /// drawn by `L`'s generator. Returns the loss at log steps (`at.log`), else 0.
    #[inline(always)]
    fn compute<L: Lanes>(
        &mut self,
        source: &FeatureSource,
        samples: std::ops::Range<u32>,
        present: &[u32],
        at: StepInputs,
        grad_w: &mut [f32],
        grad_b: &mut [f32],
    ) -> f64 {
        let (n, m) = (at.b.len(), at.w.len() / at.b.len());
        let rows = samples.len();
        let (delta, x) = self.delta_x.split_at_mut(rows * n);
        let (h, dh) = self.h_dh.split_at_mut(rows * m);
        fill_samples::<L::Philox>(source, samples, present, at.step, x);
        let w = at.w;
        // H = X Wᵀ; Y = H W (the bias is added row by row below: the same sum as the product's
        // C = A B + C would round).
        product(rows, n, m, x, (n, 1), w, (1, n), h);
        product(rows, m, n, h, (m, 1), w, (n, 1), &mut self.y);
        // Y += b, Δ and the loss, and ∂b = Σ Δ, sample by sample.
        let mut loss = 0.0f64;
        grad_b.fill(0.0);
        for ((x, y), delta) in x
            .chunks_exact(n)
            .zip(self.y.chunks_exact_mut(n))
            .zip(delta.chunks_exact_mut(n))
        {
            if at.log {
                y.iter_mut().zip(at.b).for_each(|(y, b)| *y += b);
                loss += f64::from(loss_and_delta(at.kind, at.importance, x, y, at.c, delta));
            } else {
                row_delta::<L>(at.kind, at.importance, x, y, at.b, at.c, delta);
            }
            grad_b.iter_mut().zip(&*delta).for_each(|(g, d)| *g += d);
        }
        // dH = Δ Wᵀ; ∂W = [H ; dH]ᵀ [Δ ; X] = Hᵀ Δ + dHᵀ X.
        product(rows, n, m, delta, (n, 1), w, (1, n), dh);
        product(
            m,
            2 * rows,
            n,
            &self.h_dh,
            (1, m),
            &self.delta_x,
            (n, 1),
            grad_w,
        );
        loss
    }
}

/// Writes the samples into the rows of `x`: zero, then the value of every present feature, the
/// value calls ([`FeatureSource::value_calls`]) made [`LANES`] at a time.
#[inline(always)]
fn fill_samples<P: PhiloxLanes>(
    source: &FeatureSource,
    samples: std::ops::Range<u32>,
    present: &[u32],
    step: u32,
    x: &mut [f32],
) {
    let n = x.len() / samples.len();
    x.fill(0.0);
    // Each call's target is the row offset of its chunk's first feature.
    let mut pending = PendingCalls::<(usize, u32)>::default();
    let mut put = |at: usize, bit: usize, value: f32| x[at + bit] = value;
    for s in 0..samples.len() {
        let sample = samples.start + s as u32;
        for c in 0..source.chunks() {
            let bits = source.chunk_bits(present, s, c);
            for (index, served) in source.value_calls(sample, c, bits) {
                if pending.push(index, (s * n + CHUNK_FEATURES * c, served)) {
                    source.make_value_calls::<P, _>(step, &mut pending, &mut put);
                }
            }
        }
    }
    source.make_value_calls::<P, _>(step, &mut pending, put);
}

/// The Δ row of [`loss_and_delta`] for the pre-activation y + b, without the loss (what steps
/// whose loss nobody reads need), eight features at a time in the lanes of `L`, the last n mod 8
/// one by one: the same bits, in a loop the compiler cannot vectorize when it also sums the loss
/// in order.
#[inline(always)]
fn row_delta<L: Lanes>(
    kind: crate::experiment::ModelKind,
    importance: &[f32],
    x: &[f32],
    y: &mut [f32],
    b: &[f32],
    c: f32,
    delta: &mut [f32],
) {
    let wide = x.len() / LANES * LANES;
    let lanes =
        |v: &[f32], i: usize| L::from_array(v[i..i + LANES].try_into().expect("eight features"));
    let two_c = L::splat(c + c);
    for i in (0..wide).step_by(LANES) {
        let y_b = lanes(y, i) + lanes(b, i);
        let (_, d) = output_term(kind, y_b, lanes(x, i), lanes(importance, i), two_c);
        delta[i..i + LANES].copy_from_slice(&d.to_array());
    }
    y[wide..]
        .iter_mut()
        .zip(&b[wide..])
        .for_each(|(y, b)| *y += b);
    let rest = (&importance[wide..], &x[wide..], &y[wide..]);
    loss_and_delta(kind, rest.0, rest.1, rest.2, c, &mut delta[wide..]);
}

/// C = A B for row-major C (rows × cols), A (rows × inner) and B (inner × cols) given
/// by their (row, column) strides in their slices.
#[allow(clippy::too_many_arguments)]
fn product(
    rows: usize,
    inner: usize,
    cols: usize,
    a: &[f32],
    (a_row, a_col): (usize, usize),
    b: &[f32],
    (b_row, b_col): (usize, usize),
    c: &mut [f32],
) {
    let last = |r: usize, k: usize, rs: usize, cs: usize| (r - 1) * rs + (k - 1) * cs;
    assert!(rows > 0 && inner > 0 && cols > 0);
    assert!(last(rows, inner, a_row, a_col) < a.len() && last(inner, cols, b_row, b_col) < b.len());
    assert_eq!(c.len(), rows * cols);
    // SAFETY: the asserts above keep every element the strides reach inside the slices, and C is
    // an exclusive borrow that aliases neither A nor B.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            inner,
            cols,
            1.0,
            a.as_ptr(),
            a_row as isize,
            a_col as isize,
            b.as_ptr(),
            b_row as isize,
            b_col as isize,
            0.0,
            c.as_mut_ptr(),
            cols as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::lanes::F32x8;
    use crate::experiment::ModelKind;

    /// The Δ rows of the steps without a read loss are those of `loss_and_delta`, bit for bit
    /// (n = 21: two rows of eight lanes and five features one by one).
    #[test]
    fn delta_without_the_loss_is_the_same_bits() {
        let n = 21;
        let value = |i: usize, scale: f32| ((i * 7919 % 23) as f32 - 11.0) * scale;
        let importance: Vec<f32> = (0..n).map(|i| 0.9f32.powi(i as i32)).collect();
        let x: Vec<f32> = (0..n).map(|i| value(i, 0.05).max(0.0)).collect();
        let y: Vec<f32> = (0..n).map(|i| value(i + 5, 0.031)).collect();
        let b: Vec<f32> = (0..n).map(|i| value(i + 9, 0.017)).collect();
        let y_b: Vec<f32> = y.iter().zip(&b).map(|(y, b)| y + b).collect();
        for kind in [ModelKind::Relu, ModelKind::Linear] {
            let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
            loss_and_delta(kind, &importance, &x, &y_b, 1e-3, &mut want);
            row_delta::<F32x8>(kind, &importance, &x, &mut y.clone(), &b, 1e-3, &mut got);
            assert!(want.iter().any(|&d| d != 0.0), "{kind:?}");
            assert_eq!(
                want.iter().map(|d| d.to_bits()).collect::<Vec<_>>(),
                got.iter().map(|d| d.to_bits()).collect::<Vec<_>>(),
                "{kind:?}"
            );
        }
    }
}
