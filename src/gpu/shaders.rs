//! The WGSL sources of every pipeline, assembled from `shaders/`: the Philox generator and the shared
//! code (`philox.wgsl`, `common.wgsl`) are prepended to each kernel file, since WGSL has no imports.

const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// The kernels: (file name, kernel source).
const KERNELS: [(&str, &str); 4] = [
    ("features.wgsl", include_str!("../../shaders/features.wgsl")),
    ("small.wgsl", include_str!("../../shaders/small.wgsl")),
    ("tiled.wgsl", include_str!("../../shaders/tiled.wgsl")),
    (
        "tiled_adam.wgsl",
        include_str!("../../shaders/tiled_adam.wgsl"),
    ),
];

/// The complete source of kernel `name` (one of [`kernel_names`]), as handed to wgpu.
pub fn assembled(name: &str) -> String {
    let (_, kernel) = KERNELS
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no kernel {name}"));
    format!("{PHILOX}\n{COMMON}\n{kernel}")
}

/// The file names of all kernels.
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|(file, _)| *file)
}
