//! The WGSL sources of every pipeline, assembled from the generated interface prelude
//! ([`super::abi::prelude`]), the Philox generator and the shared code (`philox.wgsl`,
//! `common.wgsl`), then the kernel file (or the kernel [`super::register`] generates): WGSL has no
//! imports.

use super::abi;

const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// The kernels: (file name, kernel source).
const KERNELS: [(&str, &str); 5] = [
    ("features.wgsl", include_str!("../../shaders/features.wgsl")),
    (
        "split_adam.wgsl",
        include_str!("../../shaders/split_adam.wgsl"),
    ),
    ("tiled.wgsl", include_str!("../../shaders/tiled.wgsl")),
    (
        "tiled_adam.wgsl",
        include_str!("../../shaders/tiled_adam.wgsl"),
    ),
    ("sae.wgsl", include_str!("../../shaders/sae.wgsl")),
];

/// `kernel` (WGSL text) preceded by everything it may use.
pub fn with_prelude(kernel: &str) -> String {
    format!("{}\n{PHILOX}\n{COMMON}\n{kernel}", abi::prelude())
}

/// The complete source of kernel `name` (one of [`kernel_names`]), as handed to wgpu.
pub fn assembled(name: &str) -> String {
    let (_, kernel) = KERNELS
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no kernel {name}"));
    with_prelude(kernel)
}

/// The file names of all kernels.
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|(file, _)| *file)
}
