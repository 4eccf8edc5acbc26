//! `tms._tms`: the native half of the Python package. It exposes the library, not the binary: each
//! function here turns Python's arguments into the library's values and calls the same entry points
//! the command line calls (settings resolution and validation, devices, run directories, training,
//! reproductions), so that results, files and error messages are the CLI's. Everything crosses as
//! plain values: settings, configs, results and metrics as JSON text (the library's serde types),
//! W and b as little-endian f32 bytes; the pure-Python layer (`tms/__init__.py`) turns them into
//! numpy arrays and documents them.
//!
//! Training releases the GIL; after every chunk of steps it takes the GIL back to report progress
//! and to check for signals, so Ctrl-C raises KeyboardInterrupt once the chunk ends (leaving a
//! checkpoint when the run has a directory).

use clap::{Parser, ValueEnum};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tms::analysis::RunMetrics;
use tms::device::{BackendChoice, Device};
use tms::error::{one_line, Interrupted, UsageError};
use tms::experiment::Settings;
use tms::run::{self, Finished, Watch};
use tms::store::results::{read_config, read_results, read_weights, Results, RunConfig, Weights};

/// A library error as a Python exception: bad input (the CLI's exit status 2) is ValueError with the
/// CLI's one-line message, a missing file FileNotFoundError, anything else RuntimeError.
fn to_py(err: anyhow::Error) -> PyErr {
    let message = one_line(&err);
    let not_found = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    });
    // A missing file is FileNotFoundError even where the CLI calls it bad input (exit 2).
    if not_found {
        PyFileNotFoundError::new_err(message)
    } else if err.downcast_ref::<UsageError>().is_some() {
        PyValueError::new_err(message)
    } else if err.downcast_ref::<Interrupted>().is_some() {
        PyKeyboardInterrupt::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

fn usage(err: UsageError) -> PyErr {
    to_py(err.into())
}

/// Settings from a JSON object with the config file's fields (Python's keywords or a config dict).
fn settings_from_json(json: &str) -> Result<Settings, UsageError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| UsageError(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| UsageError(e.to_string()))
}

/// The device of `backend` ("auto", "gpu", "cpu"), `adapter` and `devices`, as the CLI's flags.
fn device_of(
    backend: &str,
    adapter: Option<String>,
    devices: Option<Vec<String>>,
) -> Result<Device, UsageError> {
    let choice = BackendChoice::from_str(backend, true)
        .map_err(|_| UsageError::invalid("backend", backend, "must be auto, gpu or cpu"))?;
    Device::from_flags(choice, adapter, devices.as_deref())
}

/// Runs `work` (a training) without the GIL, watched by `progress` (called as
/// `progress(step, steps, mean_loss)` after every chunk of steps) and stopped by a signal: after
/// every chunk it takes the GIL to report and to run Python's signal handlers; an exception there
/// (KeyboardInterrupt on Ctrl-C) stops the run at the end of the chunk and is raised here.
fn watched<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(&Watch) -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let stop = AtomicBool::new(false);
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let report = |step: u32, steps: u32, loss: f64| {
        Python::attach(|py| {
            let reported = match &progress {
                Some(progress) => progress.call1(py, (step, steps, loss)).map(drop),
                None => Ok(()),
            };
            if let Err(err) = reported.and_then(|()| py.check_signals()) {
                *raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
                stop.store(true, Ordering::SeqCst);
            }
        })
    };
    let watch = Watch {
        stop: Some(&stop),
        progress: Some(&report),
    };
    let result = py.detach(|| work(&watch));
    let raised = raised.into_inner().unwrap_or_else(|e| e.into_inner());
    match (result, raised) {
        // Ctrl-C: KeyboardInterrupt with the library's message (the step, the checkpoint).
        (Err(err), Some(raised)) if raised.is_instance_of::<PyKeyboardInterrupt>(py) => {
            Err(to_py(err))
        }
        (_, Some(raised)) => Err(raised),
        (result, None) => result.map_err(to_py),
    }
}

/// A run: its config.json, results.json and W [instances, m, n], W2 [instances, n, m] (the untied
/// model only), b [instances, n].
#[pyclass(frozen, module = "tms._tms")]
struct NativeRun {
    config: RunConfig,
    results: Results,
    w: Vec<f32>,
    w2: Option<Vec<f32>>,
    b: Vec<f32>,
}

impl From<Finished> for NativeRun {
    fn from(run: Finished) -> NativeRun {
        let (w, w2) = Weights::of_state(&run.config.experiment, &run.state);
        NativeRun {
            config: run.config,
            results: run.results,
            w,
            w2,
            b: run.state.b,
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

fn f32_bytes<'py>(py: Python<'py>, values: &[f32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

#[pymethods]
impl NativeRun {
    /// config.json as text.
    fn config_json(&self) -> PyResult<String> {
        json(&self.config)
    }

    /// results.json as text.
    fn results_json(&self) -> PyResult<String> {
        json(&self.results)
    }

    /// metrics.json as text (tms::analysis).
    fn metrics_json(&self) -> PyResult<String> {
        json(&RunMetrics::of(&self.results))
    }

    /// (W, b) as little-endian f32 bytes.
    fn weights<'py>(&self, py: Python<'py>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        (f32_bytes(py, &self.w), f32_bytes(py, &self.b))
    }

    /// W2 as little-endian f32 bytes, for the untied model; None for the tied ones.
    fn w2<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.w2.as_ref().map(|w2| f32_bytes(py, w2))
    }

    /// Writes the run's files into `dir`, refused (ValueError) if it holds a run unless `force`.
    fn save(&self, dir: PathBuf, force: bool) -> PyResult<()> {
        let claimed = run::dir::claim_new(&dir, force).map_err(usage)?;
        let weights = Weights {
            w: &self.w,
            w2: self.w2.as_deref(),
            b: &self.b,
        };
        run::dir::write_files(&claimed, &self.config, &self.results, &weights).map_err(to_py)
    }
}

/// Trains the experiment of `flags` (JSON, Python's keywords) laid over a config file or dict, as
/// `tms train` does; into `out` if given, else in memory.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the keywords of tms.train, one each
#[pyo3(signature = (flags, config_path, config_json, backend, adapter, devices, shard, out, force, checkpoint_every, progress))]
fn train(
    py: Python<'_>,
    flags: &str,
    config_path: Option<PathBuf>,
    config_json: Option<&str>,
    backend: &str,
    adapter: Option<String>,
    devices: Option<Vec<String>>,
    shard: Option<String>,
    out: Option<PathBuf>,
    force: bool,
    checkpoint_every: Option<u32>,
    progress: Option<Py<PyAny>>,
) -> PyResult<NativeRun> {
    let device = device_of(backend, adapter, devices).map_err(usage)?;
    let flags = settings_from_json(flags).map_err(usage)?;
    let settings = match config_json {
        Some(config) => settings_from_json(config)
            .map_err(|UsageError(e)| UsageError(format!("config: {e}")))
            .map_err(usage)?
            .with_flags(flags),
        None => Settings::with_file(config_path.as_deref(), flags).map_err(usage)?,
    };
    let exp = settings.resolve().map_err(usage)?;
    let exp = match run::shard_of(shard.as_deref()).map_err(usage)? {
        Some((index, count)) => exp.shard(index, count).map_err(usage)?,
        None => exp,
    };
    let placement = device.check(&exp).map_err(usage)?;
    let claimed = match &out {
        Some(dir) => Some(run::new_run(&exp, dir, force).map_err(usage)?),
        None => {
            run::check_host_memory(&exp).map_err(usage)?;
            None
        }
    };
    let finished = watched(py, progress, |watch| {
        run::train_watched(exp, &placement, claimed.as_ref(), checkpoint_every, watch)
    })?;
    Ok(finished.into())
}

/// Continues the interrupted run in `dir` from its checkpoint, as `tms train --resume DIR`.
#[pyfunction]
#[pyo3(signature = (dir, backend, adapter, devices, checkpoint_every, progress))]
fn resume(
    py: Python<'_>,
    dir: PathBuf,
    backend: &str,
    adapter: Option<String>,
    devices: Option<Vec<String>>,
    checkpoint_every: Option<u32>,
    progress: Option<Py<PyAny>>,
) -> PyResult<NativeRun> {
    let device = device_of(backend, adapter, devices).map_err(usage)?;
    let finished = watched(py, progress, |watch| {
        run::resume_watched(&dir, &device, checkpoint_every, watch)
    })?;
    Ok(finished.into())
}

/// Reads a finished run directory (config.json, results.json, weights.safetensors).
#[pyfunction]
fn load(dir: PathBuf) -> PyResult<NativeRun> {
    let config = read_config(&dir).map_err(to_py)?;
    let results = read_results(&dir).map_err(to_py)?;
    let weights = read_weights(&dir).map_err(to_py)?;
    let (w, w2, b, shape) = (weights.w, weights.w2, weights.b, weights.shape);
    let exp = &config.experiment;
    if shape != [exp.instances.len(), exp.hidden, exp.features]
        || b.len() != exp.instances.len() * exp.features
        || results.instances.len() != exp.instances.len()
        || w2.as_ref().map(Vec::len) != exp.model.untied().then_some(w.len())
    {
        return Err(PyValueError::new_err(format!(
            "{}: weights.safetensors, results.json and config.json disagree on the shape of the run",
            dir.display()
        )));
    }
    Ok(NativeRun {
        config,
        results,
        w,
        w2,
        b,
    })
}

/// The command line `tms NAME ARGS...` parsed as the CLI parses it; a bad flag is ValueError with
/// clap's first line.
fn command_of(name: &str, args: Vec<String>) -> PyResult<tms::cli::Command> {
    let argv = ["tms", name].into_iter().map(String::from).chain(args);
    let cli = tms::cli::Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        PyValueError::new_err(first.trim_start_matches("error: ").to_string())
    })?;
    Ok(cli.command)
}

/// Runs `tms reproduce ARGS...` (the reproduction's name and its flags), watched by `progress`.
#[pyfunction]
#[pyo3(signature = (args, progress))]
fn reproduce(py: Python<'_>, args: Vec<String>, progress: Option<Py<PyAny>>) -> PyResult<()> {
    let tms::cli::Command::Reproduce(command) = command_of("reproduce", args)? else {
        unreachable!("the arguments start with reproduce")
    };
    watched(py, progress, |watch| {
        let (reproduction, options) = command.parts();
        tms::reproduce::reproduce(reproduction, options, watch)
    })
}

/// Runs `tms sae ARGS...` (the toy run directory and the command's flags) with the GIL released;
/// returns the sae.json it wrote.
#[pyfunction]
fn sae(py: Python<'_>, args: Vec<String>) -> PyResult<String> {
    let tms::cli::Command::Sae(options) = command_of("sae", args)? else {
        unreachable!("the arguments start with sae")
    };
    let file = py
        .detach(|| tms::sae::train_into(&options))
        .map_err(to_py)?;
    json(&file)
}

/// sae.json of an SAE output directory, checked as `tms` reads it.
#[pyfunction]
fn load_sae(dir: PathBuf) -> PyResult<String> {
    json(&tms::sae::read_sae_file(&dir).map_err(to_py)?)
}

/// The GPU adapters wgpu finds, best first, as `tms devices` lists them.
#[pyfunction]
fn devices() -> Vec<std::collections::BTreeMap<&'static str, String>> {
    tms::gpu::list_adapters()
        .into_iter()
        .map(|a| {
            std::collections::BTreeMap::from([
                ("description", a.to_string()),
                ("name", a.name),
                ("backend", a.backend),
                ("device_type", a.device_type),
            ])
        })
        .collect()
}

/// Every setting of `tms train` as (keyword, flag, help, possible values, takes a list), from the
/// command line's own declaration (tms::experiment::Settings), for tms.train's docstring.
#[pyfunction]
fn settings() -> Vec<(String, String, String, Vec<String>, bool)> {
    use clap::Args;
    let command = Settings::augment_args(clap::Command::new("train"));
    command
        .get_arguments()
        .map(|arg| {
            let values = arg
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            (
                arg.get_id().to_string(),
                arg.get_long().map_or(String::new(), |l| format!("--{l}")),
                arg.get_help().map_or(String::new(), ToString::to_string),
                values,
                arg.get_value_delimiter().is_some(),
            )
        })
        .collect()
}

#[pymodule]
fn _tms(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeRun>()?;
    module.add_function(wrap_pyfunction!(train, module)?)?;
    module.add_function(wrap_pyfunction!(resume, module)?)?;
    module.add_function(wrap_pyfunction!(load, module)?)?;
    module.add_function(wrap_pyfunction!(reproduce, module)?)?;
    module.add_function(wrap_pyfunction!(sae, module)?)?;
    module.add_function(wrap_pyfunction!(load_sae, module)?)?;
    module.add_function(wrap_pyfunction!(devices, module)?)?;
    module.add_function(wrap_pyfunction!(settings, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
