//! The one entry point of an analysis: [`analyse`] a zoo (or [`merge`] shard outputs) into an
//! [`Analysis`], and [`Analysis::write`] every table, figure and `report.json`. `lineage batch`,
//! `lineage merge`, `lineage demo`, the desktop app's analysis and its export all go through here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lineage_loaders::fingerprint::RunStarts;
use lineage_loaders::{Zoo, discover};

use crate::error::CoreError;
use crate::models::registry::evaluator_on;
use crate::models::transformer::device;
use crate::output::figures::{FigureInputs, FigureOptions, write_all_figures};
use crate::output::report::Report;
use crate::output::schema::write_table;
use crate::pipeline::basins_over_time::{BasinsOverTime, basins_over_time, co_membership_rows};
use crate::pipeline::generalization::{Generalization, generalization};
use crate::pipeline::merge::merge_shards;
use crate::pipeline::options::AnalysisOptions;
use crate::pipeline::plan::PairKind;
use crate::pipeline::representations::{Representations, run_representations};
use crate::pipeline::sweep::{Sweep, resampled_from_store, run_sweep};
use crate::progress::Progress;

/// Everything an analysis computed.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The options it was computed with.
    pub options: AnalysisOptions,
    /// Zoo folder.
    pub zoo: PathBuf,
    /// Eval data file.
    pub data: PathBuf,
    /// Run names in zoo order: the order that fixes their colours everywhere.
    pub runs: Vec<String>,
    /// The interpolation sweep.
    pub sweep: Sweep,
    /// Basins over time (None for a shard: its pairs are only part of the zoo's).
    pub basins: Option<BasinsOverTime>,
    /// How each basin's members do on each eval set (with the basins).
    pub generalization: Option<Generalization>,
    /// Representation and dynamics analyses (None when not asked for, for a shard, or when they
    /// could not be computed; the warnings say why).
    pub representations: Option<Representations>,
    /// Every problem met, each once, in the order met; the rest of the work went on.
    pub warnings: Vec<String>,
    /// Where the runs start (first checkpoint, fork parent): identical weights there are by design.
    pub starts: RunStarts,
    /// Wall-clock time of the analysis.
    pub elapsed: Duration,
}

/// Analyses `zoo` on the eval data at `data`: the sweep, then (unless sharded) basins over time and
/// the representation analyses.
pub fn analyse(
    zoo: &Zoo,
    data: &Path,
    options: &AnalysisOptions,
    progress: &dyn Progress,
) -> Result<Analysis, CoreError> {
    let started = Instant::now();
    options.sweep.selection.validate()?;
    // Where runs start is a property of the whole zoo, whatever steps are selected.
    let starts = RunStarts::of(zoo);
    let (selected, mut notes) = options.sweep.selection.select(zoo)?;
    notes.extend(options.matmul.unavailable_note());
    let zoo = &selected;
    let factory = evaluator_on(device(&options.device)?, options.sweep.bn.clone(), options.matmul);
    let sweep = run_sweep(zoo, data, &options.sweep, &options.basins, &factory, progress)?;
    let runs: Vec<String> = zoo.runs.iter().map(|r| r.name.clone()).collect();
    let mut analysis = Analysis {
        starts,
        options: options.clone(),
        zoo: zoo.root.clone(),
        data: data.to_path_buf(),
        warnings: Vec::new(),
        basins: None,
        generalization: None,
        representations: None,
        runs,
        sweep,
        elapsed: Duration::ZERO,
    };
    if options.sweep.shard.is_none() {
        analysis.finish(Some(zoo), progress)?;
    }
    analysis.elapsed = started.elapsed();
    analysis.collect_warnings(notes);
    Ok(analysis)
}

/// Combines the outputs of `lineage batch --shard K/N` runs (`dirs`) into the analysis a single run
/// gives: the sweep options, zoo and eval data come from the shards' reports; basins, representations
/// and device from `options`. The representations need the zoo and the eval data the shards read;
/// when they are not readable here, a warning says so and the rest is done.
pub fn merge(dirs: &[PathBuf], options: &AnalysisOptions, progress: &dyn Progress) -> Result<Analysis, CoreError> {
    let started = Instant::now();
    let (mut sweep, first) = merge_shards(dirs)?;
    let mut options = options.clone();
    options.sweep = first.options.clone();
    options.sweep.shard = None;
    let mut notes = Vec::new();
    // Co-membership clusters the shards' resampled barriers, kept in their (shared) result store.
    let has_seed_pairs = sweep.barriers.iter().any(|b| b.pair == PairKind::Seeds);
    if options.sweep.bootstrap > 0 && has_seed_pairs {
        let cache = options.sweep.cache_dir.display();
        match resampled_from_store(&mut sweep, &options.sweep) {
            Ok(0) => notes.push(format!(
                "co-membership not computed: the result store {cache} holds no resampled barriers of the \
                 shards' seed pairs (merge where the shards' result store is readable to get it)"
            )),
            Ok(_) => {}
            Err(e) => notes.push(format!("co-membership not computed: {e}")),
        }
    }
    let (zoo_dir, data) = (PathBuf::from(&first.zoo), PathBuf::from(&first.data));
    // The shards' selection, applied to the zoo the representations read.
    let whole = discover(&zoo_dir);
    let (zoo, selection_notes) = options.sweep.selection.select(&whole)?;
    notes.extend(selection_notes);
    let mut runs: Vec<String> = zoo.runs.iter().map(|r| r.name.clone()).collect();
    if runs.is_empty() {
        runs = first.runs.clone();
    }
    let readable = !zoo.runs.is_empty() && data.is_file();
    if options.representations.is_some() && !readable {
        notes.push(format!(
            "representations skipped: the zoo {} or the eval data {} that the shards read is not readable here",
            zoo_dir.display(),
            data.display()
        ));
    }
    let starts = if whole.runs.is_empty() {
        RunStarts::from_checkpoints(sweep.checkpoints.iter().map(|c| (c.run.as_str(), c.step)))
    } else {
        RunStarts::of(&whole)
    };
    let mut analysis = Analysis {
        starts,
        options,
        zoo: zoo_dir,
        data,
        runs,
        sweep,
        basins: None,
        generalization: None,
        representations: None,
        warnings: Vec::new(),
        elapsed: Duration::ZERO,
    };
    analysis.finish(readable.then_some(&zoo), progress)?;
    analysis.elapsed = started.elapsed();
    analysis.collect_warnings(notes);
    Ok(analysis)
}

impl Analysis {
    /// Basins over time, then the representation analyses of `zoo` (when given and asked for).
    /// A representation analysis that fails for the model or the data becomes a warning; a bad
    /// option or a cancellation stops the analysis.
    fn finish(&mut self, zoo: Option<&Zoo>, progress: &dyn Progress) -> Result<(), CoreError> {
        match basins_over_time(&self.sweep, &self.options.basins, &self.runs) {
            Ok(basins) => {
                self.warnings.extend(basins.warnings.iter().cloned());
                self.generalization = Some(generalization(&self.sweep, &basins));
                self.basins = Some(basins);
            }
            Err(e) => self.warnings.push(e.to_string()),
        }
        let (Some(zoo), Some(options)) = (zoo, &self.options.representations) else {
            return Ok(());
        };
        let factory = evaluator_on(
            device(&self.options.device)?,
            self.options.sweep.bn.clone(),
            self.options.matmul,
        );
        let computed = run_representations(
            zoo,
            &self.data,
            options,
            &self.options.sweep,
            &factory,
            &self.sweep.evals,
            progress,
        );
        match computed {
            Ok(r) => self.representations = Some(r),
            Err(e @ (CoreError::Cancelled | CoreError::InvalidArgument(_))) => return Err(e),
            Err(e) => self.warnings.push(format!("representations: {e}")),
        }
        Ok(())
    }

    /// Gathers the sweep's, the representations' and the analysis's own warnings, each once.
    fn collect_warnings(&mut self, notes: Vec<String>) {
        let own = std::mem::take(&mut self.warnings);
        let representations = self.representations.iter().flat_map(|r| r.warnings.iter().cloned());
        let duplicates = self.sweep.duplicate_warnings(&self.starts);
        for w in self
            .sweep
            .warnings
            .iter()
            .cloned()
            .chain(duplicates)
            .chain(representations)
            .chain(own)
            .chain(notes)
        {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }

    /// The `report.json` of this analysis.
    pub fn report(&self) -> Report {
        Report::new(self)
    }

    /// Writes every table, `report.json` and (with basins) the standard figures into `out`
    /// (`out/figures`); returns every file written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, CoreError> {
        std::fs::create_dir_all(out).map_err(|e| CoreError::io(out, e))?;
        let sweep = &self.sweep;
        let mut written = vec![
            write_table(out, &sweep.checkpoints)?,
            write_table(out, &sweep.all_evals())?,
            write_table(out, &sweep.all_interpolation())?,
            write_table(out, &sweep.all_barriers())?,
        ];
        if let Some(basins) = &self.basins {
            written.push(write_table(out, &basins.clusters)?);
            written.push(write_table(out, &basins.timeline)?);
            written.push(write_table(out, &basins.tree_edges)?);
            if !basins.co_membership.is_empty() {
                written.push(write_table(out, &co_membership_rows(basins))?);
            }
        }
        if let Some(g) = &self.generalization {
            written.push(write_table(out, &g.basins)?);
            written.push(write_table(out, &g.comparisons)?);
        }
        if let Some(r) = &self.representations {
            written.push(write_table(out, &r.similarity)?);
            written.push(write_table(out, &r.probes)?);
            written.push(write_table(out, &r.trajectories)?);
            written.push(write_table(out, &r.weight_norms)?);
            written.push(write_table(out, &r.code_length)?);
            written.push(write_table(out, &r.training_map)?);
            written.push(write_table(out, &r.map_transitions)?);
        }
        written.push(self.report().write(out)?);
        if let Some(basins) = &self.basins {
            let mut inputs = FigureInputs::new(sweep, basins, &self.runs);
            if let Some(g) = &self.generalization {
                inputs.generalization = &g.basins;
            }
            written.extend(write_all_figures(
                &out.join("figures"),
                &inputs,
                &FigureOptions::default(),
            )?);
        }
        Ok(written)
    }
}
