//! Training logs: `metrics.jsonl`, HF `trainer_state.json` (`log_history`), CSV (Lightning CSVLogger).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{LoadError, Result};

/// Metrics logged at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPoint {
    /// Training step.
    pub step: u64,
    /// Numeric metrics by name (`loss`, `learning_rate`, ...).
    pub metrics: BTreeMap<String, f64>,
}

/// A parsed training log.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingLog {
    /// The file it came from.
    pub source: PathBuf,
    /// Logged points in file order.
    pub points: Vec<LogPoint>,
    /// Lines or rows that could not be parsed (e.g. a last line cut off by a crash).
    pub skipped: usize,
}

impl TrainingLog {
    /// The (step, value) series of one metric.
    pub fn series(&self, metric: &str) -> Vec<(u64, f64)> {
        self.points
            .iter()
            .filter_map(|p| p.metrics.get(metric).map(|v| (p.step, *v)))
            .collect()
    }
}

/// Reads a training log, choosing the parser from the file name.
pub fn read_log(path: &Path) -> Result<TrainingLog> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::io(path, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (points, skipped) = if name.ends_with(".jsonl") {
        parse_jsonl(&text)
    } else if name.ends_with(".csv") {
        parse_csv(path, &text)?
    } else {
        parse_trainer_state(path, &text)?
    };
    if points.is_empty() {
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            what: "training log",
            reason: "no entry with a step and a numeric metric".into(),
        });
    }
    Ok(TrainingLog {
        source: path.to_path_buf(),
        points,
        skipped,
    })
}

/// A log point from a JSON object with a `step` (or `global_step`) field.
fn point_from_object(obj: &serde_json::Map<String, Value>) -> Option<LogPoint> {
    let step = ["step", "global_step"].iter().find_map(|k| obj.get(*k)?.as_u64())?;
    let metrics: BTreeMap<String, f64> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "step" | "global_step"))
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    (!metrics.is_empty()).then_some(LogPoint { step, metrics })
}

fn parse_jsonl(text: &str) -> (Vec<LogPoint>, usize) {
    let mut points = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line)
            .ok()
            .as_ref()
            .and_then(Value::as_object)
            .and_then(point_from_object)
        {
            Some(p) => points.push(p),
            None => skipped += 1,
        }
    }
    (points, skipped)
}

fn parse_trainer_state(path: &Path, text: &str) -> Result<(Vec<LogPoint>, usize)> {
    let invalid = |reason: String| LoadError::Invalid {
        path: path.to_path_buf(),
        what: "trainer_state.json",
        reason,
    };
    let json: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let history = json
        .get("log_history")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no `log_history` array".into()))?;
    let mut points = Vec::new();
    let mut skipped = 0;
    for entry in history {
        match entry.as_object().and_then(point_from_object) {
            Some(p) => points.push(p),
            None => skipped += 1,
        }
    }
    Ok((points, skipped))
}

fn parse_csv(path: &Path, text: &str) -> Result<(Vec<LogPoint>, usize)> {
    let invalid = |reason: String| LoadError::Invalid {
        path: path.to_path_buf(),
        what: "CSV log",
        reason,
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| invalid(e.to_string()))?.clone();
    let step_col = headers
        .iter()
        .position(|h| h == "step" || h == "global_step")
        .ok_or_else(|| invalid("no `step` column".into()))?;
    let mut points = Vec::new();
    let mut skipped = 0;
    for record in reader.records() {
        let Ok(record) = record else {
            skipped += 1;
            continue;
        };
        let Some(step) = record
            .get(step_col)
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|s| s as u64)
        else {
            skipped += 1;
            continue;
        };
        let metrics: BTreeMap<String, f64> = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, _)| *i != step_col)
            .filter_map(|(_, (h, v))| Some((h.to_string(), v.trim().parse::<f64>().ok()?)))
            .collect();
        if metrics.is_empty() {
            skipped += 1;
        } else {
            points.push(LogPoint { step, metrics });
        }
    }
    Ok((points, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/digits-mlp")
            .join(rel)
    }

    #[test]
    fn jsonl_and_trainer_state_agree_on_the_fixture() {
        let jsonl = read_log(&fixture("zoo_safetensors/init0_order0/metrics.jsonl")).unwrap();
        let state = read_log(&fixture("zoo_hf_trainer/run_i0_o0/checkpoint-1500/trainer_state.json")).unwrap();
        let a = jsonl.series("loss");
        let b = state.series("loss");
        assert_eq!(a.len(), 150);
        assert_eq!(a, b);
        assert_eq!(a[0], (10, 2.2922699451446533));
    }

    #[test]
    fn csv_with_sparse_columns_and_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, "epoch,step,train_loss,val_loss\n0,9,2.1,\n0,19,,1.9\n1,2").unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.series("train_loss"), vec![(9, 2.1)]);
        assert_eq!(log.series("val_loss"), vec![(19, 1.9)]);
        assert_eq!(log.points.len(), 3);
        let garbage = dir.path().join("bad.jsonl");
        std::fs::write(&garbage, "not json\n").unwrap();
        assert!(read_log(&garbage).unwrap_err().to_string().contains("bad.jsonl"));
    }
}
