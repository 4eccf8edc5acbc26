//! The matrix path of the CPU trainer, for models too large for the block pass's per-lane
//! accumulators to stay in cache (m·n·8 floats per chunk: 16 MiB at 2048 × 256).
//!
//! A chunk's samples are materialised once per step as the rows of a dense matrix X (B × n), and the
//! step is five matrix products over the batch, done by `matrixmultiply` (cache-blocked, with the
//! processor's widest vectors and fused multiply-adds chosen at run time):
//!
//! ```text
//! H  = X Wᵀ          (B × m)        Y = H W + b     (B × n)
//! Δ  = ∂loss/∂Y      (row by row, model::output_term eight features at a time)
//! dH = Δ Wᵀ          (B × m)        ∂W = Hᵀ Δ + dHᵀ X,  ∂b = Σ rows of Δ
//! ```
//!
//! The sums run in another order, and with fused multiply-adds, so results differ from the block
//! pass in the last bits: the tests hold the two within the GPU trainer's tolerance of the reference.
//!
//! Sparse instances (density at most [`SPARSE_BELOW`], default distribution) skip the absent
//! features in the two products with X: H = X Wᵀ is summed over each sample's present features
//! (rows of Wᵀ, transposed once per step), and ∂W's term dHᵀ X is added entry by entry into ∂Wᵀ
//! (after ∂Wᵀ = Δᵀ H as a matrix product), then transposed into ∂W. GEMMs multiply X's zeros too:
//! at density 0.1 these two products do a tenth of the work.

use super::lanes::Lanes;
use super::StepInputs;
use crate::features::{FeatureSource, PhiloxLanes, LANES};
use crate::model::{loss_and_delta, output_term};

/// Instances at most this dense skip absent features in the products with X (see the module
/// notes). Chosen from `large` (densities 1, 0.46, 0.22, 0.1): sampled with perf, the naive
/// sparse loops (no fused multiply-add) beat the GEMM at 0.22 and 0.1 but not at 0.46.
pub const SPARSE_BELOW: f64 = 0.3;

/// The buffers of one chunk's matrix path, allocated once.
pub struct Dense {
    /// The samples as rows (B × n), then Y and Δ (B × n), H and dH (B × m).
    x: Vec<f32>,
    y: Vec<f32>,
    delta: Vec<f32>,
    h: Vec<f32>,
    dh: Vec<f32>,
    /// Sparse instances only (else empty): Wᵀ and ∂Wᵀ (n × m).
    wt: Vec<f32>,
    grad_wt: Vec<f32>,
}

impl Dense {
    /// The buffers for `samples` samples, with those of the sparse products if `sparse`.
    pub fn new(samples: usize, n: usize, m: usize, sparse: bool) -> Dense {
        let transposed = if sparse { n * m } else { 0 };
        Dense {
            x: vec![0.0; samples * n],
            y: vec![0.0; samples * n],
            delta: vec![0.0; samples * n],
            h: vec![0.0; samples * m],
            dh: vec![0.0; samples * m],
            wt: vec![0.0; transposed],
            grad_wt: vec![0.0; transposed],
        }
    }

    /// The bytes [`Dense::new`] allocates.
    pub fn bytes(samples: usize, n: usize, m: usize, sparse: bool) -> usize {
        let transposed = if sparse { 2 * n * m } else { 0 };
        (3 * samples * n + 2 * samples * m + transposed) * std::mem::size_of::<f32>()
    }

    /// Loss and gradient of the chunk's samples `samples` (their presence bits in `present`, as
    /// [`FeatureSource::presence`] packs them), written into `grad_w` and `grad_b`; value words
    /// drawn by `L`'s generator, Δ computed in `L`'s lanes.
    #[inline(always)]
    pub fn compute<L: Lanes>(
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
        self.fill_samples::<L::Philox>(source, samples, present, at.step);
        let w = at.w;
        let sparse = !self.wt.is_empty();
        // H = X Wᵀ; Y = H W + b.
        if sparse {
            transpose(w, m, n, &mut self.wt);
            self.h.fill(0.0);
            for (s, h) in self.h.chunks_exact_mut(m).enumerate() {
                let x = &self.x[s * n..(s + 1) * n];
                for_each_present(source, present, s, |j| {
                    add_scaled(h, x[j], &self.wt[j * m..(j + 1) * m]);
                });
            }
        } else {
            product(rows, n, m, &self.x, (n, 1), w, (1, n), 0.0, &mut self.h);
        }
        for row in self.y.chunks_exact_mut(n) {
            row.copy_from_slice(at.b);
        }
        product(rows, m, n, &self.h, (m, 1), w, (n, 1), 1.0, &mut self.y);
        // Δ and the loss, sample by sample.
        let mut loss = 0.0f64;
        for ((x, y), delta) in self
            .x
            .chunks_exact(n)
            .zip(self.y.chunks_exact(n))
            .zip(self.delta.chunks_exact_mut(n))
        {
            loss += f64::from(row_loss_and_delta::<L>(
                at.kind,
                at.importance,
                x,
                y,
                at.c,
                delta,
            ));
        }
        // dH = Δ Wᵀ; ∂W = Hᵀ Δ + dHᵀ X; ∂b = Σ Δ.
        product(
            rows,
            n,
            m,
            &self.delta,
            (n, 1),
            w,
            (1, n),
            0.0,
            &mut self.dh,
        );
        if sparse {
            // ∂Wᵀ = Δᵀ H + Xᵀ dH, the second term over the present features; then ∂W.
            let grad_wt = &mut self.grad_wt;
            product(
                n,
                rows,
                m,
                &self.delta,
                (1, n),
                &self.h,
                (m, 1),
                0.0,
                grad_wt,
            );
            for (s, dh) in self.dh.chunks_exact(m).enumerate() {
                let x = &self.x[s * n..(s + 1) * n];
                for_each_present(source, present, s, |j| {
                    add_scaled(&mut grad_wt[j * m..(j + 1) * m], x[j], dh);
                });
            }
            transpose(grad_wt, n, m, grad_w);
        } else {
            product(
                m,
                rows,
                n,
                &self.h,
                (1, m),
                &self.delta,
                (n, 1),
                0.0,
                grad_w,
            );
            product(m, rows, n, &self.dh, (1, m), &self.x, (n, 1), 1.0, grad_w);
        }
        grad_b.fill(0.0);
        for delta in self.delta.chunks_exact(n) {
            grad_b.iter_mut().zip(delta).for_each(|(g, d)| *g += d);
        }
        loss
    }

    /// Writes the samples into the rows of X: zero, then the value of every present feature, the
    /// value words drawn [`LANES`] groups at a time.
    #[inline(always)]
    fn fill_samples<P: PhiloxLanes>(
        &mut self,
        source: &FeatureSource,
        samples: std::ops::Range<u32>,
        present: &[u32],
        step: u32,
    ) {
        let (n, groups) = (self.x.len() / samples.len(), source.groups());
        if !source.is_plain() {
            for (row, s) in self.x.chunks_exact_mut(n).zip(samples) {
                source.sample(step, s, row);
            }
            return;
        }
        self.x.fill(0.0);
        let mut indices = [0u32; LANES];
        let mut targets = [(0usize, 0u64); LANES];
        let mut count = 0;
        // Inlined, like the whole chunk, so that `P`'s intrinsics compile with its instruction set.
        #[inline(always)]
        fn draw<P: PhiloxLanes>(
            source: &FeatureSource,
            step: u32,
            x: &mut [f32],
            indices: &[u32; LANES],
            targets: &[(usize, u64)],
        ) {
            let values = source.value_lanes::<P>(step, *indices);
            for (call, &(at, nibble)) in targets.iter().enumerate() {
                for (w, word) in values.iter().enumerate() {
                    if nibble >> w & 1 != 0 {
                        x[at + w] = source.value(word[call]);
                    }
                }
            }
        }
        for s in 0..samples.len() {
            let first_index = (samples.start + s as u32) * groups as u32;
            for k in 0..n.div_ceil(64) {
                let mut rest = source.presence_word(present, s, k);
                while rest != 0 {
                    let shift = rest.trailing_zeros() / 4 * 4;
                    let group = k * 16 + shift as usize / 4;
                    indices[count] = first_index + group as u32;
                    targets[count] = (s * n + 4 * group, rest >> shift & 0xF);
                    rest &= !(0xF << shift);
                    count += 1;
                    if count == LANES {
                        draw::<P>(source, step, &mut self.x, &indices, &targets);
                        count = 0;
                    }
                }
            }
        }
        draw::<P>(source, step, &mut self.x, &indices, &targets[..count]);
    }
}

/// [`loss_and_delta`] of one sample, eight features at a time in the lanes of `L` (the same terms,
/// summed in another order), the last n mod 8 one by one.
#[inline(always)]
fn row_loss_and_delta<L: Lanes>(
    kind: crate::experiment::ModelKind,
    importance: &[f32],
    x: &[f32],
    y: &[f32],
    c: f32,
    delta: &mut [f32],
) -> f32 {
    let wide = x.len() / LANES * LANES;
    let lanes =
        |v: &[f32], i: usize| L::from_array(v[i..i + LANES].try_into().expect("eight features"));
    let (two_c, mut loss) = (L::splat(c + c), L::ZERO);
    for i in (0..wide).step_by(LANES) {
        let (term, d) = output_term(kind, lanes(y, i), lanes(x, i), lanes(importance, i), two_c);
        loss += term;
        delta[i..i + LANES].copy_from_slice(&d.to_array());
    }
    let rest = (&importance[wide..], &x[wide..], &y[wide..]);
    loss.sum() * c + loss_and_delta(kind, rest.0, rest.1, rest.2, c, &mut delta[wide..])
}

/// Calls `f` with every present feature of local sample `s` (its presence bits in `present`).
#[inline(always)]
fn for_each_present(source: &FeatureSource, present: &[u32], s: usize, mut f: impl FnMut(usize)) {
    for k in 0..source.presence_words() {
        let mut rest = source.presence_word(present, s, k);
        while rest != 0 {
            f(64 * k + rest.trailing_zeros() as usize);
            rest &= rest - 1;
        }
    }
}

/// `to` += `scale` · `from`, element by element.
#[inline(always)]
fn add_scaled(to: &mut [f32], scale: f32, from: &[f32]) {
    to.iter_mut().zip(from).for_each(|(t, f)| *t += scale * f);
}

/// Writes the transpose of `a` (rows × cols, row-major) into `t` (cols × rows), in tiles that stay
/// in cache.
fn transpose(a: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
}

/// C = A B + beta · C for row-major C (rows × cols), A (rows × inner) and B (inner × cols) given
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
    beta: f32,
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
            beta,
            c.as_mut_ptr(),
            cols as isize,
            1,
        );
    }
}
