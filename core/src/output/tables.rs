//! The Parquet tables written by `lineage batch` (DESIGN.md, "Outputs"), one table a file.
//!
//! Files are written to a temporary name and renamed, so a killed run never leaves a half-written table.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::error::CoreError;
use crate::methods::basins::{ClusterRow, TimelineRow, TreeEdgeRow};

/// `checkpoints.parquet`: one row per readable checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Step folder or file.
    pub path: String,
    /// File format.
    pub format: String,
    /// Storage dtype of the parameters.
    pub dtype: String,
    /// Number of scalar parameters.
    pub n_params: u64,
    /// SHA-256 content key of the checkpoint's files.
    pub key: String,
}

/// `evals.parquet`: one row per evaluated checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Mean cross-entropy (nats per example).
    pub loss: f64,
    /// Error rate.
    pub error: f64,
    /// Eval code length in bits per example: loss / ln 2.
    pub bits_per_example: f64,
}

/// `interpolation.parquet`: one row per (pair, alpha).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterpolationRow {
    /// Step of endpoint A (the step the pair is reported under).
    pub step: u64,
    /// Run of endpoint A.
    pub run_a: String,
    /// Run of endpoint B.
    pub run_b: String,
    /// Step of endpoint B (differs from `step` for `to_final` pairs).
    pub step_b: u64,
    /// Pair set: `seeds`, `to_final` or `fork`.
    pub pair: String,
    /// Interpolation coefficient: theta = (1-alpha) A + alpha B.
    pub alpha: f64,
    /// Mean cross-entropy at alpha.
    pub loss: f64,
    /// Error rate at alpha.
    pub error: f64,
    /// Whether B was permutation-aligned to A first.
    pub aligned: bool,
}

/// `barriers.parquet`: one row per (pair, barrier kind).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarrierRow {
    /// Step of endpoint A.
    pub step: u64,
    /// Run of endpoint A.
    pub run_a: String,
    /// Run of endpoint B.
    pub run_b: String,
    /// Step of endpoint B.
    pub step_b: u64,
    /// Pair set: `seeds`, `to_final` or `fork`.
    pub pair: String,
    /// Barrier definition: `endpoint` (Frankle 2020) or `segment` (Juneja et al. 2023).
    pub kind: String,
    /// Loss barrier.
    pub loss_barrier: f64,
    /// Error barrier.
    pub error_barrier: f64,
    /// Whether B was permutation-aligned to A first.
    pub aligned: bool,
}

fn strs<T>(rows: &[T], f: impl Fn(&T) -> &str) -> Vec<&str> {
    rows.iter().map(f).collect()
}

/// Builds the `checkpoints` frame.
pub fn checkpoints_frame(rows: &[CheckpointRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("run".into(), strs(rows, |r| &r.run)),
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("path".into(), strs(rows, |r| &r.path)),
            Column::new("format".into(), strs(rows, |r| &r.format)),
            Column::new("dtype".into(), strs(rows, |r| &r.dtype)),
            Column::new("n_params".into(), rows.iter().map(|r| r.n_params).collect::<Vec<_>>()),
            Column::new("key".into(), strs(rows, |r| &r.key)),
        ],
    )
}

/// Builds the `evals` frame.
pub fn evals_frame(rows: &[EvalRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("run".into(), strs(rows, |r| &r.run)),
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("loss".into(), rows.iter().map(|r| r.loss).collect::<Vec<_>>()),
            Column::new("error".into(), rows.iter().map(|r| r.error).collect::<Vec<_>>()),
            Column::new(
                "bits_per_example".into(),
                rows.iter().map(|r| r.bits_per_example).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// Builds the `interpolation` frame.
pub fn interpolation_frame(rows: &[InterpolationRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("run_a".into(), strs(rows, |r| &r.run_a)),
            Column::new("run_b".into(), strs(rows, |r| &r.run_b)),
            Column::new("step_b".into(), rows.iter().map(|r| r.step_b).collect::<Vec<_>>()),
            Column::new("pair".into(), strs(rows, |r| &r.pair)),
            Column::new("alpha".into(), rows.iter().map(|r| r.alpha).collect::<Vec<_>>()),
            Column::new("loss".into(), rows.iter().map(|r| r.loss).collect::<Vec<_>>()),
            Column::new("error".into(), rows.iter().map(|r| r.error).collect::<Vec<_>>()),
            Column::new("aligned".into(), rows.iter().map(|r| r.aligned).collect::<Vec<_>>()),
        ],
    )
}

/// Builds the `barriers` frame.
pub fn barriers_frame(rows: &[BarrierRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("run_a".into(), strs(rows, |r| &r.run_a)),
            Column::new("run_b".into(), strs(rows, |r| &r.run_b)),
            Column::new("step_b".into(), rows.iter().map(|r| r.step_b).collect::<Vec<_>>()),
            Column::new("pair".into(), strs(rows, |r| &r.pair)),
            Column::new("kind".into(), strs(rows, |r| &r.kind)),
            Column::new(
                "loss_barrier".into(),
                rows.iter().map(|r| r.loss_barrier).collect::<Vec<_>>(),
            ),
            Column::new(
                "error_barrier".into(),
                rows.iter().map(|r| r.error_barrier).collect::<Vec<_>>(),
            ),
            Column::new("aligned".into(), rows.iter().map(|r| r.aligned).collect::<Vec<_>>()),
        ],
    )
}

/// Builds the `clusters` frame: the basin of every run at every step.
pub fn clusters_frame(rows: &[ClusterRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("run".into(), strs(rows, |r| &r.run)),
            Column::new("basin".into(), rows.iter().map(|r| r.basin).collect::<Vec<_>>()),
        ],
    )
}

/// Builds the `timeline` frame: every basin at every step with its event.
pub fn timeline_frame(rows: &[TimelineRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("step".into(), rows.iter().map(|r| r.step).collect::<Vec<_>>()),
            Column::new("basin".into(), rows.iter().map(|r| r.basin).collect::<Vec<_>>()),
            Column::new("size".into(), rows.iter().map(|r| r.size).collect::<Vec<_>>()),
            Column::new("event".into(), strs(rows, |r| &r.event)),
            Column::new(
                "parent_basin".into(),
                rows.iter().map(|r| r.parent_basin).collect::<Vec<_>>(),
            ),
        ],
    )
}

/// Builds the `tree_edges` frame: runs carried from a basin at one step to a basin at the next.
pub fn tree_edges_frame(rows: &[TreeEdgeRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            Column::new("step_from".into(), rows.iter().map(|r| r.step_from).collect::<Vec<_>>()),
            Column::new(
                "basin_from".into(),
                rows.iter().map(|r| r.basin_from).collect::<Vec<_>>(),
            ),
            Column::new("step_to".into(), rows.iter().map(|r| r.step_to).collect::<Vec<_>>()),
            Column::new("basin_to".into(), rows.iter().map(|r| r.basin_to).collect::<Vec<_>>()),
            Column::new("n_runs".into(), rows.iter().map(|r| r.n_runs).collect::<Vec<_>>()),
        ],
    )
}

fn frame(height: usize, columns: Vec<Column>) -> Result<DataFrame, CoreError> {
    DataFrame::new(height, columns).map_err(|e| CoreError::Table(e.to_string()))
}

/// Writes `df` to `path` atomically (temporary file, then rename).
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), CoreError> {
    let tmp = path.with_extension("parquet.partial");
    let file = File::create(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
    ParquetWriter::new(file)
        .finish(df)
        .map_err(|e| CoreError::Table(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
}

/// Reads a Parquet table.
pub fn read_parquet(path: &Path) -> Result<DataFrame, CoreError> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| CoreError::Table(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_table_round_trips_through_parquet() {
        let rows = vec![BarrierRow {
            step: 100,
            run_a: "a".into(),
            run_b: "b".into(),
            step_b: 100,
            pair: "seeds".into(),
            kind: "endpoint".into(),
            loss_barrier: 0.25,
            error_barrier: 0.5,
            aligned: false,
        }];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("barriers.parquet");
        write_parquet(&path, &mut barriers_frame(&rows).unwrap()).unwrap();
        let df = read_parquet(&path).unwrap();
        assert_eq!(df.height(), 1);
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "step",
                "run_a",
                "run_b",
                "step_b",
                "pair",
                "kind",
                "loss_barrier",
                "error_barrier",
                "aligned"
            ]
        );
        assert_eq!(df.column("loss_barrier").unwrap().f64().unwrap().get(0), Some(0.25));
        assert!(!dir.path().join("barriers.parquet.partial").exists());
    }
}
