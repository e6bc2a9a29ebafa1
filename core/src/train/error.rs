//! Errors of the trainer, each naming the file or setting at fault.

use std::path::PathBuf;

/// What can go wrong while training a zoo.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The training configuration or recipe is not usable.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The built-in data could not be decoded.
    #[error("built-in data `{name}` is malformed: {reason}")]
    Data {
        /// Which data set.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The output folder already holds files; a zoo is only written into an empty or new folder.
    #[error("{}: the output folder is not empty; choose a new folder or remove it first", .0.display())]
    NotEmpty(PathBuf),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation or a safetensors write failed.
    #[error("{context}: {source}")]
    Tensor {
        /// What was being done (run name, file).
        context: String,
        /// The underlying candle error.
        source: candle_core::Error,
    },
    /// The loss became NaN or infinite (learning rate too high?).
    #[error("run `{run}` diverged at step {step} (loss {loss}); lower the learning rate")]
    Diverged {
        /// Run name.
        run: String,
        /// Step at which the loss was not finite.
        step: u64,
        /// The loss seen.
        loss: f32,
    },
    /// The caller cancelled through the progress handle.
    #[error("training cancelled")]
    Cancelled,
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// Wraps a candle error with a description of what was being done.
    pub fn tensor(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| Self::Tensor { context, source }
    }
}
