//! safetensors files, memory-mapped: the header scan touches only the header pages.

use std::fs::File;
use std::path::Path;

use candle_core::{Device, Tensor};
use memmap2::Mmap;
use safetensors::SafeTensors;

use super::{FileScan, TensorHeader};
use crate::error::{LoadError, Result};

const FORMAT: &str = "safetensors";

/// Memory-maps `path` read-only.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    // SAFETY: the map is read-only and lives only while one checkpoint is read; lineage never
    // writes checkpoint files. A file truncated by another process while mapped is outside our control.
    unsafe { Mmap::map(&file) }.map_err(|e| LoadError::io(path, e))
}

/// Reads and validates the header (names, dtypes, shapes, offsets against the file size) without
/// reading tensor data.
pub fn scan(path: &Path) -> Result<FileScan> {
    let mmap = map(path)?;
    let (_, metadata) =
        SafeTensors::read_metadata(&mmap).map_err(|e| LoadError::malformed(path, FORMAT, describe(&e, &mmap)))?;
    let mut tensors: Vec<(usize, TensorHeader)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let header = TensorHeader {
                name,
                dtype: format!("{:?}", info.dtype).to_ascii_lowercase(),
                shape: info.shape.clone(),
            };
            (info.data_offsets.0, header)
        })
        .collect();
    tensors.sort_by_key(|(offset, h)| (*offset, h.name.clone()));
    Ok(FileScan {
        tensors: tensors.into_iter().map(|(_, h)| h).collect(),
        global_step: None,
    })
}

/// Loads every tensor of the file (validated as in [`scan`]) onto the CPU.
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mmap = map(path)?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| LoadError::malformed(path, FORMAT, describe(&e, &mmap)))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let tensor =
                candle_core::safetensors::Load::load(&view, &Device::Cpu).map_err(|e| LoadError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    dtype: format!("{:?} ({e})", view.dtype()),
                })?;
            Ok((name, tensor))
        })
        .collect()
}

/// A readable explanation of a safetensors error; `bytes` is the file, used to name the culprit tensor.
fn describe(err: &safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::HeaderTooSmall => "file too short to hold a header (truncated?)".into(),
        E::InvalidHeaderLength => "header length exceeds the file size (truncated?)".into(),
        E::MetadataIncompleteBuffer => {
            "tensor data does not end where the file ends (truncated, or offsets in the header are wrong)".into()
        }
        E::InvalidOffset(name) => format!("tensor `{name}` has offsets that do not fit its shape and dtype"),
        E::TensorInvalidInfo => match tensor_with_wrong_size(bytes) {
            Some((name, declared, expected)) => format!(
                "the header lies about tensor `{name}`: its offsets span {declared} bytes but its shape and dtype need {expected}"
            ),
            None => err.to_string(),
        },
        other => other.to_string(),
    }
}

/// Finds a tensor whose data offsets disagree with its shape and dtype: (name, declared, expected bytes).
fn tensor_with_wrong_size(bytes: &[u8]) -> Option<(String, u64, u64)> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(len)?)?).ok()?;
    header.as_object()?.iter().find_map(|(name, info)| {
        let dtype: safetensors::Dtype = serde_json::from_value(info.get("dtype")?.clone()).ok()?;
        let shape: Vec<u64> = serde_json::from_value(info.get("shape")?.clone()).ok()?;
        let offsets: Vec<u64> = serde_json::from_value(info.get("data_offsets")?.clone()).ok()?;
        let expected = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))?
            .checked_mul(dtype.bitsize() as u64)?
            / 8;
        let declared = offsets.get(1)?.checked_sub(*offsets.first()?)?;
        (declared != expected).then(|| (name.clone(), declared, expected))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/digits-mlp")
            .join(rel)
    }

    #[test]
    fn scans_fixture_header() {
        let scan = scan(&fixture("zoo_safetensors/init0_order0/step1500/model.safetensors")).unwrap();
        let names: Vec<_> = scan.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 6);
        assert!(names.contains(&"fc1.weight"));
        let fc1 = scan.tensors.iter().find(|t| t.name == "fc1.weight").unwrap();
        assert_eq!(fc1.shape, vec![128, 64]);
        assert_eq!(fc1.dtype, "f32");
        assert_eq!(scan.tensors.iter().map(TensorHeader::elem_count).sum::<usize>(), 26_122);
    }

    #[test]
    fn fp16_fixture_reports_f16() {
        let scan = scan(&fixture("zoo_fp16/init0_order0/step1500/model.safetensors")).unwrap();
        assert!(scan.tensors.iter().all(|t| t.dtype == "f16"));
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let src = std::fs::read(fixture("zoo_safetensors/init0_order0/step0/model.safetensors")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.safetensors");
        std::fs::write(&path, &src[..src.len() / 2]).unwrap();
        let err = scan(&path).unwrap_err().to_string();
        assert!(err.contains("cut.safetensors") && err.contains("truncated"), "{err}");
        assert!(load(&path).is_err());
    }

    #[test]
    fn header_lying_about_offsets_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar.safetensors");
        let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}}"#;
        let mut f = File::create(&path).unwrap();
        f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
        f.write_all(header).unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        drop(f);
        let err = scan(&path).unwrap_err().to_string();
        assert!(err.contains("liar.safetensors") && err.contains("`w`"), "{err}");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        std::fs::write(&path, [0xffu8; 3]).unwrap();
        assert!(scan(&path).unwrap_err().to_string().contains("junk.safetensors"));
        std::fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
        assert!(scan(&path).is_err());
    }
}
