//! Errors raised while reading checkpoints and zoos.

use std::path::PathBuf;

/// Everything that can go wrong while reading one file or folder.
///
/// Every variant names the file it concerns so a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The operating system refused to read the file.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid instance of the format its name announces.
    #[error("{path}: malformed {format} file: {reason}")]
    Malformed {
        /// File concerned.
        path: PathBuf,
        /// Format that was expected (e.g. "safetensors").
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A PyTorch pickle references a Python global outside the allow-list.
    #[error(
        "{path}: refused: the pickle references `{global}`, which is not on the allow-list of \
         tensor-rebuilding globals (lineage never executes pickle code)"
    )]
    UnsafePickle {
        /// File concerned.
        path: PathBuf,
        /// The offending `module.name` global.
        global: String,
    },
    /// A tensor has a dtype lineage cannot turn into f32.
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// The file holds no floating-point tensor (parameters): none at all, or integer buffers only.
    #[error("{path}: no floating-point tensors (parameters) found")]
    Empty {
        /// File concerned.
        path: PathBuf,
    },
    /// The file's extension is not one lineage reads.
    #[error("{path}: unknown checkpoint format")]
    UnknownFormat {
        /// File concerned.
        path: PathBuf,
    },
    /// A manifest or index file could not be parsed.
    #[error("{path}: invalid {what}: {reason}")]
    Invalid {
        /// File concerned.
        path: PathBuf,
        /// What kind of file it was supposed to be.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint lacks tensors of the zoo's reference schema or stores them with other shapes.
    #[error("{path}: parameters do not match the zoo's reference schema: {reason}")]
    Mismatch {
        /// File concerned.
        path: PathBuf,
        /// Which names or shapes differ.
        reason: String,
    },
}

impl LoadError {
    /// Wraps an I/O error with the file it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed-file error.
    pub fn malformed(path: impl Into<PathBuf>, format: &'static str, reason: impl ToString) -> Self {
        Self::Malformed {
            path: path.into(),
            format,
            reason: reason.to_string(),
        }
    }
}

/// Result alias for the loaders crate.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;
