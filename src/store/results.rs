//! Result files of a run directory, each written atomically (temporary file, then rename):
//! - `config.json`: the resolved experiment, backend, device, crate version;
//! - `results.json`: per instance its density, importance, W (m rows × n columns), W2 (n rows × m
//!   columns, the untied model only), b, final training loss, evaluation loss and loss curve; per
//!   setting the best restart and the spread of the restarts' evaluation losses;
//! - `weights.safetensors`: tensors `W` [instances, m, n], `W2` [instances, n, m] (the untied model
//!   only) and `b` [instances, n], f32.

use super::tensors::{f32_tensor, to_bytes, TensorFile};
use super::{hex, write_atomic};
use crate::error::UsageError;
use crate::experiment::{check_sizes, Experiment};
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// config.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub experiment: Experiment,
    pub backend: String,
    pub device: String,
    pub tms_version: String,
    /// The data stream the run drew ([`crate::features::DATA_STREAM`]; 1 in files older than the
    /// field).
    #[serde(default = "first_data_stream")]
    pub data_stream: u32,
    /// SHA-256 of weights.safetensors as written beside it (absent in runs older than the field), so
    /// a reader can tell a weights file that does not belong to this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// The data stream of runs written before config.json recorded it.
fn first_data_stream() -> u32 {
    1
}

/// One instance in results.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceResult {
    pub index: usize,
    pub density: f64,
    pub importance: Vec<f32>,
    /// Rows of W; a value that is not finite (a diverged instance) is written as null and read
    /// back as NaN, so a diverged run stays readable.
    #[serde(rename = "W", deserialize_with = "rows_with_nulls")]
    pub w: Vec<Vec<f32>>,
    /// Rows of W₂ (n rows of m) for the untied model (`abs`); absent for the tied ones.
    #[serde(
        rename = "W2",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_rows_with_nulls"
    )]
    pub w2: Option<Vec<Vec<f32>>>,
    #[serde(deserialize_with = "values_with_nulls")]
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

/// Numbers of results.json where null stands for a value that was not finite (serde_json writes
/// NaN and ±∞ as null).
fn values_with_nulls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    Ok(nan_for_null(Vec::deserialize(d)?))
}

fn rows_with_nulls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
    let rows: Vec<Vec<Option<f32>>> = Vec::deserialize(d)?;
    Ok(rows.into_iter().map(nan_for_null).collect())
}

fn optional_rows_with_nulls<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Vec<f32>>>, D::Error> {
    let rows: Option<Vec<Vec<Option<f32>>>> = Option::deserialize(d)?;
    Ok(rows.map(|rows| rows.into_iter().map(nan_for_null).collect()))
}

fn nan_for_null(values: Vec<Option<f32>>) -> Vec<f32> {
    values.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect()
}

/// results.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub model: crate::experiment::ModelKind,
    pub features: usize,
    pub hidden: usize,
    pub steps: u32,
    pub instances: Vec<InstanceResult>,
    /// Per distinct setting (density and importance), its restarts summarised; absent in runs
    /// older than the field.
    #[serde(default)]
    pub settings: Vec<SettingSummary>,
}

/// The restarts of one setting: which was best (lowest evaluation loss) and how their evaluation
/// losses spread, over the restarts whose loss is finite.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SettingSummary {
    pub setting: usize,
    pub density: f64,
    pub restarts: usize,
    /// Index (in results.json's instances) of the best restart; null if no loss is finite.
    pub best_instance: Option<usize>,
    /// Evaluation-loss quantiles: min, first quartile, median, third quartile, max (nearest rank).
    pub eval_loss_min: Option<f64>,
    pub eval_loss_q1: Option<f64>,
    pub eval_loss_median: Option<f64>,
    pub eval_loss_q3: Option<f64>,
    pub eval_loss_max: Option<f64>,
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
                    w: state.w1_of(i, exp).chunks(n).map(<[f32]>::to_vec).collect(),
                    w2: state
                        .w2_of(i, exp)
                        .map(|w2| w2.chunks(exp.hidden).map(<[f32]>::to_vec).collect()),
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
            settings: summarize_settings(&instances),
            instances,
        }
    }
}

/// The [`SettingSummary`] of every setting the instances hold (a shard may hold only some), in
/// setting order (after [`mark_best_of_settings`]).
pub fn summarize_settings(instances: &[InstanceResult]) -> Vec<SettingSummary> {
    let mut by_setting: std::collections::BTreeMap<usize, (SettingSummary, Vec<f64>)> =
        Default::default();
    for (i, r) in instances.iter().enumerate() {
        let (summary, losses) = by_setting.entry(r.setting).or_insert_with(|| {
            let summary = SettingSummary {
                setting: r.setting,
                density: r.density,
                restarts: 0,
                best_instance: None,
                eval_loss_min: None,
                eval_loss_q1: None,
                eval_loss_median: None,
                eval_loss_q3: None,
                eval_loss_max: None,
            };
            (summary, vec![])
        });
        summary.restarts += 1;
        if r.best_of_setting {
            summary.best_instance = Some(i);
        }
        losses.extend(r.eval_loss);
    }
    by_setting
        .into_values()
        .map(|(mut summary, mut losses)| {
            losses.sort_by(f64::total_cmp);
            let rank = |q: f64| {
                let last = losses.len().checked_sub(1)?;
                Some(losses[(q * last as f64).round() as usize])
            };
            summary.eval_loss_min = rank(0.0);
            summary.eval_loss_q1 = rank(0.25);
            summary.eval_loss_median = rank(0.5);
            summary.eval_loss_q3 = rank(0.75);
            summary.eval_loss_max = rank(1.0);
            summary
        })
        .collect()
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

/// The trained parameters a run exports: W [instances, m, n], W₂ [instances, n, m] (the untied
/// model only) and b [instances, n], flat.
pub struct Weights<'a> {
    pub w: &'a [f32],
    pub w2: Option<&'a [f32]>,
    pub b: &'a [f32],
}

impl Weights<'_> {
    /// The exported W₁ and W₂ of a training state, flat (see [`Weights`]); for a tied model W is
    /// the state's own and W₂ is absent.
    pub fn of_state(exp: &Experiment, state: &TrainState) -> (Vec<f32>, Option<Vec<f32>>) {
        if !exp.model.untied() {
            return (state.w.clone(), None);
        }
        let count = exp.instances.len();
        let w1 = (0..count)
            .flat_map(|i| state.w1_of(i, exp).to_vec())
            .collect();
        let w2 = (0..count).flat_map(|i| state.w2_of(i, exp).unwrap_or_default());
        (w1, Some(w2.collect()))
    }
}

/// The safetensors bytes of W [instances, m, n], W2 [instances, n, m] if any, and b [instances, n].
pub fn weights_safetensors(exp: &Experiment, weights: &Weights) -> anyhow::Result<Vec<u8>> {
    let (count, m, n) = (exp.instances.len(), exp.hidden, exp.features);
    let mut tensors = vec![("W", f32_tensor(weights.w, vec![count, m, n])?)];
    if let Some(w2) = weights.w2 {
        tensors.push(("W2", f32_tensor(w2, vec![count, n, m])?));
    }
    tensors.push(("b", f32_tensor(weights.b, vec![count, n])?));
    to_bytes(tensors, None)
}

/// Writes config.json, results.json and weights.safetensors into `dir` (which must exist).
pub fn write_run(
    dir: &Path,
    config: &RunConfig,
    results: &Results,
    weights: &Weights,
) -> anyhow::Result<()> {
    let weights = weights_safetensors(&config.experiment, weights)?;
    let config = RunConfig {
        weights_sha256: Some(sha256_hex(&weights)),
        ..config.clone()
    };
    write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    write_atomic(&dir.join("weights.safetensors"), &weights)?;
    write_atomic(&dir.join("results.json"), &serde_json::to_vec(results)?)?;
    Ok(())
}

impl Results {
    /// Checks that every instance's arrays have the sizes the header gives (W: `hidden` rows of
    /// `features`, b and importance: `features`), within the sizes `tms` trains, so a reader can
    /// index them without panicking and allocate only what the file holds.
    pub fn check(&self) -> Result<(), String> {
        check_sizes(self.features, self.hidden).map_err(|e| e.0)?;
        let (n, m) = (self.features, self.hidden);
        for (i, inst) in self.instances.iter().enumerate() {
            let rows_ok = inst.w.len() == m && inst.w.iter().all(|row| row.len() == n);
            if !rows_ok || inst.b.len() != n || inst.importance.len() != n {
                return Err(format!(
                    "instance {i} does not hold W of {m} × {n}, b and importance of {n}"
                ));
            }
            let w2_ok = match &inst.w2 {
                Some(w2) => w2.len() == n && w2.iter().all(|row| row.len() == m),
                None => true,
            };
            if !w2_ok || inst.w2.is_some() != self.model.untied() {
                return Err(format!(
                    "instance {i} does not hold W2 of {n} × {m} exactly when the model is untied"
                ));
            }
        }
        Ok(())
    }
}

/// Reads results.json of a run directory, checked by [`Results::check`].
pub fn read_results(dir: &Path) -> anyhow::Result<Results> {
    let path = dir.join("results.json");
    let text = read_input(&path)?;
    let results: Results = serde_json::from_slice(&text)
        .map_err(|e| UsageError(format!("{} is not a tms results file: {e}", path.display())))?;
    results
        .check()
        .map_err(|why| UsageError(format!("{} is not consistent: {why}", path.display())))?;
    Ok(results)
}

/// The bytes of a file the user pointed `tms` at; one that cannot be read is bad input (a
/// [`UsageError`], with the I/O error kept beneath it for callers that tell a missing file apart).
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::Error::new(e).context(UsageError(format!("cannot read {}", path.display())))
    })
}

/// Reads config.json of a run directory; its experiment is checked as a fresh run's settings are.
pub fn read_config(dir: &Path) -> anyhow::Result<RunConfig> {
    let path = dir.join("config.json");
    let text = read_input(&path)?;
    let config: RunConfig = serde_json::from_slice(&text)
        .map_err(|e| UsageError(format!("{} is not a tms config file: {e}", path.display())))?;
    config
        .experiment
        .validate()
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// The SHA-256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// weights.safetensors read back.
pub struct StoredWeights {
    /// W flat [instances·m·n], W2 flat [instances·n·m] (the untied model only) and b flat
    /// [instances·n].
    pub w: Vec<f32>,
    pub w2: Option<Vec<f32>>,
    pub b: Vec<f32>,
    /// The shape of W.
    pub shape: Vec<usize>,
    /// SHA-256 of the file.
    pub digest: String,
}

/// Reads W and b back from weights.safetensors.
pub fn read_weights(dir: &Path) -> anyhow::Result<StoredWeights> {
    let path = dir.join("weights.safetensors");
    let bytes = read_input(&path)?;
    let digest = sha256_hex(&bytes);
    let file = TensorFile::from_bytes(bytes)
        .with_context(|| format!("{} is not a weights file", path.display()))?;
    let (w, shape) = file.f32("W")?;
    let w2 = match file.names().iter().any(|name| name == "W2") {
        true => Some(file.f32("W2")?.0),
        false => None,
    };
    let (b, _) = file.f32("b")?;
    Ok(StoredWeights {
        w,
        w2,
        b,
        shape,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard holds some settings only (here 2 and 3, three restarts of 2): each is summarised
    /// once, with its best restart and the nearest-rank quantiles of its losses.
    #[test]
    fn settings_are_summarised_as_the_instances_hold_them() {
        let base =
            crate::testing::toy_results(crate::experiment::ModelKind::Relu).instances[0].clone();
        let inst = |setting: usize, restart: u32, loss: f64| InstanceResult {
            setting,
            restart,
            density: 0.1 * setting as f64,
            eval_loss: Some(loss),
            ..base.clone()
        };
        let mut instances = vec![
            inst(2, 0, 3.0),
            inst(2, 1, 1.0),
            inst(2, 2, 2.0),
            inst(3, 0, 5.0),
        ];
        mark_best_of_settings(&mut instances);
        let summaries = summarize_settings(&instances);
        assert_eq!(summaries.len(), 2);
        let s = &summaries[0];
        assert_eq!((s.setting, s.restarts, s.best_instance), (2, 3, Some(1)));
        assert_eq!(
            (s.eval_loss_min, s.eval_loss_median, s.eval_loss_max),
            (Some(1.0), Some(2.0), Some(3.0))
        );
        assert_eq!(
            (summaries[1].setting, summaries[1].eval_loss_q1),
            (3, Some(5.0))
        );
        // And results.json reads back what it wrote.
        let text = serde_json::to_string(&summaries).unwrap();
        let back: Vec<SettingSummary> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, summaries);
    }
}
