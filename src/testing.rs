//! Test support shared by the unit tests of several modules and by the integration tests, in the
//! spirit of candle's `test_utils`: small hand-made fixtures whose metrics are known by construction.

use crate::experiment::ModelKind;
use crate::store::results::{InstanceResult, Results};

/// Two-instance results for tests: density 1 with the first two of four features orthogonal, and
/// density 0.01 with two antipodal pairs (linear: orthogonal again) and negative biases.
pub fn toy_results(model: ModelKind) -> Results {
    let instance = |index: usize, density: f64, w: Vec<Vec<f32>>, b: Vec<f32>| InstanceResult {
        index,
        density,
        importance: vec![1.0, 0.7, 0.49, 0.343],
        w,
        w2: None,
        b,
        final_loss: Some(0.01),
        eval_loss: Some(0.01),
        loss_curve: vec![(0, Some(0.1)), (5, Some(0.02)), (10, Some(0.01))],
        setting: index,
        restart: 0,
        best_of_setting: true,
        diverged: false,
    };
    let orthogonal = vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]];
    let sparse = match model {
        ModelKind::Linear => instance(1, 0.01, orthogonal.clone(), vec![0.0, 0.0, 0.005, 0.005]),
        _ => instance(
            1,
            0.01,
            vec![vec![1.0, -1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0, -1.0]],
            vec![-0.1; 4],
        ),
    };
    Results {
        model,
        features: 4,
        hidden: 2,
        steps: 11,
        settings: vec![],
        instances: vec![
            instance(0, 1.0, orthogonal, vec![0.0, 0.0, 0.5, 0.5]),
            sparse,
        ],
    }
}

/// An m = 2 instance of [`toy_results`] whose columns W_i are the given points of the plane, with
/// zero biases and equal importances (the fixtures of the reproductions that read geometry in 2-D).
pub fn instance_in_plane(columns: &[(f64, f64)]) -> InstanceResult {
    let mut inst = toy_results(ModelKind::Relu).instances[0].clone();
    inst.w = vec![
        columns.iter().map(|c| c.0 as f32).collect(),
        columns.iter().map(|c| c.1 as f32).collect(),
    ];
    inst.b = vec![0.0; columns.len()];
    inst.importance = vec![1.0; columns.len()];
    inst
}
