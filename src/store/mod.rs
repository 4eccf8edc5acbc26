//! Every file format `tms` writes and reads, and nothing about when to write them (that is `run`'s
//! policy): the one safetensors helper ([`tensors`]), checkpoints ([`checkpoint`]) and a run's result
//! files, `config.json`, `results.json` and `weights.safetensors` ([`results`]). Every file is
//! written atomically by [`write_atomic`], so a reader (or a crash) never sees half a file.

pub mod checkpoint;
pub mod results;
pub mod tensors;

use anyhow::Context;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a reader
/// never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temporary_path(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// The temporary file [`write_atomic`] writes `path` through: `.NAME.tmp` beside it.
pub fn temporary_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Bytes as lowercase hexadecimal (the digests the files record).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
