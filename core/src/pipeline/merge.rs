//! `lineage merge`: combine the outputs of `lineage batch --shard K/N` runs into the tables a single
//! run gives (same rows, same order), ready for the basin analysis.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::CoreError;
use crate::output::tables::{BarrierRow, CheckpointRow, EvalRow, InterpolationRow, read_parquet};
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::BatchResult;

/// Reads the shard output folders and returns their union in single-run order, without duplicates.
/// Every shard must come from the same eval data and evaluator (checked through `report.json`).
pub fn merge_shards(dirs: &[PathBuf]) -> Result<BatchResult, CoreError> {
    let mut merged = BatchResult::default();
    let mut checkpoints = BTreeMap::new();
    let mut evals = BTreeMap::new();
    let mut interpolation = BTreeMap::new();
    let mut barriers = BTreeMap::new();
    for dir in dirs {
        let report_path = dir.join("report.json");
        let text = std::fs::read_to_string(&report_path).map_err(|e| CoreError::io(&report_path, e))?;
        let report: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CoreError::Table(format!("{}: invalid JSON: {e}", report_path.display())))?;
        let data_key = report["data_sha256"].as_str().unwrap_or_default().to_string();
        let evaluator = report["evaluator"].as_str().unwrap_or_default().to_string();
        if merged.data_key.is_empty() {
            merged.data_key = data_key;
            merged.evaluator = evaluator;
        } else if merged.data_key != data_key || merged.evaluator != evaluator {
            return Err(CoreError::InvalidArgument(format!(
                "{}: this shard used other eval data or another model ({evaluator}) than the first ({})",
                dir.display(),
                merged.evaluator
            )));
        }
        if let Some(warnings) = report["warnings"].as_array() {
            for w in warnings.iter().filter_map(|w| w.as_str()) {
                if !merged.warnings.iter().any(|m| m == w) {
                    merged.warnings.push(w.to_string());
                }
            }
        }
        merged.computed += report["computed"].as_u64().unwrap_or(0) as usize;
        merged.cached += report["cached"].as_u64().unwrap_or(0) as usize;
        for row in read_checkpoints(&dir.join("checkpoints.parquet"))? {
            checkpoints.insert((row.run.clone(), row.step), row);
        }
        for row in read_evals(&dir.join("evals.parquet"))? {
            evals.insert((row.run.clone(), row.step), row);
        }
        for row in read_interpolation(&dir.join("interpolation.parquet"))? {
            // Raw rows before aligned ones, as a single run writes them.
            let key = (
                pair_order(&row.pair, row.step, &row.run_a, &row.run_b, row.step_b)?,
                row.aligned,
                row.alpha.to_bits(),
            );
            interpolation.insert(key, row);
        }
        for row in read_barriers(&dir.join("barriers.parquet"))? {
            let kind_rank = u8::from(row.kind != "endpoint");
            barriers.insert(
                (
                    pair_order(&row.pair, row.step, &row.run_a, &row.run_b, row.step_b)?,
                    row.aligned,
                    kind_rank,
                ),
                row,
            );
        }
    }
    merged.checkpoints = checkpoints.into_values().collect();
    merged.evals = evals.into_values().collect();
    merged.interpolation = interpolation.into_values().collect();
    merged.barriers = barriers.into_values().collect();
    Ok(merged)
}

/// The sort key of a pair in the single-run plan: (step, pair kind, run A, run B, step B).
fn pair_order(
    pair: &str,
    step: u64,
    run_a: &str,
    run_b: &str,
    step_b: u64,
) -> Result<(u64, PairKind, String, String, u64), CoreError> {
    let kind = [PairKind::Seeds, PairKind::ToFinal, PairKind::Fork]
        .into_iter()
        .find(|k| k.name() == pair)
        .ok_or_else(|| CoreError::Table(format!("unknown pair kind `{pair}`")))?;
    Ok((step, kind, run_a.to_string(), run_b.to_string(), step_b))
}

/// Typed access to the columns of one table file.
struct Table {
    path: PathBuf,
    df: DataFrame,
}

impl Table {
    fn open(path: &Path) -> Result<Self, CoreError> {
        Ok(Self {
            path: path.to_path_buf(),
            df: read_parquet(path)?,
        })
    }

    fn err(&self, e: PolarsError) -> CoreError {
        CoreError::Table(format!("{}: {e}", self.path.display()))
    }

    fn missing(&self, column: &str, row: usize) -> CoreError {
        CoreError::Table(format!("{}: null `{column}` in row {row}", self.path.display()))
    }

    fn u64s(&self, name: &str) -> Result<Vec<u64>, CoreError> {
        let c = self.df.column(name).and_then(|c| c.u64()).map_err(|e| self.err(e))?;
        (0..self.df.height())
            .map(|i| c.get(i).ok_or_else(|| self.missing(name, i)))
            .collect()
    }

    fn f64s(&self, name: &str) -> Result<Vec<f64>, CoreError> {
        let c = self.df.column(name).and_then(|c| c.f64()).map_err(|e| self.err(e))?;
        (0..self.df.height())
            .map(|i| c.get(i).ok_or_else(|| self.missing(name, i)))
            .collect()
    }

    fn bools(&self, name: &str) -> Result<Vec<bool>, CoreError> {
        let c = self.df.column(name).and_then(|c| c.bool()).map_err(|e| self.err(e))?;
        (0..self.df.height())
            .map(|i| c.get(i).ok_or_else(|| self.missing(name, i)))
            .collect()
    }

    fn strs(&self, name: &str) -> Result<Vec<String>, CoreError> {
        let c = self.df.column(name).and_then(|c| c.str()).map_err(|e| self.err(e))?;
        (0..self.df.height())
            .map(|i| c.get(i).map(String::from).ok_or_else(|| self.missing(name, i)))
            .collect()
    }
}

fn read_checkpoints(path: &Path) -> Result<Vec<CheckpointRow>, CoreError> {
    let t = Table::open(path)?;
    let (run, step, file, format, dtype, n_params, key) = (
        t.strs("run")?,
        t.u64s("step")?,
        t.strs("path")?,
        t.strs("format")?,
        t.strs("dtype")?,
        t.u64s("n_params")?,
        t.strs("key")?,
    );
    Ok((0..t.df.height())
        .map(|i| CheckpointRow {
            run: run[i].clone(),
            step: step[i],
            path: file[i].clone(),
            format: format[i].clone(),
            dtype: dtype[i].clone(),
            n_params: n_params[i],
            key: key[i].clone(),
        })
        .collect())
}

fn read_evals(path: &Path) -> Result<Vec<EvalRow>, CoreError> {
    let t = Table::open(path)?;
    let (run, step, loss, error, bits) = (
        t.strs("run")?,
        t.u64s("step")?,
        t.f64s("loss")?,
        t.f64s("error")?,
        t.f64s("bits_per_example")?,
    );
    Ok((0..t.df.height())
        .map(|i| EvalRow {
            run: run[i].clone(),
            step: step[i],
            loss: loss[i],
            error: error[i],
            bits_per_example: bits[i],
        })
        .collect())
}

fn read_interpolation(path: &Path) -> Result<Vec<InterpolationRow>, CoreError> {
    let t = Table::open(path)?;
    let (step, run_a, run_b, step_b, pair) = (
        t.u64s("step")?,
        t.strs("run_a")?,
        t.strs("run_b")?,
        t.u64s("step_b")?,
        t.strs("pair")?,
    );
    let (alpha, loss, error, aligned) = (t.f64s("alpha")?, t.f64s("loss")?, t.f64s("error")?, t.bools("aligned")?);
    Ok((0..t.df.height())
        .map(|i| InterpolationRow {
            step: step[i],
            run_a: run_a[i].clone(),
            run_b: run_b[i].clone(),
            step_b: step_b[i],
            pair: pair[i].clone(),
            alpha: alpha[i],
            loss: loss[i],
            error: error[i],
            aligned: aligned[i],
        })
        .collect())
}

fn read_barriers(path: &Path) -> Result<Vec<BarrierRow>, CoreError> {
    let t = Table::open(path)?;
    let (step, run_a, run_b, step_b, pair, kind) = (
        t.u64s("step")?,
        t.strs("run_a")?,
        t.strs("run_b")?,
        t.u64s("step_b")?,
        t.strs("pair")?,
        t.strs("kind")?,
    );
    let (loss, error, aligned) = (t.f64s("loss_barrier")?, t.f64s("error_barrier")?, t.bools("aligned")?);
    Ok((0..t.df.height())
        .map(|i| BarrierRow {
            step: step[i],
            run_a: run_a[i].clone(),
            run_b: run_b[i].clone(),
            step_b: step_b[i],
            pair: pair[i].clone(),
            kind: kind[i].clone(),
            loss_barrier: loss[i],
            error_barrier: error[i],
            aligned: aligned[i],
        })
        .collect())
}
