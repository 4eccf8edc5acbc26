//! Result files of a run directory, each written atomically (temporary file, then rename):
//! - `config.json`: the resolved experiment, backend, device, crate version;
//! - `results.json`: per instance its density, importance, W (m rows × n columns), b, final training
//!   loss, evaluation loss and loss curve;
//! - `weights.safetensors`: tensors `W` [instances, m, n] and `b` [instances, n], f32.

use super::tensors::{f32_tensor, to_bytes, TensorFile};
use super::write_atomic;
use crate::experiment::Experiment;
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// config.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub experiment: Experiment,
    pub backend: String,
    pub device: String,
    pub tms_version: String,
}

/// One instance in results.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceResult {
    pub index: usize,
    pub density: f64,
    pub importance: Vec<f32>,
    #[serde(rename = "W")]
    pub w: Vec<Vec<f32>>,
    pub b: Vec<f32>,
    /// Training loss at the last step (null if not finite).
    pub final_loss: Option<f32>,
    /// Loss on the held-out evaluation batch (null if not finite).
    pub eval_loss: Option<f64>,
    /// (step, training loss) at every log point (null where the loss was not finite).
    pub loss_curve: Vec<(u32, Option<f32>)>,
    /// The distinct setting (density and importance) this instance is a restart of, and which restart.
    pub setting: usize,
    pub restart: u32,
    /// True for the restart of its setting with the lowest evaluation loss.
    pub best_of_setting: bool,
    /// True if the loss or the weights stopped being finite; the other instances are unaffected.
    pub diverged: bool,
}

/// results.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub model: crate::experiment::ModelKind,
    pub features: usize,
    pub hidden: usize,
    pub steps: u32,
    pub instances: Vec<InstanceResult>,
}

impl Results {
    /// Gathers the per-instance results of a finished run; `diverged` lists the instances whose
    /// loss or weights stopped being finite.
    pub fn collect(
        exp: &Experiment,
        state: &TrainState,
        records: &[LossRecord],
        eval: &[f64],
        diverged: &[usize],
    ) -> Results {
        let n = exp.features;
        let mut instances: Vec<InstanceResult> = exp
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let loss_curve: Vec<(u32, Option<f32>)> = records
                    .iter()
                    .map(|r| (r.step, Some(r.losses[i]).filter(|l| l.is_finite())))
                    .collect();
                InstanceResult {
                    index: exp.global_index(i) as usize,
                    density: inst.density,
                    importance: inst.importance.clone(),
                    w: state.w_of(i, exp).chunks(n).map(<[f32]>::to_vec).collect(),
                    b: state.b_of(i, exp).to_vec(),
                    final_loss: records
                        .last()
                        .map(|r| r.losses[i])
                        .filter(|l| l.is_finite()),
                    eval_loss: Some(eval[i]).filter(|l| l.is_finite()),
                    loss_curve,
                    setting: inst.setting,
                    restart: inst.restart,
                    best_of_setting: false,
                    diverged: diverged.contains(&i),
                }
            })
            .collect();
        mark_best_of_settings(&mut instances);
        Results {
            model: exp.model,
            features: n,
            hidden: exp.hidden,
            steps: exp.steps,
            instances,
        }
    }
}

/// Marks, for each setting, the restart with the lowest evaluation loss (ties go to the first).
pub fn mark_best_of_settings(instances: &mut [InstanceResult]) {
    let settings = instances.iter().map(|r| r.setting + 1).max().unwrap_or(0);
    let mut best: Vec<Option<(usize, f64)>> = vec![None; settings];
    for (i, r) in instances.iter().enumerate() {
        if let Some(loss) = r.eval_loss {
            let slot = &mut best[r.setting];
            if slot.is_none_or(|(_, b)| loss < b) {
                *slot = Some((i, loss));
            }
        }
    }
    for (i, r) in instances.iter_mut().enumerate() {
        r.best_of_setting = best[r.setting].is_some_and(|(b, _)| b == i);
    }
}

/// The trained parameters a run exports: W [instances, m, n] and b [instances, n], flat.
pub struct Weights<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
}

/// The safetensors bytes of W [instances, m, n] and b [instances, n].
pub fn weights_safetensors(exp: &Experiment, weights: &Weights) -> anyhow::Result<Vec<u8>> {
    let count = exp.instances.len();
    to_bytes(
        [
            (
                "W",
                f32_tensor(weights.w, vec![count, exp.hidden, exp.features])?,
            ),
            ("b", f32_tensor(weights.b, vec![count, exp.features])?),
        ],
        None,
    )
}

/// Writes config.json, results.json and weights.safetensors into `dir` (which must exist).
pub fn write_run(
    dir: &Path,
    config: &RunConfig,
    results: &Results,
    weights: &Weights,
) -> anyhow::Result<()> {
    write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(config)?,
    )?;
    write_atomic(
        &dir.join("weights.safetensors"),
        &weights_safetensors(&config.experiment, weights)?,
    )?;
    write_atomic(&dir.join("results.json"), &serde_json::to_vec(results)?)?;
    Ok(())
}

/// Reads results.json of a run directory.
pub fn read_results(dir: &Path) -> anyhow::Result<Results> {
    let path = dir.join("results.json");
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a tms results file", path.display()))
}

/// Reads config.json of a run directory.
pub fn read_config(dir: &Path) -> anyhow::Result<RunConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a tms config file", path.display()))
}

/// Reads W and b back from weights.safetensors: (W flat [instances·m·n], b flat [instances·n], shape of W).
pub fn read_weights(dir: &Path) -> anyhow::Result<(Vec<f32>, Vec<f32>, Vec<usize>)> {
    let path = dir.join("weights.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = TensorFile::from_bytes(bytes)
        .with_context(|| format!("{} is not a weights file", path.display()))?;
    let (w, shape) = file.f32("W")?;
    let (b, _) = file.f32("b")?;
    Ok((w, b, shape))
}
