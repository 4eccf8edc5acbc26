//! The run directory: whether it may take a new run ([`prepare`]: refused when it holds results,
//! unless forced; created and probed for writing), and the set of files a finished run leaves there
//! ([`write_files`]: config.json, weights.safetensors, results.json, metrics.json), which a trained
//! run and a merged sweep both write.

use crate::analysis::write_metrics;
use crate::error::UsageError;
use crate::store::results::{write_run, Results, RunConfig, Weights};
use std::path::Path;

/// Checks that `dir` can hold a new run (no results there, or `force`), creating it: the last check
/// before a run writes anything.
pub fn prepare(dir: &Path, force: bool) -> Result<(), UsageError> {
    if dir.join("results.json").exists() && !force {
        return Err(UsageError(format!(
            "run directory {} already holds results (use --force to overwrite)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        UsageError(format!(
            "cannot create output directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".tms-write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            UsageError(format!(
                "output directory {} is not writable: {e}",
                dir.display()
            ))
        })
}

/// Writes the files of a finished run into `dir` (which must exist): config.json, weights.safetensors,
/// results.json, then metrics.json.
pub fn write_files(
    dir: &Path,
    config: &RunConfig,
    results: &Results,
    weights: &Weights,
) -> anyhow::Result<()> {
    write_run(dir, config, results, weights)?;
    write_metrics(dir, results)?;
    Ok(())
}
