//! The maths of one sparse autoencoder on one sample, the reference every SAE trainer follows.
//!
//! The SAE reads a toy model's hidden vector h (d = m values) and writes it back through K latents:
//!
//!   h̃ = h − b_dec,  z = W_enc h̃ + b_enc,  a = σ(z),  ĥ = W_decᵀ a + b_dec,
//!
//! with W_enc and W_dec both K × d (row j of W_dec is latent j's direction, kept at unit norm) and σ
//! one of three activations ([`SaeKind`]):
//! - L1: a = ReLU(z), loss = (1/d)‖ĥ − h‖² + λ Σ a_j;
//! - Top-K: a = ReLU(z) on the k largest z, 0 elsewhere, loss = (1/d)‖ĥ − h‖²;
//! - JumpReLU: a = z · H(z − θ), θ = exp(log θ) learned, loss = (1/d)‖ĥ − h‖² + λ Σ H(z_j − θ_j), with
//!   the straight-through estimator of Rajamanoharan et al. (2024) for θ: ∂H(z − θ)/∂θ := −K((z − θ)/ε)/ε
//!   and ∂(z·H(z − θ))/∂θ := −(θ/ε) K((z − θ)/ε), K the rectangle of width 1 around 0.
//!
//! [`forward`] computes the loss of one sample and [`backward`] adds its gradient, both in f32 in a
//! fixed order, so that every trainer that calls them is deterministic.

use serde::{Deserialize, Serialize};

/// The activation and sparsity penalty of an SAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SaeKind {
    L1,
    Topk,
    Jumprelu,
}

/// The STE bandwidth ε of JumpReLU's threshold (ARENA's and the paper's 0.01... relative to
/// activations of order 1).
pub const JUMP_BANDWIDTH: f32 = 0.01;

/// Shape and penalty of one SAE: `d` inputs, `latents` latents, its kind, the coefficient λ (L1 or
/// L0) and, for Top-K, k.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SaeShape {
    pub d: usize,
    pub latents: usize,
    pub kind: SaeKind,
    pub coefficient: f32,
    pub k: usize,
}

/// The parameters of one SAE, flat: W_enc and W_dec [latents × d], b_enc and log θ [latents], b_dec
/// [d]. The same layout holds gradients and Adam moments.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeParams {
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    pub log_theta: Vec<f32>,
}

impl SaeParams {
    /// All zeros, for gradients and moments.
    pub fn zeros(shape: &SaeShape) -> SaeParams {
        let (k, d) = (shape.latents, shape.d);
        SaeParams {
            w_enc: vec![0.0; k * d],
            b_enc: vec![0.0; k],
            w_dec: vec![0.0; k * d],
            b_dec: vec![0.0; d],
            log_theta: vec![0.0; k],
        }
    }

    /// The parameter groups in one fixed order (for Adam and for tests).
    pub fn groups(&self) -> [&Vec<f32>; 5] {
        [
            &self.w_enc,
            &self.b_enc,
            &self.w_dec,
            &self.b_dec,
            &self.log_theta,
        ]
    }

    /// [`SaeParams::groups`], mutable.
    pub fn groups_mut(&mut self) -> [&mut Vec<f32>; 5] {
        [
            &mut self.w_enc,
            &mut self.b_enc,
            &mut self.w_dec,
            &mut self.b_dec,
            &mut self.log_theta,
        ]
    }

    /// Scales every decoder row to unit norm (a row of zeros stays zero).
    pub fn normalise_decoder(&mut self, d: usize) {
        for row in self.w_dec.chunks_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
}

/// Per-sample work space: pre-activations, activations, reconstruction error.
pub struct SaeScratch {
    pub centred: Vec<f32>,
    pub z: Vec<f32>,
    pub a: Vec<f32>,
    pub error: Vec<f32>,
    order: Vec<usize>,
}

impl SaeScratch {
    pub fn new(shape: &SaeShape) -> SaeScratch {
        SaeScratch {
            centred: vec![0.0; shape.d],
            z: vec![0.0; shape.latents],
            a: vec![0.0; shape.latents],
            error: vec![0.0; shape.d],
            order: (0..shape.latents).collect(),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The forward pass on hidden vector `h`: fills `s` and returns (reconstruction loss (1/d)‖ĥ − h‖²,
/// penalty).
pub fn forward(shape: &SaeShape, p: &SaeParams, h: &[f32], s: &mut SaeScratch) -> (f32, f32) {
    let d = shape.d;
    for ((c, &x), &b) in s.centred.iter_mut().zip(h).zip(&p.b_dec) {
        *c = x - b;
    }
    for (j, z) in s.z.iter_mut().enumerate() {
        *z = dot(&p.w_enc[j * d..(j + 1) * d], &s.centred) + p.b_enc[j];
    }
    let mut penalty = 0.0;
    match shape.kind {
        SaeKind::L1 => {
            for (a, &z) in s.a.iter_mut().zip(&s.z) {
                *a = z.max(0.0);
                penalty += *a;
            }
            penalty *= shape.coefficient;
        }
        SaeKind::Topk => {
            // The k largest pre-activations, ties to the lower index; then ReLU.
            let z = &s.z;
            s.order
                .sort_by(|&i, &j| z[j].total_cmp(&z[i]).then(i.cmp(&j)));
            s.a.fill(0.0);
            for &j in s.order.iter().take(shape.k) {
                s.a[j] = z[j].max(0.0);
            }
        }
        SaeKind::Jumprelu => {
            for ((a, &z), &lt) in s.a.iter_mut().zip(&s.z).zip(&p.log_theta) {
                let open = z > lt.exp();
                *a = if open { z } else { 0.0 };
                penalty += f32::from(u8::from(open));
            }
            penalty *= shape.coefficient;
        }
    }
    for (i, e) in s.error.iter_mut().enumerate() {
        let mut r = p.b_dec[i];
        for (j, &a) in s.a.iter().enumerate() {
            r += a * p.w_dec[j * d + i];
        }
        *e = r - h[i];
    }
    (dot(&s.error, &s.error) / d as f32, penalty)
}

/// Adds `scale` times the gradient of the loss of the sample that [`forward`] left in `s` to `g`.
pub fn backward(shape: &SaeShape, p: &SaeParams, s: &SaeScratch, scale: f32, g: &mut SaeParams) {
    let d = shape.d;
    let two_over_d = 2.0 / d as f32;
    // ĥ = W_decᵀ a + b_dec: dĥ = (2/d) e.
    for (i, &e) in s.error.iter().enumerate() {
        g.b_dec[i] += scale * two_over_d * e;
    }
    for j in 0..shape.latents {
        let row = j * d..(j + 1) * d;
        let a = s.a[j];
        // da_j = W_dec[j] · dĥ (+ λ for L1, whose penalty is λ Σ a).
        let mut da = two_over_d * dot(&p.w_dec[row.clone()], &s.error);
        for (gw, &e) in g.w_dec[row.clone()].iter_mut().zip(&s.error) {
            *gw += scale * two_over_d * a * e;
        }
        let dz = match shape.kind {
            SaeKind::L1 => {
                da += shape.coefficient;
                if a > 0.0 {
                    da
                } else {
                    0.0
                }
            }
            SaeKind::Topk => {
                if a > 0.0 {
                    da
                } else {
                    0.0
                }
            }
            SaeKind::Jumprelu => {
                let theta = p.log_theta[j].exp();
                let (z, eps) = (s.z[j], JUMP_BANDWIDTH);
                let window = f32::from(u8::from(((z - theta) / eps).abs() < 0.5));
                // ∂a/∂θ = −(θ/ε)K, ∂(λH)/∂θ = −(λ/ε)K; ∂θ/∂log θ = θ.
                let dtheta = -(theta / eps) * window * da - shape.coefficient / eps * window;
                g.log_theta[j] += scale * dtheta * theta;
                if z > theta {
                    da
                } else {
                    0.0
                }
            }
        };
        if dz != 0.0 {
            g.b_enc[j] += scale * dz;
            for (i, gw) in g.w_enc[row.clone()].iter_mut().enumerate() {
                *gw += scale * dz * s.centred[i];
            }
            // h̃ = h − b_dec: the encoder's path to b_dec.
            for (i, gb) in g.b_dec.iter_mut().enumerate() {
                *gb -= scale * dz * p.w_enc[j * d + i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(shape: &SaeShape) -> SaeParams {
        let mut p = SaeParams::zeros(shape);
        let mut v = 0.37f32;
        for group in p.groups_mut() {
            for x in group.iter_mut() {
                v = (v * 7.31 + 0.13).fract();
                *x = v - 0.45;
            }
        }
        p.log_theta.iter_mut().for_each(|t| *t = (0.05f32).ln());
        p
    }

    /// Loss of a batch of samples, in f64 for the finite differences.
    fn loss(shape: &SaeShape, p: &SaeParams, hs: &[Vec<f32>]) -> f64 {
        let mut s = SaeScratch::new(shape);
        hs.iter()
            .map(|h| {
                let (r, pen) = forward(shape, p, h, &mut s);
                f64::from(r) + f64::from(pen)
            })
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let hs: Vec<Vec<f32>> = (0..6)
            .map(|k| {
                vec![
                    0.3 + 0.1 * k as f32,
                    -0.2 + 0.15 * k as f32,
                    0.05 * k as f32,
                ]
            })
            .collect();
        for kind in [SaeKind::L1, SaeKind::Topk] {
            let shape = SaeShape {
                d: 3,
                latents: 4,
                kind,
                coefficient: 0.2,
                k: 2,
            };
            let p = params(&shape);
            let mut g = SaeParams::zeros(&shape);
            let mut s = SaeScratch::new(&shape);
            for h in &hs {
                forward(&shape, &p, h, &mut s);
                backward(&shape, &p, &s, 1.0, &mut g);
            }
            let eps = 1e-3f32;
            for group in 0..4 {
                for idx in 0..g.groups()[group].len() {
                    let (mut up, mut down) = (p.clone(), p.clone());
                    up.groups_mut()[group][idx] += eps;
                    down.groups_mut()[group][idx] -= eps;
                    let numeric = (loss(&shape, &up, &hs) - loss(&shape, &down, &hs))
                        / (2.0 * f64::from(eps));
                    let analytic = f64::from(g.groups()[group][idx]);
                    assert!(
                        (numeric - analytic).abs() < 2e-2 * (1.0 + numeric.abs()),
                        "{kind:?} group {group} [{idx}]: numeric {numeric}, analytic {analytic}"
                    );
                }
            }
        }
    }

    #[test]
    fn jumprelu_threshold_gets_the_straight_through_gradient() {
        // One latent just above its threshold: the L0 term pulls θ up, the reconstruction term
        // pushes it down, each by the rectangle kernel's weight.
        let shape = SaeShape {
            d: 1,
            latents: 1,
            kind: SaeKind::Jumprelu,
            coefficient: 0.1,
            k: 1,
        };
        let theta = 0.1f32;
        let p = SaeParams {
            w_enc: vec![1.0],
            b_enc: vec![0.0],
            w_dec: vec![1.0],
            b_dec: vec![0.0],
            log_theta: vec![theta.ln()],
        };
        let h = [theta + 0.002];
        let mut s = SaeScratch::new(&shape);
        let (recon, penalty) = forward(&shape, &p, &h, &mut s);
        assert_eq!((s.a[0], recon, penalty), (h[0], 0.0, 0.1));
        let mut g = SaeParams::zeros(&shape);
        backward(&shape, &p, &s, 1.0, &mut g);
        // da = 2·e = 0, so only the L0 term: dθ = −λ/ε, dlogθ = −λθ/ε.
        let expected = -0.1 / JUMP_BANDWIDTH * theta;
        assert!(
            (g.log_theta[0] - expected).abs() < 1e-5,
            "{}",
            g.log_theta[0]
        );
    }
}
