//! The paper's basic-results claims, checked on short CPU runs of the seed experiment
//! (n = 20, m = 5, I_i = 0.7^i):
//! - the linear model represents exactly the 5 most important features, orthogonally, at every density;
//! - the ReLU output model does the same at density 1;
//! - at density ≤ 0.01 the ReLU output model represents clearly more than 5 features, most of them in
//!   superposition, with negative biases.
//!
//! To keep the file fast (a few seconds in the dev profile), the runs take 2,000 steps at lr 0.01
//! instead of the notebook's 10,000 at lr 0.001; with these settings the claims hold with wide margins
//! on every seed tried (0–7). At lr 0.001 the linear model at density 1 needs more than 6,000 steps to
//! settle which of features 4 and 5 gets the last dimension.

#[macro_use]
mod common;

use common::assert_top_m;
use tms::analysis::{InstanceMetrics, NEGATIVE_BIAS};
use tms::experiment::{Experiment, ModelKind, Settings};

const HIDDEN: usize = 5;

/// Trains `model` at `densities` with the short settings and returns the metrics of each instance.
fn train(model: ModelKind, densities: &[f64], seed: u64) -> Vec<InstanceMetrics> {
    let settings = Settings {
        model: Some(model),
        density: Some(densities.to_vec()),
        steps: Some(2_000),
        lr: Some(0.01),
        eval_samples: Some(1024),
        seed: Some(seed),
        ..Default::default()
    };
    let exp: Experiment = settings.resolve().expect("valid settings");
    assert_eq!((exp.features, exp.hidden), (20, HIDDEN));
    let results = common::train_on_cpu(&exp);
    results.instances.iter().map(InstanceMetrics::of).collect()
}

// The same claim on every backend, at density 1 with a smaller batch so that it stays a few seconds
// on lavapipe.
on_every_backend!(linear_model_learns_the_top_five_features, |device| {
    let exp = Settings {
        model: Some(ModelKind::Linear),
        density: Some(vec![1.0]),
        steps: Some(1_500),
        batch: Some(256),
        lr: Some(0.01),
        eval_samples: Some(1024),
        ..Default::default()
    }
    .resolve()
    .expect("valid settings");
    let results = common::train_on(device, &exp);
    let inst = &results.instances[0];
    assert_top_m(
        &InstanceMetrics::of(inst),
        HIDDEN,
        &format!("linear on {device:?}"),
    );
    let (first, last) = (inst.loss_curve[0].1.unwrap(), inst.final_loss.unwrap());
    assert!(last < 0.5 * first, "loss {first} → {last}");
});

#[test]
fn linear_model_learns_the_top_five_features_at_every_density() {
    for metrics in train(ModelKind::Linear, &tms::experiment::DEFAULT_DENSITIES, 0) {
        assert_top_m(&metrics, HIDDEN, "linear");
    }
}

#[test]
fn relu_model_learns_the_top_five_at_density_one_and_many_in_superposition_when_sparse() {
    let metrics = train(ModelKind::Relu, &[1.0, 0.01, 0.003, 0.001], 0);
    assert_top_m(&metrics[0], HIDDEN, "relu");
    for m in &metrics[1..] {
        let shared = m.shared();
        let negative = shared
            .iter()
            .filter(|&&i| f64::from(m.biases[i]) < -NEGATIVE_BIAS)
            .count();
        let context = format!(
            "relu at density {}: norms {:?}, biases {:?}",
            m.density, m.norms, m.biases
        );
        assert!(
            m.features_represented >= 9,
            "only {} features represented; {context}",
            m.features_represented
        );
        assert!(
            4 * shared.len() >= 3 * m.features_represented,
            "only {} of {} in superposition; {context}",
            shared.len(),
            m.features_represented
        );
        assert!(
            2 * negative >= shared.len(),
            "only {negative} of {} features in superposition have negative biases; {context}",
            shared.len()
        );
        assert!(
            m.dimensions_per_feature < 0.5,
            "{} dimensions per feature; {context}",
            m.dimensions_per_feature
        );
    }
}
