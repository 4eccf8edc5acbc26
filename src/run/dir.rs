//! The run directory: which process owns it, whether it may take a new run, and the files a
//! finished run leaves there.
//!
//! A directory belongs to one run at a time. [`claim_new`] and [`claim_to_resume`] check it (a
//! finished or an interrupted run is never overwritten without `--force`, and is resumed only with
//! `--resume`), take an advisory lock on `DIR/.tms.lock` held until the returned [`RunDir`] is
//! dropped (a second `tms` on the same directory is refused), remove what a killed writer left
//! behind (the temporary files of [`crate::store::write_atomic`]) and probe that the directory can
//! be written, all before any training. [`write_files`] writes config.json, weights.safetensors,
//! results.json and metrics.json, which a trained run and a merged sweep both leave.

use crate::analysis::write_metrics;
use crate::error::UsageError;
use crate::store::checkpoint::checkpoint_path;
use crate::store::results::{write_run, Results, RunConfig, Weights};
use crate::store::temporary_path;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The files a run writes into its directory (results, then the checkpoint while it is unfinished).
pub const RUN_FILES: [&str; 5] = [
    "config.json",
    "weights.safetensors",
    "results.json",
    "metrics.json",
    "checkpoint.safetensors",
];

/// A run directory this process has claimed: checked, and locked against other `tms` processes
/// until dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Claims `dir` for a new run. Refused when it holds a run, finished or interrupted, unless `force`;
/// with `force` the old run's files are removed once the lock is held, so nothing of it survives
/// beside the new run's checkpoint.
pub fn claim_new(dir: &Path, force: bool) -> Result<RunDir, UsageError> {
    let claimed = claim(dir, || refuse_existing_run(dir, force))?;
    for name in RUN_FILES {
        remove_if_present(&dir.join(name))?;
    }
    Ok(claimed)
}

/// Claims `dir` for new output (a run, or `tms sae`'s files): `refuse` says whether what the
/// directory holds forbids it, before the directory is created and again under the lock, since
/// another process may have written there meanwhile.
pub fn claim(
    dir: &Path,
    refuse: impl Fn() -> Result<(), UsageError>,
) -> Result<RunDir, UsageError> {
    refuse()?;
    std::fs::create_dir_all(dir).map_err(|e| {
        UsageError(format!(
            "cannot create output directory {}: {e}",
            dir.display()
        ))
    })?;
    let claimed = lock(dir)?;
    refuse()?;
    Ok(claimed)
}

/// Claims the directory of an interrupted run, to resume it from its checkpoint.
pub fn claim_to_resume(dir: &Path) -> Result<RunDir, UsageError> {
    if dir.join("results.json").exists() && !checkpoint_path(dir).exists() {
        return Err(UsageError(format!(
            "run {} has already finished; nothing to resume",
            dir.display()
        )));
    }
    if !checkpoint_path(dir).exists() {
        return Err(UsageError(format!(
            "no checkpoint to resume from in {} (is it a tms run directory?)",
            dir.display()
        )));
    }
    lock(dir)
}

fn refuse_existing_run(dir: &Path, force: bool) -> Result<(), UsageError> {
    if force {
        return Ok(());
    }
    if dir.join("results.json").exists() {
        return Err(UsageError(format!(
            "run directory {} already holds results (use --force to overwrite)",
            dir.display()
        )));
    }
    if checkpoint_path(dir).exists() {
        return Err(UsageError(format!(
            "run directory {} holds an interrupted run: resume it with tms train --resume {0}, or use --force to start over",
            dir.display()
        )));
    }
    Ok(())
}

/// Takes the directory's lock, cleans up after a killed writer and checks that it can be written.
fn lock(dir: &Path) -> Result<RunDir, UsageError> {
    let path = dir.join(".tms.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            UsageError(format!(
                "run directory {} is not writable: {e}",
                dir.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(UsageError(format!(
                "run directory {} is in use by another tms process",
                dir.display()
            )))
        }
        Err(TryLockError::Error(e)) => {
            return Err(UsageError(format!(
                "cannot lock run directory {}: {e}",
                dir.display()
            )))
        }
    }
    // A kill during an atomic write leaves its temporary file; no one else is writing now.
    for name in RUN_FILES {
        remove_if_present(&temporary_path(&dir.join(name)))?;
    }
    let probe = dir.join(".tms-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            UsageError(format!(
                "run directory {} is not writable: {e}",
                dir.display()
            ))
        })?;
    Ok(RunDir {
        path: dir.to_path_buf(),
        _lock: file,
    })
}

fn remove_if_present(path: &Path) -> Result<(), UsageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(UsageError(format!("cannot remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Writes the files of a finished run into its directory: config.json, weights.safetensors,
/// results.json, then metrics.json.
pub fn write_files(
    dir: &RunDir,
    config: &RunConfig,
    results: &Results,
    weights: &Weights,
) -> anyhow::Result<()> {
    write_run(dir.path(), config, results, weights)?;
    write_metrics(dir.path(), results)?;
    Ok(())
}
