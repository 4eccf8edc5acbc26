//! Every WGSL kernel, as assembled for its pipelines, parses and validates with naga and translates to
//! SPIR-V, MSL and HLSL without error (no adapter needed).

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use tms::gpu::shaders::{assembled, kernel_names};

#[test]
fn every_kernel_validates_and_translates() {
    let names: Vec<_> = kernel_names().collect();
    assert_eq!(names.len(), 4, "features, small, tiled, tiled_adam");
    for name in names {
        let source = assembled(name);
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
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

        for entry in &module.entry_points {
            let pipeline = msl::PipelineOptions {
                entry_point: Some((entry.stage, entry.name.clone())),
                ..Default::default()
            };
            let (text, _) = msl::write_string(&module, &info, &msl::Options::default(), &pipeline)
                .unwrap_or_else(|e| panic!("{name}:{} → MSL: {e}", entry.name));
            assert!(
                text.contains(&entry.name),
                "{name}: MSL lacks {}",
                entry.name
            );
        }

        let mut text = String::new();
        let options = hlsl::Options::default();
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
