//! Problems found while discovering or reading a zoo: reported, never fatal to the rest.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::LoadError;

/// What kind of problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A file or folder could not be read (permissions, I/O error).
    Unreadable,
    /// A file is not a valid instance of its format (truncated, corrupt, lying header).
    Malformed,
    /// A pickle referencing a Python global outside the allow-list; refused.
    UnsafePickle,
    /// A tensor dtype lineage cannot use.
    UnsupportedDtype,
    /// A checkpoint holds no floating-point tensors.
    Empty,
    /// A checkpoint's parameter names or shapes differ from the zoo's reference checkpoint.
    ShapeMismatch,
    /// A run lacks steps that other runs have.
    MissingSteps,
    /// The same (run, step) was found twice; one copy was kept.
    DuplicateStep,
    /// Two checkpoints (same or different runs) hold the same content (see [`crate::fingerprint`]).
    DuplicateContent,
    /// A folder or revision name that holds weights but whose step or run cannot be read unambiguously.
    AmbiguousName,
    /// A Hugging Face hub repository without any `stepN` revision: nothing to read in it.
    NoStepRevisions,
    /// A symbolic link leads back to a folder already visited.
    SymlinkLoop,
    /// A file or folder name is not valid UTF-8.
    NonUtf8Name,
    /// Runs of the zoo are stored in different layouts (informational).
    MixedLayouts,
    /// No checkpoint was found at all.
    NoCheckpoints,
    /// A manifest or index file is invalid.
    InvalidManifest,
    /// A `manifest.json` that does not declare itself lineage's: ignored, the layouts were discovered (warning).
    ForeignManifest,
    /// A training log could not be parsed.
    BadLog,
    /// A tensor holds NaN or infinite values (found by the opt-in value scan, `inspect --scan`).
    NonFinite,
}

/// One problem, with the file it concerns and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File or folder concerned (lossy UTF-8 in JSON).
    #[serde(serialize_with = "crate::lossy_path::path")]
    pub path: PathBuf,
    /// Problem category.
    pub kind: ProblemKind,
    /// Human-readable explanation that names the problem.
    pub message: String,
}

impl Problem {
    /// A new problem.
    pub fn new(path: impl Into<PathBuf>, kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }

    /// The problem a load error stands for.
    pub fn from_error(path: &Path, err: &LoadError) -> Self {
        let kind = match err {
            LoadError::Io { .. } => ProblemKind::Unreadable,
            LoadError::Malformed { .. } | LoadError::UnknownFormat { .. } => ProblemKind::Malformed,
            LoadError::UnsafePickle { .. } => ProblemKind::UnsafePickle,
            LoadError::UnsupportedDtype { .. } => ProblemKind::UnsupportedDtype,
            LoadError::Empty { .. } => ProblemKind::Empty,
            LoadError::Invalid { .. } => ProblemKind::InvalidManifest,
            LoadError::Mismatch { .. } => ProblemKind::ShapeMismatch,
        };
        Self::new(path, kind, err.to_string())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
