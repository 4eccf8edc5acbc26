//! The optimizer: Adam / AdamW updates and the learning-rate schedule, exactly as PyTorch computes them.
//!
//! Everything that depends only on the step number (scheduled learning rate, bias corrections, the
//! decoupled decay factor) is computed once per step on the host in f64 and rounded to f32 into a
//! [`StepConstants`] table. The CPU trainer reads it and the GPU trainer uploads it, so both apply the
//! very same numbers and differ only in the rounding of the per-parameter arithmetic.

use crate::experiment::{Experiment, Optimizer, OptimizerKind, Schedule};
use bytemuck::{Pod, Zeroable};

/// The per-step constants of the update (the kernels read them through `gpu::abi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct StepConstants {
    /// lr_t / (1 − β1^t): multiplies m / denom.
    pub step_size: f32,
    /// sqrt(1 − β2^t): denom = sqrt(v) / this + eps.
    pub bias2_sqrt: f32,
    /// AdamW: 1 − lr_t · weight_decay applied to the parameter before the step; 1 for Adam.
    pub decay_factor: f32,
    /// Adam: weight_decay added to the gradient times the parameter (L2); 0 for AdamW.
    pub l2: f32,
}

/// The learning-rate multiplier at step t of T (the notebook's constant_lr, linear_lr, cosine_decay_lr).
pub fn schedule_scale(schedule: Schedule, step: u32, steps: u32) -> f64 {
    let progress = f64::from(step) / f64::from(steps);
    match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => 1.0 - progress,
        Schedule::Cosine => (0.5 * std::f64::consts::PI * progress).cos(),
    }
}

/// The constants of step `step` (0-based; PyTorch's step count t is step + 1).
pub fn step_constants(exp: &Experiment, step: u32) -> StepConstants {
    let scale = schedule_scale(exp.schedule, step, exp.steps);
    optimizer_constants(&exp.optimizer, scale, step)
}

/// The constants of step `step` of optimizer `o` at learning-rate multiplier `scale`.
pub fn optimizer_constants(o: &Optimizer, scale: f64, step: u32) -> StepConstants {
    let lr = o.lr * scale;
    let t = f64::from(step) + 1.0;
    let bias1 = 1.0 - o.beta1.powf(t);
    let bias2 = 1.0 - o.beta2.powf(t);
    let (decay_factor, l2) = match o.kind {
        OptimizerKind::Adamw => (1.0 - lr * o.weight_decay, 0.0),
        OptimizerKind::Adam => (1.0, o.weight_decay),
    };
    StepConstants {
        step_size: (lr / bias1) as f32,
        bias2_sqrt: bias2.sqrt() as f32,
        decay_factor: decay_factor as f32,
        l2: l2 as f32,
    }
}

/// The constants of steps `from..to`.
pub fn step_table(exp: &Experiment, from: u32, to: u32) -> Vec<StepConstants> {
    (from..to).map(|s| step_constants(exp, s)).collect()
}

/// β1, β2 and eps in f32, the precision of the per-parameter arithmetic.
#[derive(Clone, Copy, Debug)]
pub struct AdamHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl AdamHyper {
    pub fn of(exp: &Experiment) -> AdamHyper {
        let o = &exp.optimizer;
        AdamHyper {
            beta1: o.beta1 as f32,
            beta2: o.beta2 as f32,
            eps: o.eps as f32,
        }
    }
}

/// One Adam/AdamW update of a slice of parameters with their moments, in PyTorch's order of operations.
#[inline]
pub fn adam_update(
    hyper: AdamHyper,
    c: StepConstants,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for (((p, &g), m), v) in param
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let g = g + c.l2 * *p;
        *p *= c.decay_factor;
        *m = hyper.beta1 * *m + (1.0 - hyper.beta1) * g;
        *v = hyper.beta2 * *v + (1.0 - hyper.beta2) * g * g;
        let denom = v.sqrt() / c.bias2_sqrt + hyper.eps;
        *p -= c.step_size * (*m / denom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Settings;

    fn exp(kind: OptimizerKind, schedule: Schedule) -> Experiment {
        Settings {
            optimizer: Some(kind),
            schedule: Some(schedule),
            steps: Some(100),
            lr: Some(0.1),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    /// First Adam step by hand: m = 0.1 g, v = 0.001 g², bias corrections 0.1 and 0.001, so the step
    /// is lr · g / (|g| + eps·sqrt(0.001)/… ) ≈ lr · sign(g).
    #[test]
    fn adam_first_step_by_hand() {
        let e = exp(OptimizerKind::Adam, Schedule::Constant);
        let c = step_constants(&e, 0);
        assert!(
            (c.step_size - 1.0).abs() < 1e-6,
            "lr / (1 - 0.9) = 0.1 / 0.1"
        );
        assert!((c.bias2_sqrt - 0.001f32.sqrt()).abs() < 1e-7);
        let (mut p, mut m, mut v) = ([1.0f32, -2.0], [0.0f32; 2], [0.0f32; 2]);
        adam_update(AdamHyper::of(&e), c, &mut p, &[0.5, -4.0], &mut m, &mut v);
        assert!(
            (m[0] - 0.05).abs() < 1e-7 && (m[1] + 0.4).abs() < 1e-6,
            "{m:?}"
        );
        assert!(
            (v[0] - 0.00025).abs() < 1e-8 && (v[1] - 0.016).abs() < 1e-6,
            "{v:?}"
        );
        // denom = sqrt(v)/sqrt(0.001) + 1e-8 = |g| + 1e-8; p -= 1.0 * m / denom = 0.1 · g/|g|.
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] + 1.9).abs() < 1e-6,
            "{p:?}"
        );
    }

    /// Second AdamW step by hand, with decoupled decay 0.01 and lr 0.1.
    #[test]
    fn adamw_second_step_by_hand() {
        let e = exp(OptimizerKind::Adamw, Schedule::Constant);
        let hyper = AdamHyper::of(&e);
        let (mut p, mut m, mut v) = ([2.0f32], [0.0f32], [0.0f32]);
        adam_update(hyper, step_constants(&e, 0), &mut p, &[1.0], &mut m, &mut v);
        // step 1: p = 2·(1 − 0.001) − 0.1·1 = 1.898
        assert!((p[0] - 1.898).abs() < 1e-6, "{p:?}");
        adam_update(hyper, step_constants(&e, 1), &mut p, &[3.0], &mut m, &mut v);
        // step 2: m = 0.09 + 0.3 = 0.39, v = 0.000999 + 0.009 = 0.009999,
        // m̂ = 0.39/0.19, v̂ = 0.009999/0.001999, p = 1.898·0.999 − 0.1·m̂/(sqrt(v̂)+1e-8)
        let expected = 1.898 * 0.999
            - 0.1 * (0.39 / 0.19) / ((0.009999f64 / (1.0 - 0.999f64.powi(2))).sqrt() + 1e-8);
        assert!(
            (f64::from(p[0]) - expected).abs() < 1e-5,
            "{} vs {expected}",
            p[0]
        );
    }

    #[test]
    fn schedules_decay_as_the_notebook() {
        assert_eq!(schedule_scale(Schedule::Constant, 50, 100), 1.0);
        assert!((schedule_scale(Schedule::Linear, 25, 100) - 0.75).abs() < 1e-12);
        assert!(
            (schedule_scale(Schedule::Cosine, 50, 100) - (std::f64::consts::PI / 4.0).cos()).abs()
                < 1e-12
        );
        let e = exp(OptimizerKind::Adamw, Schedule::Linear);
        let c = step_constants(&e, 99);
        assert!((c.decay_factor - (1.0 - 0.1 * 0.01 * 0.01)).abs() < 1e-7);
    }
}
