//! The README's Slurm array script, run for real: a private single-node Slurm (slurmctld, slurmd and munge
//! from Debian's packages, on localhost) trains a sweep as a plain array and as an array with a step, one task
//! of each is requeued mid-run (`scontrol requeue`: SIGTERM, checkpoint, rerun, `tms train --resume`), and the
//! merged shards must be bit-identical to the sweep trained in one piece.
//!
//! Needs Linux, root and the Slurm daemons (`.ci/run` installs them); elsewhere the test says why it skips,
//! and with CI=true it fails instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The sweep every array trains: four instances, long enough per shard (a few seconds) to requeue a task
/// while it runs.
const SWEEP: &str = r#"features = 40
hidden = 10
density = [1.0, 0.3, 0.1, 0.03]
steps = 8000
log_every = 1000
"#;

/// Ports of the private cluster, away from a real Slurm's defaults (6817/6818).
const CTLD_PORT: u16 = 16817;
const SLURMD_PORT: u16 = 16818;

#[test]
fn readme_array_script_trains_a_sweep_bit_identical_to_one_run() {
    if let Some(why) = missing_slurm() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "the Slurm test cannot run: {why} (.ci/run installs slurmctld, slurmd and munge)"
            );
        }
        eprintln!("skipping the Slurm test: {why}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let cluster = Cluster::start(&work.join("slurm"));

    fs::write(work.join("sweep.toml"), SWEEP).unwrap();
    fs::create_dir(work.join("logs")).unwrap();
    let whole = work.join("whole");
    let status = Command::new(env!("CARGO_BIN_EXE_tms"))
        .args([
            "train",
            "--backend",
            "cpu",
            "--config",
            "sweep.toml",
            "--out",
        ])
        .arg(&whole)
        .current_dir(work)
        .status()
        .unwrap();
    assert!(status.success(), "training the sweep in one piece failed");

    for (name, array, requeued) in [("plain", "0-3", 1), ("step", "0-6:2", 4)] {
        let script = readme_script(array);
        fs::write(work.join(format!("{name}.sh")), &script).unwrap();
        let job = cluster.submit(work, &format!("{name}.sh"));
        cluster.requeue_while_running(
            &job,
            requeued,
            &work.join(format!("logs/{job}_{requeued}.out")),
        );
        cluster.wait_for(&job);

        let log =
            fs::read_to_string(work.join(format!("logs/{job}_{requeued}.out"))).unwrap_or_default();
        assert!(
            log.contains("resuming"),
            "{name} array: task {requeued} was not resumed; its log:\n{log}"
        );

        let shards: Vec<PathBuf> = fs::read_dir(work.join("runs/sweep"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            shards.len(),
            4,
            "{name} array: expected 4 shard directories, found {shards:?}"
        );
        let merged = work.join(format!("merged-{name}"));
        let status = Command::new(env!("CARGO_BIN_EXE_tms"))
            .arg("merge")
            .args(&shards)
            .arg("--out")
            .arg(&merged)
            .status()
            .unwrap();
        assert!(status.success(), "{name} array: tms merge failed");
        for file in ["weights.safetensors", "results.json"] {
            assert!(
                fs::read(merged.join(file)).unwrap() == fs::read(whole.join(file)).unwrap(),
                "{name} array: merged {file} differs from the sweep trained in one piece"
            );
        }
        fs::remove_dir_all(work.join("runs")).unwrap();
    }
}

/// The README's "A Slurm array" script, with the array range replaced and the GPU request dropped (the
/// private cluster has no GPUs; the trainer falls back to the CPU).
fn readme_script(array: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("#!/bin/bash\n#SBATCH --job-name=tms-sweep")
        .expect("README has the Slurm array script");
    let script = &readme[start..start + readme[start..].find("```").unwrap()];
    let mut lines: Vec<String> = Vec::new();
    for line in script.lines() {
        if line.starts_with("#SBATCH --array=") {
            lines.push(format!("#SBATCH --array={array}"));
        } else if !line.starts_with("#SBATCH --gpus") {
            lines.push(line.to_string());
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("--resume")),
        "the README script resumes"
    );
    lines.join("\n") + "\n"
}

/// Why Slurm cannot run here, if it cannot.
fn missing_slurm() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("not Linux".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in [
        "slurmctld",
        "slurmd",
        "munged",
        "sbatch",
        "scontrol",
        "squeue",
    ] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// A private Slurm: its own configuration, state and ports; stopped when dropped.
struct Cluster {
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        fs::create_dir_all(dir.join("state")).unwrap();
        fs::create_dir_all(dir.join("spool")).unwrap();
        let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
        let host = host.trim();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        fs::write(
            &conf,
            format!(
                "ClusterName=tmstest\nSlurmctldHost={host}\nSlurmctldPort={CTLD_PORT}\nSlurmdPort={SLURMD_PORT}\n\
                 SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
                 ReturnToService=2\nMpiDefault=none\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 NodeName={host} CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
            ),
        )
        .unwrap();
        start_munge();
        // -D keeps each daemon in the foreground as our child, so dropping the cluster can stop it.
        let daemons = ["slurmctld", "slurmd"]
            .iter()
            .map(|daemon| {
                Command::new(which(daemon).unwrap())
                    .args(["-D", "-f"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let cluster = Cluster { conf, daemons };
        cluster.wait_until("the node is idle", || {
            cluster.slurm("sinfo", &["-h", "-o", "%t"]).trim() == "idle"
        });
        cluster
    }

    /// Runs a Slurm client against this cluster and returns its standard output.
    fn slurm(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Submits `script` from `work` with `tms` on the PATH; returns the array job's ID.
    fn submit(&self, work: &Path, script: &str) -> String {
        let bin = Path::new(env!("CARGO_BIN_EXE_tms")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sbatch")
            .args(["--parsable", script])
            .current_dir(work)
            .env("SLURM_CONF", &self.conf)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sbatch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Requeues task `task` of `job` once it is training (its run directory exists), as a preemption
    /// would, and lets it start again at once (Slurm otherwise holds a requeued job for two minutes).
    /// Requeues task `task` of `job` as soon as its log (`log`) says it trains, so that it is
    /// stopped mid-run however fast the machine: tms has its SIGTERM handler by then, writes a
    /// checkpoint and exits, and the rerun resumes.
    fn requeue_while_running(&self, job: &str, task: u32, log: &Path) {
        let id = format!("{job}_{task}");
        self.wait_until(&format!("task {id} trains"), || {
            fs::read_to_string(log).is_ok_and(|text| text.contains("training "))
        });
        assert!(
            self.slurm("squeue", &["-h", "-j", &id, "-o", "%T"])
                .contains("RUNNING"),
            "task {id} finished before it could be requeued: make the sweep longer"
        );
        let status = Command::new("scontrol")
            .args(["requeue", &id])
            .env("SLURM_CONF", &self.conf)
            .status()
            .unwrap();
        assert!(status.success(), "scontrol requeue {id} failed");
        self.wait_until(&format!("task {id} is requeued"), || {
            self.slurm("squeue", &["-h", "-j", &id, "-o", "%T"])
                .contains("PENDING")
        });
        Command::new("scontrol")
            .args(["update", &format!("JobId={id}"), "StartTime=now"])
            .env("SLURM_CONF", &self.conf)
            .status()
            .unwrap();
    }

    /// Waits until every task of `job` has left the queue.
    fn wait_for(&self, job: &str) {
        self.wait_until(&format!("job {job} ends"), || {
            self.slurm("squeue", &["-h", "-j", job]).trim().is_empty()
        });
    }

    fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(240),
                "timed out waiting until {what}"
            );
            sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// munged authenticates the Slurm daemons to each other; start it once if it is not running.
fn start_munge() {
    let running = Command::new("pgrep")
        .args(["-x", "munged"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !running {
        fs::create_dir_all("/run/munge").unwrap();
        let status = Command::new(which("munged").unwrap())
            .arg("--force")
            .status()
            .unwrap();
        assert!(status.success(), "munged did not start");
    }
}
