//! End-to-end tests of `tms reproduce intro`, `phase` and `geometry` through the binary, on tiny
//! runs (20 steps, small grids): the run directories, the figures as SVG and PNG, summary.md, and
//! redrawing with --redraw.

use std::path::Path;
use std::process::Command;

/// Runs `tms reproduce <args>` with output into `out`, asserting success.
fn reproduce(args: &[&str], out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_tms"))
        .arg("reproduce")
        .args(args)
        .args(["--out", out.to_str().unwrap(), "--backend", "cpu"])
        .output()
        .expect("tms runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Asserts that `dir` holds a finished run with `instances` instances.
fn assert_run(dir: &Path, instances: usize) {
    for file in [
        "config.json",
        "results.json",
        "weights.safetensors",
        "metrics.json",
    ] {
        assert!(dir.join(file).is_file(), "{}/{file}", dir.display());
    }
    let results = tms::export::read_results(dir).unwrap();
    assert_eq!(results.instances.len(), instances, "{}", dir.display());
}

/// Asserts that `stem`.svg and `stem`.png were drawn.
fn assert_figure(stem: &Path) {
    let png = std::fs::read(stem.with_extension("png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let svg = std::fs::read(stem.with_extension("svg")).unwrap();
    assert!(svg.starts_with(b"<svg"));
}

fn summary(out: &Path) -> String {
    std::fs::read_to_string(out.join("summary.md")).unwrap()
}

#[test]
fn reproduce_intro_writes_its_run_figure_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("intro");
    reproduce(&["intro", "--steps", "20", "--restarts", "2"], &out);
    assert_run(&out.join("relu"), 8 * 2);
    assert_figure(&out.join("intro"));
    let text = summary(&out);
    assert!(text.contains("| 0.01 | 99 % |"), "{text}");
    assert!(text.contains("## Compared with the paper"), "{text}");

    // --redraw rewrites the figure and summary from the run files, without training.
    std::fs::remove_file(out.join("summary.md")).unwrap();
    let results = std::fs::read(out.join("relu").join("results.json")).unwrap();
    reproduce(&["intro", "--redraw"], &out);
    assert_eq!(summary(&out), text);
    assert_eq!(
        std::fs::read(out.join("relu").join("results.json")).unwrap(),
        results
    );
}

#[test]
fn reproduce_phase_writes_both_diagrams_and_the_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phase");
    reproduce(
        &["phase", "--steps", "20", "--restarts", "2", "--grid", "3"],
        &out,
    );
    assert_run(&out.join("n2-m1"), 3 * 3 * 2);
    assert_run(&out.join("n3-m2"), 3 * 3 * 2);
    assert_figure(&out.join("phase"));
    let text = summary(&out);
    assert!(text.contains("| n = 2, m = 1 |"), "{text}");
    assert!(text.contains("| n = 3, m = 2 |"), "{text}");
    assert!(
        text.contains("The trained phase matches the analytic one in"),
        "{text}"
    );
}

#[test]
fn reproduce_geometry_writes_its_sweep_figure_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("geometry");
    reproduce(
        &[
            "geometry",
            "--steps",
            "20",
            "--features",
            "20",
            "--hidden",
            "4",
            "--batch",
            "64",
            "--instances",
            "6",
        ],
        &out,
    );
    assert_run(&out.join("relu"), 6);
    assert_figure(&out.join("geometry"));
    let text = summary(&out);
    assert!(text.contains("**Deviation from the paper:**"), "{text}");
    assert!(text.contains("| 1/2 | antipodal pair |"), "{text}");
}
