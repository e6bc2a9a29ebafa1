//! The error type of the figures: every variant names the file at fault and the problem.

use std::path::PathBuf;

/// Errors of the figure writers. Messages name the file (or the figure's path stem) and the problem.
///
/// Empty inputs are not errors: they give a figure that says "no data" (see [`super`]).
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// A figure file or its folder could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Plotting failed (backend or font error while drawing).
    #[error("{}: drawing failed: {message}", path.display())]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The bundled font could not be registered.
    #[error("font: {0}")]
    Font(String),
    /// The caller passed inputs that cannot be drawn (e.g. an order that is not a permutation).
    #[error("{}: invalid input: {problem}", path.display())]
    InvalidInput {
        /// The figure's path stem.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl FigureError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid-input error for the figure at `path`.
    pub fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::InvalidInput {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
