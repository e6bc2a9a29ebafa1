//! `lineage inspect`: the discovered grid with header-level facts and every problem found.
//!
//! Reads file headers only (safetensors headers, pickle `data.pkl`, npy headers), never tensor data,
//! so inspecting a zoo of thousands of checkpoints is quick. The JSON form ([`Inspection`]) is stable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::scan_checkpoint;
use crate::discover::discover;
use crate::fingerprint::{CheckpointRef, Fingerprint, duplicate_content};
use crate::non_finite::scan_non_finite;
use crate::params::describe_shape_difference;
use crate::problem::{Problem, ProblemKind};
use crate::zoo::{Layout, Zoo};

/// One readable checkpoint in the inspection report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// Training step.
    pub step: u64,
    /// Step folder or file.
    #[serde(serialize_with = "crate::lossy_path::path")]
    pub path: PathBuf,
    /// File format (`safetensors`, `torch_pickle`, `npz`).
    pub format: String,
    /// How it was found (`folder_per_step`, `hf_trainer`, `file_per_step`, `manifest`).
    pub layout: Layout,
    /// Storage dtype of the parameters (`f32`, `f16`, ... or `mixed(...)`).
    pub dtype: String,
    /// Number of scalar parameters.
    pub n_params: usize,
    /// Size of the checkpoint's files in bytes.
    pub bytes: u64,
    /// Number of files (shards).
    pub n_files: usize,
    /// Training tokens seen, when the layout says (OLMo); `null` when unknown.
    pub tokens: Option<u64>,
}

/// One run in the inspection report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Run name.
    pub name: String,
    /// Readable checkpoints, by step.
    pub steps: Vec<StepReport>,
    /// `config.json`, if found.
    #[serde(serialize_with = "crate::lossy_path::option")]
    pub config: Option<PathBuf>,
    /// Training logs found.
    #[serde(serialize_with = "crate::lossy_path::list")]
    pub logs: Vec<PathBuf>,
    /// Fork parent `{run, step}`, if any.
    pub parent: Option<crate::zoo::ForkParent>,
}

/// Totals over the zoo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Number of runs.
    pub n_runs: usize,
    /// Number of readable checkpoints.
    pub n_checkpoints: usize,
    /// Union of all steps.
    pub steps: Vec<u64>,
    /// Total bytes of readable checkpoints.
    pub total_bytes: u64,
    /// Parameter count of the reference schema (the one most readable checkpoints share).
    pub n_params: Option<usize>,
    /// Number of runs with at least one training log.
    pub runs_with_logs: usize,
}

/// The result of inspecting a zoo folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The folder inspected.
    #[serde(serialize_with = "crate::lossy_path::path")]
    pub root: PathBuf,
    /// Runs with their readable checkpoints.
    pub runs: Vec<RunReport>,
    /// Totals.
    pub summary: Summary,
    /// Every problem found (discovery and header checks).
    pub problems: Vec<Problem>,
}

/// Discovers `root` and scans every checkpoint header.
pub fn inspect(root: &Path) -> Inspection {
    inspect_zoo(discover(root))
}

/// [`inspect`], then reads every readable checkpoint's values: a `non_finite` problem for each one
/// holding NaN or infinite values ([`scan_non_finite`]). Reads the whole zoo, one checkpoint at a time.
pub fn inspect_values(root: &Path) -> Inspection {
    inspect_zoo_with(discover(root), true)
}

/// Scans every checkpoint header of an already discovered zoo. Unreadable checkpoints are dropped
/// from the grid and reported; checkpoints whose names or shapes differ from the reference (the
/// schema most checkpoints share; ties go to the one seen first) stay in the grid and are reported, as
/// are checkpoints holding the same content (equal [`Fingerprint`]s).
pub fn inspect_zoo(zoo: Zoo) -> Inspection {
    inspect_zoo_with(zoo, false)
}

/// [`inspect_zoo`], with the value scan when `values` is true.
fn inspect_zoo_with(zoo: Zoo, values: bool) -> Inspection {
    let Zoo {
        root,
        runs,
        mut problems,
    } = zoo;
    let mut schemas = Schemas::default();
    let mut reports = Vec::with_capacity(runs.len());
    let mut fingerprints = Vec::new();
    for run in runs {
        let mut steps = Vec::with_capacity(run.checkpoints.len());
        for checkpoint in &run.checkpoints {
            let path = checkpoint.display_path();
            let scan = match scan_checkpoint(checkpoint) {
                Ok(scan) => scan,
                Err(err) => {
                    problems.push(Problem::from_error(&path, &err));
                    continue;
                }
            };
            schemas.add(scan.normalised_shapes(), &path, &run.name, checkpoint.step);
            if values {
                problems.extend(scan_non_finite(checkpoint, &path));
            }
            if let Some(recorded) = scan.global_step.filter(|s| *s != checkpoint.step) {
                problems.push(Problem::new(
                    &path,
                    ProblemKind::Malformed,
                    format!(
                        "{}: the file records global_step {recorded} but its name says step {}; the name is used",
                        path.display(),
                        checkpoint.step
                    ),
                ));
            }
            match Fingerprint::of(checkpoint, &scan) {
                Ok(fingerprint) => fingerprints.push((
                    fingerprint,
                    CheckpointRef {
                        run: run.name.clone(),
                        step: checkpoint.step,
                        path: path.clone(),
                    },
                )),
                Err(err) => problems.push(Problem::from_error(&path, &err)),
            }
            steps.push(StepReport {
                step: checkpoint.step,
                path,
                format: checkpoint.format.name().to_string(),
                layout: checkpoint.layout,
                dtype: scan.dtype(),
                n_params: scan.n_params(),
                bytes: scan.bytes,
                n_files: checkpoint.files.len(),
                tokens: checkpoint.tokens,
            });
        }
        reports.push(RunReport {
            name: run.name,
            steps,
            config: run.config,
            logs: run.logs,
            parent: run.parent,
        });
    }
    problems.extend(schemas.mismatches());
    problems.extend(duplicate_content(fingerprints, "sampled content fingerprint"));
    let mut all_steps: Vec<u64> = reports.iter().flat_map(|r| r.steps.iter().map(|s| s.step)).collect();
    all_steps.sort_unstable();
    all_steps.dedup();
    let summary = Summary {
        n_runs: reports.len(),
        n_checkpoints: reports.iter().map(|r| r.steps.len()).sum(),
        steps: all_steps,
        total_bytes: reports.iter().flat_map(|r| r.steps.iter().map(|s| s.bytes)).sum(),
        n_params: schemas
            .reference()
            .map(|(shapes, _)| shapes.values().map(|s| s.iter().product::<usize>()).sum()),
        runs_with_logs: reports.iter().filter(|r| !r.logs.is_empty()).count(),
    };
    Inspection {
        root,
        runs: reports,
        summary,
        problems,
    }
}

/// Normalised tensor names and shapes of a checkpoint.
type Shapes = BTreeMap<String, Vec<usize>>;

/// The distinct schemas (names and shapes) of a zoo's readable checkpoints, and which checkpoint has
/// which.
#[derive(Default)]
struct Schemas {
    /// Each distinct schema with the first checkpoint that has it and how many have it.
    distinct: Vec<(Shapes, PathBuf, usize)>,
    /// Per checkpoint in zoo order: (its schema's index, path, run, step).
    checkpoints: Vec<(usize, PathBuf, String, u64)>,
}

impl Schemas {
    /// Records the schema of the checkpoint at `path`.
    fn add(&mut self, shapes: Shapes, path: &Path, run: &str, step: u64) {
        let index = match self.distinct.iter().position(|(s, _, _)| *s == shapes) {
            Some(i) => i,
            None => {
                self.distinct.push((shapes, path.to_path_buf(), 0));
                self.distinct.len() - 1
            }
        };
        self.distinct[index].2 += 1;
        self.checkpoints
            .push((index, path.to_path_buf(), run.to_string(), step));
    }

    /// Index of the zoo's reference schema: the one most checkpoints share (ties: the one seen
    /// first), so one odd checkpoint is reported whatever its position, never the good ones.
    fn reference_index(&self) -> Option<usize> {
        (0..self.distinct.len()).rev().max_by_key(|&i| self.distinct[i].2)
    }

    /// The reference schema and the first checkpoint that has it.
    fn reference(&self) -> Option<(&Shapes, &Path)> {
        self.reference_index()
            .map(|i| (&self.distinct[i].0, self.distinct[i].1.as_path()))
    }

    /// A `shape_mismatch` problem for every checkpoint whose schema is not the reference.
    fn mismatches(&self) -> Vec<Problem> {
        let Some(reference) = self.reference_index() else {
            return Vec::new();
        };
        let (ref_shapes, ref_path, n_ref) = &self.distinct[reference];
        self.checkpoints
            .iter()
            .filter(|(i, ..)| *i != reference)
            .filter_map(|(i, path, run, step)| {
                let diff = describe_shape_difference(ref_shapes, &self.distinct[*i].0)?;
                Some(Problem::new(
                    path,
                    ProblemKind::ShapeMismatch,
                    format!(
                        "{}: parameters differ from the zoo's ({n_ref} checkpoints, e.g. {}) (run `{run}` step {step}): {diff}",
                        path.display(),
                        ref_path.display(),
                    ),
                ))
            })
            .collect()
    }
}
