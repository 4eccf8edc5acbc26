//! The browser page of `tms web` in a real browser: Chromium, headless, runs the page's WebGPU
//! trainer on its software adapter (SwiftShader), served by a small HTTP server on 127.0.0.1 that
//! also receives the page's report (`autorun=1&report=/report`): config.json, weights.safetensors
//! and results.json as the page's "download" gives them. The run must match `tms train --backend
//! cpu` within the GPU trainer's tolerance, and the CLI must read the files back (`tms plot`).
//! Without WebGPU the page must say so and still show a run (`view=`).
//!
//! Without Chromium the tests skip loudly, and so they do where Chromium offers no WebGPU, except
//! under CI=true, where both fail: CI installs Debian's `chromium` (.ci/run). TMS_CHROMIUM names
//! another binary.

mod common;

use common::{tms, LOSS_TOLERANCE, TRAJECTORY_TOLERANCE};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};
use tms::store::results::{read_config, read_results, read_weights, Results};

/// The flags under which headless Chromium offers WebGPU on its software adapter (found on Debian
/// 12's chromium 156: no other flag is needed, and the Vulkan ones change nothing).
const CHROMIUM_FLAGS: [&str; 3] = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu"];
/// How long a page may take to report (300 steps of the seed's experiment take about 30 s of
/// SwiftShader on a busy 2-core machine).
const REPORT_TIMEOUT: Duration = Duration::from_secs(600);

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (loudly) or, under CI=true, fails.
fn unavailable(why: &str) {
    if under_ci() {
        panic!("{why}");
    }
    eprintln!("\n*** SKIPPING BROWSER TEST: {why} ***\n");
}

/// The Chromium binary: TMS_CHROMIUM, else `chromium` where `chromium --version` runs.
fn chromium() -> Option<String> {
    let binary = std::env::var("TMS_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let runs = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    runs.then_some(binary)
}

/// Answers one HTTP request: GET serves a file of `site`, POST /report?file=NAME hands NAME and the
/// body (results.json when no name is given) to `reports`.
fn answer(mut stream: TcpStream, site: &Path, reports: &Sender<(String, Vec<u8>)>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, kind, body) = if method == "POST" {
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .expect("a complete request body");
        let name = query
            .split('&')
            .find_map(|p| p.strip_prefix("file="))
            .unwrap_or("results.json");
        let _ = reports.send((name.to_string(), body));
        ("200 OK", "text/plain", b"ok".to_vec())
    } else {
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() {
            "index.html"
        } else {
            relative
        };
        let file = site.join(relative);
        let kind = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html",
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("json") => "application/json",
            _ => "text/plain",
        };
        match std::fs::read(&file) {
            Ok(bytes) if !relative.contains("..") => ("200 OK", kind, bytes),
            _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// Serves `site` on 127.0.0.1 (a free port) until the test ends; returns the port and the reports.
fn serve(site: PathBuf) -> (u16, Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let port = listener.local_addr().unwrap().port();
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (site, send) = (site.clone(), send.clone());
            std::thread::spawn(move || answer(stream, &site, &send));
        }
    });
    (port, receive)
}

/// The site as `tms web --out DIR/site` writes it.
fn build_site(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    let built = tms(&["web", "--out", site.to_str().unwrap()]);
    assert!(built.status.success(), "tms web: {built:?}");
    site
}

/// Loads `site` in headless Chromium under `flags` with `query` plus `report=/report`, and collects
/// the page's reports until all of `until` have come (or error.txt, where it is not expected);
/// None when there is no Chromium (and not under CI).
fn browse(
    site: PathBuf,
    query: &str,
    flags: &[&str],
    until: &[&str],
) -> Option<BTreeMap<String, Vec<u8>>> {
    let Some(chromium) = chromium() else {
        unavailable("no chromium (apt-get install chromium)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let (port, reports) = serve(site);
    let url = format!("http://127.0.0.1:{port}/index.html?{query}&report=/report");
    let mut browser = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let mut files = BTreeMap::new();
    let outcome = loop {
        let left = REPORT_TIMEOUT.saturating_sub(started.elapsed());
        match reports.recv_timeout(left) {
            Ok((name, body)) => {
                let failed = name == "error.txt" && !until.contains(&"error.txt");
                files.insert(name, body);
                if failed || until.iter().all(|n| files.contains_key(*n)) {
                    break Ok(());
                }
            }
            Err(_) => break Err(format!("no report from {url} within {REPORT_TIMEOUT:?}")),
        }
    };
    let _ = browser.kill();
    let _ = browser.wait();
    outcome.unwrap();
    Some(files)
}

/// Builds the site, trains with the settings `query` (`autorun=1`) and returns the reported files
/// (None when skipped).
fn run_page(query: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let dir = tempfile::tempdir().unwrap();
    let query = format!("{query}&autorun=1");
    let files = browse(
        build_site(dir.path()),
        &query,
        &CHROMIUM_FLAGS,
        &["results.json"],
    )?;
    if let Some(error) = files.get("error.txt") {
        let error = String::from_utf8_lossy(error);
        if error.starts_with("no WebGPU") {
            unavailable(&format!("chromium offers no WebGPU here: {error}"));
            return None;
        }
        panic!("the page failed: {error}");
    }
    eprintln!(
        "page timing: {}",
        String::from_utf8_lossy(&files["timing.json"])
    );
    Some(files)
}

/// Writes the reported files into a run directory, checks that the CLI reads them (results, config
/// with the data stream the page drew, weights with the digest config.json gives, figures) and returns
/// the results.
fn as_run_directory(files: &BTreeMap<String, Vec<u8>>, dir: &Path) -> Results {
    for name in ["config.json", "results.json", "weights.safetensors"] {
        std::fs::write(dir.join(name), &files[name]).unwrap();
    }
    let results = read_results(dir).unwrap();
    let config = read_config(dir).unwrap();
    let weights = read_weights(dir).unwrap();
    assert_eq!(config.weights_sha256, Some(weights.digest));
    assert_eq!(
        config.data_stream,
        tms::features::DATA_STREAM,
        "the page's data stream"
    );
    let flat_w: Vec<f32> = results
        .instances
        .iter()
        .flat_map(|i| i.w.iter().flatten().copied())
        .collect();
    assert_eq!(
        weights.w, flat_w,
        "weights.safetensors holds results.json's W"
    );
    let plot = tms(&["plot", dir.to_str().unwrap()]);
    assert!(plot.status.success(), "tms plot: {plot:?}");
    assert!(dir.join("weights.png").exists());
    results
}

/// The page's run against `tms train --backend cpu ARGS --steps 300`.
fn assert_matches_cpu(page: &Results, cpu_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cpu");
    let mut args = vec!["train", "--backend", "cpu", "--steps", "300", "--out"];
    args.push(out.to_str().unwrap());
    args.extend(cpu_args);
    let trained = tms(&args);
    assert!(trained.status.success(), "tms train: {trained:?}");
    let cpu = read_results(&out).unwrap();
    assert_eq!(
        (page.model, page.features, page.hidden, page.steps),
        (cpu.model, cpu.features, cpu.hidden, cpu.steps)
    );
    assert_eq!(page.instances.len(), cpu.instances.len());
    let (mut moved, mut worst) = (0.0f32, (0.0f32, 0.0f32));
    for (p, c) in page.instances.iter().zip(&cpu.instances) {
        assert_eq!((p.density, &p.importance), (c.density, &c.importance));
        let pairs = p.w.iter().flatten().zip(c.w.iter().flatten());
        let dw = pairs.map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        let db =
            p.b.iter()
                .zip(&c.b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
        assert!(
            dw <= TRAJECTORY_TOLERANCE && db <= TRAJECTORY_TOLERANCE,
            "density {}: max |ΔW| = {dw:e}, max |Δb| = {db:e}",
            p.density
        );
        worst = (worst.0.max(dw), worst.1.max(db));
        let steps = |r: &tms::store::results::InstanceResult| -> Vec<u32> {
            r.loss_curve.iter().map(|(s, _)| *s).collect()
        };
        assert_eq!(steps(p), steps(c), "log steps");
        for ((_, a), (_, b)) in p.loss_curve.iter().zip(&c.loss_curve) {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!((a - b).abs() <= LOSS_TOLERANCE * a.abs().max(b.abs()) + 1e-9);
        }
        let (a, b) = (p.eval_loss.unwrap(), c.eval_loss.unwrap());
        assert!(
            (a - b).abs() <= f64::from(LOSS_TOLERANCE) * a.max(b),
            "eval loss {a} vs {b}"
        );
        moved = moved.max(c.b.iter().map(|v| v.abs()).fold(0.0, f32::max));
    }
    eprintln!(
        "page vs cpu trainer: max |ΔW| = {:e}, max |Δb| = {:e}",
        worst.0, worst.1
    );
    assert!(
        moved > 0.05,
        "the biases moved only {moved}: the run trained too little to tell"
    );
}

/// The seed's experiment (n = 20, m = 5, seven densities, I_i = 0.7^i, AdamW, lr 1e-3), 300 steps,
/// on the tiled kernels; with a batch of 64 rather than 1,024, since SwiftShader takes 1.4 s per
/// step of 1,024 samples on a busy 2-core machine (86 ms at 64).
#[test]
fn seed_experiment_in_chromium_matches_the_cpu_trainer() {
    let Some(files) = run_page("steps=300&batch=64") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = as_run_directory(&files, dir.path());
    assert_matches_cpu(&page, &["--batch", "64"]);
}

/// The introduction's size (n = 5, m = 2), for which the site carries the register kernel, at the
/// full batch of 1,024.
#[test]
fn register_kernel_in_chromium_matches_the_cpu_trainer() {
    let settings = "features=5&hidden=2&density=1,0.1,0.02&importance-decay=0.9&steps=300";
    let Some(files) = run_page(settings) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = as_run_directory(&files, dir.path());
    let args = [
        "--features",
        "5",
        "--hidden",
        "2",
        "--density",
        "1,0.1,0.02",
        "--importance-decay",
        "0.9",
    ];
    assert_matches_cpu(&page, &args);
}

/// Without WebGPU (Chromium without --enable-unsafe-webgpu offers no adapter) the page says so,
/// and still shows a run of the CLI (`view=run`: results/basic/relu's results.json).
#[test]
fn without_webgpu_the_page_says_so_and_still_views_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let site = build_site(dir.path());
    std::fs::create_dir(site.join("run")).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/basic/relu/results.json");
    std::fs::copy(committed, site.join("run/results.json")).unwrap();
    let flags = &CHROMIUM_FLAGS[..2];
    let Some(files) = browse(site, "view=run", flags, &["viewed.txt", "error.txt"]) else {
        return;
    };
    let text = |name: &str| String::from_utf8_lossy(&files[name]).to_string();
    assert_eq!(
        text("viewed.txt"),
        "viewing 7 instances of n = 20, m = 5 from results.json"
    );
    assert!(
        text("error.txt").starts_with("no WebGPU"),
        "{}",
        text("error.txt")
    );
}

/// Every file of the site is served from its folder: no URL of another host anywhere.
#[test]
fn the_site_requests_nothing_from_other_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let built = tms(&["web", "--out", dir.path().to_str().unwrap()]);
    assert!(built.status.success(), "tms web: {built:?}");
    let mut names = vec![];
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "{} names another host",
            entry.display()
        );
        names.push(
            entry
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string(),
        );
    }
    for expected in ["index.html", "app.js", "abi.json", "kernels/tiled.wgsl"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
