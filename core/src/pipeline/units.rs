//! What every stage that computes cached units of work (checkpoint evaluations, interpolation paths,
//! similarities, probes) shares: content-keyed checkpoints, the evaluator from a reference
//! checkpoint, pending-unit bookkeeping, loading with failures as warnings, cancellation and
//! per-unit error collection.

use std::collections::HashSet;
use std::hash::Hash;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use lineage_loaders::checkpoint::{CheckpointScan, load_checkpoint_matching, scan_checkpoint};
use lineage_loaders::selection::TensorFilter;
use lineage_loaders::{Checkpoint, ParamSet, Schema, Zoo, reference_schema_selected};

use crate::data::eval_data::EvalData;
use crate::error::CoreError;
use crate::models::evaluator::Evaluator;
use crate::models::registry::EvaluatorFactory;
use crate::pipeline::keys::{FileKeys, Key, hash_parts};
use crate::pipeline::plan::CheckpointId;
use crate::progress::Progress;

/// A readable checkpoint of the zoo: its id, files, header scan and content key.
#[derive(Debug, Clone)]
pub struct KeyedCheckpoint<'z> {
    /// Run and step.
    pub id: CheckpointId,
    /// Where it is.
    pub checkpoint: &'z Checkpoint,
    /// Its tensors' names, shapes and dtypes.
    pub scan: CheckpointScan,
    /// SHA-256 of its files (with the tensor selection, when there is one).
    pub key: Key,
}

/// Every checkpoint of `zoo` in (run, step) order, as ids.
pub fn all_checkpoints(zoo: &Zoo) -> Vec<CheckpointId> {
    zoo.runs
        .iter()
        .flat_map(|r| {
            r.checkpoints.iter().map(move |c| CheckpointId {
                run: r.name.clone(),
                step: c.step,
            })
        })
        .collect()
}

/// The checkpoint `id` of `zoo`.
pub fn checkpoint_of<'z>(zoo: &'z Zoo, id: &CheckpointId) -> Option<&'z Checkpoint> {
    zoo.run(&id.run).and_then(|r| r.at(id.step))
}

/// How messages name the checkpoint `id`: its file or folder (`run@step` when not in the zoo).
pub fn checkpoint_label(zoo: &Zoo, id: &CheckpointId) -> String {
    checkpoint_of(zoo, id).map_or_else(
        || format!("{}@{}", id.run, id.step),
        |c| c.display_path().display().to_string(),
    )
}

/// Scans and keys the checkpoints `ids` (in parallel, with progress), and finds the zoo's reference
/// schema: the layout of the selected `tensors` most of them share ([`reference_schema_selected`]);
/// a tensor filter is part of every checkpoint's key (results on fewer tensors differ). Every later load reads only the
/// schema's tensors ([`load_one`]). A checkpoint that cannot be read, or whose headers do not fit the
/// schema (a renamed or misshapen tensor), becomes a warning naming it and is left out; tensors
/// outside the schema (an extra head, a huge declared tensor) are never read.
pub fn key_checkpoints<'z>(
    zoo: &'z Zoo,
    ids: &[CheckpointId],
    files: &FileKeys,
    tensors: &TensorFilter,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> (Vec<KeyedCheckpoint<'z>>, Schema) {
    progress.start("hashing checkpoints", ids.len() as u64);
    let keyed: Vec<Result<KeyedCheckpoint, String>> = ids
        .par_iter()
        .map(|id| {
            let checkpoint = checkpoint_of(zoo, id).ok_or_else(|| format!("{}@{}: not in the zoo", id.run, id.step))?;
            let scan = scan_checkpoint(checkpoint).map_err(|e| e.to_string())?;
            let mut key = files.checkpoint_key(&checkpoint.files).map_err(|e| e.to_string())?;
            if let Some(selected) = tensors.cache_key() {
                key = hash_parts(&[key.as_str(), &selected]);
            }
            progress.advance(1);
            Ok(KeyedCheckpoint {
                id: id.clone(),
                checkpoint,
                scan,
                key,
            })
        })
        .collect();
    progress.finish();
    let keyed: Vec<KeyedCheckpoint> = keyed
        .into_iter()
        .filter_map(|k| k.map_err(|e| warnings.push(e)).ok())
        .collect();
    let schema = reference_schema_selected(keyed.iter().map(|k| &k.scan), tensors).unwrap_or_default();
    let fitting = keyed
        .into_iter()
        .filter(|k| {
            let fits = schema.check(&k.checkpoint.display_path(), &k.scan.tensors);
            fits.map_err(|e| warnings.push(e.to_string())).is_ok()
        })
        .collect();
    (fitting, schema)
}

/// The evaluator, the parameters it was built from, and the checkpoints refused before it.
pub type ReferenceModel = (Box<dyn Evaluator>, ParamSet, Vec<CheckpointId>);

/// The zoo's evaluator, built from the first of `keyed` that loads and makes a model (its run's
/// `config.json` or its tensors), and that checkpoint's parameters; then the checkpoints refused on
/// the way. Checkpoints that fail to load or to make a model (a renamed tensor) are warnings that
/// name the file; the same refusal from two checkpoints (the data does not fit the family) is the
/// error.
pub fn reference_evaluator(
    zoo: &Zoo,
    schema: &Schema,
    keyed: &[KeyedCheckpoint],
    data: &EvalData,
    factory: &EvaluatorFactory,
    warnings: &mut Vec<String>,
) -> Result<ReferenceModel, CoreError> {
    let mut refused = Vec::new();
    let mut last_refusal = None;
    for k in keyed {
        let path = k.checkpoint.display_path().display().to_string();
        match load_checkpoint_matching(k.checkpoint, schema) {
            Ok(reference) => {
                let config = zoo.run(&k.id.run).and_then(|r| r.config.clone());
                match factory(config.as_deref(), &reference, data) {
                    Ok(evaluator) => {
                        let other = RunModels {
                            zoo,
                            config: config.as_deref(),
                            evaluator: evaluator.as_ref(),
                            reference: &reference,
                            data,
                            factory,
                        }
                        .runs_of_another_model(keyed, warnings);
                        refused.extend(other);
                        return Ok((evaluator, reference, refused));
                    }
                    // The eval data does not fit the zoo's model: no other checkpoint will do better.
                    Err(e @ CoreError::Data { .. }) => return Err(e),
                    Err(e) if last_refusal.as_ref() == Some(&e.to_string()) => return Err(e),
                    Err(e) => {
                        warnings.push(format!("{path}: no model can be built from it: {e}"));
                        last_refusal = Some(e.to_string());
                    }
                }
            }
            Err(e) => warnings.push(e.to_string()),
        }
        refused.push(k.id.clone());
    }
    Err(CoreError::NothingToDo(format!(
        "{}: no readable checkpoint{}",
        zoo.root.display(),
        reasons(warnings)
    )))
}

/// The zoo's model, as its reference run's `config` describes it, against the other runs' configs.
struct RunModels<'a> {
    zoo: &'a Zoo,
    /// The reference run's `config.json`, if it has one.
    config: Option<&'a Path>,
    evaluator: &'a dyn Evaluator,
    reference: &'a ParamSet,
    data: &'a EvalData,
    factory: &'a EvaluatorFactory<'a>,
}

impl RunModels<'_> {
    /// The checkpoints of `keyed` whose run's `config.json` describes another model than the
    /// reference run's (an activation, a norm's epsilon, a head count that leaves every tensor's
    /// shape alone), or cannot be read: evaluated with the reference's model they would give wrong
    /// numbers silently. Each such run is one warning naming its config and left out. A run with no
    /// config, or one with the reference config's bytes, is kept without building a model.
    fn runs_of_another_model(&self, keyed: &[KeyedCheckpoint], warnings: &mut Vec<String>) -> Vec<CheckpointId> {
        let Some(reference_config) = self.config else {
            return Vec::new();
        };
        let reference_bytes = std::fs::read(reference_config).ok();
        let specification = self.evaluator.model_specification();
        let mut left_out: HashSet<&str> = HashSet::new();
        let mut checked: HashSet<&str> = HashSet::new();
        for k in keyed {
            let Some(run) = self.zoo.run(&k.id.run) else { continue };
            if !checked.insert(run.name.as_str()) {
                continue;
            }
            let Some(config) = run.config.as_deref() else { continue };
            if config == reference_config || std::fs::read(config).ok() == reference_bytes {
                continue;
            }
            let problem = match (self.factory)(Some(config), self.reference, self.data) {
                Ok(other) if other.model_specification() == specification => continue,
                Ok(other) => format!(
                    "{} describes another model ({}) than {} ({})",
                    config.display(),
                    other.describe(),
                    reference_config.display(),
                    self.evaluator.describe()
                ),
                Err(e) => e.to_string(),
            };
            warnings.push(format!("run {}: {problem}: the run is left out", run.name));
            left_out.insert(run.name.as_str());
        }
        keyed
            .iter()
            .filter(|k| left_out.contains(k.id.run.as_str()))
            .map(|k| k.id.clone())
            .collect()
    }
}

/// The problems met so far, one per line (the first few), for an error that ends the analysis:
/// its warnings would otherwise never be shown.
fn reasons(warnings: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text: String = warnings.iter().take(SHOWN).map(|w| format!("\n  {w}")).collect();
    if warnings.len() > SHOWN {
        text.push_str(&format!("\n  and {} more", warnings.len() - SHOWN));
    }
    text
}

/// Loads `ids` in parallel, each against the zoo's `schema`; a failure becomes a warning naming
/// the checkpoint.
pub fn load_params<'a>(
    zoo: &Zoo,
    schema: &Schema,
    ids: &[&'a CheckpointId],
    warnings: &mut Vec<String>,
) -> Vec<(&'a CheckpointId, ParamSet)> {
    let loaded: Vec<_> = ids.par_iter().map(|id| (*id, load_one(zoo, schema, id))).collect();
    loaded
        .into_iter()
        .filter_map(|(id, r)| r.map(|p| (id, p)).map_err(|e| warnings.push(e.to_string())).ok())
        .collect()
}

/// Loads the checkpoint `id` of `zoo`: only the tensors of the zoo's `schema`, after its headers
/// were checked against the files and the schema (memory is bounded by the schema whatever a header
/// declares).
pub fn load_one(zoo: &Zoo, schema: &Schema, id: &CheckpointId) -> Result<ParamSet, CoreError> {
    let checkpoint =
        checkpoint_of(zoo, id).ok_or_else(|| CoreError::Load(format!("{}@{}: not in the zoo", id.run, id.step)))?;
    load_checkpoint_matching(checkpoint, schema).map_err(|e| CoreError::Load(e.to_string()))
}

/// Units computed in this run and units found in the result store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnitCounts {
    /// Computed in this run.
    pub computed: usize,
    /// Taken from the result store.
    pub cached: usize,
}

impl std::ops::Add for UnitCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            computed: self.computed + other.computed,
            cached: self.cached + other.cached,
        }
    }
}

impl std::ops::AddAssign for UnitCounts {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

/// The units of `all` not yet in the store, and the counts.
pub fn pending<U: Eq + Hash + Clone>(all: &[U], stored: impl Fn(&U) -> bool) -> (HashSet<U>, UnitCounts) {
    let pending: HashSet<U> = all.iter().filter(|u| !stored(u)).cloned().collect();
    let counts = UnitCounts {
        computed: pending.len(),
        cached: all.len() - pending.len(),
    };
    (pending, counts)
}

/// Stops when the user cancelled.
pub fn check_cancel(progress: &dyn Progress) -> Result<(), CoreError> {
    if progress.is_cancelled() {
        Err(CoreError::Cancelled)
    } else {
        Ok(())
    }
}

/// Keeps going past per-unit failures (kept as warnings) but stops on cancellation.
pub fn collect_errors(results: Vec<Result<(), CoreError>>, warnings: &mut Vec<String>) -> Result<(), CoreError> {
    for r in results {
        match r {
            Ok(()) => {}
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            Err(e) => warnings.push(e.to_string()),
        }
    }
    Ok(())
}
