//! `tms bench`: standard workloads timed on every available backend, reported as a table and JSON.
//!
//! Each measurement builds a trainer for the workload, warms it up, then times `repeats` runs of
//! `steps` training steps with a wall clock around calls that return only once the work is done
//! (every trainer's `advance` waits for its losses), and reports the median. Work is counted as the
//! paper's 10·B·n·m flops and 2·B·n random numbers (mask and value) per instance-step.

use crate::config::{Experiment, ModelKind, Settings};
use crate::trainer::Trainer;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A standard benchmark workload (ReLU model, batch 1024).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub features: usize,
    pub hidden: usize,
    pub densities: Vec<f64>,
}

/// `count` densities log-spaced from 1 down to `lowest`.
pub fn log_spaced_densities(count: usize, lowest: f64) -> Vec<f64> {
    if count == 1 {
        return vec![1.0];
    }
    (0..count)
        .map(|i| lowest.powf(i as f64 / (count - 1) as f64))
        .collect()
}

/// The workloads of the benchmark: `basic`, `sweep`, `geometry`, `large`.
pub fn standard_workloads() -> Vec<Workload> {
    let w = |name: &str, features, hidden, densities| Workload {
        name: name.into(),
        features,
        hidden,
        densities,
    };
    vec![
        w("basic", 20, 5, crate::config::DEFAULT_DENSITIES.to_vec()),
        w("sweep", 20, 5, log_spaced_densities(1024, 1e-3)),
        w("geometry", 400, 30, log_spaced_densities(32, 1e-3)),
        w("large", 2048, 256, log_spaced_densities(4, 1e-1)),
    ]
}

impl Workload {
    /// The experiment of this workload with `steps` steps (one log point at the end).
    pub fn experiment(&self, steps: u32) -> Experiment {
        Settings {
            model: Some(ModelKind::Relu),
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
    for _ in 0..repeats {
        let start = Instant::now();
        trainer.advance(done + steps)?;
        times.push(start.elapsed().as_secs_f64() / f64::from(steps));
        done += steps;
    }
    times.sort_by(f64::total_cmp);
    let per_step = times[times.len() / 2];
    Ok(Measurement {
        peak_host_bytes: peak_host_bytes(),
        device_bytes: trainer.device_bytes(),
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
        "| workload | backend / device | ms/step | instance-steps/s | samples/s | GFLOP/s | random numbers/s | peak host MiB | device MiB | vs CPU |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} / {} | {:.3} | {:.3e} | {:.3e} | {:.2} | {:.3e} | {:.0} | {:.1} | {} |\n",
            r.workload,
            r.backend,
            r.device,
            r.seconds_per_step * 1e3,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuTrainer;
    use crate::trainer::TrainState;

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
                ("large", 2048, 256, 4)
            ]
        );
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
