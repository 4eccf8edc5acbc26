//! End-to-end tests of `tms reproduce basic` and `tms plot` through the binary, on a very short run:
//! the run directories with metrics.json, the six figure files, summary.md, and redrawing.

mod common;

use common::{assert_run_files, tms, tms_ok};
use std::path::Path;

const FIGURES: [&str; 6] = [
    "weights.svg",
    "weights.png",
    "feature-bars.svg",
    "feature-bars.png",
    "loss.svg",
    "loss.png",
];

#[test]
fn reproduce_basic_writes_runs_figures_and_summary_and_plot_redraws_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("basic");
    let out_arg = out.to_str().unwrap();
    tms_ok(&[
        "reproduce",
        "basic",
        "--out",
        out_arg,
        "--steps",
        "30",
        "--backend",
        "cpu",
    ]);
    for kind in ["linear", "relu"] {
        assert_run_files(&out.join(kind), 7);
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("## linear model") && summary.contains("## ReLU output model"),
        "{summary}"
    );
    assert!(summary.contains("| 0.001 |"), "{summary}");

    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before: Vec<_> = FIGURES.iter().map(|f| modified(&out.join(f))).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    tms_ok(&["plot", out_arg]);
    for (file, before) in FIGURES.iter().zip(before) {
        assert!(modified(&out.join(file)) > before, "{file} was not redrawn");
    }

    // A single run directory gets its own figures.
    let single = out.join("relu");
    assert!(tms(&["plot", single.to_str().unwrap()]).status.success());
    for file in FIGURES {
        assert!(single.join(file).is_file(), "relu/{file}");
    }

    // --redraw rewrites summary.md from the run files, without training.
    std::fs::remove_file(out.join("summary.md")).unwrap();
    tms_ok(&["reproduce", "basic", "--out", out_arg, "--redraw"]);
    assert_eq!(
        std::fs::read_to_string(out.join("summary.md")).unwrap(),
        summary
    );

    // Existing results are not overwritten without --force (a settings error: status 2).
    let again = tms(&["reproduce", "basic", "--out", out_arg, "--steps", "30"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn plot_of_a_directory_without_runs_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let plot = tms(&["plot", dir.path().to_str().unwrap()]);
    assert_eq!(plot.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&plot.stderr);
    assert!(
        stderr.contains("no results.json") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn train_writes_metrics_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    tms_ok(&[
        "train",
        "--backend",
        "cpu",
        "--steps",
        "20",
        "--density",
        "1,0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let metrics: tms::analysis::RunMetrics =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics.instances.len(), 2);
    assert_eq!(metrics.instances[1].density, 0.1);
    assert_eq!(metrics.instances[0].norms.len(), 20);
}
