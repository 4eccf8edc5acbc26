//! End-to-end tests of `tms train` on the CPU: result files, the linear model's known solution,
//! determinism, and one-line errors for bad settings.

mod common;

use common::{assert_run_files, assert_top_m, tms, tms_ok, train_on_cpu};
use std::path::Path;
use tms::analysis::InstanceMetrics;
use tms::experiment::{ModelKind, Settings};
use tms::store::results::{read_config, read_results, read_weights};

#[test]
fn linear_model_learns_the_top_m_features_at_every_density_and_exports_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let densities = "1,0.3,0.03,0.003";
    tms_ok(&[
        "train",
        "--backend",
        "cpu",
        "--model",
        "linear",
        "--steps",
        "2000",
        "--lr",
        "0.01",
        "--density",
        densities,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_run_files(&out, 4);

    let config = read_config(&out).unwrap();
    assert_eq!(config.experiment.model, ModelKind::Linear);
    assert_eq!(config.experiment.steps, 2000);
    assert_eq!(config.backend, "cpu");

    let weights = read_weights(&out).unwrap();
    let (w, b, shape) = (weights.w, weights.b, weights.shape);
    assert_eq!(shape, vec![4, 5, 20]);
    assert_eq!(b.len(), 4 * 20);
    let results = read_results(&out).unwrap();
    for (i, inst) in results.instances.iter().enumerate() {
        let w_i = &w[i * 100..(i + 1) * 100];
        let from_json: Vec<f32> = inst.w.iter().flatten().copied().collect();
        assert_eq!(
            from_json, w_i,
            "results.json and weights.safetensors disagree"
        );
        assert_top_m(&InstanceMetrics::of(inst), 5, "linear");
        assert!(inst.eval_loss.is_some_and(|l| l > 0.0) && !inst.diverged);
        assert_eq!(inst.loss_curve.first().map(|p| p.0), Some(0));
        assert_eq!(inst.loss_curve.last().map(|p| p.0), Some(1999));
        let (first, last) = (inst.loss_curve[0].1.unwrap(), inst.final_loss.unwrap());
        assert!(last < first, "loss did not fall: {first} → {last}");
    }
}

#[test]
fn relu_model_at_density_one_learns_the_top_m_features() {
    let exp = Settings {
        model: Some(ModelKind::Relu),
        density: Some(vec![1.0]),
        steps: Some(2000),
        lr: Some(0.01),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let results = train_on_cpu(&exp);
    assert_top_m(&InstanceMetrics::of(&results.instances[0]), 5, "relu");
}

#[test]
fn same_seed_gives_identical_weights_and_other_seeds_differ() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        tms_ok(&[
            "train",
            "--backend",
            "cpu",
            "--steps",
            "50",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        std::fs::read(out.join("weights.safetensors")).unwrap()
    };
    assert_eq!(run("a", "3"), run("b", "3"));
    assert_ne!(run("a2", "3"), run("c", "4"));
}

#[test]
fn bad_settings_get_one_line_exit_status_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "features = 20\nhidden = [\n").unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "featurs = 20\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--features", "0"], "features"),
        (&["--hidden", "0"], "hidden"),
        (&["--density", "0"], "density"),
        (&["--density", "1.5"], "density"),
        (&["--density", "NaN"], "density"),
        (&["--lr", "-0.1"], "lr"),
        (&["--lr", "inf"], "lr"),
        (&["--batch", "0"], "batch"),
        (&["--steps", "0"], "steps"),
        (&["--importance-decay", "0"], "importance-decay"),
        (&["--weight-decay", "-1"], "weight-decay"),
        (&["--model", "cubic"], "cubic"),
        (&["--optimizer", "sgd"], "sgd"),
        (&["--schedule", "step"], "step"),
        (&["--backend", "tpu"], "tpu"),
        (&["--checkpoint-every", "0"], "checkpoint-every"),
        (&["--shard", "3/3"], "shard"),
        (&["--config", config.to_str().unwrap()], "line 2"),
        (&["--config", unknown.to_str().unwrap()], "featurs"),
        (
            &[
                "--features",
                "4",
                "--feature-sets",
                "correlated:3,correlated:2",
            ],
            "feature-sets",
        ),
        (&["--feature-sets", "together:2"], "feature-sets"),
        (&["--feature-sets", "correlated:1"], "feature-sets"),
        (&["--values", "gamma"], "gamma"),
        (&["--exactly-k", "21"], "exactly-k"),
        (&["--exactly-k", "2", "--density", "0.1"], "exactly-k"),
        (
            &["--feature-sets", "anticorrelated:2", "--exactly-k", "2"],
            "exactly-k",
        ),
        // (1 − S) · size > 1 at the first of the seven default densities.
        (
            &[
                "--feature-sets",
                "anticorrelated:3",
                "--anticorrelated-mode",
                "marginal",
            ],
            "anticorrelated-mode",
        ),
        (
            &[
                "--feature-sets",
                "anticorrelated:3",
                "--anticorrelated-mode",
                "marginal",
                "--density",
                "0.3,0.34",
            ],
            "(1 − S) · size ≤ 1",
        ),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let mut full = vec!["train", "--out", out.to_str().unwrap()];
        full.extend_from_slice(args);
        let r = tms(&full);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: error does not name {needle}: {stderr}"
        );
        assert!(
            stderr.starts_with("error: "),
            "{args:?}: no error line first: {stderr}"
        );
        assert!(
            !Path::new(&out).exists(),
            "{args:?}: wrote {}",
            out.display()
        );
    }
}

#[test]
fn an_existing_run_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    assert!(
        tms(&["train", "--backend", "cpu", "--steps", "5", "--out", out])
            .status
            .success()
    );
    let again = tms(&["train", "--backend", "cpu", "--steps", "5", "--out", out]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(tms(&[
        "train",
        "--backend",
        "cpu",
        "--steps",
        "5",
        "--out",
        out,
        "--force"
    ])
    .status
    .success());
}

/// The untied abs model exports W₂ as `W2` [instances, n, m] beside W (= W₁) and b, in
/// weights.safetensors and results.json alike; the privileged-basis model trains too; the GPU
/// trains both beyond the register kernel's size (the tiled kernels), W2 exported alike.
#[test]
fn abs_and_relu_hidden_models_train_and_export_w2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("abs");
    let sized = |model: &str, backend: &str, out: &Path, hidden: &str, steps: &str| {
        tms(&[
            "train",
            "--backend",
            backend,
            "--model",
            model,
            "--features",
            "6",
            "--hidden",
            hidden,
            "--density",
            "1,0.2",
            "--restarts",
            "2",
            "--steps",
            steps,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let args = |model: &str, backend: &str, out: &Path| sized(model, backend, out, "4", "300");
    let result = args("abs", "cpu", &out);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let weights = read_weights(&out).unwrap();
    let w2 = weights.w2.expect("W2 in weights.safetensors");
    assert_eq!((weights.shape, w2.len()), (vec![4, 4, 6], 4 * 6 * 4));
    let results = read_results(&out).unwrap();
    assert_eq!(results.model, ModelKind::Abs);
    for (i, inst) in results.instances.iter().enumerate() {
        let rows = inst.w2.as_ref().expect("W2 in results.json");
        let from_json: Vec<f32> = rows.iter().flatten().copied().collect();
        assert_eq!(from_json, w2[i * 24..(i + 1) * 24]);
        assert!(inst.eval_loss.is_some_and(|l| l > 0.0) && !inst.diverged);
    }
    // Two settings of two restarts: each summarised with its best restart and spread.
    assert_eq!(results.settings.len(), 2);
    for s in &results.settings {
        assert_eq!(s.restarts, 2);
        let best = s.best_instance.expect("a best restart");
        assert_eq!(results.instances[best].eval_loss, s.eval_loss_min);
        assert!(s.eval_loss_min <= s.eval_loss_median && s.eval_loss_median <= s.eval_loss_max);
    }

    let hidden = dir.path().join("relu-hidden");
    assert!(args("relu-hidden", "cpu", &hidden).status.success());
    let results = read_results(&hidden).unwrap();
    assert_eq!(results.model, ModelKind::ReluHidden);
    assert!(results.instances.iter().all(|inst| inst.w2.is_none()));
    assert!(read_weights(&hidden).unwrap().w2.is_none());

    // 6 × 60 + 6 parameters (twice the weights for abs): past the register kernel's 256.
    if !common::have_gpu() {
        return;
    }
    for model in ["abs", "relu-hidden"] {
        let out = dir.path().join(format!("gpu-{model}"));
        let result = sized(model, "gpu", &out, "60", "20");
        assert!(
            result.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let weights = read_weights(&out).unwrap();
        assert_eq!(weights.w2.is_some(), model == "abs", "{model}: W2");
    }
}
