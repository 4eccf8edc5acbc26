//! `tms bench`: standard workloads timed on every available backend, reported as a table and JSON.
//!
//! Each measurement builds a trainer for the workload, warms it up, then times `repeats` runs of
//! `steps` training steps and reports the median: with the device's timestamp queries where the
//! trainer has them, else with a wall clock around calls that return only once the work is done
//! (every trainer's `advance` waits for it). Each row says which timer it used. Work is counted as the
//! paper's 10·B·n·m flops and 2·B·n random numbers (mask and value) per instance-step. [`run`] is
//! `tms bench`: every workload on every device (and, if asked, the PyTorch loop of
//! `benches/pytorch_loop.py` as a subprocess), printed as Markdown and optionally saved as JSON.

use crate::device::{BackendChoice, Device};
use crate::error::UsageError;
use crate::experiment::{log_grid, Experiment, ModelKind, Settings, MAX_STEPS};
use crate::store::write_atomic;
use crate::trainer::{TrainState, Trainer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A standard benchmark workload (batch 1024; the ReLU output model unless it names another).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub features: usize,
    pub hidden: usize,
    pub densities: Vec<f64>,
    #[serde(default = "relu")]
    pub model: ModelKind,
}

fn relu() -> ModelKind {
    ModelKind::Relu
}

/// The workloads of the benchmark: `basic`, `sweep`, `geometry`, `large`, and the later sections'
/// models: `privileged` (ReLU hidden, n = 10, m = 5, the paper's 7 densities × 100 restarts) and
/// `abs` (n = 100, m = 40, ARENA's 7 densities).
pub fn standard_workloads() -> Vec<Workload> {
    let w = |name: &str, features, hidden, densities| Workload {
        name: name.into(),
        features,
        hidden,
        densities,
        model: ModelKind::Relu,
    };
    let privileged = [0.75, 0.35, 0.15, 0.1, 0.06, 0.02, 0.01];
    vec![
        w(
            "basic",
            20,
            5,
            crate::experiment::DEFAULT_DENSITIES.to_vec(),
        ),
        w("sweep", 20, 5, log_grid(1.0, 1e-3, 1024)),
        w("geometry", 400, 30, log_grid(1.0, 1e-3, 32)),
        w("large", 2048, 256, log_grid(1.0, 1e-1, 4)),
        Workload {
            model: ModelKind::ReluHidden,
            ..w("privileged", 10, 5, privileged.repeat(100))
        },
        Workload {
            model: ModelKind::Abs,
            ..w(
                "abs",
                100,
                40,
                crate::experiment::DEFAULT_DENSITIES.to_vec(),
            )
        },
    ]
}

impl Workload {
    /// The experiment of this workload with `steps` steps (one log point at the end).
    pub fn experiment(&self, steps: u32) -> Experiment {
        Settings {
            model: Some(self.model),
            features: Some(self.features),
            hidden: Some(self.hidden),
            density: Some(self.densities.clone()),
            importance_decay: Some(if self.features > 100 { 1.0 } else { 0.7 }),
            batch: Some(1024),
            steps: Some(steps),
            log_every: Some(steps),
            eval_samples: Some(1),
            ..Default::default()
        }
        .resolve()
        .expect("standard workloads are valid")
    }

    /// Flops of one training step of all instances (10·B·n·m per instance).
    pub fn flops_per_step(&self) -> f64 {
        10.0 * 1024.0 * (self.features * self.hidden * self.densities.len()) as f64
    }

    /// Random numbers of one step of all instances (2·B·n per instance: mask and value).
    pub fn randoms_per_step(&self) -> f64 {
        2.0 * 1024.0 * (self.features * self.densities.len()) as f64
    }
}

/// One row of the benchmark table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    pub workload: String,
    pub backend: String,
    pub device: String,
    pub steps: u32,
    pub repeats: usize,
    /// Median seconds per training step (all instances).
    pub seconds_per_step: f64,
    pub instance_steps_per_second: f64,
    pub samples_per_second: f64,
    pub gflops: f64,
    pub randoms_per_second: f64,
    pub peak_host_bytes: u64,
    pub device_bytes: u64,
    /// Speedup over the CPU trainer on the same workload (when measured in the same run).
    pub speedup_vs_cpu: Option<f64>,
    /// What timed the steps: "device timestamps" or "wall clock".
    #[serde(default)]
    pub timing: String,
}

/// Peak resident memory of this process (Linux: VmHWM), 0 where unknown.
pub fn peak_host_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Steps per timed repeat when none are given: enough for about `target_seconds`, judged from the
/// warm-up, between 1 and 2000.
pub fn calibrated_steps(warmup_seconds_per_step: f64, target_seconds: f64) -> u32 {
    (target_seconds / warmup_seconds_per_step.max(1e-9)).clamp(1.0, 2000.0) as u32
}

/// Times `trainer` on `workload`: `warmup` steps, then `repeats` runs of `steps` steps (calibrated
/// to about half a second each when `None`); median.
pub fn measure(
    workload: &Workload,
    backend: &str,
    trainer: &mut dyn Trainer,
    steps: Option<u32>,
    warmup: u32,
    repeats: usize,
) -> anyhow::Result<Measurement> {
    let start = Instant::now();
    trainer.advance(warmup)?;
    let steps = steps.unwrap_or_else(|| {
        calibrated_steps(start.elapsed().as_secs_f64() / f64::from(warmup), 0.5)
    });
    let mut times = Vec::with_capacity(repeats);
    let mut done = warmup;
    let timestamps = trainer.device_seconds().is_some();
    for _ in 0..repeats {
        let (start, device_start) = (Instant::now(), trainer.device_seconds());
        trainer.advance(done + steps)?;
        let seconds = match (device_start, trainer.device_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => start.elapsed().as_secs_f64(),
        };
        times.push(seconds / f64::from(steps));
        done += steps;
    }
    times.sort_by(f64::total_cmp);
    let per_step = times[times.len() / 2];
    Ok(Measurement {
        peak_host_bytes: peak_host_bytes(),
        device_bytes: trainer.device_bytes(),
        timing: if timestamps {
            "device timestamps"
        } else {
            "wall clock"
        }
        .into(),
        ..Measurement::of_time(
            workload,
            backend,
            &trainer.device(),
            steps,
            repeats,
            per_step,
        )
    })
}

impl Measurement {
    /// The row of `workload` timed at `per_step` seconds per step (memory not measured).
    pub fn of_time(
        workload: &Workload,
        backend: &str,
        device: &str,
        steps: u32,
        repeats: usize,
        per_step: f64,
    ) -> Measurement {
        let instances = workload.densities.len() as f64;
        Measurement {
            workload: workload.name.clone(),
            backend: backend.into(),
            device: device.into(),
            steps,
            repeats,
            seconds_per_step: per_step,
            instance_steps_per_second: instances / per_step,
            samples_per_second: instances * 1024.0 / per_step,
            gflops: workload.flops_per_step() / per_step / 1e9,
            randoms_per_second: workload.randoms_per_step() / per_step,
            peak_host_bytes: 0,
            device_bytes: 0,
            speedup_vs_cpu: None,
            timing: "wall clock".into(),
        }
    }
}

/// Fills in each row's speedup over the CPU trainer's row of the same workload.
pub fn add_speedups(rows: &mut [Measurement]) {
    let cpu: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.backend == "cpu")
        .map(|r| (r.workload.clone(), r.seconds_per_step))
        .collect();
    for row in rows.iter_mut() {
        row.speedup_vs_cpu = cpu
            .iter()
            .find(|(w, _)| *w == row.workload)
            .map(|(_, t)| t / row.seconds_per_step);
    }
}

/// The table as Markdown.
pub fn markdown_table(rows: &[Measurement]) -> String {
    let mut out = String::from(
        "| workload | backend / device | ms/step | timed by | instance-steps/s | samples/s | GFLOP/s | random numbers/s | peak host MiB | device MiB | vs CPU |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} / {} | {:.3} | {} | {:.3e} | {:.3e} | {:.2} | {:.3e} | {:.0} | {:.1} | {} |\n",
            r.workload,
            r.backend,
            r.device,
            r.seconds_per_step * 1e3,
            r.timing,
            r.instance_steps_per_second,
            r.samples_per_second,
            r.gflops,
            r.randoms_per_second,
            r.peak_host_bytes as f64 / 1048576.0,
            r.device_bytes as f64 / 1048576.0,
            r.speedup_vs_cpu.map_or("–".into(), |s| format!("{s:.2}×")),
        );
    }
    out
}

/// What `tms bench` times and how (its flags).
#[derive(clap::Args, Debug)]
pub struct BenchOptions {
    /// Which backends to time: auto = every available one.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Workloads to run (basic, sweep, geometry, large); default all.
    #[arg(long, value_delimiter = ',')]
    pub workload: Option<Vec<String>>,
    /// Steps per timed repeat (default: calibrated to about half a second).
    #[arg(long, value_name = "T")]
    pub steps: Option<u32>,
    /// Timed repeats; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,
    /// Also write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also time benches/pytorch_loop.py (CPU, and CUDA when torch sees a GPU) and print the ratios.
    #[arg(long)]
    pub compare_pytorch: bool,
}

/// The workloads `names` asks for (all when None); an unknown name is a usage error.
fn chosen_workloads(names: Option<&[String]>) -> Result<Vec<Workload>, UsageError> {
    let all = standard_workloads();
    let Some(names) = names else {
        return Ok(all);
    };
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|w| &w.name == name)
                .cloned()
                .ok_or_else(|| {
                    UsageError(format!(
                        "invalid --workload: {name} (one of basic, sweep, geometry, large, privileged, abs)"
                    ))
                })
        })
        .collect()
}

/// `tms bench`: times the chosen workloads on every device of the chosen backend, prints the table
/// (and the PyTorch ratios), and writes the JSON report if asked.
pub fn run(options: &BenchOptions) -> anyhow::Result<()> {
    let workloads = chosen_workloads(options.workload.as_deref())?;
    let repeats = options.repeats as usize;
    let cuda = options.compare_pytorch
        && std::process::Command::new("python3")
            .args([
                "-c",
                "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)",
            ])
            .status()
            .is_ok_and(|s| s.success());
    let mut rows = vec![];
    for workload in &workloads {
        for (name, device) in Device::every(options.backend) {
            let exp = workload.experiment(MAX_STEPS);
            let placement = match device.check(&exp) {
                Ok(placement) => placement,
                Err(why) => {
                    eprintln!("skipping {} on {name}: {why}", workload.name);
                    continue;
                }
            };
            let (mut trainer, _) = placement.trainer(&exp, TrainState::initial(&exp))?;
            eprintln!("timing {} on {name} ({})", workload.name, trainer.device());
            rows.push(measure(
                workload,
                &name,
                trainer.as_mut(),
                options.steps,
                3,
                repeats,
            )?);
        }
        // benches/pytorch_loop.py is the notebook's tied output-ReLU model only.
        if options.compare_pytorch && workload.model == ModelKind::Relu {
            for device in if cuda {
                vec!["cpu", "cuda"]
            } else {
                vec!["cpu"]
            } {
                rows.extend(pytorch_row(workload, device, repeats));
            }
        }
    }
    add_speedups(&mut rows);
    println!("{}", markdown_table(&rows));
    println!("Work counted per instance-step: 10·B·n·m flops and 2·B·n random numbers (B = 1024); times are medians of {repeats} repeats.");
    if options.compare_pytorch {
        println!("\ntms vs the PyTorch loop (PyTorch time / tms time):");
        for tms_row in rows.iter().filter(|r| !r.backend.starts_with("pytorch")) {
            for torch_row in rows
                .iter()
                .filter(|r| r.backend.starts_with("pytorch") && r.workload == tms_row.workload)
            {
                println!(
                    "  {:<9} tms {:<4} vs {:<13}: {:.2}×",
                    tms_row.workload,
                    tms_row.backend,
                    torch_row.backend,
                    torch_row.seconds_per_step / tms_row.seconds_per_step
                );
            }
        }
    }
    if let Some(path) = &options.json {
        let report = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "tms_version": env!("CARGO_PKG_VERSION"),
            "commit": std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
            "host": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())),
            "threads": rayon::current_num_threads(),
            "rows": rows,
        });
        write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// Runs benches/pytorch_loop.py for one workload and device; None (with a message) if it cannot run.
fn pytorch_row(workload: &Workload, device: &str, repeats: usize) -> Option<Measurement> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_loop.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--workload",
            &workload.name,
            "--device",
            device,
            "--repeats",
            &repeats.to_string(),
        ])
        .output();
    let parsed = output
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(v) = parsed else {
        eprintln!("pytorch ({device}) could not run {}: is torch installed? (pip install -r benches/requirements.txt)", workload.name);
        return None;
    };
    let per_step = v["seconds_per_step"].as_f64()?;
    let steps = v["steps"].as_u64().unwrap_or(0) as u32;
    let device_name = v["device"].as_str().unwrap_or(device);
    Some(Measurement::of_time(
        workload,
        &format!("pytorch-{device}"),
        device_name,
        steps,
        repeats,
        per_step,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuTrainer;

    #[test]
    fn workloads_match_the_issue() {
        let w = standard_workloads();
        assert_eq!(
            w.iter()
                .map(|w| (w.name.as_str(), w.features, w.hidden, w.densities.len()))
                .collect::<Vec<_>>(),
            [
                ("basic", 20, 5, 7),
                ("sweep", 20, 5, 1024),
                ("geometry", 400, 30, 32),
                ("large", 2048, 256, 4),
                ("privileged", 10, 5, 700),
                ("abs", 100, 40, 7)
            ]
        );
        assert_eq!(w[4].model, ModelKind::ReluHidden);
        assert_eq!(w[5].model, ModelKind::Abs);
        let d = &w[1].densities;
        assert!((d[0] - 1.0).abs() < 1e-12 && (d[1023] - 1e-3).abs() < 1e-12);
        assert_eq!(w[0].flops_per_step(), 10.0 * 1024.0 * 100.0 * 7.0);
    }

    #[test]
    fn measurement_counts_work_consistently() {
        let workload = &standard_workloads()[0];
        let exp = workload.experiment(8);
        assert_eq!(calibrated_steps(0.01, 0.5), 50);
        let mut trainer = CpuTrainer::new(&exp, TrainState::initial(&exp));
        let mut rows = vec![measure(workload, "cpu", &mut trainer, Some(2), 2, 3).unwrap()];
        add_speedups(&mut rows);
        let r = &rows[0];
        assert!(r.seconds_per_step > 0.0);
        assert!((r.instance_steps_per_second * r.seconds_per_step - 7.0).abs() < 1e-9);
        assert!((r.gflops * 1e9 * r.seconds_per_step - workload.flops_per_step()).abs() < 1.0);
        assert_eq!(r.speedup_vs_cpu, Some(1.0));
        assert!(markdown_table(&rows).contains("| basic | cpu / cpu"));
    }
}
