//! Every WGSL kernel, as assembled for its pipelines (the static files, and the register kernel
//! generated for several model sizes in each of its variants), parses and validates with naga and
//! translates to SPIR-V, MSL and HLSL without error, and naga lays out the interface structs exactly
//! as the host does (no adapter needed).

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use tms::gpu::abi::{Config, Params, SaeEntry, WgslField, WgslStruct};
use tms::gpu::register::{self, Variant};
use tms::gpu::shaders::{assembled, kernel_names, with_prelude};
use tms::optim::StepConstants;

/// Every kernel source the host can hand to wgpu: (name, complete source, whether it uses
/// subgroup operations). The generated ones at the seed's size, at odd sizes and at the register
/// kernel's largest model, each with W in registers and in workgroup memory, summed with subgroup
/// operations (smallest subgroups of 4, WebGPU's minimum, and 32: the latter with the cooperative
/// sampler, over one block of chunks or, at n = 70, two) and without, whole or split.
fn all_kernels() -> Vec<(String, String, bool)> {
    let mut all: Vec<_> = kernel_names()
        .map(|name| (name.to_string(), assembled(name), false))
        .collect();
    for (n, m) in [(20, 5), (13, 3), (5, 2), (1, 1), (16, 15), (70, 2)] {
        for w_in_registers in [true, false] {
            for subgroup_min_size in [None, Some(4), Some(32)] {
                for split in [false, true] {
                    let variant = Variant {
                        w_in_registers,
                        subgroup_min_size,
                        split,
                        // The hidden ReLU only adds selects, the abs model (whole instances
                        // only) a second matrix: one size of each is enough.
                        hidden_relu: (n, m) == (13, 3) || (n, m) == (5, 2),
                        abs: (n, m) == (5, 2) && !split,
                        cooperative: subgroup_min_size == Some(32),
                    };
                    all.push((
                        format!("register n {n} m {m} {variant:?}"),
                        with_prelude(&register::kernel(n, m, variant)),
                        subgroup_min_size.is_some(),
                    ));
                }
            }
        }
    }
    all
}

/// The members of WGSL struct `name` in `module`: (name, offset), and the struct's size.
fn naga_layout(module: &naga::Module, name: &str) -> (Vec<(String, u32)>, u32) {
    let (_, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no struct {name}"));
    match &ty.inner {
        naga::TypeInner::Struct { members, span } => (
            members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                .collect(),
            *span,
        ),
        other => panic!("{name} is not a struct: {other:?}"),
    }
}

fn rust_layout<T: WgslStruct>() -> (Vec<(String, u32)>, u32) {
    (
        T::FIELDS
            .iter()
            .map(|&WgslField { name, offset, .. }| (name.to_string(), offset as u32))
            .collect(),
        std::mem::size_of::<T>() as u32,
    )
}

/// The structs the host writes have the same members, offsets and sizes in naga as in Rust, in every
/// kernel; the arrays after them start where the host puts them.
#[test]
fn interface_structs_have_the_host_layout() {
    for (name, source, _) in all_kernels() {
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        assert_eq!(
            naga_layout(&module, "Config"),
            rust_layout::<Config>(),
            "{name}: Config"
        );
        assert_eq!(
            naga_layout(&module, "Params"),
            rust_layout::<Params>(),
            "{name}: Params"
        );
        assert_eq!(
            naga_layout(&module, "StepConstants"),
            rust_layout::<StepConstants>(),
            "{name}: StepConstants"
        );
        let (shard, _) = naga_layout(&module, "Shard");
        assert_eq!(
            shard[1],
            ("words".into(), std::mem::size_of::<Config>() as u32)
        );
        let (dispatch, _) = naga_layout(&module, "Dispatch");
        assert_eq!(
            dispatch[1],
            ("constants".into(), std::mem::size_of::<Params>() as u32)
        );
    }
    let sae = naga::front::wgsl::parse_str(&assembled("sae.wgsl")).unwrap();
    assert_eq!(
        naga_layout(&sae, "SaeEntry"),
        rust_layout::<SaeEntry>(),
        "sae.wgsl: SaeEntry"
    );
}

/// No kernel file writes a binding number or a workgroup size as a literal: they come from the
/// generated prelude.
#[test]
fn kernel_files_take_numbers_from_the_prelude() {
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders")).unwrap();
    for file in files {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for attribute in ["@binding(", "@workgroup_size("] {
            for (at, _) in text.match_indices(attribute) {
                let next = text[at + attribute.len()..].chars().next().unwrap();
                assert!(
                    !next.is_ascii_digit(),
                    "{}: {attribute} takes a literal",
                    path.display()
                );
            }
        }
        for line in text.lines() {
            assert!(
                !line.trim_start().starts_with("const "),
                "{}: kernel constants belong in src/gpu/abi.rs: {line}",
                path.display()
            );
        }
    }
}

#[test]
fn every_kernel_validates_and_translates() {
    let names: Vec<_> = kernel_names().collect();
    assert_eq!(
        names,
        [
            "features.wgsl",
            "split_adam.wgsl",
            "tiled.wgsl",
            "tiled_adam.wgsl",
            "sae.wgsl"
        ]
    );
    for (name, source, subgroups) in all_kernels() {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let capabilities = if subgroups {
            Capabilities::SUBGROUP
        } else {
            Capabilities::empty()
        };
        let info = Validator::new(ValidationFlags::all(), capabilities)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        assert!(
            module
                .entry_points
                .iter()
                .all(|e| e.stage == naga::ShaderStage::Compute),
            "{name}: compute kernels only"
        );

        let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{name} → SPIR-V: {e}"));
        assert!(!words.is_empty());

        // Subgroup operations need Metal 2.1 and shader model 6.0.
        let msl_options = msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        };
        for entry in &module.entry_points {
            let pipeline = msl::PipelineOptions {
                entry_point: Some((entry.stage, entry.name.clone())),
                ..Default::default()
            };
            let (text, _) = msl::write_string(&module, &info, &msl_options, &pipeline)
                .unwrap_or_else(|e| panic!("{name}:{} → MSL: {e}", entry.name));
            assert!(
                text.contains(&entry.name),
                "{name}: MSL lacks {}",
                entry.name
            );
        }

        let mut text = String::new();
        let options = hlsl::Options {
            shader_model: hlsl::ShaderModel::V6_0,
            ..Default::default()
        };
        let pipeline = hlsl::PipelineOptions::default();
        hlsl::Writer::new(&mut text, &options, &pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{name} → HLSL: {e}"));
        for entry in &module.entry_points {
            assert!(
                text.contains(&entry.name),
                "{name}: HLSL lacks {}",
                entry.name
            );
        }
    }
}
