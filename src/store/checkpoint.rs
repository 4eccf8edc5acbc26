//! Checkpoints: the full training state of a run (W, b, both Adam moments, the step, the experiment
//! and the loss records so far) in one safetensors file, `DIR/checkpoint.safetensors`, written
//! atomically so that a crash or a kill during the write leaves the previous checkpoint intact.
//! Because the data are a pure function of the counters, a run resumed from a checkpoint gives
//! results bit-identical to an uninterrupted one.

use super::tensors::{f32_tensor, to_bytes, u32_tensor, TensorFile};
use super::write_atomic;
use crate::experiment::Experiment;
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkpoint file of a run directory.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.safetensors")
}

/// Writes the checkpoint of `state` (taken after `state.step` steps) into `dir`, atomically.
pub fn write_checkpoint(
    dir: &Path,
    exp: &Experiment,
    state: &TrainState,
    records: &[LossRecord],
) -> anyhow::Result<()> {
    let (count, m, n) = (exp.instances.len(), exp.hidden, exp.features);
    // Loss records as tensors, so NaN losses of diverged instances survive exactly.
    let steps: Vec<u32> = records.iter().map(|r| r.step).collect();
    let losses: Vec<f32> = records
        .iter()
        .flat_map(|r| r.losses.iter().copied())
        .collect();
    let tensors = [
        ("W", f32_tensor(&state.w, vec![count, m, n])?),
        ("b", f32_tensor(&state.b, vec![count, n])?),
        ("adam_m_W", f32_tensor(&state.m_w, vec![count, m, n])?),
        ("adam_v_W", f32_tensor(&state.v_w, vec![count, m, n])?),
        ("adam_m_b", f32_tensor(&state.m_b, vec![count, n])?),
        ("adam_v_b", f32_tensor(&state.v_b, vec![count, n])?),
        ("loss_steps", u32_tensor(&steps, vec![steps.len()])?),
        ("losses", f32_tensor(&losses, vec![records.len(), count])?),
    ];
    let metadata = HashMap::from([
        ("step".to_string(), state.step.to_string()),
        ("experiment".to_string(), serde_json::to_string(exp)?),
    ]);
    write_atomic(&checkpoint_path(dir), &to_bytes(tensors, Some(metadata))?)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub experiment: Experiment,
    pub state: TrainState,
    pub records: Vec<LossRecord>,
}

/// Reads `DIR/checkpoint.safetensors`.
pub fn read_checkpoint(dir: &Path) -> anyhow::Result<Checkpoint> {
    let path = checkpoint_path(dir);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no checkpoint to resume from: cannot read {}",
            path.display()
        )
    })?;
    let file = TensorFile::from_bytes(bytes)
        .with_context(|| format!("{} is not a checkpoint", path.display()))?;
    let meta = file.metadata()?;
    let field = |key: &str| {
        meta.get(key)
            .with_context(|| format!("checkpoint metadata lacks {key}"))
    };
    let experiment: Experiment = serde_json::from_str(field("experiment")?)?;
    let step: u32 = field("step")?.parse()?;
    let read = |name: &str| file.f32(name).map(|(values, _)| values);
    let state = TrainState {
        step,
        w: read("W")?,
        b: read("b")?,
        m_w: read("adam_m_W")?,
        v_w: read("adam_v_W")?,
        m_b: read("adam_m_b")?,
        v_b: read("adam_v_b")?,
    };
    let (count, mn, n) = (
        experiment.instances.len(),
        experiment.hidden * experiment.features,
        experiment.features,
    );
    anyhow::ensure!(
        state.w.len() == count * mn
            && state.v_w.len() == count * mn
            && state.b.len() == count * n
            && state.v_b.len() == count * n,
        "checkpoint tensors do not match its experiment"
    );
    let steps = file.u32("loss_steps")?;
    let losses = read("losses")?;
    anyhow::ensure!(
        losses.len() == steps.len() * count,
        "checkpoint loss records do not match its experiment"
    );
    let records = steps
        .iter()
        .zip(losses.chunks(count.max(1)))
        .map(|(&step, l)| LossRecord {
            step,
            losses: l.to_vec(),
        })
        .collect();
    Ok(Checkpoint {
        experiment,
        state,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_exactly() {
        let exp = crate::experiment::Experiment::seed_default();
        let mut state = TrainState::initial(&exp);
        state.step = 123;
        state.v_b[3] = 0.25;
        let records = vec![
            LossRecord {
                step: 0,
                losses: vec![0.5; 7],
            },
            LossRecord {
                step: 100,
                losses: vec![f32::NAN; 7],
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &exp, &state, &records).unwrap();
        let back = read_checkpoint(dir.path()).unwrap();
        assert_eq!(back.experiment, exp);
        assert_eq!(back.state, state);
        assert_eq!(back.records[0], records[0]);
        assert!(back.records[1].losses[0].is_nan());
    }
}
