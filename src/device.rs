//! Where training runs, as one value: [`Device`] is the CPU trainer, a GPU adapter, the automatic
//! choice between them, or several devices sharing one sweep. [`Device::check`] is the one place
//! that decides whether and how a device trains an experiment, before anything is written; the
//! [`Placement`] it returns is the one place that builds the trainer. The command line's
//! `--backend`, `--adapter` and `--devices` become a `Device` ([`Device::from_flags`]) before
//! anything is written; `tms bench` lists every available one ([`Device::every`]).

use crate::cpu::CpuTrainer;
use crate::error::UsageError;
use crate::experiment::Experiment;
use crate::gpu::{adapter_position, list_adapters, GpuOptions, GpuPlan, GpuTrainer};
use crate::multi::{parts, MultiTrainer, SendTrainer, WorkerFactory};
use crate::trainer::TrainState;

/// Which kind of trainer the command line asks for (`--backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A GPU adapter when there is one, otherwise the CPU.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// A place to train.
#[derive(Clone, Debug, PartialEq)]
pub enum Device {
    /// The CPU trainer.
    Cpu,
    /// A GPU adapter: its number or a substring of its name as `tms devices` lists them (None: the
    /// first).
    Gpu { adapter: Option<String> },
    /// A hardware GPU adapter (optionally a given one) if one can train the experiment, otherwise the
    /// CPU, saying so in one line.
    Auto { adapter: Option<String> },
    /// Several devices, each training a contiguous part of the instances.
    Many(Vec<Device>),
}

impl Device {
    /// The device of `--backend`, `--adapter` and `--devices` (a list of `all`, adapter numbers or
    /// names, and `cpu`). Every adapter named must exist, and `--backend gpu` or `all` needs one:
    /// refused here, before a run directory is touched.
    pub fn from_flags(
        backend: BackendChoice,
        adapter: Option<String>,
        devices: Option<&[String]>,
    ) -> Result<Device, UsageError> {
        let names: Vec<String> = match (backend, &adapter, devices) {
            (BackendChoice::Cpu | BackendChoice::Auto, None, None) => vec![],
            _ => list_adapters().into_iter().map(|a| a.name).collect(),
        };
        let check = |flag: &str, want: &str| match adapter_position(&names, want) {
            Some(_) => Ok(()),
            None => Err(UsageError::invalid(
                flag,
                want,
                &format!("no GPU adapter matches; tms devices lists {}", names.len()),
            )),
        };
        let Some(list) = devices else {
            if let Some(want) = &adapter {
                check("adapter", want)?;
            }
            return match backend {
                BackendChoice::Cpu if adapter.is_some() => Err(UsageError(
                    "--adapter picks a GPU adapter; it cannot go with --backend cpu".into(),
                )),
                BackendChoice::Cpu => Ok(Device::Cpu),
                BackendChoice::Gpu if names.is_empty() => Err(UsageError(
                    "invalid backend: gpu (no GPU adapter found; see tms devices)".into(),
                )),
                BackendChoice::Gpu => Ok(Device::Gpu { adapter }),
                BackendChoice::Auto => Ok(Device::Auto { adapter }),
            };
        };
        let mut workers = vec![];
        for item in list {
            match item.trim() {
                "all" => {
                    let count = names.len();
                    if count == 0 {
                        return Err(UsageError(
                            "invalid --devices: all (no GPU adapter found; see tms devices)".into(),
                        ));
                    }
                    workers.extend((0..count).map(|i| Device::Gpu {
                        adapter: Some(i.to_string()),
                    }));
                }
                "cpu" => workers.push(Device::Cpu),
                name => {
                    check("devices", name)?;
                    workers.push(Device::Gpu {
                        adapter: Some(name.to_string()),
                    })
                }
            }
        }
        Ok(Device::Many(workers))
    }

    /// Every device `tms bench` times for `backend`, with its name: the CPU trainer, and each
    /// adapter by its number in `tms devices`.
    pub fn every(backend: BackendChoice) -> Vec<(String, Device)> {
        let mut devices = vec![];
        if backend != BackendChoice::Gpu {
            devices.push(("cpu".to_string(), Device::Cpu));
        }
        if backend != BackendChoice::Cpu {
            for (index, adapter) in list_adapters().into_iter().enumerate() {
                devices.push((
                    format!("gpu {index} ({})", adapter.backend),
                    Device::Gpu {
                        adapter: Some(index.to_string()),
                    },
                ));
            }
        }
        devices
    }

    /// Checks `exp` on this device before a run directory is touched: refuses what it cannot train
    /// (a GPU adapter's [`GpuPlan::new`]; for several devices, each on its part of the instances)
    /// and returns the checked [`Placement`] that builds the trainer. `auto` falls back to the CPU
    /// instead of refusing.
    pub fn check(&self, exp: &Experiment) -> Result<Placement, UsageError> {
        let options = |adapter: &Option<String>| GpuOptions {
            adapter: adapter.clone(),
            ..Default::default()
        };
        Ok(match self {
            Device::Cpu => Placement::Cpu,
            Device::Gpu { adapter } => Placement::Gpu(GpuPlan::new(exp, &options(adapter))?),
            // Software adapters (llvmpipe/lavapipe) run the kernels on the CPU, far slower than the
            // CPU trainer: `auto` only takes a hardware GPU; `gpu` takes whatever there is.
            Device::Auto { .. } if !list_adapters().iter().any(|a| !a.software()) => {
                Placement::Auto(Err("no hardware GPU adapter found".into()))
            }
            Device::Auto { adapter } => Placement::Auto(
                GpuPlan::new(exp, &options(adapter))
                    .map_err(|e| format!("the GPU adapter cannot train this ({})", e.0)),
            ),
            Device::Many(devices) => Placement::Many(
                parts(devices.len(), exp.instances.len())
                    .into_iter()
                    .zip(devices)
                    .map(|(range, device)| device.check(&exp.subset(range)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Checks `exp` on this device and builds its trainer from `state` (for callers with nothing to
    /// write before training; see [`Placement::trainer`]).
    pub fn trainer(
        &self,
        exp: &Experiment,
        state: TrainState,
    ) -> anyhow::Result<(SendTrainer, &'static str)> {
        self.check(exp)?.trainer(exp, state)
    }
}

/// A device checked for one experiment by [`Device::check`]: every refusal made, what remains is
/// building the trainer.
#[derive(Clone, Debug)]
pub enum Placement {
    Cpu,
    Gpu(GpuPlan),
    /// `auto`: the GPU's plan, or why the CPU trains instead.
    Auto(Result<GpuPlan, String>),
    /// One placement per worker, for its part of the instances ([`parts`]).
    Many(Vec<Placement>),
}

impl Placement {
    /// Builds the trainer of `exp` (the experiment this was checked for) from `state`; returns it
    /// with the backend's name for config.json (`cpu`, `gpu` or `devices`).
    pub fn trainer(
        &self,
        exp: &Experiment,
        state: TrainState,
    ) -> anyhow::Result<(SendTrainer, &'static str)> {
        let cpu = |state| -> (SendTrainer, &'static str) {
            (Box::new(CpuTrainer::new(exp, state)), "cpu")
        };
        if let Placement::Gpu(plan) | Placement::Auto(Ok(plan)) = self {
            anyhow::ensure!(plan.experiment() == exp, "a GPU plan of another experiment");
        }
        match self {
            Placement::Cpu => Ok(cpu(state)),
            Placement::Gpu(plan) => Ok((Box::new(GpuTrainer::new(plan, state)?), "gpu")),
            Placement::Auto(Err(why)) => {
                eprintln!("{why}; training on the CPU");
                Ok(cpu(state))
            }
            Placement::Auto(Ok(plan)) => match GpuTrainer::new(plan, state.clone()) {
                Ok(trainer) => Ok((Box::new(trainer), "gpu")),
                Err(e) => {
                    eprintln!(
                        "the GPU adapter cannot train this ({}); training on the CPU",
                        crate::error::one_line(&e)
                    );
                    Ok(cpu(state))
                }
            },
            Placement::Many(workers) => {
                let workers = workers
                    .iter()
                    .map(|worker| -> WorkerFactory<'_> {
                        Box::new(move |exp: &Experiment, state| Ok(worker.trainer(exp, state)?.0))
                    })
                    .collect();
                Ok((Box::new(MultiTrainer::new(exp, state, workers)?), "devices"))
            }
        }
    }
}
