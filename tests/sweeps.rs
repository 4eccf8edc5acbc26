//! Sweeps split into shards (`--shard K/N`, or a Slurm array's variables) and joined with `tms merge`,
//! or spread over several devices (`--devices`), give exactly the files of the sweep trained in one
//! piece; a GPU backend with no adapter is one clear line.

mod common;

use common::{tms_ok_with_env as tms_ok, tms_with_env as tms};
use std::path::Path;

const SWEEP: &[&str] = &[
    "train",
    "--backend",
    "cpu",
    "--steps",
    "60",
    "--batch",
    "128",
    "--density",
    "1,0.5,0.2,0.1,0.05,0.02,0.01",
    "--restarts",
    "2",
];

fn train(out: &Path, extra: &[&str], env: &[(&str, &str)]) {
    let mut args = SWEEP.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    tms_ok(&args, env);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn merged_shards_equal_the_sweep_in_one_piece() {
    let root = tempfile::tempdir().unwrap();
    let [whole, a, b, c, merged] = ["whole", "a", "b", "c", "merged"].map(|d| root.path().join(d));
    train(&whole, &[], &[]);
    train(&a, &["--shard", "0/3"], &[]);
    // Shard 1 as a Slurm array task would run it (ids 5..7 of an array starting at 5).
    train(
        &b,
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
    );
    train(&c, &["--shard", "2/3"], &[]);
    assert_eq!(
        json(&b.join("config.json"))["experiment"]["shard"]["index"],
        1
    );

    // In any order.
    tms_ok(
        &[
            "merge",
            c.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
        ],
        &[],
    );
    for file in ["weights.safetensors", "results.json", "metrics.json"] {
        assert_eq!(
            std::fs::read(whole.join(file)).unwrap(),
            std::fs::read(merged.join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert_eq!(
        json(&whole.join("config.json"))["experiment"],
        json(&merged.join("config.json"))["experiment"]
    );
}

#[test]
fn merge_refuses_missing_repeated_and_foreign_shards() {
    let root = tempfile::tempdir().unwrap();
    let [a, b, other, old, out] = ["a", "b", "other", "old", "out"].map(|d| root.path().join(d));
    train(&a, &["--shard", "0/3"], &[]);
    train(&b, &["--shard", "1/3"], &[]);
    train(&other, &["--shard", "2/3", "--seed", "9"], &[]);
    // The last shard as a tms before the presence-byte stream wrote it: config.json without
    // data_stream (stream 1), trained on other draws.
    train(&old, &["--shard", "2/3"], &[]);
    let mut config = json(&old.join("config.json"));
    config.as_object_mut().unwrap().remove("data_stream");
    std::fs::write(old.join("config.json"), config.to_string()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: [(Vec<String>, &str); 4] = [
        (vec![s(&a), s(&b)], "shard 2 of 3 is missing"),
        (vec![s(&a), s(&a), s(&b)], "given twice"),
        (vec![s(&a), s(&b), s(&other)], "different sweep"),
        (vec![s(&a), s(&b), s(&old)], "data stream differ"),
    ];
    for (dirs, needle) in cases {
        let mut args = vec!["merge".to_string()];
        args.extend(dirs);
        args.extend(["--out".into(), s(&out)]);
        let r = tms(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "expected '{needle}': {stderr}");
        assert!(!out.exists(), "nothing may be written when merging fails");
    }
}

#[test]
fn several_devices_give_the_files_of_one() {
    let root = tempfile::tempdir().unwrap();
    let [one, two] = ["one", "two"].map(|d| root.path().join(d));
    train(&one, &[], &[]);
    // Two CPU workers stand in for two GPUs: the split and the gathering are the same code.
    let mut args = SWEEP.to_vec();
    args.retain(|a| *a != "--backend" && *a != "cpu");
    args.extend(["--devices", "cpu,cpu", "--out", two.to_str().unwrap()]);
    tms_ok(&args, &[]);
    for file in ["weights.safetensors", "results.json", "metrics.json"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(two.join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert_eq!(json(&two.join("config.json"))["backend"], "devices");
}

#[test]
fn gpu_backend_without_an_adapter_is_one_clear_line() {
    // No adapter of this backend exists on a Linux machine.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let out = tms(
        &[
            "train",
            "--backend",
            "gpu",
            "--steps",
            "5",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[("WGPU_BACKEND", "dx12")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no GPU adapter"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert!(!dir.exists(), "refused before writing anything");
}
