//! Every Parquet table an analysis writes (ARCHITECTURE.md, "Tables"), each declared once with
//! [`table!`]: the declaration is the row type, the writer and the reader. Rows hold enums
//! ([`PairKind`], [`BarrierKind`], [`BasinEvent`]); they become text only in the files.

use crate::methods::basins::{BasinEvent, BasinId};
use crate::methods::interpolation::BarrierKind;
use crate::named_scalar;
use crate::pipeline::plan::PairKind;
use crate::table;

named_scalar!(PairKind);
named_scalar!(BarrierKind);
named_scalar!(BasinEvent);

// The interpolation sweep.

table! {
    /// `checkpoints.parquet`: one row per readable checkpoint.
    pub struct CheckpointRow in "checkpoints" {
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
        /// Training tokens seen, when the checkpoint's name says (OLMo `step1000-tokens4B`); else null.
        pub tokens: Option<u64>,
        /// SHA-256 content key of the checkpoint's files (with the tensor selection, if any).
        pub key: String,
    }
}

table! {
    /// `evals.parquet`: one row per evaluated checkpoint.
    pub struct EvalRow in "evals" {
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
        /// The loss is NaN or infinite: the run has diverged at this step, and is left out of the
        /// basins (its barriers are still in `barriers`).
        pub diverged: bool,
        /// Eval set the checkpoint was evaluated on (its name, or its file's stem when unnamed).
        pub set: String,
    }
}

table! {
    /// `interpolation.parquet`: one row per (pair, alpha).
    pub struct InterpolationRow in "interpolation" {
        /// Step of endpoint A (the step the pair is reported under).
        pub step: u64,
        /// Run of endpoint A.
        pub run_a: String,
        /// Run of endpoint B.
        pub run_b: String,
        /// Step of endpoint B (differs from `step` for `to_final` pairs).
        pub step_b: u64,
        /// Pair set (`seeds`, `to_final` or `fork` in the file).
        pub pair: PairKind,
        /// Interpolation coefficient: theta = (1-alpha) A + alpha B.
        pub alpha: f64,
        /// Mean cross-entropy at alpha.
        pub loss: f64,
        /// Error rate at alpha.
        pub error: f64,
        /// Whether B was permutation-aligned to A first.
        pub aligned: bool,
        /// Eval set of the losses (the basins' set unless paths are computed on every set).
        pub set: String,
    }
}

table! {
    /// `barriers.parquet`: one row per (pair, barrier kind).
    pub struct BarrierRow in "barriers" {
        /// Step of endpoint A.
        pub step: u64,
        /// Run of endpoint A.
        pub run_a: String,
        /// Run of endpoint B.
        pub run_b: String,
        /// Step of endpoint B.
        pub step_b: u64,
        /// Pair set (`seeds`, `to_final` or `fork` in the file).
        pub pair: PairKind,
        /// Barrier definition (`endpoint`: Frankle et al. 2020, `segment`: Juneja et al. 2023).
        pub kind: BarrierKind,
        /// Loss barrier.
        pub loss_barrier: f64,
        /// Error barrier.
        pub error_barrier: f64,
        /// Whether B was permutation-aligned to A first.
        pub aligned: bool,
        /// Eval set of the losses (the basins' set unless paths are computed on every set).
        pub set: String,
        /// 2.5% quantile of the loss barrier over bootstrap resamples of the eval examples (null
        /// without `--bootstrap`).
        pub loss_barrier_lo: Option<f64>,
        /// 97.5% quantile of the bootstrap loss barriers.
        pub loss_barrier_hi: Option<f64>,
        /// 2.5% quantile of the bootstrap error barriers.
        pub error_barrier_lo: Option<f64>,
        /// 97.5% quantile of the bootstrap error barriers.
        pub error_barrier_hi: Option<f64>,
    }
}

// Basins over time.

table! {
    /// `generalization.parquet`: how the members of each basin do on each eval set, at each step.
    pub struct GeneralizationRow in "generalization" {
        /// Training step.
        pub step: u64,
        /// Eval set.
        pub set: String,
        /// Stable basin id (as in `clusters`).
        pub basin: BasinId,
        /// Member runs with an evaluation on the set.
        pub n_runs: u64,
        /// Mean of the members' eval losses.
        pub mean_loss: f64,
        /// Smallest member loss.
        pub min_loss: f64,
        /// Largest member loss.
        pub max_loss: f64,
        /// Mean of the members' error rates.
        pub mean_error: f64,
        /// Smallest member error rate.
        pub min_error: f64,
        /// Largest member error rate.
        pub max_error: f64,
    }
}

table! {
    /// `generalization_tests.parquet`: for each pair of basins at a step and each eval set, the
    /// difference in mean error and its permutation-test p-value over runs.
    pub struct BasinComparisonRow in "generalization_tests" {
        /// Training step.
        pub step: u64,
        /// Eval set.
        pub set: String,
        /// First basin (the smaller id).
        pub basin_a: BasinId,
        /// Second basin.
        pub basin_b: BasinId,
        /// Member runs of basin A with an evaluation on the set.
        pub n_a: u64,
        /// Member runs of basin B with an evaluation on the set.
        pub n_b: u64,
        /// Mean error of A's members minus mean error of B's.
        pub error_difference: f64,
        /// Two-sided permutation-test p-value of the difference (exact for up to 20,000 splits).
        pub p_value: f64,
    }
}

table! {
    /// `clusters`: the basin of each run at each step.
    pub struct ClusterRow in "clusters" {
        /// Training step.
        pub step: u64,
        /// Run name.
        pub run: String,
        /// Stable basin id; null for a diverged run.
        pub basin: Option<BasinId>,
        /// The run has diverged at this step (non-finite loss): in no basin.
        pub diverged: bool,
    }
}

table! {
    /// `timeline`: one row per (step, basin), including a size-0 row for each death.
    pub struct TimelineRow in "timeline" {
        /// Training step.
        pub step: u64,
        /// Stable basin id.
        pub basin: BasinId,
        /// Number of member runs (0 for a death).
        pub size: u64,
        /// What happened to the basin (`birth`, `continue`, `split`, `merge` or `death` in the file).
        pub event: BasinEvent,
        /// The previous step's basin sharing the most members (its own id for `continue` and `death`);
        /// null for a birth.
        pub parent_basin: Option<BasinId>,
        /// Runs of this basin at the previous step that have diverged at this step (and so left it).
        pub diverged: u64,
    }
}

table! {
    /// `tree_edges`: runs carried from a basin at one step to a basin at the next tracked step.
    pub struct TreeEdgeRow in "tree_edges" {
        /// Step of the source basin.
        pub step_from: u64,
        /// Source basin.
        pub basin_from: BasinId,
        /// Step of the target basin.
        pub step_to: u64,
        /// Target basin.
        pub basin_to: BasinId,
        /// Number of runs carried.
        pub n_runs: u64,
        /// Whether the target basin's membership is uncertain: one of its runs has a co-membership
        /// frequency between 0.05 and 0.95 with some run of its step (false without the bootstrap).
        pub uncertain: bool,
    }
}

table! {
    /// `co_membership.parquet`: for each pair of runs clustered at a step, how often bootstrap
    /// resamples of the eval examples put them in the same basin.
    pub struct CoMembershipRow in "co_membership" {
        /// Training step.
        pub step: u64,
        /// First run (name order).
        pub run_a: String,
        /// Second run.
        pub run_b: String,
        /// Fraction of resamples whose clustering puts the two runs together.
        pub co_membership: f64,
        /// Whether the clustering of the whole eval set puts them together.
        pub same_basin: bool,
        /// Number of resamples.
        pub resamples: u64,
    }
}

table! {
    /// `lineage export`'s cluster timeline: the basin of each run at each step with that basin's size,
    /// event and parent (`clusters` joined with `timeline`).
    pub struct ClusterTimelineRow in "cluster_timeline" {
        /// Training step.
        pub step: u64,
        /// Run name.
        pub run: String,
        /// Stable basin id.
        pub basin: BasinId,
        /// Number of member runs of the basin.
        pub basin_size: u64,
        /// What happened to the basin at this step.
        pub event: BasinEvent,
        /// The previous step's basin sharing the most members; null for a birth.
        pub parent_basin: Option<BasinId>,
    }
}

// Representations and dynamics.

table! {
    /// `similarity.parquet`: one row per compared pair of checkpoints.
    pub struct SimilarityRow in "similarity" {
        /// Step of checkpoint A.
        pub step: u64,
        /// Run of A.
        pub run_a: String,
        /// Run of B.
        pub run_b: String,
        /// Step of B (the run's final step for `to_final` pairs).
        pub step_b: u64,
        /// Pair set (`seeds`, `to_final` or `fork` in the file).
        pub pair: PairKind,
        /// Hidden layer compared (0-based).
        pub layer: u64,
        /// Linear CKA (Kornblith et al. 2019).
        pub linear_cka: f64,
        /// Debiased CKA (unbiased HSIC).
        pub debiased_cka: f64,
        /// Mutual k-NN alignment, k = 10 (Huh et al. 2024).
        pub mutual_knn: f64,
    }
}

table! {
    /// `trajectories.parquet`: one row per checkpoint.
    pub struct TrajectoryRow in "trajectories" {
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
        /// Coordinate on the first principal component of all runs' checkpoints together (one set
        /// of axes for every run; null above `joint_trajectory_max` checkpoints).
        pub joint_pc1: f64,
        /// Coordinate on the second joint component.
        pub joint_pc2: f64,
        /// Fraction of the variance of all checkpoints along the first joint component.
        pub joint_pc1_explained: f64,
        /// Fraction along the second joint component.
        pub joint_pc2_explained: f64,
    }
}

table! {
    /// `weight_norms.parquet`: one row per (checkpoint, tensor).
    pub struct WeightNormRow in "weight_norms" {
        /// Run name.
        pub run: String,
        /// Step.
        pub step: u64,
        /// Tensor name (normalised).
        pub tensor: String,
        /// L2 (Frobenius) norm of the tensor.
        pub norm: f64,
    }
}

table! {
    /// `code_length.parquet`: one row per run.
    pub struct CodeLengthRow in "code_length" {
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
}

table! {
    /// `probes.parquet`: one row per checkpoint.
    pub struct ProbeRow in "probes" {
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
}

table! {
    /// `training_map.parquet`: the training-map state (phase) of each checkpoint.
    pub struct MapStateRow in "training_map" {
        /// Run name.
        pub run: String,
        /// Step.
        pub step: u64,
        /// Viterbi state of the checkpoint.
        pub state: u64,
        /// Number of states selected by BIC.
        pub n_states: u64,
    }
}

table! {
    /// `training_map_transitions.parquet`: edges of the state-transition graph.
    pub struct MapTransitionRow in "training_map_transitions" {
        /// State left.
        pub state_from: u64,
        /// State entered.
        pub state_to: u64,
        /// How many times a run went from `state_from` to `state_to` between consecutive checkpoints.
        pub count: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::schema::{Table, read_table, write_table};

    #[test]
    fn barrier_table_round_trips_through_parquet() {
        let rows = vec![BarrierRow {
            step: 100,
            run_a: "a".into(),
            run_b: "b".into(),
            step_b: 100,
            pair: PairKind::ToFinal,
            kind: BarrierKind::Endpoint,
            loss_barrier: 0.25,
            error_barrier: 0.5,
            aligned: false,
            set: "eval".into(),
            loss_barrier_lo: Some(0.125),
            loss_barrier_hi: Some(0.375),
            error_barrier_lo: None,
            error_barrier_hi: None,
        }];
        let dir = tempfile::tempdir().unwrap();
        let path = write_table(dir.path(), &rows).unwrap();
        assert_eq!(path, dir.path().join("barriers.parquet"));
        let df = crate::output::schema::read_parquet(&path).unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, BarrierRow::COLUMNS);
        assert_eq!(df.column("pair").unwrap().str().unwrap().get(0), Some("to_final"));
        assert_eq!(read_table::<BarrierRow>(dir.path()).unwrap(), rows);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn nullable_columns_and_enums_round_trip() {
        let rows = vec![
            TimelineRow {
                step: 5,
                basin: 2,
                size: 3,
                event: BasinEvent::Split,
                parent_basin: Some(1),
                diverged: 0,
            },
            TimelineRow {
                step: 6,
                basin: 3,
                size: 1,
                event: BasinEvent::Birth,
                parent_basin: None,
                diverged: 2,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        write_table(dir.path(), &rows).unwrap();
        assert_eq!(read_table::<TimelineRow>(dir.path()).unwrap(), rows);
        let lengths = vec![
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
        write_table(dir.path(), &lengths).unwrap();
        assert_eq!(read_table::<CodeLengthRow>(dir.path()).unwrap(), lengths);
    }

    #[test]
    fn a_wrong_column_names_the_file_and_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let evals = vec![EvalRow {
            run: "a".into(),
            step: 1,
            loss: 1.0,
            error: 0.5,
            bits_per_example: 1.0 / std::f64::consts::LN_2,
            diverged: false,
            set: "eval".into(),
        }];
        write_table(dir.path(), &evals).unwrap();
        std::fs::rename(dir.path().join("evals.parquet"), dir.path().join("barriers.parquet")).unwrap();
        let err = read_table::<BarrierRow>(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("barriers.parquet") && err.contains("no column `run_a`"),
            "{err}"
        );
    }
}
