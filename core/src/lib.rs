//! Computation for lineage: evaluation of checkpoints on eval data and linear mode connectivity
//! (interpolation curves and barriers) between them. No GUI and no terminal I/O.
//!
//! - [`eval_data`]: held-out examples from `.safetensors`, `.npz` or `.parquet`.
//! - [`evaluator`]: the [`Evaluator`] trait (per-checkpoint preparation, endpoint and path
//!   evaluation) and [`evaluator_for`], which picks the model family.
//! - [`mlp`]: the `mlp` family and its fast path evaluator.
//! - [`transformer`]: the `bert` family (HF BERT sequence classifiers, through candle-transformers).
//! - [`external`]: the `external` family: any framework, through a documented command protocol.
//! - [`interpolation`]: alpha grids, endpoint and segment barriers, peak refinement.
//! - [`align`]: permutation alignment (Git Re-Basin weight matching) before interpolation.
//! - [`views`]: representations and dynamics over time (similarity, probes, weight-space
//!   trajectories, code lengths, training maps), built on [`similarity`], [`probe`],
//!   [`trajectory`], [`code_length`] and [`training_map`].

pub mod align;
pub mod basin_analysis;
pub mod basins;
pub mod batch;
pub mod cache;
pub mod code_length;
pub mod error;
pub mod eval_data;
pub mod evaluator;
pub mod export;
pub mod external;
pub mod features;
pub mod figures;
pub mod interpolation;
pub mod keys;
pub mod merge;
pub mod mlp;
pub mod pairs;
pub mod probe;
pub mod progress;
pub mod report;
pub mod similarity;
pub mod tables;
pub mod tables_views;
pub mod train;
pub mod training_map;
pub mod trajectory;
pub mod transformer;
pub mod views;

pub use error::CoreError;
pub use eval_data::EvalData;
pub use evaluator::{EvalResult, Evaluator, Prepared, evaluator_for, evaluator_on};
pub use external::ExternalEvaluator;
pub use mlp::{MlpEvaluator, MlpSpec};
