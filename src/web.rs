//! `tms web --out DIR`: writes the static site that trains toy models in the browser through WebGPU.
//!
//! The page is a JavaScript host (the files of `web/`) over the very WGSL kernels of the GPU trainer:
//! wasm32 cannot be built here (no toolchain downloads), so instead of compiling this crate to wasm,
//! the build writes what the JavaScript needs to drive the kernels, generated from the Rust
//! declarations, so nothing about the interface is mirrored by hand:
//! - `kernels/*.wgsl`: the tiled path's kernels (any n, m) and the register kernel for the sizes of
//!   `REGISTER_SIZES`, each assembled with the generated prelude of [`crate::gpu::abi`] exactly as
//!   the native trainer hands them to wgpu;
//! - `abi.json`: the interface structs (fields, offsets, sizes), the kernel constants and binding
//!   numbers, the bind group layout, the Philox constants and stream numbers, the kernels' entry
//!   points, the seed's default experiment, and known answers (Philox words, initial-weight normals,
//!   feature samples, importances, step constants) that the page checks its few lines of host
//!   arithmetic against before it trains.
//!
//! The site makes no request to another host: every file it loads is in DIR.

use crate::experiment::{geometric_importance, Experiment, Settings};
use crate::features::{
    init_normal, philox4x32_10, presence_threshold, seed_key, Distribution, FeatureSource, Stream,
    PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1,
};
use crate::gpu::abi::{
    Config, Params, WgslStruct, BATCH_BINDING, CONSTANTS, DELTA_BINDING, DISPATCH_BINDING,
    GRAD_BINDING, HIDDEN_BINDING, LOSSES_BINDING, SHARD_BINDING, STATE_BINDING,
};
use crate::gpu::register::{self, Variant};
use crate::gpu::shaders;
use crate::optim::{step_constants, StepConstants};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The page's own files (HTML, CSS, JavaScript modules), embedded at build time.
const PAGE: [(&str, &str); 8] = [
    ("index.html", include_str!("../web/index.html")),
    ("style.css", include_str!("../web/style.css")),
    ("app.js", include_str!("../web/app.js")),
    ("philox.js", include_str!("../web/philox.js")),
    ("experiment.js", include_str!("../web/experiment.js")),
    ("trainer.js", include_str!("../web/trainer.js")),
    ("files.js", include_str!("../web/files.js")),
    ("views.js", include_str!("../web/views.js")),
];

/// The kernels the page runs and their entry points, in the order of one training step of the
/// native tiled trainer (`GpuTrainer::encode`): sample X, H = X Wᵀ, δ, dH, the gradients, Adam.
const PASSES: [(&str, &str); 6] = [
    ("features.wgsl", "generate"),
    ("tiled.wgsl", "hidden_forward"),
    ("tiled.wgsl", "output_delta"),
    ("tiled.wgsl", "hidden_backward"),
    ("tiled.wgsl", "gradient"),
    ("tiled_adam.wgsl", "adam_step"),
];

/// The (n, m) for which the site carries the register kernel (generated per size, so only for the
/// sizes of the seed's experiment and the paper's introduction): one workgroup per instance running
/// many steps per dispatch, which software adapters run far faster than the tiled passes. Without
/// wasm the page cannot generate it for other sizes; those train on the tiled kernels.
const REGISTER_SIZES: [(usize, usize); 1] = [(5, 2)];

/// The register kernel's variant in the page: W in registers (what native software adapters use;
/// the page cannot tell a software adapter reliably), no subgroup operations (optional in WebGPU).
const REGISTER_VARIANT: Variant = Variant {
    w_in_registers: false,
    subgroup_min_size: None,
    split: false,
    hidden_relu: false,
    abs: false,
    cooperative: false,
};

fn register_file(n: usize, m: usize) -> String {
    format!("register-{n}x{m}.wgsl")
}

/// Writes the site into `out` (created if missing) and returns the paths written.
pub fn write_site(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let kernels = out.join("kernels");
    std::fs::create_dir_all(&kernels)
        .with_context(|| format!("cannot create {}", kernels.display()))?;
    let mut files: Vec<(PathBuf, String)> = PAGE
        .iter()
        .map(|(name, text)| (out.join(name), text.to_string()))
        .collect();
    let mut kernel_files: Vec<&str> = PASSES.iter().map(|(file, _)| *file).collect();
    kernel_files.dedup();
    for file in kernel_files {
        files.push((kernels.join(file), shaders::assembled(file)));
    }
    for (n, m) in REGISTER_SIZES {
        let source = shaders::with_prelude(&register::kernel(n, m, REGISTER_VARIANT));
        files.push((kernels.join(register_file(n, m)), source));
    }
    files.push((
        out.join("abi.json"),
        serde_json::to_string_pretty(&abi_description()?)?,
    ));
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

fn struct_of<T: WgslStruct>() -> Value {
    json!({
        "size": std::mem::size_of::<T>(),
        "fields": T::FIELDS.iter().map(|f| json!({"name": f.name, "type": f.ty, "offset": f.offset})).collect::<Vec<_>>(),
    })
}

/// Everything the page's host code needs to know about the kernels and the generators.
pub fn abi_description() -> anyhow::Result<Value> {
    let constants: serde_json::Map<String, Value> = CONSTANTS
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    // The layout of `Gpu::layout`: (binding, read-only, dynamic offset).
    let layout = [
        (STATE_BINDING, false, false),
        (SHARD_BINDING, true, false),
        (DISPATCH_BINDING, true, true),
        (LOSSES_BINDING, false, false),
        (HIDDEN_BINDING, false, false),
        (DELTA_BINDING, false, false),
        (GRAD_BINDING, false, false),
        (BATCH_BINDING, false, false),
    ];
    let defaults = Settings::default().resolve()?;
    Ok(json!({
        "structs": {
            "Config": struct_of::<Config>(),
            "Params": struct_of::<Params>(),
            "StepConstants": struct_of::<StepConstants>(),
        },
        "constants": constants,
        "layout": layout.iter().map(|&(binding, read_only, dynamic)| json!({"binding": binding, "read_only": read_only, "dynamic": dynamic})).collect::<Vec<_>>(),
        "register_kernels": REGISTER_SIZES.iter().map(|&(n, m)| json!({"features": n, "hidden": m, "kernel": register_file(n, m), "entry": "train"})).collect::<Vec<_>>(),
        "passes": PASSES.iter().map(|(file, entry)| json!({"kernel": file, "entry": entry})).collect::<Vec<_>>(),
        "philox": {"M0": PHILOX_M0, "M1": PHILOX_M1, "W0": PHILOX_W0, "W1": PHILOX_W1},
        "streams": {
            "TrainPresence": Stream::TrainPresence as u32,
            "TrainMask": Stream::TrainMask as u32,
            "TrainValue": Stream::TrainValue as u32,
            "EvalPresence": Stream::EvalPresence as u32,
            "EvalMask": Stream::EvalMask as u32,
            "EvalValue": Stream::EvalValue as u32,
            "Init": Stream::Init as u32,
        },
        "defaults": defaults,
        "tms_version": env!("CARGO_PKG_VERSION"),
        "data_stream": crate::features::DATA_STREAM,
        "known_answers": known_answers(&defaults),
    }))
}

/// Values of the host arithmetic the page ports to JavaScript, computed here by the Rust code the
/// native trainers run, so the page can check its port bit for bit before training.
fn known_answers(defaults: &Experiment) -> Value {
    let seeds = [0u64, 0x1234_5678_9abc, (1 << 53) - 1];
    let philox: Vec<Value> = seeds
        .iter()
        .flat_map(|&seed| {
            [[0u32, 0, 0, 0], [7, 11, 3, 1], [u32::MAX; 4]].map(|counter| {
                json!({"counter": counter, "key": seed_key(seed), "out": philox4x32_10(counter, seed_key(seed))})
            })
        })
        .collect();
    let normals: Vec<Value> = seeds
        .iter()
        .flat_map(|&seed| {
            [(0u32, 0u32), (0, 1), (3, 99), (6, 4)].map(|(instance, index)| {
                json!({"seed": seed, "instance": instance, "index": index, "value": init_normal(seed, instance, index)})
            })
        })
        .collect();
    // Densities whose ties pass without a mask call (1.0), need one (0.003, 0.6), and chunks of
    // up to four value calls (1.0, 0.6).
    let samples: Vec<Value> = [(0u32, 1.0, 20), (5, 0.003, 20), (2, 0.3, 7), (4, 0.6, 37)]
        .iter()
        .map(|&(instance, density, n)| {
            let mut x = vec![0.0f32; n];
            let samples: Vec<Vec<f32>> = (0..40)
                .map(|s| {
                    FeatureSource::eval(defaults.seed, instance, density, n).sample(0, s, &mut x);
                    x.clone()
                })
                .collect();
            json!({"seed": defaults.seed, "instance": instance, "density": density, "features": n, "eval_samples": samples})
        })
        .collect();
    let thresholds: Vec<Value> = [1.0, 0.3, 0.001, 1e-10, 0.5]
        .iter()
        .map(|&d| json!({"density": d, "threshold": presence_threshold(d)}))
        .collect();
    let importances: Vec<Value> = [(20, 0.7), (7, 0.9), (30, 0.93)]
        .iter()
        .map(|&(n, r)| json!({"features": n, "decay": r, "importance": geometric_importance(n, r)}))
        .collect();
    let constants: Vec<Value> = [0, 1, 299, 9_999]
        .iter()
        .map(|&step| {
            let c = step_constants(defaults, step);
            json!({"step": step, "constants": [c.step_size, c.bias2_sqrt, c.decay_factor, c.l2]})
        })
        .collect();
    // The feature distribution's layout words for the page's (default) distribution.
    let layouts: Vec<Value> = [5usize, 20]
        .iter()
        .map(|&n| json!({"features": n, "words": Distribution::default().layout_words(n)}))
        .collect();
    json!({
        "philox": philox,
        "layout_words": layouts,
        "normals": normals,
        "samples": samples,
        "thresholds": thresholds,
        "importances": importances,
        "step_constants": {"experiment": "defaults", "values": constants},
    })
}
