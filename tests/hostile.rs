//! `tms` under hostile use (issue 14), through the binary: every refusal exits 2 with one line
//! naming what is wrong and writes nothing; values must fit f32 where they are used; a run
//! directory belongs to one run at a time; a checkpoint is trusted only once checked; a resumed run
//! keeps its settings; merges check what they join; sizes are bounded before anything is allocated,
//! and the host-memory estimate holds against the peak RSS of real runs.

mod common;

use common::{tms, tms_ok, tms_ok_with_env, tms_with_env};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tms::experiment::Settings;
use tms::store::checkpoint::{checkpoint_path, read_checkpoint, write_checkpoint};
use tms::store::tensors::{f32_tensor, to_bytes, u32_tensor, TensorFile};
use tms::trainer::{LossRecord, TrainState};

/// Extra environment variables of one case.
type Env<'a> = &'a [(&'a str, &'a str)];

/// Asserts that `out` is a refusal: exit 2 and an error line that names `needle`.
fn assert_refused(out: &Output, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: ") && !l.contains("XDG_RUNTIME_DIR"))
        .unwrap_or_else(|| panic!("{what}: no error line: {stderr}"));
    assert!(
        line.contains(needle),
        "{what}: error does not name {needle}: {line}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn refusals_come_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let toml = root.path().join("huge.toml");
    let huge = vec!["1e300"; 20].join(", ");
    std::fs::write(
        &toml,
        format!("[[instances]]\ndensity = 1.0\nimportance = [{huge}]\n"),
    )
    .unwrap();
    let overflow = root.path().join("overflow.toml");
    let big = vec!["3e38"; 20].join(", ");
    std::fs::write(
        &overflow,
        format!("[[instances]]\ndensity = 1.0\nimportance = [{big}]\n"),
    )
    .unwrap();
    let no_gpu = [("WGPU_BACKEND", "dx12")];
    let cases: &[(&[&str], Env, &str)] = &[
        (&["--checkpoint-every", "0"], &[], "checkpoint-every"),
        (&["--backend", "gpu", "--adapter", "99"], &[], "adapter"),
        (&["--devices", "nosuchgpu"], &[], "nosuchgpu"),
        (&["--backend", "gpu"], &no_gpu, "no GPU adapter"),
        (&["--devices", "all"], &no_gpu, "no GPU adapter"),
        (&["--backend", "cpu", "--adapter", "0"], &[], "--adapter"),
        (&["--importance-decay", "1e10"], &[], "importance-decay"),
        (&["--extra-importance", "1e300"], &[], "extra-importance"),
        (&["--config", path(&toml)], &[], "importance of instance 0"),
        (
            &["--config", path(&overflow)],
            &[],
            "importance of instance 0",
        ),
        (
            &[
                "--density",
                "0.5",
                "--restarts",
                "100000",
                "--extra-importance",
                &vec!["1"; 50].join(","),
            ],
            &[],
            "instances",
        ),
        // Inside a Slurm array job the environment is input too.
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "SLURM_ARRAY_TASK_ID",
        ),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "Slurm array task 3",
        ),
    ];
    for (i, (args, env, needle)) in cases.iter().enumerate() {
        let out = root.path().join(format!("run{i}"));
        let full = [&["train", "--steps", "5", "--out", path(&out)][..], args].concat();
        assert_refused(
            &tms_with_env(&full, env),
            needle,
            &format!("{args:?} {env:?}"),
        );
        assert!(!out.exists(), "{args:?}: wrote {}", out.display());
    }
    for (args, needle) in [
        (&["phase", "--grid", "0"][..], "--grid"),
        (&["phase", "--grid", "1000000"], "instances"),
        (&["geometry", "--instances", "0"], "--instances"),
    ] {
        let out = root.path().join("reproduction");
        let full = [&["reproduce"][..], args, &["--out", path(&out)]].concat();
        assert_refused(&tms(&full), needle, &format!("{args:?}"));
        assert!(!out.exists(), "{args:?} wrote its directory");
    }
}

#[test]
fn a_slurm_step_array_trains_every_shard() {
    // --array=0-6:2: tasks 0, 2, 4, 6 are shards 0, 1, 2, 3 of 4.
    let root = tempfile::tempdir().unwrap();
    for (task, shard) in [("0", 0), ("2", 1), ("4", 2), ("6", 3)] {
        let out = root.path().join(task);
        let env = [
            ("SLURM_ARRAY_TASK_ID", task),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        tms_ok_with_env(
            &[
                "train",
                "--backend",
                "cpu",
                "--steps",
                "5",
                "--out",
                path(&out),
            ],
            &env,
        );
        let config = tms::store::results::read_config(&out).unwrap();
        assert_eq!(
            config.experiment.shard.map(|s| (s.index, s.count)),
            Some((shard, 4))
        );
    }
}

/// A run long enough to be caught in the middle (many cheap steps), checkpointing every 100.
fn long_run(dir: &Path, extra: &[&str]) -> Child {
    let args = [
        &[
            "train",
            "--backend",
            "cpu",
            "--batch",
            "16",
            "--steps",
            "200000",
            "--density",
            "1,0.1",
        ][..],
        &["--checkpoint-every", "100", "--out", path(dir)],
        extra,
    ]
    .concat();
    Command::new(env!("CARGO_BIN_EXE_tms"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(file: &Path) {
    let start = Instant::now();
    while !file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops `child` as Slurm would (SIGTERM) and waits for its checkpoint and exit 130.
fn terminate(child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short finished run in `dir`.
fn finished_run(dir: &Path, extra: &[&str]) {
    let args = [
        &[
            "train",
            "--backend",
            "cpu",
            "--steps",
            "20",
            "--out",
            path(dir),
        ][..],
        extra,
    ]
    .concat();
    tms_ok(&args);
}

#[test]
fn a_run_directory_belongs_to_one_run_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    // An interrupted run is neither overwritten by a new run nor forgotten.
    let dir = root.path().join("interrupted");
    let child = long_run(&dir, &[]);
    wait_for(&checkpoint_path(&dir));
    // A second process on the same directory is refused while the first holds it.
    let second = tms(&[
        "train",
        "--backend",
        "cpu",
        "--steps",
        "5",
        "--force",
        "--out",
        path(&dir),
    ]);
    assert_refused(&second, "in use by another tms process", "second process");
    terminate(child);
    let before = std::fs::read(checkpoint_path(&dir)).unwrap();
    let other = tms(&[
        "train",
        "--backend",
        "cpu",
        "--steps",
        "5",
        "--out",
        path(&dir),
    ]);
    assert_refused(&other, "--resume", "new run over an interrupted one");
    assert_eq!(
        std::fs::read(checkpoint_path(&dir)).unwrap(),
        before,
        "checkpoint touched"
    );
    // The stored interval survives (the README's Slurm script resumes without the flag).
    assert_eq!(read_checkpoint(&dir).unwrap().checkpoint_every, Some(100));
    // --resume takes no experiment flags, --shard included.
    let with_shard = tms(&["train", "--resume", path(&dir), "--shard", "1/2"]);
    assert_refused(&with_shard, "--shard", "--resume with --shard");

    // --force removes the old run's files before the new one starts.
    let forced = root.path().join("forced");
    finished_run(&forced, &[]);
    let child = long_run(&forced, &["--force"]);
    wait_for(&checkpoint_path(&forced));
    terminate(child);
    for name in [
        "results.json",
        "config.json",
        "weights.safetensors",
        "metrics.json",
    ] {
        assert!(!forced.join(name).exists(), "--force left the old {name}");
    }

    // A temporary file left by a kill during a write is removed on the next start.
    let stale = forced.join(".checkpoint.safetensors.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tms"))
        .args(["train", "--resume", path(&forced)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while stale.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stale temporary file kept"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(child);

    // A directory that cannot be written is refused before resuming.
    std::fs::create_dir(forced.join(".tms-write-test")).unwrap();
    let unwritable = tms(&["train", "--resume", path(&forced)]);
    assert_refused(
        &unwritable,
        "not writable",
        "resume into an unwritable directory",
    );
}

/// Rewrites the checkpoint in `dir` with `edit` applied to its tensors (name, shape, data) and
/// metadata, keeping everything else as it was.
fn rewrite_checkpoint(
    dir: &Path,
    edit: impl Fn(
        &mut Vec<(String, Vec<usize>, Vec<f32>)>,
        &mut std::collections::HashMap<String, String>,
    ),
) {
    let file = TensorFile::from_bytes(std::fs::read(checkpoint_path(dir)).unwrap()).unwrap();
    let mut meta = file.metadata().unwrap();
    let names = [
        "W", "b", "adam_m_W", "adam_v_W", "adam_m_b", "adam_v_b", "losses",
    ];
    let mut tensors: Vec<_> = names
        .iter()
        .map(|&n| {
            let (values, shape) = file.f32(n).unwrap();
            (n.to_string(), shape, values)
        })
        .collect();
    let steps = file.u32("loss_steps").unwrap();
    edit(&mut tensors, &mut meta);
    let mut views: Vec<_> = tensors
        .iter()
        .map(|(n, shape, values)| (n.as_str(), f32_tensor(values, shape.clone()).unwrap()))
        .collect();
    views.push(("loss_steps", u32_tensor(&steps, vec![steps.len()]).unwrap()));
    std::fs::write(checkpoint_path(dir), to_bytes(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn a_checkpoint_is_trusted_only_once_checked() {
    let root = tempfile::tempdir().unwrap();
    let exp = Settings {
        density: Some(vec![1.0, 0.1]),
        steps: Some(50),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let mut state = TrainState::initial(&exp);
    state.step = 20;
    let records = vec![LossRecord {
        step: 0,
        losses: vec![0.1, 0.2],
    }];
    let fresh = |name: &str| -> PathBuf {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        write_checkpoint(&dir, &exp, &state, &records, None).unwrap();
        dir
    };
    // The untouched checkpoint resumes.
    let good = fresh("good");
    tms_ok(&["train", "--resume", path(&good), "--backend", "cpu"]);

    let flipped = fresh("flipped");
    let mut bytes = std::fs::read(checkpoint_path(&flipped)).unwrap();
    let last = bytes.len() - 7; // inside the last tensor's data
    bytes[last] ^= 0x10;
    std::fs::write(checkpoint_path(&flipped), bytes).unwrap();

    let half = fresh("half");
    rewrite_checkpoint(&half, |tensors, _| {
        let m_w = tensors.iter_mut().find(|t| t.0 == "adam_m_W").unwrap();
        m_w.2.truncate(m_w.2.len() / 2);
        m_w.1 = vec![m_w.2.len()];
    });

    let relabelled = fresh("relabelled");
    let mut bytes = std::fs::read(checkpoint_path(&relabelled)).unwrap();
    let label = b"\"dtype\":\"F32\"";
    let at = bytes.windows(label.len()).position(|w| w == label).unwrap();
    bytes[at + label.len() - 3..at + label.len() - 1].copy_from_slice(b"16");
    std::fs::write(checkpoint_path(&relabelled), bytes).unwrap();

    let edited = fresh("edited");
    rewrite_checkpoint(&edited, |_, meta| {
        let experiment = meta["experiment"].replace("\"log_every\":100", "\"log_every\":0");
        meta.insert("experiment".into(), experiment);
    });

    for dir in [flipped, half, relabelled, edited] {
        let before = std::fs::read(checkpoint_path(&dir)).unwrap();
        let out = tms(&["train", "--resume", path(&dir), "--backend", "cpu"]);
        assert_refused(&out, "checkpoint.safetensors", &dir.display().to_string());
        assert!(!dir.join("results.json").exists());
        assert_eq!(std::fs::read(checkpoint_path(&dir)).unwrap(), before);
    }
}

#[test]
fn merges_check_what_they_join() {
    let root = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..2)
        .map(|k| root.path().join(format!("shard-{k}")))
        .collect();
    for (k, dir) in shards.iter().enumerate() {
        finished_run(
            dir,
            &["--density", "1,0.3,0.1", "--shard", &format!("{k}/2")],
        );
    }
    let merge = |out: &Path| {
        tms(&[
            "merge",
            path(&shards[0]),
            path(&shards[1]),
            "--out",
            path(out),
        ])
    };
    assert!(merge(&root.path().join("ok")).status.success());

    // An edited density in results.json.
    let results = shards[1].join("results.json");
    let original = std::fs::read_to_string(&results).unwrap();
    std::fs::write(
        &results,
        original.replacen("\"density\":0.3", "\"density\":0.77", 1),
    )
    .unwrap();
    let out = root.path().join("edited");
    assert_refused(&merge(&out), "inconsistent", "edited density");
    assert!(!out.exists());
    std::fs::write(&results, original).unwrap();

    // Weights files swapped between the shards.
    let (w0, w1) = (
        shards[0].join("weights.safetensors"),
        shards[1].join("weights.safetensors"),
    );
    let (a, b) = (std::fs::read(&w0).unwrap(), std::fs::read(&w1).unwrap());
    std::fs::write(&w0, &b).unwrap();
    std::fs::write(&w1, &a).unwrap();
    let out = root.path().join("swapped");
    assert_refused(&merge(&out), "weights.safetensors", "swapped weights");
    assert!(!out.exists());
}

#[test]
fn readers_refuse_files_that_do_not_fit_together() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    finished_run(&run, &["--density", "1,0.1"]);
    let results = run.join("results.json");
    let original = std::fs::read_to_string(&results).unwrap();
    // A results.json claiming a billion features, or whose W and b lengths disagree.
    for (what, text) in [
        (
            "features",
            original.replacen("\"features\":20", "\"features\":1000000000", 1),
        ),
        (
            "not consistent",
            original.replacen("\"b\":[", "\"b\":[0.5,", 1),
        ),
    ] {
        std::fs::write(&results, text).unwrap();
        assert_refused(&tms(&["plot", path(&run)]), what, what);
    }
}

/// Peak RSS of `tms` running `args`, in bytes, from GNU time.
fn peak_rss(args: &[&str]) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak %M"])
        .arg(env!("CARGO_BIN_EXE_tms"))
        .args(args)
        .output()
        .expect("GNU time (/usr/bin/time; Debian package `time`) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let kib: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {stderr}"));
    kib * 1024
}

#[test]
fn the_host_memory_estimate_bounds_the_peak() {
    let root = tempfile::tempdir().unwrap();
    for (features, hidden, batch, restarts) in [(20, 5, 64, 10), (20, 5, 1024, 3), (100, 10, 64, 3)]
    {
        let densities = vec!["0.5"; 100].join(",");
        let settings = Settings {
            features: Some(features),
            hidden: Some(hidden),
            batch: Some(batch),
            density: Some(vec![0.5; 100]),
            restarts: Some(restarts),
            steps: Some(20),
            eval_samples: Some(256),
            ..Default::default()
        };
        let estimate = tms::run::host_bytes_needed(&settings.resolve().unwrap());
        let out = root.path().join(format!("{features}-{batch}"));
        let (n, m, b, r) = (
            features.to_string(),
            hidden.to_string(),
            batch.to_string(),
            restarts.to_string(),
        );
        let peak = peak_rss(&[
            "train",
            "--backend",
            "cpu",
            "--features",
            &n,
            "--hidden",
            &m,
            "--batch",
            &b,
            "--density",
            &densities,
            "--restarts",
            &r,
            "--steps",
            "20",
            "--eval-samples",
            "256",
            "--out",
            path(&out),
        ]);
        let what = format!("n {features}, m {hidden}, batch {batch}, {restarts}00 instances");
        assert!(
            peak <= estimate,
            "{what}: peak {peak} B above the estimate {estimate} B"
        );
        assert!(
            estimate <= 4 * peak,
            "{what}: estimate {estimate} B far above the peak {peak} B"
        );
    }
}
