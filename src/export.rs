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
    pub final_loss: f32,
    pub eval_loss: f64,
    /// (step, training loss) at every log point.
    pub loss_curve: Vec<(u32, f32)>,
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
    /// Gathers the per-instance results of a finished run.
    pub fn collect(
        exp: &Experiment,
        state: &TrainState,
        records: &[LossRecord],
        eval: &[f64],
    ) -> Results {
        let n = exp.features;
        let instances = exp
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let loss_curve: Vec<(u32, f32)> =
                    records.iter().map(|r| (r.step, r.losses[i])).collect();
                InstanceResult {
                    index: i,
                    density: inst.density,
                    importance: inst.importance.clone(),
                    w: state.w_of(i, exp).chunks(n).map(<[f32]>::to_vec).collect(),
                    b: state.b_of(i, exp).to_vec(),
                    final_loss: loss_curve.last().map_or(f32::NAN, |p| p.1),
                    eval_loss: eval[i],
                    loss_curve,
                }
            })
            .collect();
        Results {
            model: exp.model,
            features: n,
            hidden: exp.hidden,
            steps: exp.steps,
            instances,
        }
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
