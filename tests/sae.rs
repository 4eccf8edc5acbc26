//! `tms sae` through the binary: on the n = 5, m = 2 model at 1 − S = 0.025 (ARENA's setting) an L1
//! SAE with resampling recovers every true feature; runs are deterministic; bad input is refused.

mod common;

use common::tms;
use std::path::Path;

/// The toy model SAEs are trained on: n = 5, m = 2, equal importance, 1 − S = 0.025 (a pentagon).
fn pentagon(dir: &Path) {
    let out = tms(&[
        "train",
        "--backend",
        "cpu",
        "--features",
        "5",
        "--hidden",
        "2",
        "--density",
        "0.025",
        "--importance-decay",
        "1",
        "--optimizer",
        "adam",
        "--weight-decay",
        "0",
        "--steps",
        "5000",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sae_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("sae.json")).unwrap()).unwrap()
}

#[test]
fn an_l1_sae_with_resampling_recovers_every_true_feature() {
    let root = tempfile::tempdir().unwrap();
    let toy = root.path().join("toy");
    pentagon(&toy);
    let run = |name: &str| {
        let out_dir = root.path().join(name);
        let out = tms(&[
            "sae",
            toy.to_str().unwrap(),
            "--kind",
            "l1",
            "--latents",
            "5",
            "--l1",
            "0.2",
            "--steps",
            "20000",
            "--resample-every",
            "2500",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_dir
    };
    let first = run("a");
    let file = sae_json(&first);
    let sae = &file["saes"][0];
    let best: Vec<f64> = sae["scores"]["best_match"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_f64()
                .expect("every feature of the pentagon is represented")
        })
        .collect();
    assert_eq!(best.len(), 5);
    assert!(
        best.iter().all(|&c| c >= 0.95),
        "best-match cosines {best:?}"
    );
    assert!(sae["scores"]["mmcs"].as_f64().unwrap() >= 0.95);
    assert_eq!(sae["scores"]["dead_latents"], 0);
    // Decoder rows are unit vectors.
    for row in sae["w_dec"].as_array().unwrap() {
        let norm: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-4, "decoder row norm² {norm}");
    }
    // The same settings give the same file, byte for byte.
    let second = run("b");
    assert_eq!(
        std::fs::read(first.join("sae.json")).unwrap(),
        std::fs::read(second.join("sae.json")).unwrap()
    );
}

#[test]
fn many_saes_train_at_once_and_bad_input_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let toy = root.path().join("toy");
    pentagon(&toy);
    let out_dir = root.path().join("grid");
    let toy_arg = toy.to_str().unwrap();
    let out = tms(&[
        "sae",
        toy_arg,
        "--kind",
        "l1,topk,jumprelu",
        "--latents",
        "5,10",
        "--restarts",
        "2",
        "--steps",
        "300",
        "--resample-every",
        "100",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = sae_json(&out_dir);
    let saes = file["saes"].as_array().unwrap();
    assert_eq!(saes.len(), 3 * 2 * 2);
    // Resampling revives some latents, never all of them at once.
    let resampled: Vec<u64> = saes
        .iter()
        .map(|s| s["resampled"].as_u64().unwrap())
        .collect();
    assert!(resampled.iter().any(|&r| r > 0), "{resampled:?}");
    let most = saes.iter().map(|s| 2 * s["latents"].as_u64().unwrap());
    assert!(
        resampled.iter().zip(most).all(|(&r, m)| r < m),
        "{resampled:?}"
    );
    for sae in saes {
        let latents = sae["latents"].as_u64().unwrap() as usize;
        assert_eq!(sae["w_dec"].as_array().unwrap().len(), latents);
        assert_eq!(sae["kind"] == "jumprelu", sae.get("threshold").is_some());
    }
    let bad: &[(&[&str], &str)] = &[
        (&["--latents", "0"], "latents"),
        (&["--kind", "topk", "--k", "9", "--latents", "5"], "k"),
        (&["--l1=-1"], "l1"),
        (&["--steps", "0"], "steps"),
        (&["--instances", "3"], "instances"),
    ];
    for (i, (args, needle)) in bad.iter().enumerate() {
        let dir = root.path().join(format!("bad{i}"));
        let full = [&["sae", toy_arg, "--out", dir.to_str().unwrap()][..], args].concat();
        let out = tms(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!dir.exists(), "{args:?} wrote its directory");
    }
    let not_a_run = tms(&[
        "sae",
        root.path().to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(not_a_run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_a_run.stderr).contains("config.json"));
}
