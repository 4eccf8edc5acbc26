//! `tms`: the toy models of Anthropic's "Toy Models of Superposition", trained on the CPU and on any
//! GPU through wgpu compute shaders, with result files that Python loads in one line.
//!
//! Dependencies run one way, from the command line down to the maths: [`cli`] → {[`run`],
//! [`reproduce`], [`merge`], [`bench`], [`sae`], [`web`]} → {[`figures`], [`analysis`], [`store`], [`device`]} →
//! {[`cpu`], [`gpu`], [`multi`]} → [`trainer`] → {[`experiment`], [`model`], [`features`],
//! [`optim`]}, with [`error`] beneath them all. Nothing imports `cli` (tests/module_graph.rs checks).
//!
//! Reading order: [`experiment`] (what to train, and the settings that describe it), [`features`]
//! (the random data), [`model`] (the maths of one sample), [`optim`] (Adam/AdamW), [`trainer`] (the
//! interface every backend implements), [`cpu`] (the reference trainer), [`gpu`] (the wgpu trainer),
//! [`multi`] (several devices at once), [`device`] (choosing and building a trainer), [`store`] (file
//! formats: checkpoints and result files), [`run`] (training an experiment into a run directory),
//! [`merge`] (joining shards), [`analysis`] (superposition metrics), [`figures`] (the paper's plots),
//! [`reproduce`] (whole experiments), [`sae`] (sparse autoencoders on trained toy models, scored against
//! the true features), [`bench`] (timings), [`web`] (the
//! static site that trains in the browser through WebGPU), [`cli`] (the command line), [`error`] (the
//! errors with their own exit status), [`testing`] (fixtures for tests).

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod device;
pub mod error;
pub mod experiment;
pub mod features;
pub mod figures;
pub mod gpu;
pub mod merge;
pub mod model;
pub mod multi;
pub mod optim;
pub mod reproduce;
pub mod run;
pub mod sae;
pub mod store;
pub mod testing;
pub mod trainer;
pub mod web;
