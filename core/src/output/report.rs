//! `report.json`: versions, inputs, options, counts and warnings of an analysis; read back typed by
//! `lineage merge`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::models::matmul::MatmulPrecision;
use crate::pipeline::analysis::Analysis;
use crate::pipeline::options::{BasinOptions, RepresentationOptions, SweepOptions};
use crate::pipeline::sweep::WorkCount;

/// The contents of `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `lineage` version that wrote the report.
    pub lineage_version: String,
    /// Zoo folder analysed.
    pub zoo: String,
    /// Eval data file.
    pub data: String,
    /// SHA-256 of the eval data file.
    pub data_sha256: String,
    /// Evaluator (model family and architecture).
    pub evaluator: String,
    /// Options of the interpolation sweep.
    pub options: SweepOptions,
    /// Where the transformer families ran.
    #[serde(default = "cpu")]
    pub device: String,
    /// How the transformers' CPU matrix products were computed on this machine (`f32`, or
    /// `bf16x3` where asked for and the processor has AMX tiles).
    #[serde(default)]
    pub matmul: MatmulPrecision,
    /// Run names.
    pub runs: Vec<String>,
    /// All steps.
    pub steps: Vec<u64>,
    /// Row counts per table of the sweep.
    pub rows: RowCounts,
    /// Every eval set, the basins' set first: name, file and key of the data read.
    #[serde(default)]
    pub eval_sets: Vec<ReportedSet>,
    /// Units (checkpoint evaluations + interpolation paths) computed in this run.
    pub computed: usize,
    /// Units taken from the result store.
    pub cached: usize,
    /// The work done in this run (forward passes and example evaluations), by what was evaluated:
    /// `checkpoints`, then each pair kind (`seeds`, `to_final`, `fork`), every eval set together.
    #[serde(default)]
    pub work: BTreeMap<String, WorkCount>,
    /// Seed pairs `--economy` left out: connected pairs already joined their runs.
    #[serde(default)]
    pub pruned_pairs: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Problems met, each once; the rest of the work went on.
    pub warnings: Vec<String>,
    /// Groups of checkpoints holding identical content (the same weights under several names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicate_content: Vec<Vec<CheckpointName>>,
    /// Basins over time, when they were computed (not for a shard).
    pub basins: Option<BasinSummary>,
    /// Representation and dynamics analyses, when they were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<RepresentationSummary>,
}

/// An eval set as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedSet {
    /// Name (the tables' `set` column).
    pub name: String,
    /// Data file.
    pub path: String,
    /// SHA-256 of the file (combined with `--max-examples` when given).
    pub sha256: String,
}

/// A checkpoint as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointName {
    /// Run name.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Step folder or file.
    pub path: String,
}

fn cpu() -> String {
    "cpu".into()
}

/// The representation analyses in the report: their options, the layer used, row counts and store
/// use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationSummary {
    /// Options of the analyses.
    pub options: RepresentationOptions,
    /// Hidden layer the similarity and probes used (null when no model exposes one).
    pub layer: Option<usize>,
    /// Rows per table.
    pub rows: BTreeMap<String, usize>,
    /// Units computed in this run.
    pub computed: usize,
    /// Units taken from the result store.
    pub cached: usize,
    /// Problems met; the rest was computed.
    pub warnings: Vec<String>,
}

/// The basin analysis in the report: what was used and what came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasinSummary {
    /// Options (clustering method, barrier definition).
    pub options: BasinOptions,
    /// The eps used at each step (null for spectral clustering).
    pub eps_by_step: BTreeMap<u64, Option<f64>>,
    /// Number of basins at each step.
    pub basins_by_step: BTreeMap<u64, usize>,
    /// Per run: the first step after which it stays connected to its own final checkpoint (null: never).
    pub commitment: BTreeMap<String, Option<u64>>,
}

/// Number of rows of each table of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowCounts {
    /// `checkpoints.parquet`.
    pub checkpoints: usize,
    /// `evals.parquet`.
    pub evals: usize,
    /// `interpolation.parquet`.
    pub interpolation: usize,
    /// `barriers.parquet`.
    pub barriers: usize,
}

impl Report {
    /// The report of an analysis.
    pub fn new(analysis: &Analysis) -> Self {
        let sweep = &analysis.sweep;
        let mut runs: Vec<String> = sweep.checkpoints.iter().map(|c| c.run.clone()).collect();
        runs.sort();
        runs.dedup();
        let mut steps: Vec<u64> = sweep.checkpoints.iter().map(|c| c.step).collect();
        steps.sort_unstable();
        steps.dedup();
        Self {
            lineage_version: env!("CARGO_PKG_VERSION").into(),
            zoo: analysis.zoo.display().to_string(),
            data: analysis.data.display().to_string(),
            data_sha256: sweep.data_key.clone(),
            evaluator: sweep.evaluator.clone(),
            options: analysis.options.sweep.clone(),
            device: analysis.options.device.clone(),
            matmul: analysis.options.matmul.effective(),
            runs,
            steps,
            rows: RowCounts {
                checkpoints: sweep.checkpoints.len(),
                evals: sweep.evals.len() + sweep.other_sets.iter().map(|s| s.evals.len()).sum::<usize>(),
                interpolation: sweep.interpolation.len()
                    + sweep.other_sets.iter().map(|s| s.interpolation.len()).sum::<usize>(),
                barriers: sweep.barriers.len() + sweep.other_sets.iter().map(|s| s.barriers.len()).sum::<usize>(),
            },
            eval_sets: std::iter::once(ReportedSet {
                name: sweep.set.clone(),
                path: analysis.data.display().to_string(),
                sha256: sweep.data_key.clone(),
            })
            .chain(
                sweep
                    .other_sets
                    .iter()
                    .zip(&analysis.options.sweep.more_sets)
                    .map(|(rows, set)| ReportedSet {
                        name: rows.name.clone(),
                        path: set.path.display().to_string(),
                        sha256: rows.data_key.clone(),
                    }),
            )
            .collect(),
            computed: sweep.counts.computed,
            cached: sweep.counts.cached,
            work: sweep.work.clone(),
            pruned_pairs: sweep.pruned.len(),
            seconds: analysis.elapsed.as_secs_f64(),
            warnings: analysis.warnings.clone(),
            duplicate_content: sweep
                .duplicate_content(&analysis.starts)
                .iter()
                .map(|group| {
                    group
                        .iter()
                        .map(|c| CheckpointName {
                            run: c.run.clone(),
                            step: c.step,
                            path: c.path.clone(),
                        })
                        .collect()
                })
                .collect(),
            basins: analysis.basins.as_ref().map(|b| BasinSummary {
                options: analysis.options.basins.clone(),
                eps_by_step: b.eps_by_step.clone(),
                basins_by_step: b.history.steps.iter().map(|s| (s.step, s.basins.len())).collect(),
                commitment: b.commitment.clone(),
            }),
            views: analysis.representations.as_ref().map(|r| RepresentationSummary {
                options: analysis.options.representations.clone().unwrap_or_default(),
                layer: r.layer,
                rows: BTreeMap::from([
                    ("similarity".into(), r.similarity.len()),
                    ("probes".into(), r.probes.len()),
                    ("trajectories".into(), r.trajectories.len()),
                    ("weight_norms".into(), r.weight_norms.len()),
                    ("code_length".into(), r.code_length.len()),
                    ("training_map".into(), r.training_map.len()),
                    ("training_map_transitions".into(), r.map_transitions.len()),
                ]),
                computed: r.counts.computed,
                cached: r.counts.cached,
                warnings: r.warnings.clone(),
            }),
        }
    }

    /// Reads `dir/report.json`.
    pub fn read(dir: &Path) -> Result<Self, CoreError> {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| CoreError::Table(format!("{}: {e}", path.display())))
    }

    /// Writes `dir/report.json` and returns its path.
    pub fn write(&self, dir: &Path) -> Result<std::path::PathBuf, CoreError> {
        let path = dir.join("report.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| CoreError::Table(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| CoreError::io(&path, e))?;
        Ok(path)
    }
}
