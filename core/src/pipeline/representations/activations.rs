//! The representation views: similarity of hidden activations between checkpoint pairs, and
//! linear probes of them, step by step (one step's checkpoints, plus each run's final
//! representation, in memory at a time).

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;

use lineage_loaders::Zoo;
use lineage_loaders::checkpoint::load_checkpoint;

use super::{Keyed, VIEWS_CACHE_VERSION, ViewOptions, ViewsResult, check_cancel, finite};
use crate::data::eval_data::EvalData;
use crate::data::features::Features;
use crate::error::CoreError;
use crate::methods::probe::linear_probe;
use crate::methods::similarity::similarity;
use crate::models::evaluator::Evaluator;
use crate::output::tables_representations::{ProbeRow, SimilarityRow};
use crate::pipeline::keys::hash_parts;
use crate::pipeline::plan::{CheckpointId, Pair, plan_pairs};
use crate::pipeline::store::JsonlStore;
use crate::progress::Progress;

/// Cached similarity: linear CKA, debiased CKA, mutual kNN (null = NaN).
type CachedSimilarity = [Option<f64>; 3];
/// Cached probe: train and held-out accuracy (null = NaN).
type CachedProbe = [Option<f64>; 2];

/// Computes (or takes from the cache) the similarity and probe rows at the chosen layer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute(
    zoo: &Zoo,
    keyed: &[Keyed],
    evaluator: &dyn Evaluator,
    data: &EvalData,
    data_key: &str,
    options: &ViewOptions,
    progress: &dyn Progress,
    result: &mut ViewsResult,
) -> Result<(), CoreError> {
    let hidden = evaluator.n_hidden_layers();
    if hidden == 0 {
        result.warnings.push(format!(
            "{}: no hidden layer to compare or probe; similarity and probes skipped",
            evaluator.describe()
        ));
        return Ok(());
    }
    let layer = options.layer.unwrap_or(hidden - 1);
    if layer >= hidden {
        return Err(CoreError::InvalidArgument(format!(
            "--layer {layer}: {} has hidden layers 0..{}",
            evaluator.describe(),
            hidden - 1
        )));
    }
    result.layer = Some(layer);
    let probing = options.probes && data.has_labels();
    if options.probes && !probing {
        result.warnings.push(format!(
            "{}: the eval data has no class labels (language-model data); probes skipped",
            evaluator.describe()
        ));
    }
    let base = hash_parts(&[VIEWS_CACHE_VERSION, &evaluator.describe(), data_key, &layer.to_string()]);
    let similarities = JsonlStore::<CachedSimilarity>::open(&options.cache_dir.join("views_similarity.jsonl"))?;
    let probes = JsonlStore::<CachedProbe>::open(&options.cache_dir.join("views_probes.jsonl"))?;
    let probe_options = serde_json::to_string(&options.probe).unwrap_or_default();

    let by_id: HashMap<&CheckpointId, &Keyed> = keyed.iter().map(|k| (&k.id, k)).collect();
    let pairs: Vec<Pair> = if options.similarity {
        plan_pairs(zoo, options.pairs)
            .into_iter()
            .filter(|p| by_id.contains_key(&p.a) && by_id.contains_key(&p.b))
            .collect()
    } else {
        Vec::new()
    };
    let pair_key = |p: &Pair| hash_parts(&[&base, "similarity", &by_id[&p.a].key, &by_id[&p.b].key]);
    let probe_key = |k: &Keyed| hash_parts(&[&base, "probe", &probe_options, &k.key]);
    let pending_pairs: Vec<&Pair> = pairs.iter().filter(|p| !similarities.contains(&pair_key(p))).collect();
    let pending_probes: Vec<&Keyed> = if probing {
        keyed.iter().filter(|k| !probes.contains(&probe_key(k))).collect()
    } else {
        Vec::new()
    };
    let total = pending_pairs.len() + pending_probes.len();
    let n_probes = if probing { keyed.len() } else { 0 };
    result.computed += total;
    result.cached += pairs.len() + n_probes - total;
    progress.start("representations", total as u64);

    // Final checkpoints compared across steps: their representation is kept for the whole pass.
    let final_ids: BTreeSet<&CheckpointId> = pending_pairs
        .iter()
        .filter(|p| p.a.step != p.b.step)
        .map(|p| &p.b)
        .collect();
    let mut finals: HashMap<&CheckpointId, Features> = HashMap::new();
    for (id, features) in features_of_all(evaluator, &by_id, final_ids.into_iter().collect(), layer) {
        match features {
            Ok(f) => {
                finals.insert(id, f);
            }
            Err(e) => result.warnings.push(format!("{}@{}: {e}", id.run, id.step)),
        }
    }

    for step in zoo.steps() {
        let step_pairs: Vec<&&Pair> = pending_pairs.iter().filter(|p| p.a.step == step).collect();
        let step_probes: Vec<&&Keyed> = pending_probes.iter().filter(|k| k.id.step == step).collect();
        let mut needed: BTreeSet<&CheckpointId> = step_probes.iter().map(|k| &k.id).collect();
        for p in &step_pairs {
            needed.insert(&p.a);
            if p.b.step == step {
                needed.insert(&p.b);
            }
        }
        if needed.is_empty() {
            continue;
        }
        check_cancel(progress)?;
        let mut features: HashMap<&CheckpointId, Features> = HashMap::new();
        for (id, f) in features_of_all(evaluator, &by_id, needed.into_iter().collect(), layer) {
            match f {
                Ok(f) => {
                    features.insert(id, f);
                }
                Err(e) => result.warnings.push(format!("{}@{}: {e}", id.run, id.step)),
            }
        }
        let done: Vec<Result<(), CoreError>> = step_pairs
            .par_iter()
            .filter_map(|p| {
                let a = features.get(&p.a)?;
                let b = features.get(&p.b).or_else(|| finals.get(&p.b))?;
                Some((p, a, b))
            })
            .map(|(p, a, b)| {
                let s = similarity(a, b)?;
                similarities.insert(
                    &pair_key(p),
                    &[finite(s.linear_cka), finite(s.debiased_cka), finite(s.mutual_knn)],
                )?;
                progress.advance(1);
                Ok(())
            })
            .chain(
                step_probes
                    .par_iter()
                    .filter_map(|k| Some((k, features.get(&k.id)?)))
                    .map(|(k, f)| {
                        let r = linear_probe(f, &data.labels, &options.probe)?;
                        probes.insert(&probe_key(k), &[finite(r.train_accuracy), finite(r.heldout_accuracy)])?;
                        progress.advance(1);
                        Ok(())
                    }),
            )
            .collect();
        for r in done {
            match r {
                Ok(()) => {}
                Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
                Err(e) => result.warnings.push(e.to_string()),
            }
        }
    }
    progress.finish();

    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    for p in &pairs {
        if let Some([linear, debiased, knn]) = similarities.get(&pair_key(p)) {
            result.similarity.push(SimilarityRow {
                step: p.a.step,
                run_a: p.a.run.clone(),
                run_b: p.b.run.clone(),
                step_b: p.b.step,
                pair: p.kind.name().into(),
                layer: layer as u64,
                linear_cka: nan(linear),
                debiased_cka: nan(debiased),
                mutual_knn: nan(knn),
            });
        }
    }
    if probing {
        for k in keyed {
            if let Some([train, heldout]) = probes.get(&probe_key(k)) {
                result.probes.push(ProbeRow {
                    run: k.id.run.clone(),
                    step: k.id.step,
                    layer: layer as u64,
                    train_accuracy: nan(train),
                    heldout_accuracy: nan(heldout),
                });
            }
        }
    }
    Ok(())
}

/// The hidden activations at `layer` of each checkpoint in `ids`, computed in parallel.
fn features_of_all<'a>(
    evaluator: &dyn Evaluator,
    by_id: &HashMap<&CheckpointId, &Keyed>,
    ids: Vec<&'a CheckpointId>,
    layer: usize,
) -> Vec<(&'a CheckpointId, Result<Features, CoreError>)> {
    ids.into_par_iter()
        .map(|id| {
            let features = load_checkpoint(by_id[id].checkpoint)
                .map_err(|e| CoreError::Load(e.to_string()))
                .and_then(|params| evaluator.prepare(&params))
                .and_then(|point| evaluator.hidden_activations(&point, layer));
            (id, features)
        })
        .collect()
}
