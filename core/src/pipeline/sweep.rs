//! The batch analysis: evaluate every checkpoint and every planned interpolation path of a zoo,
//! resumably, and assemble the output tables.
//!
//! Work is cached per unit (one checkpoint evaluation, one interpolation path) under content keys,
//! so a second identical run does no forward pass and a killed run resumes where it stopped.
//! Checkpoints are streamed: at most one step's checkpoints (plus one final checkpoint) are in memory.
//!
//! With [`BatchOptions::align`], every pair is interpolated twice: raw, and with B permuted to match
//! A by Git Re-Basin weight matching ([`crate::methods::align`]). Aligned paths are separate cache units (their
//! key also names the alignment algorithm) and give rows with `aligned = true` next to the raw ones.
//! The endpoints of an aligned path reuse the checkpoints' own evaluations: a permuted B computes the
//! same function as B.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use lineage_loaders::checkpoint::{load_checkpoint, scan_checkpoint};
use lineage_loaders::{ParamSet, Zoo};

use crate::data::eval_data::EvalData;
use crate::error::CoreError;
use crate::methods::align::{ALGORITHM, DEFAULT_SEED, align_to};
use crate::methods::interpolation::{alpha_grid, endpoint_barrier, segment_barrier};
use crate::models::evaluator::{EvalResult, Evaluator, Prepared};
use crate::output::tables::{BarrierRow, CheckpointRow, EvalRow, InterpolationRow};
use crate::pipeline::keys::{FileKeys, Key, hash_file, hash_parts};
use crate::pipeline::plan::{CheckpointId, Pair, PairSets, plan_pairs};
use crate::pipeline::store::JsonlStore;
use crate::progress::Progress;

/// Bumped whenever cached numbers would change meaning.
const CACHE_VERSION: &str = "lineage-results-v1";

/// Options of a batch analysis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Number of alpha grid points (>= 3).
    pub alphas: usize,
    /// Which pair sets to compute.
    pub pairs: PairSets,
    /// Folder of the result cache (shared with the GUI).
    pub cache_dir: PathBuf,
    /// Also interpolate each pair with B permutation-aligned to A (weight matching), emitting
    /// `aligned = true` rows in addition to the raw ones.
    #[serde(default)]
    pub align: bool,
    /// Compute only one deterministic share of the work (see [`Shard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Share `index` (0-based) of `count`: pairs and checkpoints whose position in the deterministic
/// plan is `index` modulo `count`. Shard outputs are combined by [`crate::pipeline::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` with 1 <= K <= N (1-based, as in SLURM array task ids).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidArgument(format!("shard `{text}`: expected K/N with 1 <= K <= N"));
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Self { index: k - 1, count: n })
    }

    /// True when item number `position` of the plan belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// Mean loss and error of one evaluation, as cached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Error rate.
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

/// The result cache: checkpoint evaluations and interior points of interpolation paths.
pub struct ResultCache {
    /// Content digests of files.
    pub files: FileKeys,
    evals: JsonlStore<Metrics>,
    paths: JsonlStore<Vec<Metrics>>,
}

impl ResultCache {
    /// Opens (or creates) the cache in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CoreError> {
        Ok(Self {
            files: FileKeys::open(&dir.join("file_keys.jsonl"))?,
            evals: JsonlStore::open(&dir.join("evals.jsonl"))?,
            paths: JsonlStore::open(&dir.join("paths.jsonl"))?,
        })
    }
}

/// Everything a batch run produced: the rows of every table plus bookkeeping.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchResult {
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
    /// Units computed in this run (checkpoint evaluations + paths, raw and aligned).
    pub computed: usize,
    /// Units found in the cache.
    pub cached: usize,
    /// SHA-256 of the eval data file.
    pub data_key: Key,
    /// Description of the evaluator used.
    pub evaluator: String,
}

/// Builds an evaluator for the zoo from a run's `config.json` or the reference param set.
pub type EvaluatorFactory<'a> =
    dyn Fn(Option<&Path>, &ParamSet, &EvalData) -> Result<Box<dyn Evaluator>, CoreError> + Sync + 'a;

/// Per-checkpoint facts gathered before evaluation.
struct Known {
    key: Key,
    eval_key: Key,
}

/// Runs the batch analysis of `zoo` on the eval data at `data_path`.
pub fn run_batch(
    zoo: &Zoo,
    data_path: &Path,
    options: &BatchOptions,
    make_evaluator: &EvaluatorFactory,
    progress: &dyn Progress,
) -> Result<BatchResult, CoreError> {
    let alphas = alpha_grid(options.alphas)?;
    let data = EvalData::load(data_path)?;
    let cache = ResultCache::open(&options.cache_dir)?;
    let data_key = hash_file(data_path)?;
    let mut result = BatchResult {
        data_key: data_key.clone(),
        ..Default::default()
    };
    result.warnings.extend(zoo.problems.iter().map(|p| p.message.clone()));

    // This run's share of the plan: its own checkpoints (table rows) and pairs; the endpoints of its
    // pairs are evaluated too, as barriers need them.
    let owns = |position: usize| options.shard.is_none_or(|s| s.owns(position));
    let all_ids: Vec<(CheckpointId, &lineage_loaders::Checkpoint)> = zoo
        .runs
        .iter()
        .flat_map(|r| {
            r.checkpoints.iter().map(move |c| {
                (
                    CheckpointId {
                        run: r.name.clone(),
                        step: c.step,
                    },
                    c,
                )
            })
        })
        .collect();
    let own_pairs: Vec<Pair> = plan_pairs(zoo, options.pairs)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| owns(*i))
        .map(|(_, p)| p)
        .collect();
    let own_ids: HashSet<CheckpointId> = all_ids
        .iter()
        .enumerate()
        .filter(|(i, _)| owns(*i))
        .map(|(_, (id, _))| id.clone())
        .collect();
    let endpoints: HashSet<&CheckpointId> = own_pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    let ids: Vec<(CheckpointId, &lineage_loaders::Checkpoint)> = all_ids
        .into_iter()
        .filter(|(id, _)| own_ids.contains(id) || endpoints.contains(id))
        .collect();

    // Header scan and content keys; unreadable checkpoints are dropped with a warning.
    progress.start("hashing checkpoints", ids.len() as u64);
    let scanned: Vec<_> = ids
        .par_iter()
        .map(|(_, c)| {
            let scan = scan_checkpoint(c).map_err(|e| e.to_string());
            let key = scan.and_then(|s| {
                cache
                    .files
                    .checkpoint_key(&c.files)
                    .map(|k| (s, k))
                    .map_err(|e| e.to_string())
            });
            progress.advance(1);
            key
        })
        .collect();
    progress.finish();
    let mut rows_by_id: BTreeMap<CheckpointId, CheckpointRow> = BTreeMap::new();
    let mut keys: HashMap<CheckpointId, Key> = HashMap::new();
    for ((id, c), scanned) in ids.iter().zip(scanned) {
        match scanned {
            Ok((scan, key)) if own_ids.contains(id) => {
                rows_by_id.insert(
                    id.clone(),
                    CheckpointRow {
                        run: id.run.clone(),
                        step: id.step,
                        path: c.display_path().display().to_string(),
                        format: c.format.name().to_string(),
                        dtype: scan.dtype(),
                        n_params: scan.n_params() as u64,
                        key: key.clone(),
                    },
                );
                keys.insert(id.clone(), key);
            }
            Ok((_, key)) => {
                keys.insert(id.clone(), key);
            }
            Err(e) => result.warnings.push(e),
        }
    }
    let Some(reference_id) = ids.iter().map(|(id, _)| id).find(|id| keys.contains_key(*id)).cloned() else {
        return Err(CoreError::NothingToDo(format!(
            "{}: no readable checkpoint",
            zoo.root.display()
        )));
    };
    let checkpoint_of = |id: &CheckpointId| zoo.run(&id.run).and_then(|r| r.at(id.step));

    // The evaluator, from the reference checkpoint's run config or its tensors.
    let reference = load_checkpoint(checkpoint_of(&reference_id).expect("reference exists"))
        .map_err(|e| CoreError::Load(e.to_string()))?;
    let config = zoo.run(&reference_id.run).and_then(|r| r.config.clone());
    let evaluator = make_evaluator(config.as_deref(), &reference, &data)?;
    result.evaluator = evaluator.describe();
    if options.align {
        // Fail once, up front, for a family without permutation symmetries (rather than per pair).
        evaluator.permutation_spec(&reference)?;
    }
    drop(reference);
    let options_key = hash_parts(&[CACHE_VERSION, &result.evaluator, &data_key]);
    let known: HashMap<CheckpointId, Known> = keys
        .iter()
        .map(|(id, key)| {
            (
                id.clone(),
                Known {
                    key: key.clone(),
                    eval_key: hash_parts(&[&options_key, key]),
                },
            )
        })
        .collect();

    let pairs: Vec<Pair> = own_pairs
        .into_iter()
        .filter(|p| known.contains_key(&p.a) && known.contains_key(&p.b))
        .collect();
    let interior: Vec<f64> = alphas[1..alphas.len() - 1].to_vec();
    // Families whose evaluations each use every core run them one after the other: a rayon job
    // that is never split runs its items in order.
    let min_len = if evaluator.parallel_evaluations() {
        1
    } else {
        usize::MAX
    };
    let alpha_text: Vec<String> = interior.iter().map(|a| format!("{a:.17e}")).collect();
    let alpha_text = alpha_text.join(",");
    // Raw paths keep their key; aligned ones also name the alignment algorithm.
    let path_key = |p: &Pair, aligned: bool| {
        let (a, b) = (&known[&p.a].key, &known[&p.b].key);
        if aligned {
            hash_parts(&[&options_key, a, b, &alpha_text, ALGORITHM])
        } else {
            hash_parts(&[&options_key, a, b, &alpha_text])
        }
    };
    let variants: &[bool] = if options.align { &[false, true] } else { &[false] };

    // Pending work: checkpoint evaluations and (pair, aligned) paths.
    let pending_evals: HashSet<&CheckpointId> = known
        .iter()
        .filter(|(_, k)| !cache.evals.contains(&k.eval_key))
        .map(|(id, _)| id)
        .collect();
    let pending_paths: Vec<(&Pair, bool)> = pairs
        .iter()
        .flat_map(|p| variants.iter().map(move |&aligned| (p, aligned)))
        .filter(|&(p, aligned)| !cache.paths.contains(&path_key(p, aligned)))
        .collect();
    let total = pending_evals.len() + pending_paths.len();
    result.cached = known.len() + pairs.len() * variants.len() - total;
    result.computed = total;
    progress.start("evaluating", total as u64);

    // Pass 1, step by step: evaluate checkpoints and pairs whose endpoints share a step.
    let steps: Vec<u64> = zoo.steps();
    for step in steps {
        let step_paths: Vec<(&Pair, bool)> = pending_paths
            .iter()
            .copied()
            .filter(|(p, _)| p.a.step == step && p.b.step == step)
            .collect();
        let needed: Vec<&CheckpointId> = known
            .keys()
            .filter(|id| id.step == step)
            .filter(|id| pending_evals.contains(id) || step_paths.iter().any(|(p, _)| &p.a == *id || &p.b == *id))
            .collect();
        if needed.is_empty() {
            continue;
        }
        check_cancel(progress)?;
        let loaded = load_all(&needed, &checkpoint_of, &mut result.warnings);
        let prepared: Vec<(&CheckpointId, Result<Prepared, CoreError>)> = loaded
            .par_iter()
            .map(|(id, params)| (*id, evaluator.prepare(params)))
            .collect();
        // Alignment needs the raw parameters; otherwise they are dropped right away.
        let params: HashMap<&CheckpointId, ParamSet> = if step_paths.iter().any(|(_, aligned)| *aligned) {
            loaded.into_iter().collect()
        } else {
            drop(loaded);
            HashMap::new()
        };
        let mut points: HashMap<&CheckpointId, Prepared> = HashMap::new();
        for (id, p) in prepared {
            match p {
                Ok(p) => {
                    points.insert(id, p);
                }
                Err(e) => result.warnings.push(format!("{}@{}: {e}", id.run, id.step)),
            }
        }
        let to_evaluate: Vec<(&&CheckpointId, &Prepared)> =
            points.iter().filter(|(id, _)| pending_evals.contains(*id)).collect();
        let evals: Vec<Result<(), CoreError>> = to_evaluate
            .par_iter()
            .with_min_len(min_len)
            .map(|(id, point)| {
                let metrics = Metrics::from(&evaluator.evaluate_prepared(point)?);
                cache.evals.insert(&known[*id].eval_key, &metrics)?;
                progress.advance(1);
                Ok(())
            })
            .collect();
        collect_errors(evals, &mut result.warnings)?;
        let done: Vec<Result<(), CoreError>> = step_paths
            .par_iter()
            .with_min_len(min_len)
            .filter_map(|&(p, aligned)| Some((p, aligned, points.get(&p.a)?, points.get(&p.b)?)))
            .map(|(p, aligned, a, b)| {
                if progress.is_cancelled() {
                    return Err(CoreError::Cancelled);
                }
                let key = path_key(p, aligned);
                if aligned {
                    let (Some(pa), Some(pb)) = (params.get(&p.a), params.get(&p.b)) else {
                        return Err(CoreError::Align(format!("{}: parameters not loaded", pair_label(p))));
                    };
                    let b = aligned_point(evaluator.as_ref(), p, pa, pb)?;
                    compute_path(evaluator.as_ref(), a, &b, &interior, &cache, &key)?;
                } else {
                    compute_path(evaluator.as_ref(), a, b, &interior, &cache, &key)?;
                }
                progress.advance(1);
                Ok(())
            })
            .collect();
        collect_errors(done, &mut result.warnings)?;
    }

    // Pass 2, run by run: pairs across steps (checkpoint vs its run's final), one final in memory.
    // Per pair, the variants (raw / aligned) still to compute.
    let mut cross: BTreeMap<&Pair, Vec<bool>> = BTreeMap::new();
    for &(p, aligned) in pending_paths.iter().filter(|(p, _)| p.a.step != p.b.step) {
        cross.entry(p).or_default().push(aligned);
    }
    let mut finals: Vec<&CheckpointId> = cross.keys().map(|p| &p.b).collect();
    finals.sort();
    finals.dedup();
    for final_id in finals {
        check_cancel(progress)?;
        let Some((_, final_params)) = load_all(&[final_id], &checkpoint_of, &mut result.warnings)
            .into_iter()
            .next()
        else {
            continue;
        };
        let final_point = match evaluator.prepare(&final_params) {
            Ok(p) => p,
            Err(e) => {
                result.warnings.push(format!("{}@{}: {e}", final_id.run, final_id.step));
                continue;
            }
        };
        let with_final: Vec<(&&Pair, &Vec<bool>)> = cross.iter().filter(|(p, _)| &p.b == final_id).collect();
        let done: Vec<Result<(), CoreError>> = with_final
            .par_iter()
            .with_min_len(min_len)
            .flat_map_iter(|&(p, variants)| {
                let a_params = checkpoint_of(&p.a)
                    .ok_or_else(|| CoreError::Load(format!("{}@{}: not in the zoo", p.a.run, p.a.step)))
                    .and_then(|c| load_checkpoint(c).map_err(|e| CoreError::Load(e.to_string())));
                let a = a_params.and_then(|params| Ok((evaluator.prepare(&params)?, params)));
                let (a_point, a_params) = match a {
                    Ok(a) => a,
                    Err(e) => return vec![Err(e)],
                };
                variants
                    .iter()
                    .map(|&aligned| {
                        if progress.is_cancelled() {
                            return Err(CoreError::Cancelled);
                        }
                        let key = path_key(p, aligned);
                        if aligned {
                            let b = aligned_point(evaluator.as_ref(), p, &a_params, &final_params)?;
                            compute_path(evaluator.as_ref(), &a_point, &b, &interior, &cache, &key)?;
                        } else {
                            compute_path(evaluator.as_ref(), &a_point, &final_point, &interior, &cache, &key)?;
                        }
                        progress.advance(1);
                        Ok(())
                    })
                    .collect()
            })
            .collect();
        collect_errors(done, &mut result.warnings)?;
    }
    progress.finish();

    // Tables, from the cache: deterministic order, one row per unit, whatever was resumed.
    for (id, row) in &rows_by_id {
        if let Some(m) = cache.evals.get(&known[id].eval_key) {
            result.evals.push(EvalRow {
                run: id.run.clone(),
                step: id.step,
                loss: m.loss,
                error: m.error,
                bits_per_example: m.loss / std::f64::consts::LN_2,
            });
        }
        result.checkpoints.push(row.clone());
    }
    for pair in &pairs {
        for &aligned in variants {
            push_rows(
                &mut result,
                pair,
                aligned,
                &alphas,
                &cache,
                &known,
                &path_key(pair, aligned),
            );
        }
    }
    Ok(result)
}

/// Appends the interpolation and barrier rows of one (pair, aligned) path, if it is complete in the cache.
fn push_rows(
    result: &mut BatchResult,
    pair: &Pair,
    aligned: bool,
    alphas: &[f64],
    cache: &ResultCache,
    known: &HashMap<CheckpointId, Known>,
    path_key: &str,
) {
    let (Some(ea), Some(eb), Some(inner)) = (
        cache.evals.get(&known[&pair.a].eval_key),
        cache.evals.get(&known[&pair.b].eval_key),
        cache.paths.get(path_key),
    ) else {
        return;
    };
    let curve: Vec<Metrics> = std::iter::once(ea).chain(inner).chain(std::iter::once(eb)).collect();
    let losses: Vec<f64> = curve.iter().map(|m| m.loss).collect();
    let errors: Vec<f64> = curve.iter().map(|m| m.error).collect();
    for (alpha, m) in alphas.iter().zip(&curve) {
        result.interpolation.push(InterpolationRow {
            step: pair.a.step,
            run_a: pair.a.run.clone(),
            run_b: pair.b.run.clone(),
            step_b: pair.b.step,
            pair: pair.kind.name().into(),
            alpha: *alpha,
            loss: m.loss,
            error: m.error,
            aligned,
        });
    }
    for (kind, barrier) in [
        ("endpoint", endpoint_barrier as fn(&[f64], &[f64]) -> f64),
        ("segment", segment_barrier),
    ] {
        result.barriers.push(BarrierRow {
            step: pair.a.step,
            run_a: pair.a.run.clone(),
            run_b: pair.b.run.clone(),
            step_b: pair.b.step,
            pair: pair.kind.name().into(),
            kind: kind.into(),
            loss_barrier: barrier(alphas, &losses),
            error_barrier: barrier(alphas, &errors),
            aligned,
        });
    }
}

/// `run@step vs run@step`.
fn pair_label(p: &Pair) -> String {
    format!("{}@{} vs {}@{}", p.a.run, p.a.step, p.b.run, p.b.step)
}

/// Model B of `pair` permuted to match A (weight matching with the evaluator's permutation spec),
/// prepared for evaluation. Errors name the pair.
fn aligned_point(evaluator: &dyn Evaluator, pair: &Pair, a: &ParamSet, b: &ParamSet) -> Result<Prepared, CoreError> {
    let aligned = evaluator
        .permutation_spec(a)
        .and_then(|spec| align_to(&spec, a, b, DEFAULT_SEED))
        .map_err(|e| match e {
            CoreError::Align(m) => CoreError::Align(format!("{}: {m}", pair_label(pair))),
            other => other,
        })?;
    evaluator.prepare(&aligned)
}

fn check_cancel(progress: &dyn Progress) -> Result<(), CoreError> {
    if progress.is_cancelled() {
        Err(CoreError::Cancelled)
    } else {
        Ok(())
    }
}

/// Keeps going past per-unit failures (reported as warnings) but stops on cancellation.
fn collect_errors(results: Vec<Result<(), CoreError>>, warnings: &mut Vec<String>) -> Result<(), CoreError> {
    for r in results {
        match r {
            Ok(()) => {}
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            Err(e) => warnings.push(e.to_string()),
        }
    }
    Ok(())
}

/// Loads checkpoints in parallel; failures become warnings.
fn load_all<'a>(
    ids: &[&'a CheckpointId],
    checkpoint_of: &(dyn Fn(&CheckpointId) -> Option<&'a lineage_loaders::Checkpoint> + Sync),
    warnings: &mut Vec<String>,
) -> Vec<(&'a CheckpointId, ParamSet)> {
    let loaded: Vec<_> = ids
        .par_iter()
        .map(|id| {
            (
                *id,
                checkpoint_of(id)
                    .ok_or_else(|| format!("{}@{}: not in the zoo", id.run, id.step))
                    .and_then(|c| load_checkpoint(c).map_err(|e| e.to_string())),
            )
        })
        .collect();
    let mut ok = Vec::with_capacity(loaded.len());
    for (id, r) in loaded {
        match r {
            Ok(p) => ok.push((id, p)),
            Err(e) => warnings.push(e),
        }
    }
    ok
}

/// Evaluates the interior points of one path and stores them.
fn compute_path(
    evaluator: &dyn Evaluator,
    a: &Prepared,
    b: &Prepared,
    interior: &[f64],
    cache: &ResultCache,
    key: &str,
) -> Result<(), CoreError> {
    let results = evaluator.evaluate_path_prepared(a, b, interior)?;
    let metrics: Vec<Metrics> = results.iter().map(Metrics::from).collect();
    cache.paths.insert(key, &metrics)
}
