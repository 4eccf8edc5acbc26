//! Several trainers working on one sweep at once (`tms train --devices ...`): each worker owns a
//! contiguous part of the instances (keeping their global indices, so their random streams and
//! results are those of the sweep in one piece), all advance concurrently in their own threads, and
//! their loss records and states are gathered back in instance order.

use crate::experiment::{Experiment, Shard};
use crate::trainer::{LossRecord, TrainState, Trainer};

/// A trainer that can move to a worker thread.
pub type SendTrainer = Box<dyn Trainer + Send>;

/// Builds one worker's trainer for its part of the experiment.
pub type WorkerFactory<'a> =
    Box<dyn FnOnce(&Experiment, TrainState) -> anyhow::Result<SendTrainer> + 'a>;

/// The workers and the instance range each owns.
pub struct MultiTrainer {
    parts: Vec<(std::ops::Range<usize>, SendTrainer)>,
}

impl MultiTrainer {
    /// Splits the instances of `exp` evenly over the workers (as many as factories, at most one per
    /// instance) and builds each worker's trainer for its part.
    pub fn new(
        exp: &Experiment,
        state: TrainState,
        factories: Vec<WorkerFactory>,
    ) -> anyhow::Result<MultiTrainer> {
        let ranges = parts(factories.len(), exp.instances.len());
        anyhow::ensure!(!ranges.is_empty(), "no device to train on");
        let parts = factories
            .into_iter()
            .zip(ranges)
            .map(|(factory, range)| {
                let trainer = factory(&exp.subset(range.clone()), state.slice(exp, range.clone()))?;
                Ok((range, trainer))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(MultiTrainer { parts })
    }
}

/// The instances each of `workers` workers owns of `instances`: even contiguous parts, at most one
/// worker per instance (the workers past the last part get none).
pub fn parts(workers: usize, instances: usize) -> Vec<std::ops::Range<usize>> {
    let count = workers.min(instances) as u32;
    (0..count)
        .map(|k| Shard::range(k, count, instances))
        .collect()
}

impl Trainer for MultiTrainer {
    fn device(&self) -> String {
        let names: Vec<String> = self
            .parts
            .iter()
            .map(|(range, t)| format!("{} [instances {}..{}]", t.device(), range.start, range.end))
            .collect();
        names.join(" + ")
    }

    fn advance(&mut self, until: u32) -> anyhow::Result<Vec<LossRecord>> {
        let per_part: Vec<anyhow::Result<Vec<LossRecord>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .parts
                .iter_mut()
                .map(|(_, trainer)| scope.spawn(move || trainer.advance(until)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
                })
                .collect()
        });
        let per_part = per_part.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        // Every worker logs the same steps; join their losses step by step, in instance order.
        let first = per_part.first().cloned().unwrap_or_default();
        Ok(first
            .iter()
            .enumerate()
            .map(|(k, record)| LossRecord {
                step: record.step,
                losses: per_part
                    .iter()
                    .flat_map(|records| records[k].losses.iter().copied())
                    .collect(),
            })
            .collect())
    }

    fn state(&mut self) -> anyhow::Result<TrainState> {
        let parts = self
            .parts
            .iter_mut()
            .map(|(_, t)| t.state())
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(TrainState::concat(&parts))
    }

    fn device_bytes(&self) -> u64 {
        self.parts.iter().map(|(_, t)| t.device_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuTrainer;
    use crate::experiment::Settings;

    #[test]
    fn workers_together_equal_one_trainer() {
        let exp = Settings {
            density: Some(vec![1.0, 0.3, 0.1, 0.03, 0.01]),
            steps: Some(40),
            batch: Some(64),
            log_every: Some(10),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let mut one = CpuTrainer::new(&exp, TrainState::initial(&exp));
        let cpu = || -> WorkerFactory {
            Box::new(|e: &Experiment, s| Ok(Box::new(CpuTrainer::new(e, s)) as SendTrainer))
        };
        let mut many =
            MultiTrainer::new(&exp, TrainState::initial(&exp), vec![cpu(), cpu(), cpu()]).unwrap();
        assert_eq!(many.advance(25).unwrap(), one.advance(25).unwrap());
        assert_eq!(many.advance(40).unwrap(), one.advance(40).unwrap());
        assert_eq!(many.state().unwrap(), one.state().unwrap());
        assert_eq!(many.device().matches(" + ").count(), 2);
    }
}
