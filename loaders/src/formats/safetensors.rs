//! safetensors files, memory-mapped: the header scan touches only the header pages.
//!
//! The header is parsed and checked here, before any tensor is touched: every tensor's dtype, shape
//! and byte range must agree and lie inside the file, and no two tensors may overlap. Errors name
//! the file and the tensor at fault.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::Deserialize;

use super::{FileScan, TensorHeader};
use crate::error::{LoadError, Result};

const FORMAT: &str = "safetensors";
/// Largest header accepted (as the `safetensors` crate).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Memory-maps `path` read-only.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    // SAFETY: the map is read-only and lives only while one checkpoint is read; lineage never
    // writes checkpoint files. A file truncated by another process while mapped is outside our control.
    unsafe { Mmap::map(&file) }.map_err(|e| LoadError::io(path, e))
}

/// One tensor as the header declares it, checked against the file.
#[derive(Debug)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the file (header included), inside the file.
    start: usize,
    end: usize,
}

/// A header entry as written.
#[derive(Deserialize)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Reads and validates the header (names, dtypes, shapes, offsets against the file size) without
/// reading tensor data.
pub fn scan(path: &Path) -> Result<FileScan> {
    let mmap = map(path)?;
    let entries = read_header(path, &mmap)?;
    Ok(FileScan {
        tensors: entries
            .into_iter()
            .map(|e| TensorHeader {
                name: e.name,
                dtype: format!("{:?}", e.dtype).to_ascii_lowercase(),
                shape: e.shape,
            })
            .collect(),
        global_step: None,
    })
}

/// Loads every tensor of the file (validated as in [`scan`]) onto the CPU.
pub fn load(path: &Path) -> Result<Vec<(String, Tensor)>> {
    load_selected(path, &|_| true)
}

/// Loads the tensors whose names `wanted` accepts, after the whole header was checked as in
/// [`scan`]; the others are never read.
pub fn load_selected(path: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>> {
    let mmap = map(path)?;
    read_header(path, &mmap)?
        .into_iter()
        .filter(|e| wanted(&e.name))
        .map(|e| {
            let unsupported = |why: String| LoadError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: e.name.clone(),
                dtype: format!("{:?} ({why})", e.dtype),
            };
            let view = TensorView::new(e.dtype, e.shape.clone(), &mmap[e.start..e.end])
                .map_err(|err| LoadError::malformed(path, FORMAT, format!("tensor `{}`: {err}", e.name)))?;
            let tensor = view.load(&Device::Cpu).map_err(|err| unsupported(err.to_string()))?;
            Ok((e.name, tensor))
        })
        .collect()
}

/// Parses the header of the file `bytes` and checks every entry against the file, in file order.
fn read_header(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>> {
    let malformed = |reason: String| LoadError::malformed(path, FORMAT, reason);
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(malformed("file too short to hold a header (truncated?)".into()));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_HEADER_BYTES {
        return Err(malformed(format!(
            "header length {header_len} is implausibly large (corrupt file?)"
        )));
    }
    let data_start = 8 + header_len as usize;
    let Some(header) = bytes.get(8..data_start) else {
        return Err(malformed(format!(
            "header length {header_len} exceeds the file size {} (truncated?)",
            bytes.len()
        )));
    };
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| malformed(format!("the header is not valid JSON: {e}")))?;
    let data_len = bytes.len() - data_start;
    let mut entries = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: RawEntry =
            serde_json::from_value(value).map_err(|e| malformed(format!("tensor `{name}`: bad header entry: {e}")))?;
        let (start, end) = check_entry(&name, &entry, data_len).map_err(&malformed)?;
        entries.push(Entry {
            name,
            dtype: entry.dtype,
            shape: entry.shape,
            start: data_start + start,
            end: data_start + end,
        });
    }
    entries.sort_by(|a, b| (a.start, a.end, &a.name).cmp(&(b.start, b.end, &b.name)));
    check_overlaps(&entries, data_start).map_err(malformed)?;
    Ok(entries)
}

/// Checks one entry's offsets against its shape and dtype and against the data section's length;
/// returns its byte range within the data section.
fn check_entry(name: &str, entry: &RawEntry, data_len: usize) -> std::result::Result<(usize, usize), String> {
    let (start, end) = entry.data_offsets;
    let expected = entry
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(entry.dtype.bitsize()))
        .filter(|bits| bits % 8 == 0)
        .map(|bits| bits / 8)
        .ok_or_else(|| {
            format!(
                "tensor `{name}`: shape {:?} of {:?} is not a whole number of bytes or absurdly large",
                entry.shape, entry.dtype
            )
        })?;
    if end < start {
        return Err(format!(
            "tensor `{name}`: data offsets [{start}, {end}] end before they start"
        ));
    }
    if end - start != expected {
        return Err(format!(
            "the header lies about tensor `{name}`: its offsets span {} bytes but its shape {:?} and dtype {:?} need {expected}",
            end - start,
            entry.shape,
            entry.dtype
        ));
    }
    if end > data_len {
        return Err(format!(
            "tensor `{name}`: its data (bytes {start}..{end} after the header) extends past the end of the file, \
             which holds {data_len} data bytes (truncated?)"
        ));
    }
    Ok((start, end))
}

/// Checks that no tensor's bytes overlap another's (`entries` sorted by start); the tensor blamed is
/// the one starting inside the other.
fn check_overlaps(entries: &[Entry], data_start: usize) -> std::result::Result<(), String> {
    let mut previous: Option<&Entry> = None;
    for entry in entries.iter().filter(|e| e.end > e.start) {
        if let Some(prev) = previous.filter(|p| entry.start < p.end) {
            return Err(format!(
                "tensor `{}` (data bytes {}..{}) overlaps tensor `{}` (data bytes {}..{}): the header is corrupt",
                entry.name,
                entry.start - data_start,
                entry.end - data_start,
                prev.name,
                prev.start - data_start,
                prev.end - data_start,
            ));
        }
        if previous.is_none_or(|p| entry.end > p.end) {
            previous = Some(entry);
        }
    }
    Ok(())
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

    fn write_raw(path: &Path, header: &[u8], data: usize) {
        let mut f = File::create(path).unwrap();
        f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
        f.write_all(header).unwrap();
        f.write_all(&vec![0u8; data]).unwrap();
    }

    #[test]
    fn overlapping_offsets_blame_the_overlapping_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlap.safetensors");
        // `b` was moved into `a`'s bytes; `a` and `z` are fine. Names sort `a` < `b` < `z` and the
        // offending tensor is not the first in any order.
        let header = br#"{"z":{"dtype":"F32","shape":[4],"data_offsets":[32,48]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
        write_raw(&path, header, 48);
        for err in [scan(&path).unwrap_err(), load(&path).unwrap_err()] {
            let err = err.to_string();
            assert!(
                err.contains("overlap.safetensors")
                    && err.contains("tensor `b` (data bytes 8..24) overlaps tensor `a`"),
                "{err}"
            );
            assert_eq!(err.matches("overlap.safetensors").count(), 1, "{err}");
        }
        // Whichever name sorts first, the tensor starting inside another is the one blamed.
        let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
        write_raw(&path, header, 32);
        let err = scan(&path).unwrap_err().to_string();
        assert!(
            err.contains("tensor `a` (data bytes 16..32) overlaps tensor `b`"),
            "{err}"
        );
    }

    #[test]
    fn declared_ranges_are_checked_against_the_file_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.safetensors");
        let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"huge":{"dtype":"F32","shape":[1073741824],"data_offsets":[16,4294967312]}}"#;
        write_raw(&path, header, 16);
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("big.safetensors") && err.contains("`huge`") && err.contains("past the end"),
            "{err}"
        );
        // Tensors not asked for are never read, but the header must still be sound.
        let err = load_selected(&path, &|n| n == "w").unwrap_err().to_string();
        assert!(err.contains("`huge`"), "{err}");
        let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"flags":{"dtype":"BOOL","shape":[2],"data_offsets":[16,18]},"__metadata__":{"format":"pt"}}"#;
        write_raw(&path, header, 18);
        let loaded = load_selected(&path, &|n| n == "w").unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(scan(&path).unwrap().tensors[1].dtype, "bool");
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
