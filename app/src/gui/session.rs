//! What the app has open: a zoo, its eval data, its training logs and, once computed, its analysis.
//! Plain data, no egui: the views read it, background jobs produce it.

use std::path::{Path, PathBuf};

use lineage_core::pipeline::basins_over_time::BasinsOverTime;
use lineage_core::progress::Progress;
use lineage_core::{Analysis, AnalysisOptions, CoreError, analyse};
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

/// The analysis of a session, as `lineage batch` computes it (core's [`Analysis`]). The app analyses
/// whole zoos, never shards, so its basins are always there ([`Analysed::compute`] checks).
#[derive(Clone)]
pub struct Analysed {
    analysis: Analysis,
}

impl Analysed {
    /// Runs (or reuses from the result store shared with `lineage batch`) the analysis of `zoo` on
    /// `data` with `options`; an analysis without basins (they could not be computed) is an error
    /// saying why.
    pub fn compute(
        zoo: &Zoo,
        data: &Path,
        options: &AnalysisOptions,
        progress: &dyn Progress,
    ) -> Result<Self, CoreError> {
        let mut options = options.clone();
        options.sweep.shard = None;
        let analysis = analyse(zoo, data, &options, progress)?;
        if analysis.basins.is_none() {
            let why = analysis.warnings.iter().filter(|w| w.starts_with("basins:")).cloned();
            let why: Vec<String> = why.collect();
            return Err(CoreError::NothingToDo(format!("no basins: {}", why.join("; "))));
        }
        Ok(Self { analysis })
    }

    /// The analysis.
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    /// Basins over time.
    pub fn basins(&self) -> &BasinsOverTime {
        self.analysis
            .basins
            .as_ref()
            .expect("Analysed::compute keeps only analyses with basins")
    }

    /// Writes every table, figure and `report.json` into `dir`, exactly as `lineage batch` does
    /// (claiming the folder first, as it does).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, CoreError> {
        let _claim = lineage_core::output::lock::OutputLock::claim(dir)?;
        self.analysis.write(dir)
    }

    /// The seed pair with the highest barrier at `step` (run names in table order), the most telling
    /// path to show first.
    pub fn highest_barrier_pair(&self, step: u64) -> Option<(String, String)> {
        let (matrix, _) = self.basins().at(step)?;
        let n = matrix.len();
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .max_by(|&(a, b), &(c, d)| matrix.get(a, b).total_cmp(&matrix.get(c, d)))
            .map(|(i, j)| (matrix.runs[i].clone(), matrix.runs[j].clone()))
    }

    /// Steps that have a seed-pair barrier matrix, in order.
    pub fn steps(&self) -> Vec<u64> {
        self.basins().steps()
    }
}
