//! `lineage inspect`: the discovered grid with header-level facts and every problem found.
//!
//! Reads file headers only (safetensors headers, pickle `data.pkl`, npy headers), never tensor data,
//! so inspecting a zoo of thousands of checkpoints is quick. The JSON form ([`Inspection`]) is stable.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::{CheckpointScan, scan_checkpoint};
use crate::discover::discover;
use crate::fingerprint::{CheckpointRef, Fingerprint, RunStarts, duplicate_content};
use crate::formats::TensorHeader;
use crate::non_finite::scan_non_finite_matching;
use crate::problem::{Problem, ProblemKind};
use crate::schema::{Schema, Tally};
use crate::selection::TensorFilter;
use crate::zoo::{Checkpoint, Layout, Zoo};

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
/// holding NaN or infinite values ([`crate::non_finite::scan_non_finite`]). Reads the reference
/// schema's tensors of every checkpoint that has its layout, one checkpoint at a time; checkpoints
/// reported as `shape_mismatch` are not read.
pub fn inspect_values(root: &Path) -> Inspection {
    inspect_zoo_with(discover(root), true, &TensorFilter::default())
}

/// Scans every checkpoint header of an already discovered zoo. Unreadable checkpoints are dropped
/// from the grid and reported; checkpoints whose names or shapes differ from the reference (the
/// schema most checkpoints share; ties go to the one seen first) stay in the grid and are reported, as
/// are checkpoints holding the same content (equal [`Fingerprint`]s).
pub fn inspect_zoo(zoo: Zoo) -> Inspection {
    inspect_zoo_with(zoo, false, &TensorFilter::default())
}

/// [`inspect_zoo`], with the opt-in value scan of [`inspect_values`] when `scan` is true; schemas
/// (the reference, `shape_mismatch`, the parameter count, the value scan) cover only the tensors
/// `tensors` selects.
pub fn inspect_zoo_with(zoo: Zoo, scan: bool, tensors: &TensorFilter) -> Inspection {
    let values = scan;
    let starts = RunStarts::of(&zoo);
    let Zoo {
        root,
        runs,
        mut problems,
    } = zoo;
    let mut schemas = Schemas::default();
    let mut reports = Vec::with_capacity(runs.len());
    let mut fingerprints = Vec::new();
    let mut to_scan = Vec::new();
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
            let group = schemas.add(&scan, tensors, &path, &run.name, checkpoint.step);
            if values {
                to_scan.push((group, checkpoint.clone(), path.clone()));
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
    problems.extend(scan_values(&schemas, to_scan));
    problems.extend(duplicate_content(fingerprints, "sampled content fingerprint", &starts));
    let mut all_steps: Vec<u64> = reports.iter().flat_map(|r| r.steps.iter().map(|s| s.step)).collect();
    all_steps.sort_unstable();
    all_steps.dedup();
    let summary = Summary {
        n_runs: reports.len(),
        n_checkpoints: reports.iter().map(|r| r.steps.len()).sum(),
        steps: all_steps,
        total_bytes: reports.iter().flat_map(|r| r.steps.iter().map(|s| s.bytes)).sum(),
        n_params: schemas.reference().map(Schema::n_params),
        runs_with_logs: reports.iter().filter(|r| !r.logs.is_empty()).count(),
    };
    Inspection {
        root,
        runs: reports,
        summary,
        problems,
    }
}

/// The schemas of a zoo's readable checkpoints, counted by layout, and which checkpoint has which.
#[derive(Default)]
struct Schemas {
    tally: Tally,
    /// Per checkpoint in zoo order: its layout group, non-float tensors (to name a float parameter
    /// stored as an integer), path, run and step.
    checkpoints: Vec<(usize, Vec<TensorHeader>, PathBuf, String, u64)>,
}

impl Schemas {
    /// Records the schema of the checkpoint at `path`; returns its layout group.
    fn add(&mut self, scan: &CheckpointScan, tensors: &TensorFilter, path: &Path, run: &str, step: u64) -> usize {
        let group = self.tally.add(Schema::of_selected(scan, tensors));
        let others = scan.tensors.iter().filter(|t| !t.is_float()).cloned().collect();
        self.checkpoints
            .push((group, others, path.to_path_buf(), run.to_string(), step));
        group
    }

    /// The reference schema: the layout most checkpoints share (ties: the one seen first), so one
    /// odd checkpoint is reported whatever its position, never the good ones.
    fn reference(&self) -> Option<&Schema> {
        self.tally.reference().map(|(schema, _)| schema)
    }

    /// A `shape_mismatch` problem for every checkpoint whose layout is not the reference's.
    fn mismatches(&self) -> Vec<Problem> {
        let Some(reference) = self.tally.reference_index() else {
            return Vec::new();
        };
        let Some((ref_schema, n_ref)) = self.tally.group(reference) else {
            return Vec::new();
        };
        let Some(ref_path) = self.checkpoints.iter().find(|c| c.0 == reference).map(|c| &c.2) else {
            return Vec::new();
        };
        self.checkpoints
            .iter()
            .filter(|c| c.0 != reference)
            .filter_map(|(group, others, path, run, step)| {
                let (schema, _) = self.tally.group(*group)?;
                let mut headers = headers_of(schema);
                headers.extend(others.iter().cloned());
                let diff = ref_schema.difference(&headers)?;
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

/// The value scan of the checkpoints whose layout is the reference's (the others are reported as
/// `shape_mismatch`): only the reference schema's tensors are read, one checkpoint at a time.
fn scan_values(schemas: &Schemas, to_scan: Vec<(usize, Checkpoint, PathBuf)>) -> Vec<Problem> {
    let (Some(reference), Some(schema)) = (schemas.tally.reference_index(), schemas.reference()) else {
        return Vec::new();
    };
    to_scan
        .into_iter()
        .filter(|(group, ..)| *group == reference)
        .filter_map(|(_, checkpoint, path)| scan_non_finite_matching(&checkpoint, &path, schema))
        .collect()
}

/// Headers standing for a schema's (normalised) parameters.
fn headers_of(schema: &Schema) -> Vec<TensorHeader> {
    schema
        .iter()
        .map(|(name, spec)| TensorHeader {
            name: name.to_string(),
            dtype: spec.dtype.clone(),
            shape: spec.shape.clone(),
        })
        .collect()
}
