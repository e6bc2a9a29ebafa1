//! Readers for checkpoint file formats. Each format offers a header-only `scan` (no tensor data is
//! read) and a full `load` returning raw named tensors, to be normalised by [`crate::ParamSet`].

pub mod npz;
pub mod safetensors;
pub mod torch_pickle;

use std::path::Path;

use serde::Serialize;

/// A checkpoint file format lineage can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// `.safetensors` (single file or one shard of a sharded checkpoint).
    Safetensors,
    /// PyTorch zip pickle: `.bin`, `.pt`, `.pth`, `.ckpt`.
    TorchPickle,
    /// NumPy `.npz` archive.
    Npz,
}

impl FileFormat {
    /// The format announced by a file name's extension, if lineage reads it.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "safetensors" => Some(Self::Safetensors),
            "bin" | "pt" | "pth" | "ckpt" => Some(Self::TorchPickle),
            "npz" => Some(Self::Npz),
            _ => None,
        }
    }

    /// Short lowercase name used in reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::TorchPickle => "torch_pickle",
            Self::Npz => "npz",
        }
    }
}

/// Name, dtype and shape of one stored tensor, as read from a file header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorHeader {
    /// Tensor name as stored (before prefix stripping).
    pub name: String,
    /// Lowercase dtype name: `f32`, `f16`, `bf16`, `f64`, `i64`, ...
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<usize>,
}

impl TensorHeader {
    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for floating-point tensors (the ones that become parameters).
    pub fn is_float(&self) -> bool {
        matches!(self.dtype.as_str(), "f32" | "f16" | "bf16" | "f64")
    }
}

/// What a header-only scan of one file tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileScan {
    /// Stored tensors, in file order.
    pub tensors: Vec<TensorHeader>,
    /// Training step recorded inside the file (Lightning's `global_step`), if any.
    pub global_step: Option<u64>,
}

/// Lowercase dtype name for a candle dtype.
pub fn dtype_name(dtype: candle_core::DType) -> String {
    format!("{dtype:?}").to_ascii_lowercase()
}
