//! End-to-end tests of `tms reproduce intro`, `phase` and `geometry` through the binary, on tiny
//! runs (20 steps, small grids): the run directories, the figures as SVG and PNG, summary.md, and
//! redrawing with --redraw.

mod common;

use common::{assert_run_files, tms, tms_ok};
use std::path::Path;

/// Runs `tms reproduce <args>` with output into `out`, asserting success.
fn reproduce(args: &[&str], out: &Path) {
    let mut full = vec!["reproduce"];
    full.extend_from_slice(args);
    full.extend(["--out", out.to_str().unwrap(), "--backend", "cpu"]);
    tms_ok(&full);
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
    assert_run_files(&out.join("relu"), 8 * 2);
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
    assert_run_files(&out.join("n2-m1"), 3 * 3 * 2);
    assert_run_files(&out.join("n3-m2"), 3 * 3 * 2);
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
    assert_run_files(&out.join("relu"), 6);
    assert_figure(&out.join("geometry"));
    let text = summary(&out);
    assert!(text.contains("**Deviation from the paper:**"), "{text}");
    assert!(text.contains("| 1/2 | antipodal pair |"), "{text}");
}

#[test]
fn bad_reproduction_options_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["phase", "--grid", "1"], "--grid"),
        (&["phase", "--grid", "0"], "--grid"),
        (&["geometry", "--instances", "0"], "--instances"),
        (&["geometry", "--features", "0"], "features"),
        (&["intro", "--steps", "0"], "steps"),
        (&["basic", "--restarts", "0"], "restarts"),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let mut full = vec!["reproduce"];
        full.extend_from_slice(args);
        full.extend(["--out", out.to_str().unwrap(), "--backend", "cpu"]);
        let r = tms(&full);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle) && stderr.lines().count() == 1,
            "{args:?}: {stderr}"
        );
        assert!(!out.exists(), "{args:?}: wrote {}", out.display());
    }
}

#[test]
fn reproduce_sae_writes_its_saes_figures_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sae");
    let args = [
        "sae",
        "--larger",
        "--steps",
        "20",
        "--sae-steps",
        "10",
        "--pentagon-sae-steps",
        "50",
    ];
    reproduce(&args, &out);
    assert_run_files(&out.join("pentagon"), 1);
    for family in ["sae-l1", "sae-l1-no-resampling", "sae-topk", "sae-jumprelu"] {
        let file: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("pentagon").join(family).join("sae.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            file["saes"].as_array().unwrap().len(),
            4,
            "{family}: 4 restarts"
        );
    }
    let n100: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("n100/sae/sae.json")).unwrap()).unwrap();
    let latents: Vec<u64> = n100["saes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["latents"].as_u64().unwrap())
        .collect();
    assert_eq!(latents, [100, 200, 400].repeat(3));
    assert_figure(&out.join("sae-pentagon"));
    assert_figure(&out.join("sae-mmcs"));
    let text = summary(&out);
    assert!(
        text.contains("| L1, resampling |") && text.contains("n400 (n = 400, m = 30)"),
        "{text}"
    );
    // --redraw draws again from the files, training nothing.
    std::fs::remove_file(out.join("sae-mmcs.png")).unwrap();
    reproduce(&["sae", "--larger", "--redraw"], &out);
    assert_figure(&out.join("sae-mmcs"));
}
