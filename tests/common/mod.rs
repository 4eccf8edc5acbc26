//! Helpers shared by the integration tests: spawning the binary ([`tms`], [`tms_ok`] when it must
//! succeed), the GPU adapter check
//! ([`have_gpu`]), one test body on every backend ([`on_every_backend!`]), experiment builders
//! ([`experiment`], [`train_on`]) and the assertions several files make ([`assert_run_files`],
//! [`assert_top_m`]). Each test file uses only some of them, hence the `dead_code` and `unused_macros` allowance.
#![allow(dead_code, unused_macros)]

use std::path::Path;
use std::process::{Command, Output};
use tms::analysis::InstanceMetrics;
use tms::device::Device;
use tms::experiment::{Experiment, ModelKind, Settings};
use tms::gpu::list_adapters;
use tms::run::driver::{evaluate, run_to_end, RunControl};
use tms::store::results::{read_results, Results};
use tms::trainer::TrainState;

/// Runs the `tms` binary with `args` and waits for it.
pub fn tms(args: &[&str]) -> Output {
    tms_with_env(args, &[])
}

/// Runs the `tms` binary with `args` and extra environment variables.
pub fn tms_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tms"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("tms runs")
}

/// Runs the `tms` binary with `args` and asserts that it succeeded, showing its stderr if not.
pub fn tms_ok(args: &[&str]) -> Output {
    tms_ok_with_env(args, &[])
}

/// [`tms_ok`] with extra environment variables.
pub fn tms_ok_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = tms_with_env(args, env);
    assert!(
        out.status.success(),
        "tms {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether there is a GPU adapter to test on; panics under CI=true when there is none (CI must
/// install mesa-vulkan-drivers), and says loudly that it skips otherwise.
pub fn have_gpu() -> bool {
    if !list_adapters().is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no GPU adapter; install mesa-vulkan-drivers");
    }
    eprintln!("\n*** SKIPPING GPU TEST: no GPU adapter found; install mesa-vulkan-drivers (lavapipe) to run it ***\n");
    false
}

/// Every GPU adapter, as a device.
pub fn every_adapter() -> Vec<Device> {
    (0..list_adapters().len())
        .map(|i| Device::Gpu {
            adapter: Some(i.to_string()),
        })
        .collect()
}

/// Runs one test body on the CPU trainer and on every GPU adapter: `on_every_backend!(name, |device|
/// { ... })` makes a module `name` with tests `cpu` and `gpu`; the body gets `device: &Device`.
/// Declare `#[macro_use] mod common;` to use it.
macro_rules! on_every_backend {
    ($name:ident, |$device:ident| $body:block) => {
        mod $name {
            use super::*;

            #[test]
            fn cpu() {
                let $device = &tms::device::Device::Cpu;
                $body
            }

            #[test]
            fn gpu() {
                if !common::have_gpu() {
                    return;
                }
                for adapter in common::every_adapter() {
                    let $device = &adapter;
                    $body
                }
            }
        }
    };
}

/// A resolved experiment of `model` with n = `features`, m = `hidden`, one instance per density.
pub fn experiment(
    model: ModelKind,
    features: usize,
    hidden: usize,
    batch: usize,
    steps: u32,
    densities: &[f64],
) -> Experiment {
    Settings {
        model: Some(model),
        features: Some(features),
        hidden: Some(hidden),
        batch: Some(batch),
        steps: Some(steps),
        density: Some(densities.to_vec()),
        ..Default::default()
    }
    .resolve()
    .expect("valid settings")
}

/// Trains `exp` on `device` from its initial state and returns its results (evaluation included),
/// without writing anything.
pub fn train_on(device: &Device, exp: &Experiment) -> Results {
    let (mut trainer, _) = device
        .trainer(exp, TrainState::initial(exp))
        .expect("the trainer builds");
    let (state, records, _) = run_to_end(exp, trainer.as_mut(), 0, vec![], &RunControl::default())
        .expect("the trainer does not fail");
    Results::collect(exp, &state, &records, &evaluate(exp, &state), &[])
}

/// Trains `exp` on the CPU (see [`train_on`]).
pub fn train_on_cpu(exp: &Experiment) -> Results {
    train_on(&Device::Cpu, exp)
}

/// Asserts that `dir` holds a finished run of `instances` instances: every run file, no temporary
/// file left behind, and no checkpoint.
pub fn assert_run_files(dir: &Path, instances: usize) {
    for file in [
        "config.json",
        "results.json",
        "weights.safetensors",
        "metrics.json",
    ] {
        assert!(dir.join(file).is_file(), "{}/{file} missing", dir.display());
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && name != "checkpoint.safetensors",
            "{}/{name} left behind",
            dir.display()
        );
    }
    let results = read_results(dir).unwrap();
    assert_eq!(results.instances.len(), instances, "{}", dir.display());
}

/// Asserts that exactly the `m` most important features are represented, each in its own
/// dimension (the linear model's solution).
pub fn assert_top_m(metrics: &InstanceMetrics, m: usize, what: &str) {
    assert!(
        metrics.top_m_only(m),
        "{what} at density {}: norms {:?}, superposition {:?}",
        metrics.density,
        metrics.norms,
        metrics.superposition
    );
    assert!(
        (metrics.dimensions_per_feature - 1.0).abs() < 0.05,
        "{what} at density {}: {} dimensions per feature",
        metrics.density,
        metrics.dimensions_per_feature
    );
}

/// How far a GPU trainer's W and b may stray from the CPU trainer's over a few hundred steps
/// (absolute), and its logged losses (relative): tests/gpu.rs explains the margin. The browser test
/// (tests/web.rs) holds the page's WebGPU runs to the same.
pub const TRAJECTORY_TOLERANCE: f32 = 2e-5;
pub const LOSS_TOLERANCE: f32 = 1e-4;
