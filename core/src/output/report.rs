//! `report.json`: versions, inputs, parameters, counts and warnings of a batch run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::basins_over_time::{BasinAnalysis, BasinOptions};
use crate::pipeline::representations::{ViewOptions, ViewsResult};
use crate::pipeline::sweep::{BatchOptions, BatchResult};

/// The contents of `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `lineage` version that wrote the report.
    pub lineage_version: &'static str,
    /// Zoo folder analysed.
    pub zoo: String,
    /// Eval data file.
    pub data: String,
    /// SHA-256 of the eval data file.
    pub data_sha256: String,
    /// Evaluator (model family and architecture).
    pub evaluator: String,
    /// Options of the run.
    pub options: BatchOptions,
    /// Run names.
    pub runs: Vec<String>,
    /// All steps.
    pub steps: Vec<u64>,
    /// Row counts per table.
    pub rows: RowCounts,
    /// Units (checkpoint evaluations + interpolation paths) computed in this run.
    pub computed: usize,
    /// Units taken from the cache.
    pub cached: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Problems met; the rest of the work went on.
    pub warnings: Vec<String>,
    /// Basins over time, when they were computed.
    pub basins: Option<BasinSummary>,
    /// Representation and dynamics views, when they were computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub views: Option<ViewsSummary>,
}

/// The views in the report: their options, the layer used, row counts and cache use.
#[derive(Debug, Clone, Serialize)]
pub struct ViewsSummary {
    /// Options of the views.
    pub options: ViewOptions,
    /// Hidden layer the similarity and probes used (null when no model exposes one).
    pub layer: Option<usize>,
    /// Rows per view table.
    pub rows: BTreeMap<&'static str, usize>,
    /// Units computed in this run.
    pub computed: usize,
    /// Units taken from the cache.
    pub cached: usize,
    /// Problems met; the rest of the views were computed.
    pub warnings: Vec<String>,
}

impl ViewsSummary {
    /// Summarises computed views.
    pub fn new(options: &ViewOptions, views: &ViewsResult) -> Self {
        Self {
            options: options.clone(),
            layer: views.layer,
            rows: BTreeMap::from([
                ("similarity", views.similarity.len()),
                ("probes", views.probes.len()),
                ("trajectories", views.trajectories.len()),
                ("weight_norms", views.weight_norms.len()),
                ("code_length", views.code_length.len()),
                ("training_map", views.training_map.len()),
                ("training_map_transitions", views.map_transitions.len()),
            ]),
            computed: views.computed,
            cached: views.cached,
            warnings: views.warnings.clone(),
        }
    }
}

/// The basin analysis in the report: what was used and what came out.
#[derive(Debug, Clone, Serialize)]
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

impl BasinSummary {
    /// Summarises an analysis.
    pub fn new(options: &BasinOptions, analysis: &BasinAnalysis) -> Self {
        Self {
            options: options.clone(),
            eps_by_step: analysis.eps_by_step.clone(),
            basins_by_step: analysis
                .history
                .steps
                .iter()
                .map(|s| (s.step, s.basins.len()))
                .collect(),
            commitment: analysis.commitment.clone(),
        }
    }
}

/// Number of rows of each table.
#[derive(Debug, Clone, Serialize)]
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
    /// Assembles the report of a finished batch run.
    pub fn new(
        zoo: &Path,
        data: &Path,
        options: &BatchOptions,
        result: &BatchResult,
        basins: Option<BasinSummary>,
        elapsed: Duration,
    ) -> Self {
        Self {
            lineage_version: env!("CARGO_PKG_VERSION"),
            zoo: zoo.display().to_string(),
            data: data.display().to_string(),
            data_sha256: result.data_key.clone(),
            evaluator: result.evaluator.clone(),
            options: options.clone(),
            runs: result
                .checkpoints
                .iter()
                .map(|c| c.run.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            steps: result
                .checkpoints
                .iter()
                .map(|c| c.step)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            rows: RowCounts {
                checkpoints: result.checkpoints.len(),
                evals: result.evals.len(),
                interpolation: result.interpolation.len(),
                barriers: result.barriers.len(),
            },
            computed: result.computed,
            cached: result.cached,
            seconds: elapsed.as_secs_f64(),
            warnings: result.warnings.clone(),
            basins,
            views: None,
        }
    }
}
