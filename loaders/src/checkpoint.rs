//! Reading one checkpoint (one or several files): header-only scans and full loads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::discover::model_files;
use crate::error::{LoadError, Result};
use crate::formats::{self, FileFormat, FileScan, TensorHeader};
use crate::params::{ParamSet, shared_prefix_len};
use crate::schema::Schema;
use crate::zoo::Checkpoint;

/// What a header-only scan of a whole checkpoint tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointScan {
    /// Every stored tensor, across shards.
    pub tensors: Vec<TensorHeader>,
    /// Step recorded inside the file, if any.
    pub global_step: Option<u64>,
    /// Total size of the checkpoint's files in bytes.
    pub bytes: u64,
}

impl CheckpointScan {
    /// Floating-point tensors: the parameters.
    fn floats(&self) -> impl Iterator<Item = &TensorHeader> {
        self.tensors.iter().filter(|t| t.is_float())
    }

    /// Number of scalar parameters (floating-point tensors only).
    pub fn n_params(&self) -> usize {
        self.floats().map(TensorHeader::elem_count).sum()
    }

    /// Storage dtype of the parameters: `f32`, `f16`, ..., or `mixed(f16,f32)`.
    pub fn dtype(&self) -> String {
        let mut dtypes: Vec<&str> = self.floats().map(|t| t.dtype.as_str()).collect();
        dtypes.sort_unstable();
        dtypes.dedup();
        match dtypes.as_slice() {
            [] => "none".into(),
            [one] => (*one).into(),
            many => format!("mixed({})", many.join(",")),
        }
    }

    /// Parameter names after normalisation (wrapper prefixes stripped) with their shapes.
    pub fn normalised_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let names: Vec<&str> = self.floats().map(|t| t.name.as_str()).collect();
        let strip = shared_prefix_len(&names);
        self.floats()
            .map(|t| (t.name[strip..].to_string(), t.shape.clone()))
            .collect()
    }
}

/// Header-only scan of one file.
pub fn scan_file(path: &Path, format: FileFormat) -> Result<FileScan> {
    match format {
        FileFormat::Safetensors => formats::safetensors::scan(path),
        FileFormat::TorchPickle => formats::torch_pickle::scan(path),
        FileFormat::Npz => formats::npz::scan(path),
    }
}

/// Header-only scan of a checkpoint: reads no tensor data.
pub fn scan_checkpoint(checkpoint: &Checkpoint) -> Result<CheckpointScan> {
    let mut scan = CheckpointScan {
        tensors: Vec::new(),
        global_step: None,
        bytes: 0,
    };
    for file in &checkpoint.files {
        let FileScan { tensors, global_step } = scan_file(file, checkpoint.format)?;
        scan.tensors.extend(tensors);
        scan.global_step = scan.global_step.or(global_step);
        scan.bytes += std::fs::metadata(file).map_err(|e| LoadError::io(file, e))?.len();
    }
    if scan.n_params() == 0 {
        return Err(LoadError::Empty {
            path: checkpoint.display_path(),
        });
    }
    Ok(scan)
}

/// Loads and normalises the parameters of a checkpoint (all shards).
pub fn load_checkpoint(checkpoint: &Checkpoint) -> Result<ParamSet> {
    load_files(&checkpoint.files, checkpoint.format)
}

/// Loads and normalises the parameters stored at `path`: a weights file, or a checkpoint folder
/// (`step1500/`, `checkpoint-500/`, sharded or not).
///
/// Every tensor the files declare is read (each one's byte range checked against the file first);
/// when the zoo's schema is known, [`load_params_matching`] reads only the tensors it names.
pub fn load_params(path: &Path) -> Result<ParamSet> {
    let (files, format) = files_at(path)?;
    load_files(&files, format)
}

/// Loads the parameters stored at `path` (a weights file or a checkpoint folder, as
/// [`load_params`]) that the zoo's reference `schema` names, and nothing else.
///
/// Headers are checked first, before any tensor is read or allocated: every declared byte range
/// against the file, then the schema. A schema tensor that is missing or has another shape is a
/// [`LoadError::Mismatch`] naming it; one stored with a dtype that is not floating point is a
/// [`LoadError::UnsupportedDtype`] naming it and its dtype. Tensors outside the schema are never
/// read, so memory is bounded by the schema whatever a header declares. Floating-point storage
/// dtypes other than the schema's (`f16` for `f32`) are accepted and upcast to f32, as in
/// [`ParamSet`].
pub fn load_params_matching(path: &Path, schema: &Schema) -> Result<ParamSet> {
    let (files, format) = files_at(path)?;
    load_files_matching(path, &files, format, schema)
}

/// [`load_params_matching`] for a discovered checkpoint (all shards): only the tensors `schema`
/// names are read, after every header was checked against the files and the schema.
pub fn load_checkpoint_matching(checkpoint: &Checkpoint, schema: &Schema) -> Result<ParamSet> {
    load_files_matching(&checkpoint.display_path(), &checkpoint.files, checkpoint.format, schema)
}

/// The weights files at `path` (the file itself, or a checkpoint folder's model files) and their format.
fn files_at(path: &Path) -> Result<(Vec<PathBuf>, FileFormat)> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| LoadError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        return model_files(path, &files)
            .map_err(|p| LoadError::Invalid {
                path: path.to_path_buf(),
                what: "checkpoint folder",
                reason: p.message,
            })?
            .ok_or_else(|| LoadError::Empty {
                path: path.to_path_buf(),
            });
    }
    let format = FileFormat::from_path(path).ok_or_else(|| LoadError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    Ok((vec![path.to_path_buf()], format))
}

fn load_files(files: &[PathBuf], format: FileFormat) -> Result<ParamSet> {
    let mut raw: Vec<(String, Tensor)> = Vec::new();
    for file in files {
        raw.extend(load_file(file, format, &|_| true)?);
    }
    let first = files.first().cloned().unwrap_or_default();
    let params = ParamSet::from_raw(raw).map_err(|e| LoadError::malformed(&first, format.name(), e))?;
    if params.is_empty() {
        return Err(LoadError::Empty { path: first });
    }
    Ok(params)
}

/// Reads the tensors of one file whose stored names `wanted` accepts, after checking every
/// declared tensor's byte range against the file.
fn load_file(file: &Path, format: FileFormat, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>> {
    match format {
        FileFormat::Safetensors => formats::safetensors::load_selected(file, wanted),
        FileFormat::TorchPickle => formats::torch_pickle::load_selected(file, wanted),
        FileFormat::Npz => formats::npz::load_selected(file, wanted),
    }
}

/// Scans every file's header, checks the checkpoint against `schema` (errors name `shown`), then
/// reads the schema's tensors only.
fn load_files_matching(shown: &Path, files: &[PathBuf], format: FileFormat, schema: &Schema) -> Result<ParamSet> {
    let mut headers = Vec::new();
    for file in files {
        headers.extend(scan_file(file, format)?.tensors);
    }
    let selected: HashMap<String, String> = schema.select(shown, &headers)?.into_iter().collect();
    let mut named = Vec::with_capacity(selected.len());
    for file in files {
        for (stored, tensor) in load_file(file, format, &|name| selected.contains_key(name))? {
            if let Some(name) = selected.get(&stored) {
                named.push((name.clone(), tensor));
            }
        }
    }
    let params = ParamSet::from_named(named).map_err(|e| LoadError::malformed(shown, format.name(), e))?;
    if params.len() != schema.len() {
        return Err(LoadError::Mismatch {
            path: shown.to_path_buf(),
            reason: format!(
                "{} of the schema's {} tensors could be read",
                params.len(),
                schema.len()
            ),
        });
    }
    Ok(params)
}
