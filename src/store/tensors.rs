//! The one safetensors helper: named f32 and u32 tensors (little-endian, as safetensors stores them)
//! with optional string metadata, to bytes and back. Checkpoints and `weights.safetensors` both go
//! through it, so the dtype and shape checks live in one place.

use anyhow::Context;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

/// An f32 tensor of `shape` over `data` (not copied), to pass to [`to_bytes`].
pub fn f32_tensor(data: &[f32], shape: Vec<usize>) -> anyhow::Result<TensorView<'_>> {
    Ok(TensorView::new(
        Dtype::F32,
        shape,
        bytemuck::cast_slice(data),
    )?)
}

/// A u32 tensor of `shape` over `data` (not copied), to pass to [`to_bytes`].
pub fn u32_tensor(data: &[u32], shape: Vec<usize>) -> anyhow::Result<TensorView<'_>> {
    Ok(TensorView::new(
        Dtype::U32,
        shape,
        bytemuck::cast_slice(data),
    )?)
}

/// The safetensors bytes of `tensors` (in this order) with `metadata`.
pub fn to_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, TensorView<'a>)>,
    metadata: Option<HashMap<String, String>>,
) -> anyhow::Result<Vec<u8>> {
    Ok(safetensors::serialize(tensors, metadata)?)
}

/// A safetensors file read into memory.
pub struct TensorFile {
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Parses `bytes`, refusing anything that is not a safetensors file.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<TensorFile> {
        SafeTensors::deserialize(&bytes)?;
        Ok(TensorFile { bytes })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked in from_bytes")
    }

    /// The file's string metadata (empty when it has none).
    pub fn metadata(&self) -> anyhow::Result<HashMap<String, String>> {
        let (_, header) = SafeTensors::read_metadata(&self.bytes)?;
        Ok(header.metadata().clone().unwrap_or_default())
    }

    /// The raw 4-byte words of tensor `name`, checked to be of `dtype`, and its shape.
    fn words(&self, name: &str, dtype: Dtype) -> anyhow::Result<(Vec<[u8; 4]>, Vec<usize>)> {
        let tensors = self.tensors();
        let t = tensors
            .tensor(name)
            .with_context(|| format!("no tensor {name}"))?;
        anyhow::ensure!(t.dtype() == dtype, "{name} is not {dtype:?}");
        let words = t
            .data()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        Ok((words, t.shape().to_vec()))
    }

    /// The names of the file's tensors.
    pub fn names(&self) -> Vec<String> {
        self.tensors()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> anyhow::Result<Vec<usize>> {
        let tensors = self.tensors();
        let t = tensors
            .tensor(name)
            .with_context(|| format!("no tensor {name}"))?;
        Ok(t.shape().to_vec())
    }

    /// The bytes of tensor `name`, checked to be of `dtype` and `shape`, borrowed from the file.
    pub fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> anyhow::Result<&[u8]> {
        let tensors = self.tensors();
        let t = tensors
            .tensor(name)
            .with_context(|| format!("no tensor {name}"))?;
        anyhow::ensure!(
            t.dtype() == dtype,
            "{name} is {:?}, not {dtype:?}",
            t.dtype()
        );
        anyhow::ensure!(
            t.shape() == shape,
            "{name} has shape {:?}, not {shape:?}",
            t.shape()
        );
        Ok(t.data())
    }

    /// The values and shape of f32 tensor `name`.
    pub fn f32(&self, name: &str) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
        let (words, shape) = self.words(name, Dtype::F32)?;
        Ok((words.into_iter().map(f32::from_le_bytes).collect(), shape))
    }

    /// The values of u32 tensor `name`.
    pub fn u32(&self, name: &str) -> anyhow::Result<Vec<u32>> {
        let (words, _) = self.words(name, Dtype::U32)?;
        Ok(words.into_iter().map(u32::from_le_bytes).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_and_metadata_round_trip_bit_for_bit() {
        let w = [1.5f32, -0.0, f32::NAN, 3.0e-39];
        let steps = [0u32, 100, 4_000_000_000];
        let metadata = HashMap::from([("step".to_string(), "7".to_string())]);
        let bytes = to_bytes(
            [
                ("W", f32_tensor(&w, vec![2, 2]).unwrap()),
                ("steps", u32_tensor(&steps, vec![3]).unwrap()),
            ],
            Some(metadata.clone()),
        )
        .unwrap();
        let file = TensorFile::from_bytes(bytes).unwrap();
        let (back, shape) = file.f32("W").unwrap();
        assert_eq!(shape, vec![2, 2]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&w));
        assert_eq!(file.u32("steps").unwrap(), steps);
        assert_eq!(file.metadata().unwrap(), metadata);
        assert!(file
            .f32("steps")
            .unwrap_err()
            .to_string()
            .contains("not F32"));
        assert!(TensorFile::from_bytes(b"not a safetensors file".to_vec()).is_err());
    }
}
