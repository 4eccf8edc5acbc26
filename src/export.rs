//! Result files of a run directory, each written atomically (temporary file, then rename):
//! - `config.json`: the resolved experiment, backend, device, crate version;
//! - `results.json`: per instance its density, importance, W (m rows × n columns), b, final training
//!   loss, evaluation loss and loss curve;
//! - `weights.safetensors`: tensors `W` [instances, m, n] and `b` [instances, n], f32.

use crate::config::Experiment;
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
    pub model: crate::config::ModelKind,
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

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a reader
/// never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .context("file path has no name")?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// The safetensors bytes of W [instances, m, n] and b [instances, n].
pub fn weights_safetensors(exp: &Experiment, state: &TrainState) -> anyhow::Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let count = exp.instances.len();
    let w = TensorView::new(
        Dtype::F32,
        vec![count, exp.hidden, exp.features],
        bytemuck::cast_slice(&state.w),
    )?;
    let b = TensorView::new(
        Dtype::F32,
        vec![count, exp.features],
        bytemuck::cast_slice(&state.b),
    )?;
    Ok(safetensors::serialize([("W", w), ("b", b)], None)?)
}

/// Writes config.json, results.json and weights.safetensors into `dir` (which must exist).
pub fn write_run(
    dir: &Path,
    config: &RunConfig,
    results: &Results,
    state: &TrainState,
) -> anyhow::Result<()> {
    write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(config)?,
    )?;
    write_atomic(
        &dir.join("weights.safetensors"),
        &weights_safetensors(&config.experiment, state)?,
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
    let tensors = safetensors::SafeTensors::deserialize(&bytes)?;
    let read = |name: &str| -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
        let t = tensors.tensor(name)?;
        anyhow::ensure!(t.dtype() == safetensors::Dtype::F32, "{name} is not f32");
        let values = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((values, t.shape().to_vec()))
    };
    let (w, shape) = read("W")?;
    let (b, _) = read("b")?;
    Ok((w, b, shape))
}
