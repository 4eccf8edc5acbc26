//! Long runs never lose work: Ctrl-C and resume, a kill during a checkpoint write, divergence, and
//! config parsing that never panics. These drive the real binary.

mod common;

use common::{tms, tms_ok};
use proptest::prelude::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tms::experiment::Settings;
use tms::store::checkpoint::{checkpoint_path, read_checkpoint};
use tms::store::results::read_results;

/// A quick experiment: many small steps, so a run is long enough to interrupt but cheap.
const RUN: &[&str] = &[
    "train",
    "--backend",
    "cpu",
    "--batch",
    "32",
    "--steps",
    "6000",
    "--log-every",
    "50",
    "--density",
    "1,0.1,0.01",
];

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tms"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tms starts")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_in(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = RUN.iter().map(|s| s.to_string()).collect();
    args.extend(["--out".into(), dir.to_str().unwrap().into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn uninterrupted(root: &Path) -> (Vec<u8>, String) {
    let dir = root.join("whole");
    let args = run_in(&dir, &[]);
    tms_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (
        std::fs::read(dir.join("weights.safetensors")).unwrap(),
        std::fs::read_to_string(dir.join("results.json")).unwrap(),
    )
}

fn resume(dir: &Path) -> (Vec<u8>, String) {
    tms_ok(&[
        "train",
        "--backend",
        "cpu",
        "--resume",
        dir.to_str().unwrap(),
    ]);
    assert!(
        !checkpoint_path(dir).exists(),
        "the checkpoint should be gone once results are written"
    );
    (
        std::fs::read(dir.join("weights.safetensors")).unwrap(),
        std::fs::read_to_string(dir.join("results.json")).unwrap(),
    )
}

#[test]
fn ctrl_c_then_resume_equals_the_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let whole = uninterrupted(root.path());
    let dir = root.path().join("parts");
    let args = run_in(&dir, &["--checkpoint-every", "500"]);
    let child = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(&checkpoint_path(&dir), Duration::from_secs(60));
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("tms train --resume"),
        "no resume hint: {stderr}"
    );
    assert!(
        !dir.join("results.json").exists(),
        "an interrupted run must not write results"
    );
    let step = read_checkpoint(&dir).unwrap().state.step;
    assert!(step > 0 && step < 6000, "checkpoint at step {step}");
    assert_eq!(
        resume(&dir),
        whole,
        "resumed run differs from the uninterrupted one"
    );
}

#[test]
fn sigterm_and_sigkill_during_checkpoint_writes_leave_a_usable_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let whole = uninterrupted(root.path());
    // A checkpoint every step: the process is almost always writing one when it is killed.
    for (round, delay_ms) in [40u64, 95, 150].into_iter().enumerate() {
        let dir = root.path().join(format!("killed{round}"));
        let args = run_in(&dir, &["--checkpoint-every", "1"]);
        let mut child = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        wait_for(&checkpoint_path(&dir), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(delay_ms));
        signal(&child, "KILL");
        child.wait().unwrap();
        let checkpoint =
            read_checkpoint(&dir).expect("the last complete checkpoint survives a kill");
        assert!(checkpoint.state.step > 0);
        assert_eq!(resume(&dir), whole, "round {round}: resumed run differs");
    }
    let dir = root.path().join("terminated");
    let args = run_in(&dir, &["--checkpoint-every", "200"]);
    let child = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(&checkpoint_path(&dir), Duration::from_secs(60));
    signal(&child, "TERM");
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(130));
    assert_eq!(resume(&dir), whole);
}

#[test]
fn a_diverged_run_is_flagged_and_stays_readable() {
    // At lr 1e6 W and b overflow while the ReLU keeps the loss finite: only the weights tell.
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let args = ["--lr", "1e6", "--density", "1,0.1", "--steps", "300"];
    let out = tms(&[
        &["train", "--backend", "cpu", "--out", run.to_str().unwrap()][..],
        &args,
    ]
    .concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 of 2 instances diverged"), "{stderr}");
    assert!(stderr.contains("(weights not finite)"), "{stderr}");
    let results = read_results(&run).expect("results.json of a diverged run reads back");
    for inst in &results.instances {
        assert!(inst.diverged);
        assert!(inst.w.iter().flatten().any(|v| !v.is_finite()));
    }
    let plot = tms(&["plot", run.to_str().unwrap()]);
    assert!(
        plot.status.success(),
        "{}",
        String::from_utf8_lossy(&plot.stderr)
    );
    // Shards holding diverged instances merge too.
    let mut shards = vec![];
    for k in 0..2 {
        let dir = root.path().join(format!("shard-{k}"));
        let shard = format!("{k}/2");
        let base = [
            "train",
            "--backend",
            "cpu",
            "--shard",
            &shard,
            "--out",
            dir.to_str().unwrap(),
        ];
        assert_eq!(tms(&[&base[..], &args].concat()).status.code(), Some(1));
        shards.push(dir.to_str().unwrap().to_string());
    }
    let merged = root.path().join("merged");
    tms_ok(&[
        "merge",
        &shards[0],
        &shards[1],
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(read_results(&merged).unwrap().instances.len(), 2);
}

#[test]
fn resume_refuses_what_it_cannot_continue() {
    let root = tempfile::tempdir().unwrap();
    let missing = tms(&["train", "--resume", root.path().to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no checkpoint"));
    let with_flags = tms(&[
        "train",
        "--resume",
        root.path().to_str().unwrap(),
        "--steps",
        "5",
    ]);
    assert_eq!(with_flags.status.code(), Some(2));
    let huge = tms(&[
        "train",
        "--backend",
        "cpu",
        "--features",
        "60000",
        "--hidden",
        "4000",
        "--density",
        &vec!["0.5"; 64].join(","),
        "--out",
        root.path().join("huge").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&huge.stderr);
    assert_eq!(huge.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GiB of host memory") && stderr.contains("available"),
        "{stderr}"
    );
    let unwritable = tms(&["train", "--out", "/proc/tms-cannot-write-here"]);
    assert_eq!(
        unwritable.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&unwritable.stderr)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text: parsing and resolving never panic, and errors are one line.
    #[test]
    fn config_parser_never_panics(text in "(?s).{0,200}") {
        if let Err(e) = Settings::from_toml_str(&text).and_then(|s| s.resolve()) {
            prop_assert!(!e.0.contains('\n'));
        }
    }

    /// Plausible config files with arbitrary values: either a valid experiment or a one-line error
    /// naming a field.
    #[test]
    fn config_values_are_validated(features in -3i64..70000, hidden in -3i64..5000, density in prop::num::f64::ANY, lr in prop::num::f64::ANY, batch in 0i64..3000, steps in 0i64..100) {
        let text = format!("features = {features}\nhidden = {hidden}\ndensity = [{density:?}]\nlr = {lr:?}\nbatch = {batch}\nsteps = {steps}\n");
        match Settings::from_toml_str(&text).and_then(|s| s.resolve()) {
            Ok(exp) => {
                prop_assert!(exp.features >= 1 && exp.hidden >= 1 && exp.batch >= 1 && exp.steps >= 1);
                prop_assert!(exp.instances.iter().all(|i| i.density > 0.0 && i.density <= 1.0));
                prop_assert!(exp.optimizer.lr > 0.0 && exp.optimizer.lr.is_finite());
            }
            Err(e) => prop_assert!(!e.0.contains('\n') && !e.0.is_empty()),
        }
    }
}
