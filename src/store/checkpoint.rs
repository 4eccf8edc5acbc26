//! Checkpoints: the full training state of a run (W, b, both Adam moments, the step, the experiment
//! and the loss records so far) in one safetensors file, `DIR/checkpoint.safetensors`, written
//! atomically so that a crash or a kill during the write leaves the previous checkpoint intact.
//! Because the data are a pure function of the counters, a run resumed from a checkpoint gives
//! results bit-identical to an uninterrupted one.

use super::tensors::{to_bytes, TensorFile};
use super::{hex, write_atomic};
use crate::error::UsageError;
use crate::experiment::Experiment;
use crate::features::DATA_STREAM;
use crate::trainer::{LossRecord, TrainState};
use anyhow::Context;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkpoint file of a run directory.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.safetensors")
}

/// The tensors of a checkpoint, in the order they are written and digested, with their shapes for
/// `exp` and `records` loss records.
fn layout(exp: &Experiment, records: usize) -> [(&'static str, Dtype, Vec<usize>); 8] {
    // The weights as the trainers hold them: m rows of n, 2m for the untied model (W₁, then W₂ᵀ).
    let (count, rows, n) = (
        exp.instances.len(),
        exp.model.weight_rows(exp.hidden),
        exp.features,
    );
    [
        ("W", Dtype::F32, vec![count, rows, n]),
        ("b", Dtype::F32, vec![count, n]),
        ("adam_m_W", Dtype::F32, vec![count, rows, n]),
        ("adam_v_W", Dtype::F32, vec![count, rows, n]),
        ("adam_m_b", Dtype::F32, vec![count, n]),
        ("adam_v_b", Dtype::F32, vec![count, n]),
        ("loss_steps", Dtype::U32, vec![records]),
        ("losses", Dtype::F32, vec![records, count]),
    ]
}

/// SHA-256 of the metadata that defines the run and of every tensor's bytes, in layout order: a
/// flipped bit anywhere in the file is found before the run resumes.
fn digest<'a>(metadata: [&str; 3], tensors: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash = Sha256::new();
    for text in metadata {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    for bytes in tensors {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hex(&hash.finalize())
}

/// Writes the checkpoint of `state` (taken after `state.step` steps) into `dir`, atomically, with
/// the run's checkpoint interval (so a resumed run keeps it) and a digest of everything.
pub fn write_checkpoint(
    dir: &Path,
    exp: &Experiment,
    state: &TrainState,
    records: &[LossRecord],
    checkpoint_every: Option<u32>,
) -> anyhow::Result<()> {
    // Loss records as tensors, so NaN losses of diverged instances survive exactly.
    let steps: Vec<u32> = records.iter().map(|r| r.step).collect();
    let losses: Vec<f32> = records
        .iter()
        .flat_map(|r| r.losses.iter().copied())
        .collect();
    let data: [&[u8]; 8] = [
        bytemuck::cast_slice(&state.w),
        bytemuck::cast_slice(&state.b),
        bytemuck::cast_slice(&state.m_w),
        bytemuck::cast_slice(&state.v_w),
        bytemuck::cast_slice(&state.m_b),
        bytemuck::cast_slice(&state.v_b),
        bytemuck::cast_slice(&steps),
        bytemuck::cast_slice(&losses),
    ];
    let (step, experiment) = (state.step.to_string(), serde_json::to_string(exp)?);
    let every = checkpoint_every.map_or(String::new(), |k| k.to_string());
    let sha256 = digest([&step, &experiment, &every], data);
    let mut tensors = vec![];
    for ((name, dtype, shape), bytes) in layout(exp, records.len()).into_iter().zip(data) {
        tensors.push((name, TensorView::new(dtype, shape, bytes)?));
    }
    let metadata = HashMap::from([
        ("step".to_string(), step),
        ("experiment".to_string(), experiment),
        ("checkpoint_every".to_string(), every),
        ("sha256".to_string(), sha256),
        ("data_stream".to_string(), DATA_STREAM.to_string()),
    ]);
    write_atomic(&checkpoint_path(dir), &to_bytes(tensors, Some(metadata))?)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub experiment: Experiment,
    pub state: TrainState,
    pub records: Vec<LossRecord>,
    /// The run's `--checkpoint-every`, if it had one.
    pub checkpoint_every: Option<u32>,
}

/// Reads `DIR/checkpoint.safetensors` and trusts it only once it is checked: its digest, every
/// tensor's name, dtype and shape against its experiment, and the experiment itself as a fresh run's
/// settings are checked. Anything else is a [`UsageError`] naming the file.
pub fn read_checkpoint(dir: &Path) -> anyhow::Result<Checkpoint> {
    let path = checkpoint_path(dir);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "no checkpoint to resume from: cannot read {}",
            path.display()
        )
    })?;
    let damaged = |why: String| -> anyhow::Error {
        UsageError(format!(
            "cannot resume from {}: {why}; it is damaged or not a tms checkpoint",
            path.display()
        ))
        .into()
    };
    let file = TensorFile::from_bytes(bytes).map_err(|e| damaged(e.to_string()))?;
    let meta = file.metadata().map_err(|e| damaged(e.to_string()))?;
    // Written before checkpoints recorded it: the first stream.
    let stream = match meta.get("data_stream") {
        None => 1,
        Some(text) => text
            .parse::<u32>()
            .map_err(|_| damaged(format!("its data_stream {text:?} is not a number")))?,
    };
    if stream != DATA_STREAM {
        return Err(UsageError(format!(
            "cannot resume from {}: the run drew data stream {stream}, this tms draws stream \
             {DATA_STREAM} (src/features.rs): finish it with the tms that started it, or start it \
             again with --force",
            path.display()
        ))
        .into());
    }
    parse(&file, &meta).map_err(damaged)
}

/// The checkpoint in `file`, whose metadata is `meta`, once checked (see [`read_checkpoint`]).
fn parse(file: &TensorFile, meta: &HashMap<String, String>) -> Result<Checkpoint, String> {
    let field = |key: &str| {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("its metadata lacks {key}"))
    };
    let experiment: Experiment = serde_json::from_str(field("experiment")?)
        .map_err(|e| format!("its experiment does not parse ({e})"))?;
    experiment
        .validate()
        .map_err(|e| format!("its experiment is not valid ({e})"))?;
    let step: u32 = field("step")?
        .parse()
        .map_err(|_| "its step is not a number".to_string())?;
    if step > experiment.steps {
        return Err(format!(
            "its step {step} is beyond the run's {} steps",
            experiment.steps
        ));
    }
    let every = field("checkpoint_every")?;
    let checkpoint_every =
        match every {
            "" => None,
            text => Some(text.parse::<u32>().ok().filter(|&k| k > 0).ok_or_else(|| {
                format!("its checkpoint_every {text:?} is not a positive number")
            })?),
        };
    let records = file
        .shape("loss_steps")
        .map_err(|e| e.to_string())?
        .first()
        .copied()
        .unwrap_or(0);
    let layout = layout(&experiment, records);
    if file.names().len() != layout.len() {
        return Err(format!(
            "it holds {} tensors, not {}",
            file.names().len(),
            layout.len()
        ));
    }
    let mut data = vec![];
    for (name, dtype, shape) in &layout {
        data.push(file.raw(name, *dtype, shape).map_err(|e| e.to_string())?);
    }
    let sha256 = digest(
        [field("step")?, field("experiment")?, every],
        data.iter().copied(),
    );
    if field("sha256")? != sha256 {
        return Err("its digest does not match its contents".into());
    }
    // One copy per tensor, out of the file's bytes (which need not be aligned for f32).
    let f32s = |k: usize| -> Vec<f32> { bytemuck::pod_collect_to_vec(data[k]) };
    let state = TrainState {
        step,
        w: f32s(0),
        b: f32s(1),
        m_w: f32s(2),
        v_w: f32s(3),
        m_b: f32s(4),
        v_b: f32s(5),
    };
    let steps: Vec<u32> = bytemuck::pod_collect_to_vec(data[6]);
    let losses = f32s(7);
    let count = experiment.instances.len();
    let records = steps
        .iter()
        .zip(losses.chunks(count))
        .map(|(&step, l)| LossRecord {
            step,
            losses: l.to_vec(),
        })
        .collect();
    Ok(Checkpoint {
        experiment,
        state,
        records,
        checkpoint_every,
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
        write_checkpoint(dir.path(), &exp, &state, &records, Some(250)).unwrap();
        let back = read_checkpoint(dir.path()).unwrap();
        assert_eq!(back.checkpoint_every, Some(250));
        assert_eq!(back.experiment, exp);
        assert_eq!(back.state, state);
        assert_eq!(back.records[0], records[0]);
        assert!(back.records[1].losses[0].is_nan());
    }

    /// Rewrites the metadata of the safetensors file at `path` with `edit` (the header is JSON after
    /// its 8-byte length, padded to a multiple of 8).
    fn edit_metadata(
        path: &Path,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) {
        let bytes = std::fs::read(path).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
        edit(header["__metadata__"].as_object_mut().unwrap());
        let mut text = serde_json::to_vec(&header).unwrap();
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(&bytes[8 + len..]);
        std::fs::write(path, out).unwrap();
    }

    /// A checkpoint of another data stream (one written before checkpoints recorded it is stream 1)
    /// is refused as bad input, naming both streams, so that no run continues on other draws.
    #[test]
    fn checkpoints_of_another_data_stream_are_refused() {
        let exp = crate::experiment::Experiment::seed_default();
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &exp, &TrainState::initial(&exp), &[], None).unwrap();
        let path = checkpoint_path(dir.path());
        for (edit, stream) in [(None, "1"), (Some("3"), "3")] {
            edit_metadata(&path, |meta| match edit {
                None => drop(meta.remove("data_stream")),
                Some(v) => drop(meta.insert("data_stream".into(), v.into())),
            });
            let err = read_checkpoint(dir.path()).err().expect("refused");
            assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "drew data stream {stream}, this tms draws stream {DATA_STREAM}"
                )),
                "{text}"
            );
        }
        edit_metadata(&path, |meta| {
            meta.insert("data_stream".into(), DATA_STREAM.to_string().into());
        });
        assert!(read_checkpoint(dir.path()).is_ok());
    }

    /// The untied model's weights (W₁ and W₂ᵀ, 2m rows) round-trip too.
    #[test]
    fn untied_checkpoint_round_trips_exactly() {
        let exp = crate::experiment::Settings {
            model: Some(crate::experiment::ModelKind::Abs),
            features: Some(6),
            hidden: Some(4),
            density: Some(vec![1.0, 0.1]),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut state = TrainState::initial(&exp);
        assert_eq!(state.w.len(), 2 * 2 * 4 * 6);
        state.m_w[47] = -0.5;
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &exp, &state, &[], None).unwrap();
        let back = read_checkpoint(dir.path()).unwrap();
        assert_eq!((back.experiment, back.state), (exp, state));
    }
}
