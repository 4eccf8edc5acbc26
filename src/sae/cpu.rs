//! The CPU trainer of many sparse autoencoders at once: each SAE trains on its own thread of work
//! (rayon over the SAEs), on batches of h = W x with x drawn from its toy instance's SAE stream, with
//! Adam, decoder rows renormalised after every step, and dead latents resampled every
//! `resample_every` steps. Every SAE depends only on its own counters, so results are identical on
//! any number of threads.

use super::model::{backward, forward, SaeParams, SaeScratch};
use super::{SaeExperiment, SaeSpec};
use crate::features::{normal_of, philox4x32_10, seed_key, unit_float, FeatureSource, Stream};
use crate::optim::{adam_update, optimizer_constants, AdamHyper};
use rayon::prelude::*;

/// Latents whose activation stayed zero over this many steps before a resampling are dead.
pub const RESAMPLE_WINDOW: u32 = 500;
/// A resampled encoder row is the chosen input's direction times this fraction of the mean norm of
/// the live encoder rows (ARENA's resample_scale).
pub const RESAMPLE_SCALE: f32 = 0.5;

/// One SAE's state through training.
pub struct SaeState {
    pub params: SaeParams,
    /// Adam's first and second moments.
    pub m: SaeParams,
    pub v: SaeParams,
    /// (step, mean training loss) at every log point.
    pub loss_curve: Vec<(u32, f32)>,
    /// Latents resampled over the run.
    pub resampled: usize,
}

/// The initial parameters of SAE `q`: decoder rows random unit vectors, the encoder tied to them
/// (W_enc = W_dec), biases zero, JumpReLU thresholds 0.1.
pub fn initial_params(exp: &SaeExperiment, q: usize) -> SaeParams {
    let shape = exp.shape(&exp.saes[q]);
    let mut p = SaeParams::zeros(&shape);
    for (i, w) in p.w_dec.iter_mut().enumerate() {
        *w = normal_of(Stream::SaeInit, exp.seed, q as u32, i as u32) as f32;
    }
    p.normalise_decoder(shape.d);
    p.w_enc.clone_from(&p.w_dec);
    p.log_theta.fill(0.1f32.ln());
    p
}

/// Trains every SAE of `exp` to the end; returns their states, in order.
pub fn train(exp: &SaeExperiment) -> Vec<SaeState> {
    (0..exp.saes.len())
        .into_par_iter()
        .map(|q| train_one(exp, q))
        .collect()
}

fn train_one(exp: &SaeExperiment, q: usize) -> SaeState {
    let spec = &exp.saes[q];
    let shape = exp.shape(spec);
    let toy = &exp.toys[spec.toy];
    let (n, d) = (exp.features, shape.d);
    let source =
        FeatureSource::sae(exp.toy_seed, toy.global_index, toy.density, n).with(&exp.toy_data);
    let hyper = AdamHyper {
        beta1: exp.optimizer.beta1 as f32,
        beta2: exp.optimizer.beta2 as f32,
        eps: exp.optimizer.eps as f32,
    };
    let mut state = SaeState {
        params: initial_params(exp, q),
        m: SaeParams::zeros(&shape),
        v: SaeParams::zeros(&shape),
        loss_curve: vec![],
        resampled: 0,
    };
    let mut grad = SaeParams::zeros(&shape);
    let mut scratch = SaeScratch::new(&shape);
    let (mut x, mut h) = (vec![0.0f32; n], vec![0.0f32; d]);
    let mut sample_loss = vec![0.0f32; exp.batch];
    let mut inputs = vec![0.0f32; exp.batch * d];
    let mut active = vec![0u32; shape.latents];
    let scale = 1.0 / exp.batch as f32;
    for step in 0..exp.steps {
        for g in grad.groups_mut() {
            g.fill(0.0);
        }
        // Resampling after this step draws from this batch's inputs: keep them only then.
        let resampling = resamples_after(exp, step);
        let mut total = 0.0f64;
        for s in 0..exp.batch {
            source.sample(step, s as u32, &mut x);
            exp.toy_hidden(toy, &x, &mut h);
            let (recon, penalty) = forward(&shape, &state.params, &h, &mut scratch);
            backward(&shape, &state.params, &scratch, scale, &mut grad);
            total += f64::from(recon + penalty);
            if resampling {
                sample_loss[s] = recon;
                inputs[s * d..(s + 1) * d].copy_from_slice(&h);
            }
            for (count, &a) in active.iter_mut().zip(&scratch.a) {
                *count += u32::from(a != 0.0);
            }
        }
        let constants = optimizer_constants(&exp.optimizer, 1.0, step);
        let SaeState { params, m, v, .. } = &mut state;
        for ((p, g), (m, v)) in params
            .groups_mut()
            .into_iter()
            .zip(grad.groups_mut())
            .zip(m.groups_mut().into_iter().zip(v.groups_mut()))
        {
            adam_update(hyper, constants, p, g, m, v);
        }
        state.params.normalise_decoder(d);
        if logs_after(exp, step) {
            state
                .loss_curve
                .push((step + 1, (total / exp.batch as f64) as f32));
        }
        if resampling {
            let SaeState {
                params,
                m,
                v,
                resampled,
                ..
            } = &mut state;
            *resampled += resample(exp, q, step, params, [m, v], &active, &inputs, &sample_loss);
        }
        if window_opens_after(exp, step) {
            active.fill(0);
        }
    }
    state
}

/// Whether the loss curve has a point after step `step` (0-based).
pub fn logs_after(exp: &SaeExperiment, step: u32) -> bool {
    (step + 1).is_multiple_of(exp.log_every) || step + 1 == exp.steps
}

/// Whether dead latents are resampled after step `step`, from that step's batch.
pub fn resamples_after(exp: &SaeExperiment, step: u32) -> bool {
    exp.resample_every
        .is_some_and(|every| (step + 1).is_multiple_of(every) && step + 1 < exp.steps)
}

/// Whether the window of steps that decides who is dead at the next resampling starts after step
/// `step` (activity counts restart at zero): RESAMPLE_WINDOW steps before each resampling, or
/// right after the last one when the period is shorter than the window.
pub fn window_opens_after(exp: &SaeExperiment, step: u32) -> bool {
    exp.resample_every
        .is_some_and(|every| (step + 1) % every == every.saturating_sub(RESAMPLE_WINDOW) % every)
}

/// Resamples, after step `step`, the latents of SAE `q` (`p`, with Adam's `moments`) that were never
/// active in the window (`active` counts): each gets the direction of an input of that step's batch
/// (`inputs`, [batch][m], with their reconstruction losses `sample_loss`) chosen with probability
/// ∝ its squared reconstruction loss (ARENA's resample_advanced), as decoder row (unit norm) and
/// as encoder row scaled to RESAMPLE_SCALE times the mean norm of the live encoder rows; its bias
/// and Adam moments restart at zero. Returns how many were resampled. Both trainers call it (the
/// GPU's on the state it reads back).
#[allow(clippy::too_many_arguments)]
pub fn resample(
    exp: &SaeExperiment,
    q: usize,
    step: u32,
    p: &mut SaeParams,
    mut moments: [&mut SaeParams; 2],
    active: &[u32],
    inputs: &[f32],
    sample_loss: &[f32],
) -> usize {
    let d = exp.toys[0].hidden;
    let round = (step + 1) / exp.resample_every.expect("resampling is on");
    let dead: Vec<usize> = (0..active.len()).filter(|&j| active[j] == 0).collect();
    if dead.is_empty() {
        return 0;
    }
    let row_norm = |w: &[f32], j: usize| {
        w[j * d..(j + 1) * d]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
    };
    let live: Vec<usize> = (0..active.len()).filter(|&j| active[j] > 0).collect();
    let live_norm = if live.is_empty() {
        1.0
    } else {
        live.iter().map(|&j| row_norm(&p.w_enc, j)).sum::<f32>() / live.len() as f32
    };
    let weights: Vec<f64> = sample_loss
        .iter()
        .map(|&l| f64::from(l) * f64::from(l))
        .collect();
    let total: f64 = weights.iter().sum();
    for (k, &j) in dead.iter().enumerate() {
        // A uniform draw of this (SAE, round, latent), from the SAE's own stream.
        let word = philox4x32_10(
            [k as u32, 1 + round, q as u32, Stream::SaeInit as u32],
            seed_key(exp.seed),
        )[0];
        let u = f64::from(unit_float(word));
        let chosen = if total > 0.0 {
            let mut acc = 0.0;
            weights
                .iter()
                .position(|&w| {
                    acc += w / total;
                    acc > u
                })
                .unwrap_or(weights.len() - 1)
        } else {
            (u * weights.len() as f64) as usize
        };
        let input = &inputs[chosen * d..(chosen + 1) * d];
        let direction: Vec<f32> = input.iter().zip(&p.b_dec).map(|(h, b)| h - b).collect();
        let norm = direction.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm == 0.0 {
            continue;
        }
        for (i, &v) in direction.iter().enumerate() {
            p.w_dec[j * d + i] = v / norm;
            p.w_enc[j * d + i] = v / norm * live_norm * RESAMPLE_SCALE;
        }
        p.b_enc[j] = 0.0;
        for moment in moments.iter_mut() {
            moment.w_enc[j * d..(j + 1) * d].fill(0.0);
            moment.w_dec[j * d..(j + 1) * d].fill(0.0);
            moment.b_enc[j] = 0.0;
        }
    }
    dead.len()
}

/// Scores of one trained SAE on `samples` held-out inputs of its toy instance (the toy's evaluation
/// stream).
pub fn evaluate(exp: &SaeExperiment, spec: &SaeSpec, params: &SaeParams) -> super::SaeScores {
    let shape = exp.shape(spec);
    let toy = &exp.toys[spec.toy];
    let (n, d) = (exp.features, shape.d);
    let source =
        FeatureSource::eval(exp.toy_seed, toy.global_index, toy.density, n).with(&exp.toy_data);
    let mut scratch = SaeScratch::new(&shape);
    let (mut x, mut h) = (vec![0.0f32; n], vec![0.0f32; d]);
    let mut fired = vec![false; shape.latents];
    let (mut squared_error, mut l0) = (0.0f64, 0.0f64);
    let (mut sum, mut sum_sq) = (vec![0.0f64; d], vec![0.0f64; d]);
    for s in 0..exp.eval_samples {
        source.sample(0, s as u32, &mut x);
        exp.toy_hidden(toy, &x, &mut h);
        forward(&shape, params, &h, &mut scratch);
        squared_error += scratch.error.iter().map(|&e| f64::from(e * e)).sum::<f64>();
        for (j, &a) in scratch.a.iter().enumerate() {
            fired[j] |= a != 0.0;
            l0 += f64::from(u8::from(a != 0.0));
        }
        for i in 0..d {
            sum[i] += f64::from(h[i]);
            sum_sq[i] += f64::from(h[i]) * f64::from(h[i]);
        }
    }
    let count = exp.eval_samples as f64;
    let variance: f64 = (0..d).map(|i| sum_sq[i] - sum[i] * sum[i] / count).sum();
    super::SaeScores::new(
        &toy.w,
        n,
        d,
        &params.w_dec,
        squared_error / (count * d as f64),
        1.0 - squared_error / variance,
        l0 / count,
        fired.iter().filter(|&&f| !f).count(),
    )
}
