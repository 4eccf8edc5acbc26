//! Helpers shared by the test files that train short runs through the library.

use tms::config::Experiment;
use tms::cpu::CpuTrainer;
use tms::export::Results;
use tms::trainer::{evaluate, TrainState, Trainer};

/// Trains `exp` on the CPU from its initial state and returns its results (evaluation included).
pub fn train_on_cpu(exp: &Experiment) -> Results {
    let mut trainer = CpuTrainer::new(exp, TrainState::initial(exp));
    let records = trainer
        .advance(exp.steps)
        .expect("the CPU trainer does not fail");
    let state = trainer.state().expect("the CPU trainer does not fail");
    Results::collect(exp, &state, &records, &evaluate(exp, &state), &[])
}
