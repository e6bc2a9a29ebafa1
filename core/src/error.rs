//! The error type of `lineage-core`: every variant names the file or object at fault and the problem.

use std::path::{Path, PathBuf};

/// Errors of the computation crate. Messages name the file (or parameter set) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An eval data file is unreadable or inconsistent (missing column, label out of range, ...).
    #[error("eval data {}: {problem}", path.display())]
    Data {
        /// The eval data file (or `<memory>` for data built in memory).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A model configuration file (`config.json`) is unreadable or unsupported.
    #[error("model config {}: {problem}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A parameter set does not fit the model architecture, or no architecture could be inferred.
    #[error("parameters do not fit the model: {0}")]
    Model(String),
    /// A caller passed an invalid argument (e.g. fewer than 3 alpha grid points).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A checkpoint could not be loaded.
    #[error("{0}")]
    Load(String),
    /// An output table could not be built, written or read.
    #[error("table: {0}")]
    Table(String),
    /// There is nothing to compute (e.g. no readable checkpoint).
    #[error("nothing to do: {0}")]
    NothingToDo(String),
    /// An external evaluator command failed or broke the protocol (see [`crate::models::external`]).
    #[error("external evaluator `{command}`: {problem}")]
    External {
        /// The command, as configured.
        command: String,
        /// What went wrong (exit status and stderr, or the malformed output).
        problem: String,
    },
    /// Permutation alignment failed (the models do not fit the permutation spec, non-finite weights).
    #[error("permutation alignment: {0}")]
    Align(String),
    /// Basin clustering or tracking failed.
    #[error("basins: {0}")]
    Basins(#[from] crate::methods::basins::BasinError),
    /// A figure could not be drawn or written.
    #[error("figure: {0}")]
    Figure(#[from] crate::output::figures::FigureError),
    /// The model family does not support the requested analysis (e.g. hidden activations).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An output folder is being written by another live lineage process.
    #[error("{}: another lineage run is writing here ({holder}); wait for it to finish or choose another output folder", path.display())]
    OutputInUse {
        /// The output folder.
        path: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// The user cancelled the computation.
    #[error("cancelled")]
    Cancelled,
}

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A problem with the eval data file `path`.
    pub fn data(path: &Path, problem: impl Into<String>) -> Self {
        Self::Data {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// A problem with the model configuration file `path`.
    pub fn config(path: &Path, problem: impl Into<String>) -> Self {
        Self::Config {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
