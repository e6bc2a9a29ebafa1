//! Computation for lineage: evaluation of checkpoints on eval data, linear mode connectivity between
//! them, basins over time, representations and dynamics. No GUI and no terminal I/O. See
//! `ARCHITECTURE.md` at the repository root for how the modules fit together.
//!
//! - [`data`]: eval data and hidden representations.
//! - [`models`]: the [`Evaluator`] trait and the model families.
//! - [`methods`]: the methods (interpolation, alignment, similarity, probes, trajectories, code
//!   length, training maps, basins).
//! - [`pipeline`]: the analysis, stage by stage, resumable through a result store.
//! - [`output`]: tables, report, figures, export.
//! - [`train`]: the demo trainer that makes zoos from built-in data.

pub mod data;
pub mod error;
pub mod methods;
pub mod models;
pub mod names;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod runtime;
pub mod train;

pub use data::EvalData;
pub use error::CoreError;
pub use models::mlp::{MlpEvaluator, MlpSpec};
pub use models::{EvalResult, Evaluator, Prepared, evaluator_for, evaluator_on};
pub use names::Named;
pub use pipeline::analysis::{Analysis, analyse, merge};
pub use pipeline::options::AnalysisOptions;
