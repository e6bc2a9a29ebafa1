//! The Parquet tables of the representation and dynamics views ([`crate::pipeline::representations`]), written next to
//! the tables of [`crate::output::tables`] by `lineage batch`.

use polars::prelude::*;
use serde::Serialize;

use crate::error::CoreError;

/// `similarity.parquet`: one row per compared pair of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimilarityRow {
    /// Step of checkpoint A.
    pub step: u64,
    /// Run of A.
    pub run_a: String,
    /// Run of B.
    pub run_b: String,
    /// Step of B (the run's final step for `to_final` pairs).
    pub step_b: u64,
    /// Pair set: `seeds`, `to_final` or `fork`.
    pub pair: String,
    /// Hidden layer compared (0-based).
    pub layer: u64,
    /// Linear CKA (Kornblith et al. 2019).
    pub linear_cka: f64,
    /// Debiased CKA (unbiased HSIC).
    pub debiased_cka: f64,
    /// Mutual k-NN alignment, k = 10 (Huh et al. 2024).
    pub mutual_knn: f64,
}

/// `trajectories.parquet`: one row per checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrajectoryRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// L2 distance of all parameters from the run's first checkpoint.
    pub dist_from_init: f64,
    /// Coordinate on the first principal component of the run's path.
    pub pc1: f64,
    /// Coordinate on the second principal component.
    pub pc2: f64,
    /// Fraction of the path's variance along PC1 (same for every row of the run).
    pub pc1_explained: f64,
    /// Fraction along PC2.
    pub pc2_explained: f64,
}

/// `weight_norms.parquet`: one row per (checkpoint, tensor).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightNormRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Tensor name (normalised).
    pub tensor: String,
    /// L2 (Frobenius) norm of the tensor.
    pub norm: f64,
}

/// `code_length.parquet`: one row per run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeLengthRow {
    /// Run name.
    pub run: String,
    /// Prequential code length of the training data in bits (null without a usable log).
    pub prequential_bits: Option<f64>,
    /// Training examples it encodes (batch size x last logged step).
    pub n_examples: Option<u64>,
    /// `prequential_bits / n_examples`.
    pub prequential_bits_per_example: Option<f64>,
    /// Examples per step used.
    pub batch_size: Option<u64>,
    /// The run's last evaluated step.
    pub final_step: Option<u64>,
    /// Eval code length at the final step, bits per example (= loss / ln 2).
    pub final_eval_bits_per_example: Option<f64>,
}

/// `probes.parquet`: one row per checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Hidden layer probed (0-based).
    pub layer: u64,
    /// Accuracy on the fitting part of the eval set.
    pub train_accuracy: f64,
    /// Accuracy on the held-out part.
    pub heldout_accuracy: f64,
}

/// `training_map.parquet`: the training-map state (phase) of each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapStateRow {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Viterbi state of the checkpoint.
    pub state: u64,
    /// Number of states selected by BIC.
    pub n_states: u64,
}

/// `training_map_transitions.parquet`: edges of the state-transition graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapTransitionRow {
    /// State left.
    pub state_from: u64,
    /// State entered.
    pub state_to: u64,
    /// How many times a run went from `state_from` to `state_to` between consecutive checkpoints.
    pub count: u64,
}

fn col<T, V>(name: &str, rows: &[T], f: impl Fn(&T) -> V) -> Column
where
    Series: NamedFrom<Vec<V>, [V]>,
{
    Column::new(name.into(), rows.iter().map(f).collect::<Vec<V>>())
}

fn frame(height: usize, columns: Vec<Column>) -> Result<DataFrame, CoreError> {
    DataFrame::new(height, columns).map_err(|e| CoreError::Table(e.to_string()))
}

/// Builds the `similarity` frame.
pub fn similarity_frame(rows: &[SimilarityRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("step", rows, |r| r.step),
            col("run_a", rows, |r| r.run_a.clone()),
            col("run_b", rows, |r| r.run_b.clone()),
            col("step_b", rows, |r| r.step_b),
            col("pair", rows, |r| r.pair.clone()),
            col("layer", rows, |r| r.layer),
            col("linear_cka", rows, |r| r.linear_cka),
            col("debiased_cka", rows, |r| r.debiased_cka),
            col("mutual_knn", rows, |r| r.mutual_knn),
        ],
    )
}

/// Builds the `trajectories` frame.
pub fn trajectories_frame(rows: &[TrajectoryRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("run", rows, |r| r.run.clone()),
            col("step", rows, |r| r.step),
            col("dist_from_init", rows, |r| r.dist_from_init),
            col("pc1", rows, |r| r.pc1),
            col("pc2", rows, |r| r.pc2),
            col("pc1_explained", rows, |r| r.pc1_explained),
            col("pc2_explained", rows, |r| r.pc2_explained),
        ],
    )
}

/// Builds the `weight_norms` frame.
pub fn weight_norms_frame(rows: &[WeightNormRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("run", rows, |r| r.run.clone()),
            col("step", rows, |r| r.step),
            col("tensor", rows, |r| r.tensor.clone()),
            col("norm", rows, |r| r.norm),
        ],
    )
}

/// Builds the `code_length` frame.
pub fn code_length_frame(rows: &[CodeLengthRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("run", rows, |r| r.run.clone()),
            col("prequential_bits", rows, |r| r.prequential_bits),
            col("n_examples", rows, |r| r.n_examples),
            col("prequential_bits_per_example", rows, |r| r.prequential_bits_per_example),
            col("batch_size", rows, |r| r.batch_size),
            col("final_step", rows, |r| r.final_step),
            col("final_eval_bits_per_example", rows, |r| r.final_eval_bits_per_example),
        ],
    )
}

/// Builds the `probes` frame.
pub fn probes_frame(rows: &[ProbeRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("run", rows, |r| r.run.clone()),
            col("step", rows, |r| r.step),
            col("layer", rows, |r| r.layer),
            col("train_accuracy", rows, |r| r.train_accuracy),
            col("heldout_accuracy", rows, |r| r.heldout_accuracy),
        ],
    )
}

/// Builds the `training_map` frame.
pub fn training_map_frame(rows: &[MapStateRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("run", rows, |r| r.run.clone()),
            col("step", rows, |r| r.step),
            col("state", rows, |r| r.state),
            col("n_states", rows, |r| r.n_states),
        ],
    )
}

/// Builds the `training_map_transitions` frame.
pub fn map_transitions_frame(rows: &[MapTransitionRow]) -> Result<DataFrame, CoreError> {
    frame(
        rows.len(),
        vec![
            col("state_from", rows, |r| r.state_from),
            col("state_to", rows, |r| r.state_to),
            col("count", rows, |r| r.count),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tables::{read_parquet, write_parquet};

    #[test]
    fn code_length_table_keeps_nulls_through_parquet() {
        let rows = vec![
            CodeLengthRow {
                run: "a".into(),
                prequential_bits: Some(12.5),
                n_examples: Some(10),
                prequential_bits_per_example: Some(1.25),
                batch_size: Some(2),
                final_step: Some(5),
                final_eval_bits_per_example: Some(0.5),
            },
            CodeLengthRow {
                run: "b".into(),
                prequential_bits: None,
                n_examples: None,
                prequential_bits_per_example: None,
                batch_size: None,
                final_step: Some(5),
                final_eval_bits_per_example: None,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code_length.parquet");
        write_parquet(&path, &mut code_length_frame(&rows).unwrap()).unwrap();
        let df = read_parquet(&path).unwrap();
        let bits = df.column("prequential_bits").unwrap().f64().unwrap();
        assert_eq!((bits.get(0), bits.get(1)), (Some(12.5), None));
        assert_eq!(df.column("n_examples").unwrap().u64().unwrap().get(0), Some(10));
    }
}
