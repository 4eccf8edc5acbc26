//! `tms`: the toy models of Anthropic's "Toy Models of Superposition", trained on the CPU and on any
//! GPU through wgpu compute shaders, with result files that Python loads in one line.
//!
//! Reading order: [`config`] (what to train), [`features`] (the random data), [`model`] (the maths of
//! one sample), [`optim`] (Adam/AdamW), [`trainer`] (the interface every backend implements),
//! [`cpu`] (the reference trainer), [`gpu`] (the wgpu trainer), [`multi`] (several devices at once),
//! [`checkpoint`] (resumable runs), [`export`] (result files), [`merge`] (joining shards),
//! [`analysis`] (superposition metrics), [`figures`] (the paper's plots), [`reproduce`] (whole
//! experiments), [`bench`] (timings), [`cli`] (the command line).

pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod export;
pub mod features;
pub mod figures;
pub mod gpu;
pub mod merge;
pub mod model;
pub mod multi;
pub mod optim;
pub mod reproduce;
pub mod trainer;
