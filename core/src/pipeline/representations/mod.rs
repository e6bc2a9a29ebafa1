//! Representations and dynamics over time, computed after the interpolation sweep and stored like
//! it:
//!
//! - [`activations`]: hidden activations at one layer, compared between checkpoints
//!   ([`crate::methods::similarity`]: the sweep's pairs) and probed with a linear classifier
//!   ([`crate::methods::probe`]);
//! - [`trajectories`]: weight-space trajectories ([`crate::methods::trajectory`]) and the compression
//!   view ([`crate::methods::code_length`]);
//! - [`training_map`]: training maps ([`crate::methods::training_map`]) over per-checkpoint metrics.
//!
//! Units of work are stored under content keys (checkpoint SHA-256, eval data, evaluator, layer and
//! options) in the result store folder, so a rerun computes nothing and a killed run resumes.

pub mod activations;
pub mod training_map;
pub mod trajectories;

use std::path::Path;

use serde::Serialize;

use lineage_loaders::Zoo;

use crate::error::CoreError;
use crate::models::registry::EvaluatorFactory;
use crate::output::tables::{
    CodeLengthRow, EvalRow, MapStateRow, MapTransitionRow, ProbeRow, SimilarityRow, TrajectoryRow, WeightNormRow,
};
use crate::pipeline::keys::FileKeys;
use crate::pipeline::options::RepresentationOptions;
use crate::pipeline::options::SweepOptions;
use crate::pipeline::units::{UnitCounts, all_checkpoints, key_checkpoints, reference_evaluator};
use crate::progress::Progress;

/// Bumped whenever stored representation results would change meaning.
const CACHE_VERSION: &str = "lineage-views-v1";

/// The rows of the representation tables, plus bookkeeping.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Representations {
    /// `similarity.parquet`.
    pub similarity: Vec<SimilarityRow>,
    /// `probes.parquet`.
    pub probes: Vec<ProbeRow>,
    /// `trajectories.parquet`.
    pub trajectories: Vec<TrajectoryRow>,
    /// `weight_norms.parquet`.
    pub weight_norms: Vec<WeightNormRow>,
    /// `code_length.parquet`.
    pub code_length: Vec<CodeLengthRow>,
    /// `training_map.parquet`.
    pub training_map: Vec<MapStateRow>,
    /// `training_map_transitions.parquet`.
    pub map_transitions: Vec<MapTransitionRow>,
    /// The hidden layer used (None when the model has none or the analyses needing it were off).
    pub layer: Option<usize>,
    /// Units computed in this run and taken from the store.
    pub counts: UnitCounts,
    /// Problems met; the rest was computed.
    pub warnings: Vec<String>,
}

/// Computes the representation analyses of `zoo` on the eval data at `data_path` (as `sweep` selects
/// it): similarity of the sweep's pairs, probes, trajectories, code lengths, training map. `evals` are the rows of the sweep's
/// `evals` table (for the eval code length at each run's final step and the training map).
pub fn run_representations(
    zoo: &Zoo,
    data_path: &Path,
    options: &RepresentationOptions,
    sweep: &SweepOptions,
    factory: &EvaluatorFactory,
    evals: &[EvalRow],
    progress: &dyn Progress,
) -> Result<Representations, CoreError> {
    let mut result = Representations::default();
    let (pairs, cache_dir) = (sweep.pairs, sweep.cache_dir.as_path());
    let files = FileKeys::open(&cache_dir.join("file_keys.jsonl"))?;
    let tensors = sweep.selection.tensors()?;
    let (mut keyed, schema) = key_checkpoints(
        zoo,
        &all_checkpoints(zoo),
        &files,
        &tensors,
        progress,
        &mut result.warnings,
    );
    if options.similarity || options.probes {
        let (data, data_key) = sweep.selection.eval_data(data_path)?;
        let (evaluator, reference, refused) =
            reference_evaluator(zoo, &schema, &keyed, &data, factory, &mut result.warnings)?;
        drop(reference);
        keyed.retain(|k| !refused.contains(&k.id));
        let context = activations::Context {
            zoo,
            schema: &schema,
            keyed: &keyed,
            evaluator: evaluator.as_ref(),
            data: &data,
            data_key: &data_key,
            pairs,
            cache_dir,
            progress,
        };
        context.compute(options, &mut result)?;
    }
    if options.trajectories {
        trajectories::trajectories(zoo, &schema, &keyed, options, cache_dir, progress, &mut result)?;
    }
    if options.code_length {
        result.code_length = trajectories::code_lengths(zoo, evals, &mut result.warnings);
    }
    if options.training_map && options.trajectories {
        match training_map::training_map_rows(evals, &result.trajectories, &result.weight_norms) {
            Ok((states, transitions)) => {
                result.training_map = states;
                result.map_transitions = transitions;
            }
            Err(e) => result.warnings.push(format!("training map: {e}")),
        }
    }
    Ok(result)
}

/// `Some(v)` for a finite value; stores keep NaN as null.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
