//! `tms merge`: joins the run directories of the shards of one sweep (`tms train --shard K/N`) into
//! one run directory, identical to the same sweep trained in one piece. Refuses shards of different
//! experiments, unfinished shards, and missing or repeated shards, with one line saying which.

use crate::error::UsageError;
use crate::experiment::Experiment;
use crate::run::dir;
use crate::store::results::{
    mark_best_of_settings, read_config, read_results, read_weights, summarize_settings, Results,
    RunConfig, StoredWeights, Weights,
};
use std::path::{Path, PathBuf};

/// One finished shard read back.
struct ShardRun {
    dir: PathBuf,
    config: RunConfig,
    results: Results,
    w: Vec<f32>,
    w2: Option<Vec<f32>>,
    b: Vec<f32>,
}

fn read_shard(dir: &Path) -> anyhow::Result<ShardRun> {
    let config = read_config(dir)?;
    if !dir.join("results.json").exists() {
        return Err(UsageError(format!(
            "shard {} has not finished (no results.json; resume it with tms train --resume)",
            dir.display()
        ))
        .into());
    }
    let results = read_results(dir)?;
    let weights = read_weights(dir)?;
    agree(&config, &results, &weights).map_err(|why| {
        UsageError(format!(
            "shard {} is inconsistent: {why}; retrain it (or restore its files)",
            dir.display()
        ))
    })?;
    Ok(ShardRun {
        dir: dir.to_path_buf(),
        config,
        results,
        w: weights.w,
        w2: weights.w2,
        b: weights.b,
    })
}

/// Whether a run's three files describe one run: the weights file is the one config.json recorded,
/// results.json has config's instances (index, density, importance) and the weights file's W and b.
fn agree(config: &RunConfig, results: &Results, weights: &StoredWeights) -> Result<(), String> {
    if let Some(digest) = &config.weights_sha256 {
        if *digest != weights.digest {
            return Err("weights.safetensors is not the file config.json recorded".into());
        }
    }
    let exp = &config.experiment;
    let shape = [exp.instances.len(), exp.hidden, exp.features];
    if weights.shape != shape || weights.b.len() != shape[0] * shape[2] {
        return Err(format!("weights.safetensors does not hold W of {shape:?}"));
    }
    let w2_len = weights.w2.as_ref().map(Vec::len);
    if w2_len != exp.model.untied().then_some(shape.iter().product()) {
        return Err("weights.safetensors holds W2 where the model has none, or lacks it".into());
    }
    if results.instances.len() != exp.instances.len()
        || (
            results.model,
            results.features,
            results.hidden,
            results.steps,
        ) != (exp.model, exp.features, exp.hidden, exp.steps)
    {
        return Err("results.json and config.json describe different experiments".into());
    }
    // Bit for bit; a value that is not finite is null in results.json, so any two of those agree.
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || !(a.is_finite() || b.is_finite());
    let per_w = exp.hidden * exp.features;
    for (i, (result, inst)) in results.instances.iter().zip(&exp.instances).enumerate() {
        if result.index != exp.global_index(i) as usize
            || result.density != inst.density
            || result.importance != inst.importance
        {
            return Err(format!(
                "results.json's instance {i} is not config.json's (index, density or importance differ)"
            ));
        }
        let w = weights.w[i * per_w..(i + 1) * per_w].iter();
        let b = weights.b[i * exp.features..(i + 1) * exp.features].iter();
        let w_same = result.w.iter().flatten().zip(w).all(|(a, b)| same(a, b));
        let w2_same = match (&result.w2, &weights.w2) {
            (Some(rows), Some(w2)) => {
                let w2 = w2[i * per_w..(i + 1) * per_w].iter();
                rows.iter().flatten().zip(w2).all(|(a, b)| same(a, b))
            }
            (rows, w2) => rows.is_none() && w2.is_none(),
        };
        if !(w_same && w2_same && result.b.iter().zip(b).all(|(a, b)| same(a, b))) {
            return Err(format!(
                "results.json's W or b of instance {i} differ from weights.safetensors"
            ));
        }
    }
    Ok(())
}

/// The experiment without its sharding: what must agree between the shards of one sweep.
fn unsharded(exp: &Experiment) -> Experiment {
    Experiment {
        instances: vec![],
        first_instance: 0,
        shard: None,
        ..exp.clone()
    }
}

/// Merges the shard directories `dirs` into the run directory `out`, which is created (or, with
/// `force`, overwritten) only once the shards are known to fit together.
pub fn merge(dirs: &[PathBuf], out: &Path, force: bool) -> anyhow::Result<Results> {
    let mut shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = shards
        .first()
        .ok_or_else(|| UsageError("tms merge needs at least one shard directory".into()))?;
    let count = first
        .config
        .experiment
        .shard
        .map(|s| s.count)
        .ok_or_else(|| {
            UsageError(format!(
                "{} is not a shard (trained without --shard)",
                first.dir.display()
            ))
        })?;
    let (reference, stream) = (
        unsharded(&first.config.experiment),
        first.config.data_stream,
    );
    for shard in &shards {
        let exp = &shard.config.experiment;
        let Some(info) = exp.shard else {
            return Err(UsageError(format!(
                "{} is not a shard (trained without --shard)",
                shard.dir.display()
            ))
            .into());
        };
        if info.count != count || unsharded(exp) != reference || shard.config.data_stream != stream
        {
            return Err(UsageError(format!(
                "{} is a shard of a different sweep than {} (settings, shard count or data stream differ)",
                shard.dir.display(),
                first.dir.display()
            ))
            .into());
        }
    }
    shards.sort_by_key(|s| s.config.experiment.shard.map(|i| i.index));
    for (expected, shard) in shards.iter().enumerate() {
        let index = shard.config.experiment.shard.map_or(0, |s| s.index);
        if index as usize != expected {
            let what = if (index as usize) < expected {
                format!("shard {index} is given twice")
            } else {
                format!("shard {expected} of {count} is missing")
            };
            return Err(UsageError(format!("cannot merge: {what}")).into());
        }
    }
    if shards.len() != count as usize {
        return Err(UsageError(format!(
            "cannot merge: shard {} of {count} is missing",
            shards.len()
        ))
        .into());
    }

    let experiment = Experiment {
        instances: shards
            .iter()
            .flat_map(|s| s.config.experiment.instances.clone())
            .collect(),
        ..reference
    };
    let mut instances: Vec<_> = shards
        .iter()
        .flat_map(|s| s.results.instances.clone())
        .collect();
    mark_best_of_settings(&mut instances);
    let results = Results {
        settings: summarize_settings(&instances),
        instances,
        ..shards[0].results.clone()
    };
    let w: Vec<f32> = shards.iter().flat_map(|s| s.w.iter().copied()).collect();
    let w2: Option<Vec<f32>> = shards
        .iter()
        .map(|s| s.w2.clone())
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.concat());
    let b: Vec<f32> = shards.iter().flat_map(|s| s.b.iter().copied()).collect();
    let joined = |f: fn(&RunConfig) -> &String| {
        let mut names: Vec<&String> = shards.iter().map(|s| f(&s.config)).collect();
        names.dedup();
        names.into_iter().cloned().collect::<Vec<_>>().join(", ")
    };
    let config = RunConfig {
        experiment,
        backend: joined(|c| &c.backend),
        device: joined(|c| &c.device),
        tms_version: env!("CARGO_PKG_VERSION").into(),
        data_stream: stream,
        weights_sha256: None, // recorded as the merged weights are written
    };
    let claimed = dir::claim_new(out, force)?;
    let weights = Weights {
        w: &w,
        w2: w2.as_deref(),
        b: &b,
    };
    dir::write_files(&claimed, &config, &results, &weights)?;
    Ok(results)
}
