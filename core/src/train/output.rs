//! Files of a trained zoo: checkpoints (`step<N>/model.safetensors`), `config.json`,
//! `metrics.jsonl`, and the `lineage.toml` manifest.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;

use super::error::TrainError;

/// The folder of the checkpoint of `step` in a run folder.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join(format!("step{step}"))
}

/// Writes `names[i] -> tensors[i]` as f32 safetensors at `<run_dir>/step<step>/model.safetensors`.
pub fn write_checkpoint(run_dir: &Path, step: u64, names: &[String], tensors: &[Tensor]) -> Result<(), TrainError> {
    let dir = checkpoint_dir(run_dir, step);
    create_dir(&dir)?;
    let path = dir.join("model.safetensors");
    let map: HashMap<&str, Tensor> = names.iter().map(String::as_str).zip(tensors.iter().cloned()).collect();
    candle_core::safetensors::save(&map, &path).map_err(TrainError::tensor(format!("writing {}", path.display())))
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Io {
        path: path.into(),
        source: e.into(),
    })?;
    std::fs::write(path, text + "\n").map_err(TrainError::io(path))
}

/// Writes a text file.
pub fn write_text(path: &Path, text: &str) -> Result<(), TrainError> {
    std::fs::write(path, text).map_err(TrainError::io(path))
}

/// Creates a folder and its parents.
pub fn create_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))
}

/// Creates `out` if missing; refuses a folder that already holds anything, so that a zoo never mixes
/// with stale runs.
pub fn prepare_output(out: &Path) -> Result<(), TrainError> {
    create_dir(out)?;
    let mut entries = std::fs::read_dir(out).map_err(TrainError::io(out))?;
    if entries.next().is_some() {
        return Err(TrainError::NotEmpty(out.to_path_buf()));
    }
    Ok(())
}

/// `metrics.jsonl`: one `{"step": N, "loss": x}` line per logging interval.
pub struct MetricsLog {
    path: PathBuf,
    writer: BufWriter<std::fs::File>,
}

impl MetricsLog {
    /// Creates (truncates) the log.
    pub fn create(path: &Path) -> Result<Self, TrainError> {
        let file = std::fs::File::create(path).map_err(TrainError::io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    /// Appends one line.
    pub fn log(&mut self, step: u64, loss: f64) -> Result<(), TrainError> {
        let line = serde_json::json!({ "step": step, "loss": loss });
        writeln!(self.writer, "{line}").map_err(TrainError::io(&self.path))
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> Result<(), TrainError> {
        self.writer.flush().map_err(TrainError::io(&self.path))
    }
}
