//! The compression view of training: how many bits a run needed to encode its training data
//! online (the prequential code, Rissanen 1984; Blier & Ollivier 2018), from its training log.
//!
//! The eval-set code length per checkpoint is `bits_per_example = loss / ln 2` in `evals.parquet`.
//!
//! **Prequential code length.** A training log lists points `(s_i, ℓ_i)`, ascending in step, where
//! `ℓ_i` is the mean train loss (nats per example) over the steps since the previous logged point,
//! as written by lineage's trainer, the HF Trainer and Lightning. With `B` examples per step and
//! `s_0 = 0`,
//!
//! `L_preq = Σ_i (ℓ_i / ln 2) · B · (s_i - s_{i-1})` bits over `N = B · s_last` examples,
//!
//! i.e. every example is charged the loss the model had on it just before learning from it, with
//! the loss inside a logging interval approximated by the interval's mean. This is the online code
//! length only when each batch's loss is computed before the update on it and no example is seen
//! twice (one epoch); after several epochs it is an upper-bound-style proxy that counts repeated
//! examples again. A non-finite logged loss makes the total NaN.

use std::path::PathBuf;

use lineage_loaders::Run;
use lineage_loaders::logs::{TrainingLog, read_log};

/// Metric names read as the train loss, in order of preference.
pub const LOSS_METRICS: [&str; 3] = ["loss", "train_loss", "train/loss"];

/// Keys read as the examples per optimisation step, from `config.json` and `trainer_state.json`.
pub const BATCH_SIZE_KEYS: [&str; 3] = ["batch_size", "train_batch_size", "per_device_train_batch_size"];

/// The prequential code length of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrequentialCode {
    /// `L_preq` in bits.
    pub bits: f64,
    /// `N`: examples encoded (`B · s_last`).
    pub n_examples: u64,
    /// Examples per step `B`.
    pub batch_size: u64,
    /// Last logged step `s_last`.
    pub last_step: u64,
}

/// `L_preq` from `(step, mean train loss in nats)` points (any order; a repeated step keeps its
/// last value; points at step 0 cover no examples). `None` without a point after step 0 or with
/// `batch_size = 0`.
pub fn prequential_code(points: &[(u64, f64)], batch_size: u64) -> Option<PrequentialCode> {
    let mut sorted: Vec<(u64, f64)> = points.to_vec();
    sorted.sort_by_key(|p| p.0);
    let mut by_step: Vec<(u64, f64)> = Vec::with_capacity(sorted.len());
    for p in sorted {
        match by_step.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => by_step.push(p),
        }
    }
    let last_step = by_step.last()?.0;
    if last_step == 0 || batch_size == 0 {
        return None;
    }
    let (mut bits, mut previous) = (0.0f64, 0u64);
    for (step, loss) in by_step {
        let examples = (step - previous) as f64 * batch_size as f64;
        bits += loss / std::f64::consts::LN_2 * examples;
        previous = step;
    }
    Some(PrequentialCode {
        bits,
        n_examples: batch_size.saturating_mul(last_step),
        batch_size,
        last_step,
    })
}

/// The prequential code of a run from its training logs and batch size, or why it is missing.
pub fn run_prequential_code(run: &Run) -> Result<PrequentialCode, String> {
    let logs: Vec<TrainingLog> = run.logs.iter().filter_map(|p| read_log(p).ok()).collect();
    let Some((log, metric)) = logs
        .iter()
        .filter_map(|log| {
            let metric = LOSS_METRICS.iter().find(|m| !log.series(m).is_empty())?;
            Some((log, *metric))
        })
        .max_by_key(|(log, metric)| log.series(metric).len())
    else {
        return Err(format!("{}: no training log with a train loss", run.name));
    };
    let mut sources: Vec<PathBuf> = run.config.iter().cloned().collect();
    sources.push(log.source.clone());
    let batch_size = sources
        .iter()
        .find_map(|p| batch_size_in(p))
        .ok_or_else(|| format!("{}: batch size unknown (no `batch_size` in config.json)", run.name))?;
    prequential_code(&log.series(metric), batch_size)
        .ok_or_else(|| format!("{}: the training log has no step after 0", run.name))
}

/// The first of [`BATCH_SIZE_KEYS`] holding a positive integer at the top level of a JSON file.
fn batch_size_in(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    BATCH_SIZE_KEYS
        .iter()
        .find_map(|k| value.get(*k)?.as_u64())
        .filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_each_interval_its_logged_loss() {
        let ln2 = std::f64::consts::LN_2;
        // Steps 10, 30 (out of order, 30 logged twice: the last wins), and a step-0 point.
        let points = [(30, 9.0), (0, 5.0), (10, 2.0 * ln2), (30, ln2)];
        let code = prequential_code(&points, 4).unwrap();
        // 10 steps x 4 examples x 2 bits + 20 steps x 4 examples x 1 bit.
        assert!((code.bits - 160.0).abs() < 1e-9, "{}", code.bits);
        assert_eq!((code.n_examples, code.last_step, code.batch_size), (120, 30, 4));
    }

    #[test]
    fn degenerate_logs_give_none_or_nan() {
        assert!(prequential_code(&[], 8).is_none());
        assert!(prequential_code(&[(0, 1.0)], 8).is_none());
        assert!(prequential_code(&[(5, 1.0)], 0).is_none());
        assert!(prequential_code(&[(5, f64::NAN), (6, 1.0)], 2).unwrap().bits.is_nan());
    }

    #[test]
    fn reads_the_fixture_run() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/digits-mlp/zoo_safetensors");
        let zoo = lineage_loaders::discover(&root);
        let run = zoo.run("init0_order0").unwrap();
        let code = run_prequential_code(run).unwrap();
        let log = read_log(&run.dir.join("metrics.jsonl")).unwrap();
        let series = log.series("loss");
        let mut expected = 0.0;
        let mut previous = 0;
        for (step, loss) in &series {
            expected += loss / std::f64::consts::LN_2 * 64.0 * (step - previous) as f64;
            previous = *step;
        }
        assert_eq!(code.batch_size, 64);
        assert_eq!(code.last_step, 1500);
        assert_eq!(code.n_examples, 64 * 1500);
        assert!((code.bits - expected).abs() < 1e-6 * expected);
        // Training compresses: fewer bits per example than the uniform code over 10 classes.
        assert!(code.bits / code.n_examples as f64 <= 10f64.log2());
    }
}
