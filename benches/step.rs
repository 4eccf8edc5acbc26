//! Regression benchmarks of one training step per backend (`cargo bench`). The user-facing
//! benchmark with throughput figures and the PyTorch comparison is `tms bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use tms::bench::standard_workloads;
use tms::cpu::CpuTrainer;
use tms::experiment::MAX_STEPS;
use tms::trainer::{TrainState, Trainer};

fn cpu_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_step");
    group.sample_size(20);
    for workload in standard_workloads().iter().filter(|w| w.name != "large") {
        let exp = workload.experiment(MAX_STEPS);
        let mut trainer = CpuTrainer::new(&exp, TrainState::initial(&exp));
        let mut done = 0;
        group.bench_function(&workload.name, |b| {
            b.iter(|| {
                done += 1;
                trainer.advance(done).expect("cpu steps cannot fail")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cpu_step);
criterion_main!(benches);
