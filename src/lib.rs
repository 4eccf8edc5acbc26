//! `tms`: the toy models of Anthropic's "Toy Models of Superposition", trained on the CPU and on any
//! GPU through wgpu compute shaders, with result files that Python loads in one line.
//!
//! Reading order: [`config`] (what to train), [`features`] (the random data), [`model`] (the maths of
//! one sample), [`optim`] (Adam/AdamW), [`trainer`] (the interface every backend implements),
//! [`cpu`] (the reference trainer), [`gpu`] (the wgpu trainer), [`export`] (result files), [`cli`] (the command line).

pub mod bench;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod export;
pub mod features;
pub mod gpu;
pub mod model;
pub mod optim;
pub mod trainer;
