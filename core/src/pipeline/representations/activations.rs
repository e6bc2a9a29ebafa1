//! Similarity of hidden activations between checkpoint pairs, and linear probes of them, step by
//! step (one step's checkpoints, plus each run's final representation, in memory at a time).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rayon::prelude::*;

use lineage_loaders::{Schema, Zoo};

use super::{CACHE_VERSION, Representations, finite};
use crate::data::eval_data::EvalData;
use crate::data::features::Features;
use crate::error::CoreError;
use crate::methods::probe::linear_probe;
use crate::methods::similarity::similarity;
use crate::models::evaluator::Evaluator;
use crate::output::tables::{ProbeRow, SimilarityRow};
use crate::pipeline::keys::{Key, hash_parts};
use crate::pipeline::options::RepresentationOptions;
use crate::pipeline::plan::{CheckpointId, Pair, PairSets, plan_pairs};
use crate::pipeline::store::JsonlStore;
use crate::pipeline::units::{KeyedCheckpoint, check_cancel, collect_errors, load_one, pending};
use crate::progress::Progress;

/// Cached similarity: linear CKA, debiased CKA, mutual kNN (null = NaN).
type CachedSimilarity = [Option<f64>; 3];
/// Cached probe: train and held-out accuracy (null = NaN).
type CachedProbe = [Option<f64>; 2];

/// What the similarity and probe units need.
pub(crate) struct Context<'a> {
    pub zoo: &'a Zoo,
    /// The zoo's reference schema: the only tensors loaded.
    pub schema: &'a Schema,
    pub keyed: &'a [KeyedCheckpoint<'a>],
    pub evaluator: &'a dyn Evaluator,
    pub data: &'a EvalData,
    pub data_key: &'a str,
    pub pairs: PairSets,
    pub cache_dir: &'a Path,
    pub progress: &'a dyn Progress,
}

/// The stores and keys of the similarity and probe units at one layer.
struct Units<'a> {
    by_id: HashMap<&'a CheckpointId, &'a KeyedCheckpoint<'a>>,
    base: Key,
    probe_options: String,
    similarities: JsonlStore<CachedSimilarity>,
    probes: JsonlStore<CachedProbe>,
}

impl Units<'_> {
    fn pair_key(&self, p: &Pair) -> Key {
        hash_parts(&[&self.base, "similarity", &self.by_id[&p.a].key, &self.by_id[&p.b].key])
    }

    fn probe_key(&self, id: &CheckpointId) -> Key {
        hash_parts(&[&self.base, "probe", &self.probe_options, &self.by_id[id].key])
    }
}

impl Context<'_> {
    /// Computes (or takes from the store) the similarity and probe rows at the chosen layer.
    pub fn compute(&self, options: &RepresentationOptions, result: &mut Representations) -> Result<(), CoreError> {
        let Some(layer) = self.layer(options, result)? else {
            return Ok(());
        };
        let probing = options.probes && self.data.has_labels();
        if options.probes && !probing {
            result.warnings.push(format!(
                "{}: the eval data has no class labels (language-model data); probes skipped",
                self.evaluator.describe()
            ));
        }
        let units = Units {
            by_id: self.keyed.iter().map(|k| (&k.id, k)).collect(),
            base: hash_parts(&[
                CACHE_VERSION,
                &self.evaluator.describe(),
                self.data_key,
                &layer.to_string(),
            ]),
            probe_options: serde_json::to_string(&options.probe).unwrap_or_default(),
            similarities: JsonlStore::open(&self.cache_dir.join("views_similarity.jsonl"))?,
            probes: JsonlStore::open(&self.cache_dir.join("views_probes.jsonl"))?,
        };
        let pairs: Vec<Pair> = if options.similarity {
            plan_pairs(self.zoo, self.pairs)
                .into_iter()
                .filter(|p| units.by_id.contains_key(&p.a) && units.by_id.contains_key(&p.b))
                .collect()
        } else {
            Vec::new()
        };
        let probed: Vec<CheckpointId> = if probing {
            self.keyed.iter().map(|k| k.id.clone()).collect()
        } else {
            Vec::new()
        };
        let (pending_pairs, pair_counts) = pending(&pairs, |p| units.similarities.contains(&units.pair_key(p)));
        let (pending_probes, probe_counts) = pending(&probed, |id| units.probes.contains(&units.probe_key(id)));
        let counts = pair_counts + probe_counts;
        result.counts += counts;
        let pending_pairs: Vec<&Pair> = pairs.iter().filter(|p| pending_pairs.contains(*p)).collect();
        let pending_probes: Vec<&CheckpointId> = probed.iter().filter(|id| pending_probes.contains(*id)).collect();

        self.progress.start("representations", counts.computed as u64);
        self.compute_units(&units, &pending_pairs, &pending_probes, layer, options, result)?;
        self.progress.finish();
        assemble_rows(&units, &pairs, &probed, layer, result);
        Ok(())
    }

    /// The hidden layer to use: the chosen one, or the last; None (with a warning) for a model
    /// without hidden layers.
    fn layer(&self, options: &RepresentationOptions, result: &mut Representations) -> Result<Option<usize>, CoreError> {
        let hidden = self.evaluator.n_hidden_layers();
        if hidden == 0 {
            result.warnings.push(format!(
                "{}: no hidden layer to compare or probe; similarity and probes skipped",
                self.evaluator.describe()
            ));
            return Ok(None);
        }
        let layer = options.layer.unwrap_or(hidden - 1);
        if layer >= hidden {
            return Err(CoreError::InvalidArgument(format!(
                "--layer {layer}: {} has hidden layers 0..{}",
                self.evaluator.describe(),
                hidden - 1
            )));
        }
        result.layer = Some(layer);
        Ok(Some(layer))
    }

    /// Computes the pending units step by step; the final checkpoints compared across steps keep
    /// their representation for the whole pass.
    fn compute_units(
        &self,
        units: &Units,
        pending_pairs: &[&Pair],
        pending_probes: &[&CheckpointId],
        layer: usize,
        options: &RepresentationOptions,
        result: &mut Representations,
    ) -> Result<(), CoreError> {
        let final_ids: Vec<&CheckpointId> = pending_pairs
            .iter()
            .filter(|p| p.a.step != p.b.step)
            .map(|p| &p.b)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let finals = self.features_of_all(final_ids, layer, &mut result.warnings);
        for step in self.zoo.steps() {
            let step_pairs: Vec<&&Pair> = pending_pairs.iter().filter(|p| p.a.step == step).collect();
            let step_probes: Vec<&&CheckpointId> = pending_probes.iter().filter(|id| id.step == step).collect();
            let mut needed: BTreeSet<&CheckpointId> = step_probes.iter().map(|id| **id).collect();
            for p in &step_pairs {
                needed.insert(&p.a);
                if p.b.step == step {
                    needed.insert(&p.b);
                }
            }
            if needed.is_empty() {
                continue;
            }
            check_cancel(self.progress)?;
            let features = self.features_of_all(needed.into_iter().collect(), layer, &mut result.warnings);
            let done: Vec<Result<(), CoreError>> = step_pairs
                .par_iter()
                .filter_map(|p| {
                    let a = features.get(&p.a)?;
                    let b = features.get(&p.b).or_else(|| finals.get(&p.b))?;
                    Some((p, a, b))
                })
                .map(|(p, a, b)| {
                    let s = similarity(a, b)?;
                    let stored = [finite(s.linear_cka), finite(s.debiased_cka), finite(s.mutual_knn)];
                    units.similarities.insert(&units.pair_key(p), &stored)?;
                    self.progress.advance(1);
                    Ok(())
                })
                .chain(
                    step_probes
                        .par_iter()
                        .filter_map(|id| Some((id, features.get(**id)?)))
                        .map(|(id, f)| {
                            let r = linear_probe(f, &self.data.labels, &options.probe)?;
                            let stored = [finite(r.train_accuracy), finite(r.heldout_accuracy)];
                            units.probes.insert(&units.probe_key(id), &stored)?;
                            self.progress.advance(1);
                            Ok(())
                        }),
                )
                .collect();
            collect_errors(done, &mut result.warnings)?;
        }
        Ok(())
    }

    /// The hidden activations at `layer` of each checkpoint in `ids`, computed in parallel; failures
    /// become warnings naming the checkpoint.
    fn features_of_all<'i>(
        &self,
        ids: Vec<&'i CheckpointId>,
        layer: usize,
        warnings: &mut Vec<String>,
    ) -> HashMap<&'i CheckpointId, Features> {
        let computed: Vec<(&CheckpointId, Result<Features, CoreError>)> = ids
            .into_par_iter()
            .map(|id| {
                let features = load_one(self.zoo, self.schema, id)
                    .and_then(|params| self.evaluator.prepare(&params))
                    .and_then(|point| self.evaluator.hidden_activations(&point, layer));
                (id, features)
            })
            .collect();
        let mut out = HashMap::new();
        for (id, features) in computed {
            match features {
                Ok(f) => {
                    out.insert(id, f);
                }
                Err(e) => warnings.push(format!("{}@{}: {e}", id.run, id.step)),
            }
        }
        out
    }
}

/// The similarity and probe rows, from the store, in plan and checkpoint order.
fn assemble_rows(units: &Units, pairs: &[Pair], probed: &[CheckpointId], layer: usize, result: &mut Representations) {
    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    for p in pairs {
        if let Some([linear, debiased, knn]) = units.similarities.get(&units.pair_key(p)) {
            result.similarity.push(SimilarityRow {
                step: p.a.step,
                run_a: p.a.run.clone(),
                run_b: p.b.run.clone(),
                step_b: p.b.step,
                pair: p.kind,
                layer: layer as u64,
                linear_cka: nan(linear),
                debiased_cka: nan(debiased),
                mutual_knn: nan(knn),
            });
        }
    }
    for id in probed {
        if let Some([train, heldout]) = units.probes.get(&units.probe_key(id)) {
            result.probes.push(ProbeRow {
                run: id.run.clone(),
                step: id.step,
                layer: layer as u64,
                train_accuracy: nan(train),
                heldout_accuracy: nan(heldout),
            });
        }
    }
}
