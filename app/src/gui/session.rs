//! What the app has open: a zoo, its eval data, its training logs and, once computed, its analysis.
//! Plain data, no egui: the views read it, background jobs produce it.

use std::path::{Path, PathBuf};

use lineage_core::methods::basins::TreeLayout;
use lineage_core::models::transformer;
use lineage_core::output::report::{BasinSummary, Report};
use lineage_core::pipeline::basins_over_time::{BasinAnalysis, BasinOptions, analyse_basins};
use lineage_core::pipeline::plan::PairSets;
use lineage_core::pipeline::representations::{ViewOptions, ViewsResult, run_views};
use lineage_core::pipeline::sweep::{BatchOptions, BatchResult, run_batch};
use lineage_core::progress::Progress;
use lineage_core::{CoreError, evaluator_on};
use lineage_loaders::logs::{TrainingLog, read_log};
use lineage_loaders::{Zoo, discover};

/// Eval data file names looked for in a zoo folder (the demo writes `eval.safetensors`).
const EVAL_DATA_NAMES: [&str; 6] = [
    "eval.safetensors",
    "eval.npz",
    "eval.parquet",
    "digits_eval.safetensors",
    "digits_eval.npz",
    "digits_eval.parquet",
];

/// An opened zoo folder.
pub struct Session {
    /// The discovered zoo (header scan only).
    pub zoo: Zoo,
    /// Eval data file, if chosen or found next to the zoo.
    pub data: Option<PathBuf>,
    /// Training logs per run: (run, log); unreadable logs are listed in [`Session::log_problems`].
    pub logs: Vec<(String, TrainingLog)>,
    /// Training logs that could not be read.
    pub log_problems: Vec<String>,
    /// The analysis, once computed.
    pub analysis: Option<Analysed>,
}

impl Session {
    /// Discovers the zoo in `dir` and reads its training logs; `data` overrides the eval data found
    /// next to the zoo ([`find_eval_data`]).
    pub fn open(dir: &Path, data: Option<PathBuf>) -> Self {
        let zoo = discover(dir);
        let mut logs = Vec::new();
        let mut log_problems = Vec::new();
        for run in &zoo.runs {
            for path in &run.logs {
                match read_log(path) {
                    Ok(log) => logs.push((run.name.clone(), log)),
                    Err(e) => log_problems.push(e.to_string()),
                }
            }
        }
        Self {
            data: data.or_else(|| find_eval_data(dir)),
            zoo,
            logs,
            log_problems,
            analysis: None,
        }
    }

    /// Names of the runs, in zoo order (sorted): the order that fixes their colours everywhere.
    pub fn run_names(&self) -> Vec<String> {
        self.zoo.runs.iter().map(|r| r.name.clone()).collect()
    }
}

/// The eval data file of a zoo folder: the first of [`EVAL_DATA_NAMES`] present in `dir` or its
/// parent folder.
pub fn find_eval_data(dir: &Path) -> Option<PathBuf> {
    let folders = std::iter::once(dir).chain(dir.parent());
    folders
        .flat_map(|d| EVAL_DATA_NAMES.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// The analysis of a session, as `lineage batch` computes it with default options (views
/// included).
#[derive(Clone)]
pub struct Analysed {
    /// Options of the interpolation sweep.
    pub options: BatchOptions,
    /// Options of the basin analysis.
    pub basin_options: BasinOptions,
    /// Rows of every table.
    pub result: BatchResult,
    /// Basins over time.
    pub basins: BasinAnalysis,
    /// The basin tree laid out for drawing.
    pub layout: TreeLayout,
    /// Representation and dynamics views (similarity, probes, trajectories, ...), or why they are
    /// missing (e.g. a model family without hidden activations).
    pub views: Result<ViewsResult, String>,
    /// How long the analysis took (near zero when every unit came from the cache).
    pub elapsed: std::time::Duration,
}

impl Analysed {
    /// Runs (or reuses from the cache shared with `lineage batch`) the analysis of `zoo` on `data`:
    /// the default pair sets and alpha grid of `lineage batch`, default basin options; with `align`,
    /// permutation-aligned paths too (`lineage batch --align`); the transformer families run on
    /// `device` (`lineage batch --device`).
    pub fn compute(
        zoo: &Zoo,
        data: &Path,
        cache_dir: PathBuf,
        align: bool,
        device: &str,
        progress: &dyn Progress,
    ) -> Result<Self, CoreError> {
        let started = std::time::Instant::now();
        let evaluators = evaluator_on(transformer::device(device)?);
        let options = BatchOptions {
            alphas: 11,
            pairs: PairSets::default(),
            cache_dir,
            shard: None,
            align,
        };
        let basin_options = BasinOptions::default();
        let result = run_batch(zoo, data, &options, &evaluators, progress)?;
        let basins = analyse_basins(&result, &basin_options)?;
        let runs: Vec<String> = zoo.runs.iter().map(|r| r.name.clone()).collect();
        let layout = TreeLayout::new(&basins.tree, &basins.history, &runs);
        let view_options = ViewOptions::all(PairSets::default(), options.cache_dir.clone());
        let views = match run_views(zoo, data, &view_options, &evaluators, &result.evals, progress) {
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            other => other.map_err(|e| e.to_string()),
        };
        Ok(Self {
            options,
            basin_options,
            result,
            basins,
            layout,
            views,
            elapsed: started.elapsed(),
        })
    }

    /// The `report.json` of this analysis.
    pub fn report(&self, zoo: &Path, data: &Path) -> Report {
        Report::new(
            zoo,
            data,
            &self.options,
            &self.result,
            Some(BasinSummary::new(&self.basin_options, &self.basins)),
            self.elapsed,
        )
    }

    /// The seed pair with the highest barrier at `step` (run names in table order), the most telling
    /// path to show first.
    pub fn highest_barrier_pair(&self, step: u64) -> Option<(String, String)> {
        let matrix = self.basins.matrices.iter().find(|m| m.step == step)?;
        let n = matrix.len();
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .max_by(|&(a, b), &(c, d)| matrix.get(a, b).total_cmp(&matrix.get(c, d)))
            .map(|(i, j)| (matrix.runs[i].clone(), matrix.runs[j].clone()))
    }

    /// Steps that have a seed-pair barrier matrix, in order.
    pub fn steps(&self) -> Vec<u64> {
        self.basins.matrices.iter().map(|m| m.step).collect()
    }
}
