//! The matrix path of the CPU trainer, for models too large for the block pass's per-lane
//! accumulators to stay in cache (m·n·8 floats per chunk: 16 MiB at 2048 × 256).
//!
//! A chunk's samples are materialised once per step as the rows of a dense matrix X (B × n), and the
//! step is five matrix products over the batch, done by `matrixmultiply` (cache-blocked, with the
//! processor's widest vectors and fused multiply-adds chosen at run time):
//!
//! ```text
//! H  = X Wᵀ          (B × m)        Y = H W + b     (B × n)
//! Δ  = ∂loss/∂Y      (row by row, model::loss_and_delta)
//! dH = Δ Wᵀ          (B × m)        ∂W = Hᵀ Δ + dHᵀ X,  ∂b = Σ rows of Δ
//! ```
//!
//! The sums run in another order, and with fused multiply-adds, so results differ from the block
//! pass in the last bits: the tests hold the two within the GPU trainer's tolerance of the reference.

use super::StepInputs;
use crate::features::{FeatureSource, PhiloxLanes, LANES};
use crate::model::loss_and_delta;

/// The buffers of one chunk's matrix path, allocated once.
pub struct Dense {
    /// The samples as rows (B × n), then Y and Δ (B × n), H and dH (B × m).
    x: Vec<f32>,
    y: Vec<f32>,
    delta: Vec<f32>,
    h: Vec<f32>,
    dh: Vec<f32>,
}

impl Dense {
    pub fn new(samples: usize, n: usize, m: usize) -> Dense {
        Dense {
            x: vec![0.0; samples * n],
            y: vec![0.0; samples * n],
            delta: vec![0.0; samples * n],
            h: vec![0.0; samples * m],
            dh: vec![0.0; samples * m],
        }
    }

    /// The bytes [`Dense::new`] allocates.
    pub fn bytes(samples: usize, n: usize, m: usize) -> usize {
        (3 * samples * n + 2 * samples * m) * std::mem::size_of::<f32>()
    }

    /// Loss and gradient of the chunk's samples `samples` (their presence bits in `present`, as
    /// [`FeatureSource::presence`] packs them), written into `grad_w` and `grad_b`; value words
    /// drawn by `P`.
    pub fn compute<P: PhiloxLanes>(
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
        self.fill_samples::<P>(source, samples, present, at.step);
        let w = at.w;
        // H = X Wᵀ; Y = H W + b.
        product(rows, n, m, &self.x, (n, 1), w, (1, n), 0.0, &mut self.h);
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
            loss += f64::from(loss_and_delta(at.kind, at.importance, x, y, at.c, delta));
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
        grad_b.fill(0.0);
        for delta in self.delta.chunks_exact(n) {
            grad_b.iter_mut().zip(delta).for_each(|(g, d)| *g += d);
        }
        loss
    }

    /// Writes the samples into the rows of X: zero, then the value of every present feature, the
    /// value words drawn [`LANES`] groups at a time.
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
        let draw = |x: &mut [f32], indices: &[u32; LANES], targets: &[(usize, u64)]| {
            let values = source.value_lanes::<P>(step, *indices);
            for (call, &(at, nibble)) in targets.iter().enumerate() {
                for (w, word) in values.iter().enumerate() {
                    if nibble >> w & 1 != 0 {
                        x[at + w] = source.value(word[call]);
                    }
                }
            }
        };
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
                        draw(&mut self.x, &indices, &targets);
                        count = 0;
                    }
                }
            }
        }
        draw(&mut self.x, &indices, &targets[..count]);
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
