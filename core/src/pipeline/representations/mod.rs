//! Representations and dynamics over time (issue 8), computed by `lineage batch` after the
//! interpolation analysis and cached like it:
//!
//! - [`representations`]: hidden activations at one layer, compared between checkpoints
//!   ([`crate::methods::similarity`]: seed pairs at each step, each checkpoint vs its run's final one) and
//!   probed with a linear classifier ([`crate::methods::probe`]);
//! - [`dynamics`]: weight-space trajectories ([`crate::methods::trajectory`]) and the compression view
//!   ([`crate::methods::code_length`]);
//! - [`maps`]: training maps ([`crate::methods::training_map`]) over per-checkpoint metrics.
//!
//! Units of work are cached under content keys (checkpoint SHA-256, eval data, evaluator, layer
//! and options) in the result cache folder, so a rerun computes nothing and a killed run resumes.

pub mod activations;
pub mod training_map;
pub mod trajectories;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use lineage_loaders::checkpoint::load_checkpoint;
use lineage_loaders::{Checkpoint, Zoo};

use crate::data::eval_data::EvalData;
use crate::error::CoreError;
use crate::methods::probe::ProbeOptions;
use crate::models::evaluator::Evaluator;
use crate::output::tables::EvalRow;
use crate::output::tables_representations::{
    CodeLengthRow, MapStateRow, MapTransitionRow, ProbeRow, SimilarityRow, TrajectoryRow, WeightNormRow,
};
use crate::pipeline::keys::{FileKeys, Key, hash_file};
use crate::pipeline::plan::{CheckpointId, PairSets};
use crate::pipeline::sweep::EvaluatorFactory;
use crate::progress::Progress;

/// Bumped whenever cached view results would change meaning.
const VIEWS_CACHE_VERSION: &str = "lineage-views-v1";

/// Which views to compute, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewOptions {
    /// Hidden layer for similarity and probes (0-based); `None` = the last hidden layer.
    pub layer: Option<usize>,
    /// Representation similarity between checkpoint pairs.
    pub similarity: bool,
    /// Linear probes per checkpoint.
    pub probes: bool,
    /// Weight-space trajectories and per-tensor norms.
    pub trajectories: bool,
    /// Prequential and eval code lengths.
    pub code_length: bool,
    /// Training map (needs the trajectories).
    pub training_map: bool,
    /// Pair sets compared by similarity (`seeds`, `to_final`, `forks`).
    pub pairs: PairSets,
    /// Probe options.
    pub probe: ProbeOptions,
    /// Checkpoints of one run held in memory at once while building a trajectory's Gram matrix.
    pub trajectory_block: usize,
    /// Result cache folder (the batch analysis's).
    pub cache_dir: PathBuf,
}

impl ViewOptions {
    /// Every view, last hidden layer, default probe, 16 checkpoints per trajectory block.
    pub fn all(pairs: PairSets, cache_dir: PathBuf) -> Self {
        Self {
            layer: None,
            similarity: true,
            probes: true,
            trajectories: true,
            code_length: true,
            training_map: true,
            pairs,
            probe: ProbeOptions::default(),
            trajectory_block: 16,
            cache_dir,
        }
    }
}

/// The rows of the view tables, plus bookkeeping.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewsResult {
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
    /// The hidden layer used (None when the model has none or the views needing it were off).
    pub layer: Option<usize>,
    /// Units computed in this run.
    pub computed: usize,
    /// Units found in the cache.
    pub cached: usize,
    /// Problems met; the rest was computed.
    pub warnings: Vec<String>,
}

/// A readable checkpoint of the zoo with its content key.
#[derive(Debug, Clone)]
pub(crate) struct Keyed<'z> {
    pub id: CheckpointId,
    pub checkpoint: &'z Checkpoint,
    pub key: Key,
}

/// Computes the views of `zoo` on the eval data at `data_path`. `evals` are the rows of the batch
/// analysis's `evals` table (for the eval code length at each run's final step).
pub fn run_views(
    zoo: &Zoo,
    data_path: &Path,
    options: &ViewOptions,
    make_evaluator: &EvaluatorFactory,
    evals: &[EvalRow],
    progress: &dyn Progress,
) -> Result<ViewsResult, CoreError> {
    let mut result = ViewsResult::default();
    let files = FileKeys::open(&options.cache_dir.join("file_keys.jsonl"))?;
    let keyed = keyed_checkpoints(zoo, &files, &mut result.warnings);
    // The evaluator, from the first loadable checkpoint (its run's config or its tensors).
    let reference = (options.similarity || options.probes)
        .then(|| {
            keyed
                .iter()
                .find_map(|k| Some((k, load_checkpoint(k.checkpoint).ok()?)))
        })
        .flatten();
    if let Some((first, reference)) = reference {
        let data = EvalData::load(data_path)?;
        let data_key = hash_file(data_path)?;
        let config = zoo.run(&first.id.run).and_then(|r| r.config.clone());
        let evaluator: Box<dyn Evaluator> = make_evaluator(config.as_deref(), &reference, &data)?;
        drop(reference);
        activations::compute(
            zoo,
            &keyed,
            evaluator.as_ref(),
            &data,
            &data_key,
            options,
            progress,
            &mut result,
        )?;
    }
    if options.trajectories {
        trajectories::trajectories(zoo, &keyed, options, progress, &mut result)?;
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

/// Every checkpoint whose files can be hashed, in (run, step) order; the others become warnings.
fn keyed_checkpoints<'z>(zoo: &'z Zoo, files: &FileKeys, warnings: &mut Vec<String>) -> Vec<Keyed<'z>> {
    let mut out = Vec::new();
    for run in &zoo.runs {
        for c in &run.checkpoints {
            match files.checkpoint_key(&c.files) {
                Ok(key) => out.push(Keyed {
                    id: CheckpointId {
                        run: run.name.clone(),
                        step: c.step,
                    },
                    checkpoint: c,
                    key,
                }),
                Err(e) => warnings.push(format!("{}@{}: {e}", run.name, c.step)),
            }
        }
    }
    out
}

/// `Some(v)` for a finite value; caches store NaN as null.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Stops when the user cancelled.
pub(crate) fn check_cancel(progress: &dyn Progress) -> Result<(), CoreError> {
    if progress.is_cancelled() {
        Err(CoreError::Cancelled)
    } else {
        Ok(())
    }
}
