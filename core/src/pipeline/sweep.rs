//! The interpolation sweep: evaluate every checkpoint and every planned interpolation path of a zoo,
//! resumably, and assemble the `checkpoints`, `evals`, `interpolation` and `barriers` rows.
//!
//! Work is cached per unit (one checkpoint evaluation, one interpolation path) under content keys
//! ([`SweepKeys`]), so a second identical run does no forward pass and a killed run resumes where it
//! stopped. Checkpoints are streamed: at most one step's checkpoints (plus one final checkpoint) are
//! in memory.
//!
//! With [`SweepOptions::align`], every pair is interpolated twice: raw, and with B permuted to match
//! A by Git Re-Basin weight matching ([`crate::methods::align`]). Aligned paths are separate units
//! (their key also names the alignment algorithm) and give rows with `aligned = true` next to the raw
//! ones. The endpoints of an aligned path reuse the checkpoints' own evaluations: a permuted B
//! computes the same function as B.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use petgraph::unionfind::UnionFind;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use lineage_loaders::fingerprint::RunStarts;
use lineage_loaders::{ParamSet, Schema, Zoo};

use crate::data::eval_sets::EvalSet;
use crate::error::CoreError;
use crate::methods::align::{ALGORITHM, DEFAULT_SEED, align_to};
use crate::methods::basins::ClusterMethod;
use crate::methods::bootstrap::{Resampler, resample_path};
use crate::methods::interpolation::{BarrierKind, alpha_grid};
use crate::models::evaluator::{EvalResult, Evaluator, Prepared};
use crate::models::registry::EvaluatorFactory;
use crate::names::Named;
use crate::output::tables::{BarrierRow, CheckpointRow, EvalRow, InterpolationRow};
use crate::pipeline::bootstrap::PathBootstrap;
use crate::pipeline::economy::DECISION_RESAMPLES;
use crate::pipeline::economy::{
    COARSE_ALPHAS, Decision, ECONOMY_VERSION, EconomyOptions, EconomyPath, chunk_ends, economy_path,
};
use crate::pipeline::keys::{FileKeys, Key, hash_parts};
use crate::pipeline::options::{BasinOptions, SweepOptions};
use crate::pipeline::plan::{CheckpointId, Pair, PairKind, PairSets, plan_pairs};
use crate::pipeline::store::JsonlStore;
use crate::pipeline::units::{
    KeyedCheckpoint, UnitCounts, all_checkpoints, check_cancel, checkpoint_label, collect_errors, key_checkpoints,
    load_one, load_params, pending, reference_evaluator,
};
use crate::progress::Progress;

/// Bumped whenever cached numbers would change meaning.
const CACHE_VERSION: &str = "lineage-results-v1";

/// Bumped whenever cached bootstrap summaries would change meaning (resampling, quantiles).
const BOOTSTRAP_VERSION: &str = "lineage-bootstrap-v1";

/// Mean loss and error of one evaluation, as cached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy (NaN or infinite for a diverged model).
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub loss: f64,
    /// Error rate.
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub error: f64,
}

impl From<&EvalResult> for Metrics {
    fn from(r: &EvalResult) -> Self {
        Self {
            loss: r.loss,
            error: r.error,
        }
    }
}

/// The result store of the sweep: checkpoint evaluations, interior points of interpolation paths
/// and the paths' bootstrap summaries.
pub struct ResultStore {
    /// Content digests of files.
    pub files: FileKeys,
    evals: JsonlStore<Metrics>,
    paths: JsonlStore<Vec<Metrics>>,
    bootstrap: JsonlStore<PathBootstrap>,
    economy: JsonlStore<EconomyPath>,
}

impl ResultStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CoreError> {
        Ok(Self {
            files: FileKeys::open(&dir.join("file_keys.jsonl"))?,
            evals: JsonlStore::open(&dir.join("evals.jsonl"))?,
            paths: JsonlStore::open(&dir.join("paths.jsonl"))?,
            bootstrap: JsonlStore::open(&dir.join("bootstrap.jsonl"))?,
            economy: JsonlStore::open(&dir.join("economy.jsonl"))?,
        })
    }
}

/// Everything a sweep produced: the rows of its tables plus bookkeeping.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// `checkpoints` table rows.
    pub checkpoints: Vec<CheckpointRow>,
    /// `evals` table rows.
    pub evals: Vec<EvalRow>,
    /// `interpolation` table rows.
    pub interpolation: Vec<InterpolationRow>,
    /// `barriers` table rows.
    pub barriers: Vec<BarrierRow>,
    /// Problems met on the way (unreadable checkpoints, mismatching shapes); the rest was computed.
    pub warnings: Vec<String>,
    /// Units (checkpoint evaluations + paths, raw and aligned) computed and taken from the store.
    pub counts: UnitCounts,
    /// SHA-256 of the eval data file.
    pub data_key: Key,
    /// Description of the evaluator used.
    pub evaluator: String,
    /// Name of the eval set of the rows above (the one barriers and basins are computed on).
    pub set: String,
    /// The evaluations (and, with `paths_on_all`, paths) on the other eval sets.
    pub other_sets: Vec<SetRows>,
    /// With the bootstrap, the resampled loss barriers of every raw seed pair on the basins' set,
    /// by (step, run A, run B): what co-membership clusters. Not a table.
    #[serde(skip)]
    pub resampled: BTreeMap<(u64, String, String), PathBootstrap>,
    /// The work done in this run, by what was evaluated: `checkpoints`, then each pair kind.
    pub work: BTreeMap<String, WorkCount>,
    /// With `--economy` and threshold clustering, the seed pairs (step, run A, run B) left out
    /// because other connected pairs already join their runs at that step: no rows.
    pub pruned: BTreeSet<(u64, String, String)>,
}

/// Forward passes and example evaluations spent (a pass is one parameter set over a batch of
/// examples; an example evaluation is one example through one pass).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkCount {
    /// Forward passes.
    pub forward_passes: u64,
    /// Examples evaluated, summed over the passes.
    pub example_evaluations: u64,
}

impl std::ops::AddAssign for WorkCount {
    fn add_assign(&mut self, other: Self) {
        self.forward_passes += other.forward_passes;
        self.example_evaluations += other.example_evaluations;
    }
}

/// The kind of work counted for checkpoint evaluations (pairs count under their kind's name).
pub const CHECKPOINT_WORK: &str = "checkpoints";

/// What a sweep computed on an eval set other than the basins' one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetRows {
    /// Set name.
    pub name: String,
    /// Key of the set's data (SHA-256 of its file, with the example selection).
    pub data_key: Key,
    /// `evals` rows on the set.
    pub evals: Vec<EvalRow>,
    /// `interpolation` rows on the set (empty unless paths are computed on every set).
    pub interpolation: Vec<InterpolationRow>,
    /// `barriers` rows on the set (empty unless paths are computed on every set).
    pub barriers: Vec<BarrierRow>,
}

impl Sweep {
    /// Adds the sweep of another eval set: its rows, counts and warnings (the analysis says each
    /// warning once, see `Analysis::collect_warnings`).
    fn add_set(&mut self, other: Sweep) {
        self.counts += other.counts;
        for (kind, count) in other.work {
            *self.work.entry(kind).or_default() += count;
        }
        self.warnings.extend(other.warnings);
        self.other_sets.push(SetRows {
            name: other.set,
            data_key: other.data_key,
            evals: other.evals,
            interpolation: other.interpolation,
            barriers: other.barriers,
        });
    }

    /// The `evals` rows of every eval set, the basins' set first: the `evals` table.
    pub fn all_evals(&self) -> Vec<EvalRow> {
        let others = self.other_sets.iter().flat_map(|s| s.evals.iter());
        self.evals.iter().chain(others).cloned().collect()
    }

    /// The `interpolation` rows of every eval set: the `interpolation` table.
    pub fn all_interpolation(&self) -> Vec<InterpolationRow> {
        let others = self.other_sets.iter().flat_map(|s| s.interpolation.iter());
        self.interpolation.iter().chain(others).cloned().collect()
    }

    /// The `barriers` rows of every eval set: the `barriers` table.
    pub fn all_barriers(&self) -> Vec<BarrierRow> {
        let others = self.other_sets.iter().flat_map(|s| s.barriers.iter());
        self.barriers.iter().chain(others).cloned().collect()
    }

    /// The `evals` rows of the eval set `name`.
    pub fn evals_on(&self, name: &str) -> &[EvalRow] {
        if name == self.set {
            return &self.evals;
        }
        self.other_sets
            .iter()
            .find(|s| s.name == name)
            .map_or(&[], |s| &s.evals)
    }

    /// Names of the eval sets, the basins' set first.
    pub fn set_names(&self) -> Vec<&str> {
        std::iter::once(self.set.as_str())
            .chain(self.other_sets.iter().map(|s| s.name.as_str()))
            .collect()
    }

    /// Groups of two or more checkpoints holding identical content (equal content keys): a suite
    /// serving the same weights under two steps' or runs' names. In zoo order. A group is left out
    /// when its checkpoints are the shared start of their runs (`starts`: one initialisation, a fork).
    pub fn duplicate_content(&self, starts: &RunStarts) -> Vec<Vec<&CheckpointRow>> {
        let mut groups: Vec<Vec<&CheckpointRow>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for row in &self.checkpoints {
            let next = groups.len();
            let index = *group_of.entry(row.key.as_str()).or_insert(next);
            if index == next {
                groups.push(Vec::new());
            }
            groups[index].push(row);
        }
        // Expected when every two members are the shared start of their (different) runs.
        let expected = |g: &[&CheckpointRow]| {
            g.iter().enumerate().all(|(i, a)| {
                g[i + 1..]
                    .iter()
                    .all(|b| starts.shared_start((&a.run, a.step), (&b.run, b.step)))
            })
        };
        groups.retain(|g| g.len() > 1 && !expected(g));
        groups
    }

    /// One warning per group of [`Sweep::duplicate_content`], naming its checkpoints.
    pub fn duplicate_warnings(&self, starts: &RunStarts) -> Vec<String> {
        self.duplicate_content(starts)
            .iter()
            .map(|group| {
                let paths: Vec<&str> = group.iter().map(|c| c.path.as_str()).collect();
                format!(
                    "{}: identical content (duplicate_content): the same weights under {} names",
                    paths.join(", "),
                    group.len()
                )
            })
            .collect()
    }
}

/// One interpolation path to compute: a pair, raw or with B aligned to A.
type PathUnit = (Pair, bool);

/// Runs the sweep of `zoo` on the eval data at `data_path` (the basins' set), then evaluates every
/// checkpoint on each of `options.more_sets` (and, with `paths_on_all`, every path too). `basins`
/// (the clustering to come) decides what economy mode may leave out.
pub fn run_sweep(
    zoo: &Zoo,
    data_path: &Path,
    options: &SweepOptions,
    basins: &BasinOptions,
    factory: &EvaluatorFactory,
    progress: &dyn Progress,
) -> Result<Sweep, CoreError> {
    if options.economy.is_on() && options.shard.is_some() {
        return Err(CoreError::InvalidArgument(
            "--economy decides each step with all its runs at hand; it cannot be split into --shard shares".into(),
        ));
    }
    let basins_set = EvalSet {
        name: options.data_set_name(data_path),
        path: data_path.to_path_buf(),
    };
    let mut names = vec![basins_set.name.as_str()];
    for set in &options.more_sets {
        if names.contains(&set.name.as_str()) {
            return Err(CoreError::InvalidArgument(format!(
                "eval set name `{}` is given twice; name each set once (NAME=FILE)",
                set.name
            )));
        }
        names.push(&set.name);
    }
    let mut sweep = sweep_set(zoo, &basins_set, options, Some(basins), factory, progress)?;
    let others = SweepOptions {
        pairs: if options.paths_on_all {
            options.pairs
        } else {
            PairSets::NONE
        },
        ..options.clone()
    };
    for set in &options.more_sets {
        let other = sweep_set(zoo, set, &others, None, factory, progress)?;
        sweep.add_set(other);
    }
    Ok(sweep)
}

/// The sweep of `zoo` on one eval set; `basins` on the set basins are clustered on.
fn sweep_set(
    zoo: &Zoo,
    set: &EvalSet,
    options: &SweepOptions,
    basins: Option<&BasinOptions>,
    factory: &EvaluatorFactory,
    progress: &dyn Progress,
) -> Result<Sweep, CoreError> {
    let data_path = set.path.as_path();
    let alphas = alpha_grid(options.alphas)?;
    let (data, data_key) = options.selection.eval_data(data_path)?;
    let tensors = options.selection.tensors()?;
    let store = ResultStore::open(&options.cache_dir)?;
    let mut warnings: Vec<String> = zoo.problems.iter().map(|p| p.message.clone()).collect();

    let share = Share::plan(zoo, options);
    let (mut keyed, schema) = key_checkpoints(zoo, &share.needed, &store.files, &tensors, progress, &mut warnings);
    let (evaluator, reference, refused) = reference_evaluator(zoo, &schema, &keyed, &data, factory, &mut warnings)?;
    keyed.retain(|k| !refused.contains(&k.id));
    if options.align {
        // Fail once, up front, for a family without permutation symmetries (rather than per pair).
        evaluator.permutation_spec(&reference)?;
    }
    drop(reference);
    let resampler_of = |resamples: usize| match evaluator.resampling_units() {
        Some(units) => Resampler::units(units, resamples, options.bootstrap_seed),
        None => Resampler::examples(evaluator.n_examples(), resamples, options.bootstrap_seed),
    };
    let resampler = (options.bootstrap > 0).then(|| resampler_of(options.bootstrap));
    let parts = options.economy;
    let economy = parts.is_on().then(|| {
        let decider = resampler_of(DECISION_RESAMPLES);
        let sequential = parts.examples && basins.is_some() && evaluator.evaluates_subsets();
        Economy {
            chunks: chunk_ends(decider.unit_of(), sequential),
            sequential,
            decider,
            grid: if parts.alphas {
                COARSE_ALPHAS.to_vec()
            } else {
                alphas[1..alphas.len() - 1].to_vec()
            },
            refine: parts.alphas,
        }
    });
    let checkpoint_keys = keyed.iter().map(|k| (k.id.clone(), k.key.clone())).collect();
    let bootstrap = resampler.as_ref().map(|r| (r.resamples(), r.seed()));
    let keys = SweepKeys::new(&evaluator.describe(), &data_key, checkpoint_keys, &alphas, bootstrap);
    let variants: &[bool] = if options.align { &[false, true] } else { &[false] };
    let paths: Vec<PathUnit> = share
        .pairs
        .into_iter()
        .filter(|p| keys.has(&p.a) && keys.has(&p.b))
        .flat_map(|p| variants.iter().map(move |&aligned| (p.clone(), aligned)))
        .collect();
    let ids: Vec<CheckpointId> = keyed.iter().map(|k| k.id.clone()).collect();
    let (pending_evals, eval_counts) = pending(&ids, |id| store.evals.contains(&keys.eval(id)));
    let eps = StepEps::from_store(&ids, &store, &keys, parts, basins);
    let pruned = pruned_by_store(&eps, &ids, &paths, &store, &keys, &alphas);
    let (pending_paths, path_counts) = pending(&paths, |u| {
        eps.stored(u, &store, &keys) || pruned.contains(&(u.0.a.step, u.0.a.run.clone(), u.0.b.run.clone()))
    });
    let pending_paths: Vec<&PathUnit> = paths.iter().filter(|u| pending_paths.contains(*u)).collect();
    let counts = eval_counts + path_counts;

    progress.start("evaluating", counts.computed as u64);
    let work = Work {
        zoo,
        schema: &schema,
        evaluator: evaluator.as_ref(),
        store: &store,
        keys: &keys,
        interior: alphas[1..alphas.len() - 1].to_vec(),
        alphas: alphas.clone(),
        resampler,
        progress,
        // Families whose evaluations each use every core run them one after the other: a rayon
        // job that is never split runs its items in order.
        min_len: if evaluator.parallel_evaluations() {
            1
        } else {
            usize::MAX
        },
        in_flight: options.models_in_flight(),
        economy,
        eps: Mutex::new(eps),
        all_paths: &paths,
        ids: &ids,
        spent: Mutex::new(BTreeMap::new()),
        pruned: Mutex::new(pruned),
    };
    work.same_step_units(&ids, &pending_evals, &pending_paths, &mut warnings)?;
    work.cross_step_paths(&pending_paths, &mut warnings)?;
    progress.finish();

    let eps = work.eps.into_inner().expect("eps poisoned");
    let mut sweep = Sweep {
        warnings,
        counts,
        data_key,
        evaluator: evaluator.describe(),
        set: set.name.clone(),
        work: work.spent.into_inner().expect("counts poisoned"),
        pruned: work.pruned.into_inner().expect("pruned poisoned"),
        ..Sweep::default()
    };
    assemble_rows(&mut sweep, &keyed, &share.own, &paths, &alphas, &store, &keys, &eps);
    // A pair pruned before a pair of identical content was computed has rows after all.
    let with_rows: HashSet<(u64, &str, &str)> = sweep
        .barriers
        .iter()
        .map(|b| (b.step, b.run_a.as_str(), b.run_b.as_str()))
        .collect();
    let pruned = std::mem::take(&mut sweep.pruned);
    sweep.pruned = pruned
        .into_iter()
        .filter(|(step, a, b)| !with_rows.contains(&(*step, a.as_str(), b.as_str())))
        .collect();
    Ok(sweep)
}

/// Fills [`Sweep::resampled`] of a sweep read back from tables (a merge of shards) from the result
/// store at `options.cache_dir`, where the shards' paths left their bootstrap summaries (a shared
/// cache). Returns how many seed pairs were found; none without the bootstrap.
pub fn resampled_from_store(sweep: &mut Sweep, options: &SweepOptions) -> Result<usize, CoreError> {
    let file = options.cache_dir.join("bootstrap.jsonl");
    if options.bootstrap == 0 || !file.is_file() {
        return Ok(0);
    }
    let store = JsonlStore::<PathBootstrap>::open(&file)?;
    let checkpoints = sweep
        .checkpoints
        .iter()
        .map(|c| {
            (
                CheckpointId {
                    run: c.run.clone(),
                    step: c.step,
                },
                c.key.clone(),
            )
        })
        .collect();
    let alphas = alpha_grid(options.alphas)?;
    let bootstrap = Some((options.bootstrap, options.bootstrap_seed));
    let keys = SweepKeys::new(&sweep.evaluator, &sweep.data_key, checkpoints, &alphas, bootstrap);
    let seed_pairs: BTreeSet<(u64, &str, &str, u64)> = sweep
        .barriers
        .iter()
        .filter(|b| b.pair == PairKind::Seeds && !b.aligned)
        .map(|b| (b.step, b.run_a.as_str(), b.run_b.as_str(), b.step_b))
        .collect();
    let mut found = BTreeMap::new();
    for (step, a, b, step_b) in seed_pairs {
        let id = |run: &str, step: u64| CheckpointId {
            run: run.to_string(),
            step,
        };
        let pair = Pair {
            kind: PairKind::Seeds,
            a: id(a, step),
            b: id(b, step_b),
        };
        if !(keys.has(&pair.a) && keys.has(&pair.b)) {
            continue;
        }
        let unit = (pair, false);
        if let Some(summary) = keys.bootstrap(&keys.path(&unit)).and_then(|k| store.get(&k)) {
            found.insert((step, a.to_string(), b.to_string()), summary);
        }
    }
    let n = found.len();
    sweep.resampled.extend(found);
    Ok(n)
}

/// This run's share of the plan: its own checkpoints (table rows) and pairs, and every checkpoint
/// needed (its own, plus the endpoints of its pairs, as barriers need them).
struct Share {
    own: HashSet<CheckpointId>,
    pairs: Vec<Pair>,
    needed: Vec<CheckpointId>,
}

impl Share {
    fn plan(zoo: &Zoo, options: &SweepOptions) -> Self {
        let owns = |position: usize| options.shard.is_none_or(|s| s.owns(position));
        let all = all_checkpoints(zoo);
        let pairs: Vec<Pair> = plan_pairs(zoo, options.pairs)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| owns(*i))
            .map(|(_, p)| p)
            .collect();
        let own: HashSet<CheckpointId> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| owns(*i))
            .map(|(_, id)| id.clone())
            .collect();
        let endpoints: HashSet<&CheckpointId> = pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
        let needed = all
            .iter()
            .filter(|id| own.contains(*id) || endpoints.contains(id))
            .cloned()
            .collect();
        Self { own, pairs, needed }
    }
}

/// The content keys of the sweep's units: a checkpoint evaluation is keyed by the evaluator, the
/// eval data and the checkpoint; a path also by both endpoints and the interior alphas (and, when
/// aligned, the alignment algorithm); a path's bootstrap summary by the path's key, the number of
/// resamples and their seed.
pub struct SweepKeys {
    options_key: Key,
    checkpoints: HashMap<CheckpointId, Key>,
    alpha_text: String,
    bootstrap_text: Option<String>,
}

impl SweepKeys {
    /// The keys for `evaluator` (its description) on the data of key `data_key`, the checkpoints'
    /// content keys, the alpha grid and, with the bootstrap, (resamples, seed).
    fn new(
        evaluator: &str,
        data_key: &str,
        checkpoints: HashMap<CheckpointId, Key>,
        alphas: &[f64],
        bootstrap: Option<(usize, u64)>,
    ) -> Self {
        let interior: Vec<String> = alphas[1..alphas.len() - 1]
            .iter()
            .map(|a| format!("{a:.17e}"))
            .collect();
        Self {
            options_key: hash_parts(&[CACHE_VERSION, evaluator, data_key]),
            checkpoints,
            alpha_text: interior.join(","),
            bootstrap_text: bootstrap.map(|(b, seed)| format!("{BOOTSTRAP_VERSION} B={b} seed={seed}")),
        }
    }

    fn has(&self, id: &CheckpointId) -> bool {
        self.checkpoints.contains_key(id)
    }

    fn eval(&self, id: &CheckpointId) -> Key {
        hash_parts(&[&self.options_key, &self.checkpoints[id]])
    }

    fn path(&self, (pair, aligned): &PathUnit) -> Key {
        let (a, b) = (&self.checkpoints[&pair.a], &self.checkpoints[&pair.b]);
        if *aligned {
            hash_parts(&[&self.options_key, a, b, &self.alpha_text, ALGORITHM])
        } else {
            hash_parts(&[&self.options_key, a, b, &self.alpha_text])
        }
    }

    /// The key of an economy path: the path's, the economy version and the decision it was made
    /// under (its eps and barrier kind; none off the basins' set).
    fn economy(&self, unit: &PathUnit, parts: EconomyOptions, decision: Option<Decision>) -> Key {
        let decision = decision.map_or_else(
            || "no decision".to_string(),
            |d| format!("eps={:.17e} kind={}", d.eps, d.kind.name()),
        );
        hash_parts(&[&self.path(unit), ECONOMY_VERSION, &parts.describe(), &decision])
    }

    /// The key of the bootstrap summary of the path (plain or economy) stored under `path_key`
    /// (None without the bootstrap).
    fn bootstrap(&self, path_key: &Key) -> Option<Key> {
        let text = self.bootstrap_text.as_ref()?;
        Some(hash_parts(&[path_key, text]))
    }
}

/// Economy mode's setup on one eval set.
struct Economy {
    /// Ends of the chunks of examples (one chunk of all when examples are not sequential).
    chunks: Vec<usize>,
    /// Whether examples are sequential (decided against eps).
    sequential: bool,
    /// The interior alphas every path starts with.
    grid: Vec<f64>,
    /// Whether the bump is refined.
    refine: bool,
    /// Resamples behind the sequential decisions.
    decider: Resampler,
}

/// Economy mode's decisions: per step, the threshold its paths are decided against (the
/// clustering's eps, from the step's checkpoint evaluations), and the key each path is stored
/// under (plain paths outside economy mode).
#[derive(Default)]
struct StepEps {
    economy: EconomyOptions,
    /// The clustering, on the basins' set.
    basins: Option<BasinOptions>,
    decisions: BTreeMap<u64, Decision>,
}

impl StepEps {
    /// The decisions at every step whose checkpoints are evaluated in `store`.
    fn from_store(
        ids: &[CheckpointId],
        store: &ResultStore,
        keys: &SweepKeys,
        economy: EconomyOptions,
        basins: Option<&BasinOptions>,
    ) -> Self {
        let mut eps = Self {
            economy,
            basins: basins.cloned(),
            decisions: BTreeMap::new(),
        };
        eps.refresh_all(ids, store, keys);
        eps
    }

    /// [`StepEps::refresh`] at every step of `ids`.
    fn refresh_all(&mut self, ids: &[CheckpointId], store: &ResultStore, keys: &SweepKeys) {
        let steps: BTreeSet<u64> = ids.iter().map(|id| id.step).collect();
        for step in steps {
            self.refresh(step, ids, store, keys);
        }
    }

    /// Recomputes the decision of `step` from the evaluations in `store`: the eps the clustering
    /// resolves from the mean loss of the runs that did not diverge (as basins over time does).
    fn refresh(&mut self, step: u64, ids: &[CheckpointId], store: &ResultStore, keys: &SweepKeys) {
        let Some(basins) = self.basins.as_ref().filter(|_| self.economy.is_on()) else {
            return;
        };
        let losses: Vec<f64> = ids
            .iter()
            .filter(|id| id.step == step)
            .filter_map(|id| store.evals.get(&keys.eval(id)))
            .map(|m| m.loss)
            .filter(|l| l.is_finite())
            .collect();
        let mean = (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64);
        match basins.method.resolve(losses.len(), mean).eps() {
            Some(eps) => {
                self.decisions.insert(
                    step,
                    Decision {
                        eps,
                        kind: basins.barrier,
                    },
                );
            }
            None => {
                self.decisions.remove(&step);
            }
        }
    }

    /// The decision of a path (that of its first checkpoint's step).
    fn decision(&self, pair: &Pair) -> Option<Decision> {
        self.decisions.get(&pair.a.step).copied()
    }

    /// Whether seed pairs may be pruned: economy mode with threshold clustering.
    fn prunes(&self) -> bool {
        self.economy.pairs
            && matches!(
                self.basins,
                Some(BasinOptions {
                    method: ClusterMethod::Threshold { .. },
                    ..
                })
            )
    }

    /// The key `unit` is stored under.
    fn key(&self, unit: &PathUnit, keys: &SweepKeys) -> Key {
        if self.economy.is_on() {
            keys.economy(unit, self.economy, self.decision(&unit.0))
        } else {
            keys.path(unit)
        }
    }

    /// True when `unit` (and its bootstrap summary) is in `store`.
    fn stored(&self, unit: &PathUnit, store: &ResultStore, keys: &SweepKeys) -> bool {
        let key = self.key(unit, keys);
        let path = if self.economy.is_on() {
            store.economy.contains(&key)
        } else {
            store.paths.contains(&key)
        };
        path && keys.bootstrap(&key).is_none_or(|k| store.bootstrap.contains(&k))
    }

    /// The whole curve of a stored unit: alphas and metrics, endpoints included (`alphas` is the
    /// grid of plain paths).
    fn curve(
        &self,
        unit: &PathUnit,
        store: &ResultStore,
        keys: &SweepKeys,
        alphas: &[f64],
    ) -> Option<(Vec<f64>, Vec<Metrics>)> {
        let (pair, _) = unit;
        let ea = store.evals.get(&keys.eval(&pair.a))?;
        let eb = store.evals.get(&keys.eval(&pair.b))?;
        if self.economy.is_on() {
            let path = store.economy.get(&self.key(unit, keys))?;
            return Some((path.alphas, path.curve));
        }
        let inner = store.paths.get(&keys.path(unit))?;
        let curve = std::iter::once(ea).chain(inner).chain(std::iter::once(eb)).collect();
        Some((alphas.to_vec(), curve))
    }
}

/// The seed pairs of one step found connected (barrier < eps) so far, for pruning.
struct StepJoins {
    index: HashMap<String, usize>,
    sets: UnionFind<usize>,
    decision: Decision,
}

impl StepJoins {
    /// True when the runs of `pair` are already joined by connected pairs.
    fn joined(&self, pair: &Pair) -> bool {
        match (self.index.get(&pair.a.run), self.index.get(&pair.b.run)) {
            (Some(&a), Some(&b)) => self.sets.equiv(a, b),
            _ => false,
        }
    }

    /// Joins the runs of `pair` when its stored curve's barrier is below eps.
    fn add(&mut self, pair: &Pair, curve: &(Vec<f64>, Vec<Metrics>)) {
        let losses: Vec<f64> = curve.1.iter().map(|m| m.loss).collect();
        if self.decision.kind.barrier(&curve.0, &losses) < self.decision.eps
            && let (Some(&a), Some(&b)) = (self.index.get(&pair.a.run), self.index.get(&pair.b.run))
        {
            self.sets.union(a, b);
        }
    }
}

/// With pruning, the runs at `step` joined by the stored seed pairs with barrier < eps.
fn stored_joins(
    eps: &StepEps,
    step: u64,
    ids: &[CheckpointId],
    paths: &[PathUnit],
    store: &ResultStore,
    keys: &SweepKeys,
    alphas: &[f64],
) -> Option<StepJoins> {
    if !eps.prunes() {
        return None;
    }
    let decision = eps.decisions.get(&step).copied()?;
    let runs: BTreeSet<&str> = ids
        .iter()
        .filter(|id| id.step == step)
        .map(|id| id.run.as_str())
        .collect();
    let mut joins = StepJoins {
        index: runs.iter().enumerate().map(|(i, r)| (r.to_string(), i)).collect(),
        sets: UnionFind::new(runs.len()),
        decision,
    };
    for unit in paths.iter().filter(|u| prunable(u, step)) {
        if let Some(curve) = eps.curve(unit, store, keys, alphas) {
            joins.add(&unit.0, &curve);
        }
    }
    Some(joins)
}

/// The seed pairs a resumed run prunes without loading anything: not stored, their runs joined by
/// stored connected pairs.
fn pruned_by_store(
    eps: &StepEps,
    ids: &[CheckpointId],
    paths: &[PathUnit],
    store: &ResultStore,
    keys: &SweepKeys,
    alphas: &[f64],
) -> BTreeSet<(u64, String, String)> {
    let steps: BTreeSet<u64> = paths.iter().map(|u| u.0.a.step).collect();
    let mut pruned = BTreeSet::new();
    for step in steps {
        let Some(joins) = stored_joins(eps, step, ids, paths, store, keys, alphas) else {
            continue;
        };
        for (pair, _) in paths
            .iter()
            .filter(|u| prunable(u, step) && !eps.stored(u, store, keys))
        {
            if joins.joined(pair) {
                pruned.insert((step, pair.a.run.clone(), pair.b.run.clone()));
            }
        }
    }
    pruned
}

/// Seed pairs evaluated together between two pruning decisions: fixed, so what is pruned does not
/// depend on the number of threads.
const PRUNING_WAVE: usize = 4;

/// Checkpoints of one step in memory: prepared for the evaluator, raw when alignment needs them,
/// and evaluated example by example when the bootstrap needs the paths' endpoints.
struct Block<'i> {
    points: HashMap<&'i CheckpointId, Prepared>,
    params: HashMap<&'i CheckpointId, ParamSet>,
    examples: HashMap<&'i CheckpointId, EvalResult>,
}

/// True when any of `units` is a permutation-aligned path.
fn any_aligned(units: &[&PathUnit]) -> bool {
    units.iter().any(|(_, aligned)| *aligned)
}

/// What evaluating units needs.
struct Work<'a> {
    zoo: &'a Zoo,
    /// The zoo's reference schema: the only tensors loaded.
    schema: &'a Schema,
    evaluator: &'a dyn Evaluator,
    store: &'a ResultStore,
    keys: &'a SweepKeys,
    interior: Vec<f64>,
    /// The whole alpha grid, endpoints included.
    alphas: Vec<f64>,
    /// Resamples of the eval examples for the paths' bootstrap summaries (None: no bootstrap).
    resampler: Option<Resampler>,
    progress: &'a dyn Progress,
    min_len: usize,
    /// Most checkpoints of a step held in memory at once (at least 2).
    in_flight: usize,
    /// Economy mode (None: the exact grid).
    economy: Option<Economy>,
    /// Economy mode's decisions, refreshed as steps are evaluated.
    eps: Mutex<StepEps>,
    /// Every path of the plan (pending or stored).
    all_paths: &'a [PathUnit],
    /// Every checkpoint of the sweep.
    ids: &'a [CheckpointId],
    /// Work done, by kind.
    spent: Mutex<BTreeMap<String, WorkCount>>,
    /// Seed pairs pruned (see [`Sweep::pruned`]).
    pruned: Mutex<BTreeSet<(u64, String, String)>>,
}

impl Work<'_> {
    /// Pass 1, step by step: evaluates the pending checkpoints and the pending paths whose endpoints
    /// share a step. At most `in_flight` checkpoints are in memory at once, whatever the number of
    /// runs: a step's checkpoints are taken in blocks of `in_flight / 2`, and each pair of blocks is
    /// loaded together once (the first block of a pair is kept while the second changes), so each
    /// path is computed exactly once with both its endpoints at hand.
    fn same_step_units(
        &self,
        ids: &[CheckpointId],
        pending_evals: &HashSet<CheckpointId>,
        pending_paths: &[&PathUnit],
        warnings: &mut Vec<String>,
    ) -> Result<(), CoreError> {
        for step in self.zoo.steps() {
            let step_paths: Vec<&PathUnit> = pending_paths
                .iter()
                .copied()
                .filter(|(p, _)| p.a.step == step && p.b.step == step)
                .collect();
            let needed: Vec<&CheckpointId> = ids
                .iter()
                .filter(|id| id.step == step)
                .filter(|id| pending_evals.contains(*id) || step_paths.iter().any(|(p, _)| &p.a == *id || &p.b == *id))
                .collect();
            let block_size = if needed.len() <= self.in_flight {
                needed.len().max(1)
            } else {
                (self.in_flight / 2).max(1)
            };
            let blocks: Vec<&[&CheckpointId]> = needed.chunks(block_size).collect();
            // Economy decides a step's paths against its eps, from every checkpoint's evaluation:
            // with several blocks, evaluate them all first.
            let evals_first = self.economy.is_some() && blocks.len() > 1 && !step_paths.is_empty();
            if evals_first {
                for block in &blocks {
                    check_cancel(self.progress)?;
                    let block = self.load_block(block, false, false, warnings);
                    self.evaluate_block(&block, pending_evals, warnings)?;
                }
            }
            let no_evals = HashSet::new();
            let pending_evals = if evals_first { &no_evals } else { pending_evals };
            let mut joins: Option<Option<StepJoins>> = None;
            let block_of: HashMap<&CheckpointId, usize> = blocks
                .iter()
                .enumerate()
                .flat_map(|(b, ids)| ids.iter().map(move |id| (*id, b)))
                .collect();
            // Each path belongs to the pair of blocks holding its endpoints.
            let mut by_blocks: BTreeMap<(usize, usize), Vec<&PathUnit>> = BTreeMap::new();
            for unit in &step_paths {
                if let (Some(&a), Some(&b)) = (block_of.get(&unit.0.a), block_of.get(&unit.0.b)) {
                    by_blocks.entry((a.min(b), a.max(b))).or_default().push(*unit);
                }
            }
            for (i, first) in blocks.iter().enumerate() {
                check_cancel(self.progress)?;
                let with_paths = || by_blocks.range((i, i)..=(i, usize::MAX));
                let keep_params = with_paths().any(|(_, u)| any_aligned(u));
                let first = self.load_block(first, keep_params, with_paths().next().is_some(), warnings);
                self.evaluate_block(&first, pending_evals, warnings)?;
                for (j, other) in blocks.iter().enumerate().skip(i) {
                    let Some(units) = by_blocks.get(&(i, j)) else { continue };
                    check_cancel(self.progress)?;
                    let second = (j != i).then(|| self.load_block(other, any_aligned(units), true, warnings));
                    let joins = joins.get_or_insert_with(|| self.step_joins(step));
                    self.block_paths(units, &first, second.as_ref(), joins.as_mut(), warnings)?;
                }
            }
        }
        Ok(())
    }

    /// Loads and prepares the checkpoints `ids`; their raw parameters are kept only when
    /// `keep_params` (alignment needs them), and with the bootstrap, when `path_ends` (paths start
    /// or end there), each is evaluated example by example once.
    fn load_block<'i>(
        &self,
        ids: &[&'i CheckpointId],
        keep_params: bool,
        path_ends: bool,
        warnings: &mut Vec<String>,
    ) -> Block<'i> {
        let loaded = load_params(self.zoo, self.schema, ids, warnings);
        let points = self.prepare_all(&loaded, warnings);
        let params = if keep_params {
            loaded.into_iter().collect()
        } else {
            HashMap::new()
        };
        let examples = if path_ends && self.needs_ends() {
            self.evaluate_all(&points, warnings)
        } else {
            HashMap::new()
        };
        Block {
            points,
            params,
            examples,
        }
    }

    /// Whether paths need their endpoints evaluated example by example (bootstrap, economy).
    fn needs_ends(&self) -> bool {
        self.resampler.is_some() || self.economy.is_some()
    }

    /// Adds work done to the counts.
    fn count(&self, kind: &str, forward_passes: u64, example_evaluations: u64) {
        let mut spent = self.spent.lock().expect("counts poisoned");
        *spent.entry(kind.to_string()).or_default() += WorkCount {
            forward_passes,
            example_evaluations,
        };
    }

    /// Evaluates one prepared checkpoint, counted.
    fn evaluate_counted(&self, point: &Prepared) -> Result<EvalResult, CoreError> {
        let result = self.evaluator.evaluate_prepared(point)?;
        self.count(CHECKPOINT_WORK, 1, result.per_example_loss.len() as u64);
        Ok(result)
    }

    /// Refreshes the step's decision and, when seed pairs may be pruned, the pairs already found
    /// connected at it (stored ones).
    fn step_joins(&self, step: u64) -> Option<StepJoins> {
        let mut eps = self.eps.lock().expect("eps poisoned");
        eps.refresh(step, self.ids, self.store, self.keys);
        stored_joins(
            &eps,
            step,
            self.ids,
            self.all_paths,
            self.store,
            self.keys,
            &self.alphas,
        )
    }

    /// Evaluates every point (in parallel); failures become warnings naming the checkpoint.
    fn evaluate_all<'i>(
        &self,
        points: &HashMap<&'i CheckpointId, Prepared>,
        warnings: &mut Vec<String>,
    ) -> HashMap<&'i CheckpointId, EvalResult> {
        let points: Vec<(&CheckpointId, &Prepared)> = points.iter().map(|(id, p)| (*id, p)).collect();
        self.per_checkpoint(&points, self.min_len, |p| self.evaluate_counted(p), warnings)
    }

    /// Runs `f` on every checkpoint's item in parallel (`min_len` items per job at least); failures
    /// become warnings naming the checkpoint.
    fn per_checkpoint<'i, T: Sync, R: Send>(
        &self,
        items: &[(&'i CheckpointId, T)],
        min_len: usize,
        f: impl Fn(&T) -> Result<R, CoreError> + Sync,
        warnings: &mut Vec<String>,
    ) -> HashMap<&'i CheckpointId, R> {
        let results: Vec<(&CheckpointId, Result<R, CoreError>)> = items
            .par_iter()
            .with_min_len(min_len)
            .map(|(id, item)| (*id, f(item)))
            .collect();
        let mut out = HashMap::new();
        for (id, result) in results {
            match result {
                Ok(r) => {
                    out.insert(id, r);
                }
                Err(e) => warnings.push(format!("{}: {e}", checkpoint_label(self.zoo, id))),
            }
        }
        out
    }

    /// Evaluates the pending checkpoints of `block`.
    fn evaluate_block(
        &self,
        block: &Block,
        pending_evals: &HashSet<CheckpointId>,
        warnings: &mut Vec<String>,
    ) -> Result<(), CoreError> {
        let to_evaluate: Vec<(&&CheckpointId, &Prepared)> = block
            .points
            .iter()
            .filter(|(id, _)| pending_evals.contains(**id))
            .collect();
        let done: Vec<Result<(), CoreError>> = to_evaluate
            .par_iter()
            .with_min_len(self.min_len)
            .map(|(id, point)| self.evaluate_checkpoint(id, point, block.examples.get(**id)))
            .collect();
        collect_errors(done, warnings)
    }

    /// Evaluates the same-step paths `units`, whose endpoints are in `first` or `second`. With
    /// `joins` (economy mode, threshold clustering), raw seed pairs go in a fixed order, a few at a
    /// time, and a pair whose runs are already joined is pruned.
    fn block_paths(
        &self,
        units: &[&PathUnit],
        first: &Block,
        second: Option<&Block>,
        joins: Option<&mut StepJoins>,
        warnings: &mut Vec<String>,
    ) -> Result<(), CoreError> {
        let Some(joins) = joins else {
            return collect_errors(self.compute_paths(units, first, second), warnings);
        };
        let (mut seeds, others): (Vec<&PathUnit>, Vec<&PathUnit>) = units.iter().partition(|u| prunable(u, u.0.a.step));
        collect_errors(self.compute_paths(&others, first, second), warnings)?;
        seeds.sort();
        let mut queue = seeds.into_iter();
        loop {
            let mut wave = Vec::new();
            while wave.len() < PRUNING_WAVE {
                let Some(unit) = queue.next() else { break };
                let stored = self
                    .eps
                    .lock()
                    .expect("eps poisoned")
                    .curve(unit, self.store, self.keys, &self.alphas);
                if let Some(curve) = stored {
                    // Known already: a pair of identical content was computed earlier in this run.
                    joins.add(&unit.0, &curve);
                    self.progress.advance(1);
                } else if joins.joined(&unit.0) {
                    let p = &unit.0;
                    let mut pruned = self.pruned.lock().expect("pruned poisoned");
                    pruned.insert((p.a.step, p.a.run.clone(), p.b.run.clone()));
                    self.progress.advance(1);
                } else {
                    wave.push(unit);
                }
            }
            if wave.is_empty() {
                return Ok(());
            }
            collect_errors(self.compute_paths(&wave, first, second), warnings)?;
            let eps = self.eps.lock().expect("eps poisoned");
            for unit in wave {
                if let Some(curve) = eps.curve(unit, self.store, self.keys, &self.alphas) {
                    joins.add(&unit.0, &curve);
                }
            }
        }
    }

    /// Computes the same-step paths `units` in parallel, whose endpoints are in `first` or `second`.
    fn compute_paths(&self, units: &[&PathUnit], first: &Block, second: Option<&Block>) -> Vec<Result<(), CoreError>> {
        let point = |id: &CheckpointId| first.points.get(id).or_else(|| second?.points.get(id));
        let params = |id: &CheckpointId| first.params.get(id).or_else(|| second?.params.get(id));
        let examples = |id: &CheckpointId| first.examples.get(id).or_else(|| second?.examples.get(id));
        units
            .par_iter()
            .with_min_len(self.min_len)
            .filter_map(|unit| Some((unit, point(&unit.0.a)?, point(&unit.0.b)?)))
            .map(|(unit, a, b)| {
                let ends = examples(&unit.0.a).zip(examples(&unit.0.b));
                if !unit.1 {
                    return self.path(unit, a, b, ends);
                }
                match (params(&unit.0.a), params(&unit.0.b)) {
                    (Some(pa), Some(pb)) => self.path_aligned(unit, a, pa, pb, ends),
                    _ => Err(CoreError::Align(format!(
                        "{}: parameters not loaded",
                        pair_label(&unit.0)
                    ))),
                }
            })
            .collect()
    }

    /// Pass 2, final checkpoint by final checkpoint: paths across steps (a checkpoint vs its run's
    /// final one), with one final checkpoint in memory.
    fn cross_step_paths(&self, pending_paths: &[&PathUnit], warnings: &mut Vec<String>) -> Result<(), CoreError> {
        // Every checkpoint is evaluated by now: the decisions of steps without same-step paths too.
        self.eps
            .lock()
            .expect("eps poisoned")
            .refresh_all(self.ids, self.store, self.keys);
        // Per pair, the variants (raw / aligned) still to compute.
        let mut cross: BTreeMap<&Pair, Vec<bool>> = BTreeMap::new();
        for (p, aligned) in pending_paths.iter().filter(|(p, _)| p.a.step != p.b.step) {
            cross.entry(p).or_default().push(*aligned);
        }
        let mut finals: Vec<&CheckpointId> = cross.keys().map(|p| &p.b).collect();
        finals.sort();
        finals.dedup();
        for final_id in finals {
            check_cancel(self.progress)?;
            let Some((_, final_params)) = load_params(self.zoo, self.schema, &[final_id], warnings)
                .into_iter()
                .next()
            else {
                continue;
            };
            let final_point = match self.evaluator.prepare(&final_params) {
                Ok(p) => p,
                Err(e) => {
                    warnings.push(format!("{}: {e}", checkpoint_label(self.zoo, final_id)));
                    continue;
                }
            };
            let final_examples = match self.needs_ends() {
                true => match self.evaluate_counted(&final_point) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warnings.push(format!("{}: {e}", checkpoint_label(self.zoo, final_id)));
                        continue;
                    }
                },
                false => None,
            };
            let with_final: Vec<(&&Pair, &Vec<bool>)> = cross.iter().filter(|(p, _)| &p.b == final_id).collect();
            let done: Vec<Result<(), CoreError>> = with_final
                .par_iter()
                .with_min_len(self.min_len)
                .flat_map_iter(|&(pair, variants)| {
                    let a = load_one(self.zoo, self.schema, &pair.a).and_then(|params| {
                        let point = self.evaluator.prepare(&params)?;
                        let examples = match final_examples {
                            Some(_) => Some(self.evaluate_counted(&point)?),
                            None => None,
                        };
                        Ok((point, params, examples))
                    });
                    let (a_point, a_params, a_examples) = match a {
                        Ok(a) => a,
                        // Worded as the same-step pass words it, so the two warnings are one.
                        Err(e @ CoreError::Load(_)) => return vec![Err(e)],
                        Err(e) => {
                            let label = checkpoint_label(self.zoo, &pair.a);
                            return vec![Err(CoreError::Load(format!("{label}: {e}")))];
                        }
                    };
                    let ends = a_examples.as_ref().zip(final_examples.as_ref());
                    variants
                        .iter()
                        .map(|&aligned| {
                            let unit = ((*pair).clone(), aligned);
                            if aligned {
                                self.path_aligned(&unit, &a_point, &a_params, &final_params, ends)
                            } else {
                                self.path(&unit, &a_point, &final_point, ends)
                            }
                        })
                        .collect()
                })
                .collect();
            collect_errors(done, warnings)?;
        }
        Ok(())
    }

    /// Prepares loaded checkpoints in parallel; failures become warnings naming the checkpoint.
    fn prepare_all<'i>(
        &self,
        loaded: &[(&'i CheckpointId, ParamSet)],
        warnings: &mut Vec<String>,
    ) -> HashMap<&'i CheckpointId, Prepared> {
        self.per_checkpoint(loaded, 1, |params| self.evaluator.prepare(params), warnings)
    }

    /// Stores the metrics of one checkpoint: `evaluated` when the block has its evaluation already,
    /// else evaluated now.
    fn evaluate_checkpoint(
        &self,
        id: &CheckpointId,
        point: &Prepared,
        evaluated: Option<&EvalResult>,
    ) -> Result<(), CoreError> {
        let metrics = match evaluated {
            Some(r) => Metrics::from(r),
            None => Metrics::from(&self.evaluate_counted(point)?),
        };
        self.store.evals.insert(&self.keys.eval(id), &metrics)?;
        self.progress.advance(1);
        Ok(())
    }

    /// Evaluates the interior points of a raw path and stores them; with the bootstrap, also the
    /// path's bootstrap summary, from the endpoints' evaluations `ends`.
    fn path(
        &self,
        unit: &PathUnit,
        a: &Prepared,
        b: &Prepared,
        ends: Option<(&EvalResult, &EvalResult)>,
    ) -> Result<(), CoreError> {
        check_cancel(self.progress)?;
        if let Some(economy) = &self.economy {
            return self.economy_path(economy, unit, a, b, ends);
        }
        let results = self.evaluator.evaluate_path_prepared(a, b, &self.interior)?;
        let n = results.first().map_or(0, |r| r.per_example_loss.len());
        self.count(unit.0.kind.name(), results.len() as u64, (results.len() * n) as u64);
        if let (Some(resampler), Some(key)) = (&self.resampler, self.keys.bootstrap(&self.keys.path(unit))) {
            let (ea, eb) = ends.ok_or_else(|| {
                CoreError::Model(format!("{}: the endpoints were not evaluated", pair_label(&unit.0)))
            })?;
            let curve: Vec<&EvalResult> = std::iter::once(ea).chain(&results).chain(std::iter::once(eb)).collect();
            let resampled = resample_path(&self.alphas, &curve, resampler);
            // Co-membership clusters the raw seed pairs' resampled barriers.
            let keep_barriers = unit.0.kind == PairKind::Seeds && !unit.1;
            self.store
                .bootstrap
                .insert(&key, &PathBootstrap::new(&resampled, keep_barriers))?;
        }
        let metrics: Vec<Metrics> = results.iter().map(Metrics::from).collect();
        self.store.paths.insert(&self.keys.path(unit), &metrics)?;
        self.progress.advance(1);
        Ok(())
    }

    /// Evaluates a path in economy mode ([`economy_path`]) and stores it, with its bootstrap summary
    /// over the examples it used.
    fn economy_path(
        &self,
        economy: &Economy,
        unit: &PathUnit,
        a: &Prepared,
        b: &Prepared,
        ends: Option<(&EvalResult, &EvalResult)>,
    ) -> Result<(), CoreError> {
        let ends =
            ends.ok_or_else(|| CoreError::Model(format!("{}: the endpoints were not evaluated", pair_label(&unit.0))))?;
        let (decision, key) = {
            let eps = self.eps.lock().expect("eps poisoned");
            (eps.decision(&unit.0), eps.key(unit, self.keys))
        };
        let result = economy_path(
            self.evaluator,
            (a, b),
            ends,
            (&economy.grid, economy.refine),
            &economy.chunks,
            decision.filter(|_| economy.sequential),
            &economy.decider,
        )?;
        let path = &result.path;
        self.count(unit.0.kind.name(), path.forward_passes, path.example_evaluations);
        if let (Some(resampler), Some(bootstrap_key)) = (&self.resampler, self.keys.bootstrap(&key)) {
            let curve: Vec<&EvalResult> = result.curve.iter().collect();
            let resampled = resample_path(&path.alphas, &curve, &resampler.prefix(path.examples));
            let keep_barriers = unit.0.kind == PairKind::Seeds && !unit.1;
            self.store
                .bootstrap
                .insert(&bootstrap_key, &PathBootstrap::new(&resampled, keep_barriers))?;
        }
        self.store.economy.insert(&key, path)?;
        self.progress.advance(1);
        Ok(())
    }

    /// Aligns B to A (weight matching with the evaluator's permutation spec), then evaluates the
    /// path as [`Work::path`]. Errors name the pair.
    fn path_aligned(
        &self,
        unit: &PathUnit,
        a: &Prepared,
        a_params: &ParamSet,
        b_params: &ParamSet,
        ends: Option<(&EvalResult, &EvalResult)>,
    ) -> Result<(), CoreError> {
        check_cancel(self.progress)?;
        let aligned = self
            .evaluator
            .permutation_spec(a_params)
            .and_then(|spec| align_to(&spec, a_params, b_params, DEFAULT_SEED))
            .map_err(|e| match e {
                CoreError::Align(m) => CoreError::Align(format!("{}: {m}", pair_label(&unit.0))),
                other => other,
            })?;
        let b = self.evaluator.prepare(&aligned)?;
        // A permuted B computes B's function: its evaluation is B's.
        self.path(unit, a, &b, ends)
    }
}

/// True for a raw seed pair at `step`: what pair pruning may leave out.
fn prunable((pair, aligned): &PathUnit, step: u64) -> bool {
    pair.kind == PairKind::Seeds && !aligned && pair.a.step == step
}

/// `run@step vs run@step`.
fn pair_label(p: &Pair) -> String {
    format!("{}@{} vs {}@{}", p.a.run, p.a.step, p.b.run, p.b.step)
}

/// The rows of the sweep's tables, from the store: deterministic order, one row per unit, whatever
/// was resumed. A path gives rows only when it and both endpoint evaluations are complete.
#[allow(clippy::too_many_arguments)]
fn assemble_rows(
    sweep: &mut Sweep,
    keyed: &[KeyedCheckpoint],
    own: &HashSet<CheckpointId>,
    paths: &[PathUnit],
    alphas: &[f64],
    store: &ResultStore,
    keys: &SweepKeys,
    eps: &StepEps,
) {
    let mut own_keyed: Vec<&KeyedCheckpoint> = keyed.iter().filter(|k| own.contains(&k.id)).collect();
    own_keyed.sort_by(|a, b| a.id.cmp(&b.id));
    for k in own_keyed {
        if let Some(m) = store.evals.get(&keys.eval(&k.id)) {
            if !m.loss.is_finite() {
                sweep.warnings.push(format!(
                    "{}: run {} has diverged at step {} (loss {}); left out of the basins",
                    k.checkpoint.display_path().display(),
                    k.id.run,
                    k.id.step,
                    m.loss
                ));
            }
            sweep.evals.push(EvalRow {
                run: k.id.run.clone(),
                step: k.id.step,
                loss: m.loss,
                error: m.error,
                bits_per_example: m.loss / std::f64::consts::LN_2,
                diverged: !m.loss.is_finite(),
                set: sweep.set.clone(),
            });
        }
        sweep.checkpoints.push(CheckpointRow {
            run: k.id.run.clone(),
            step: k.id.step,
            path: k.checkpoint.display_path().display().to_string(),
            format: k.checkpoint.format.name().to_string(),
            dtype: k.scan.dtype(),
            n_params: k.scan.n_params() as u64,
            tokens: k.checkpoint.tokens,
            key: k.key.clone(),
        });
    }
    for unit in paths {
        let (pair, aligned) = unit;
        let Some((alphas, curve)) = eps.curve(unit, store, keys, alphas) else {
            continue;
        };
        let alphas = alphas.as_slice();
        let bootstrap = keys
            .bootstrap(&eps.key(unit, keys))
            .and_then(|k| store.bootstrap.get(&k));
        let losses: Vec<f64> = curve.iter().map(|m| m.loss).collect();
        let errors: Vec<f64> = curve.iter().map(|m| m.error).collect();
        for (alpha, m) in alphas.iter().zip(&curve) {
            sweep.interpolation.push(InterpolationRow {
                step: pair.a.step,
                run_a: pair.a.run.clone(),
                run_b: pair.b.run.clone(),
                step_b: pair.b.step,
                pair: pair.kind,
                alpha: *alpha,
                loss: m.loss,
                error: m.error,
                aligned: *aligned,
                set: sweep.set.clone(),
            });
        }
        for &kind in BarrierKind::ALL {
            let interval = bootstrap.as_ref().and_then(|b| b.interval(kind));
            sweep.barriers.push(BarrierRow {
                step: pair.a.step,
                run_a: pair.a.run.clone(),
                run_b: pair.b.run.clone(),
                step_b: pair.b.step,
                pair: pair.kind,
                kind,
                loss_barrier: kind.barrier(alphas, &losses),
                error_barrier: kind.barrier(alphas, &errors),
                aligned: *aligned,
                set: sweep.set.clone(),
                loss_barrier_lo: interval.map(|i| i.loss_lo),
                loss_barrier_hi: interval.map(|i| i.loss_hi),
                error_barrier_lo: interval.map(|i| i.error_lo),
                error_barrier_hi: interval.map(|i| i.error_hi),
            });
        }
        if let Some(b) = bootstrap.filter(|b| !b.loss_barriers.is_empty()) {
            let key = (pair.a.step, pair.a.run.clone(), pair.b.run.clone());
            sweep.resampled.insert(key, b);
        }
    }
}
