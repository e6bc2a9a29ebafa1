//! The dynamics views: each run's weight-space trajectory and per-tensor norms, and its code
//! lengths (prequential from the training log, eval at the final step).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use lineage_loaders::checkpoint::load_checkpoint_matching;
use lineage_loaders::{Schema, Zoo};

use std::path::Path;

use super::{CACHE_VERSION, Representations, finite};
use crate::error::CoreError;
use crate::methods::code_length::run_prequential_code;
use crate::methods::trajectory::{FlatParams, run_trajectory};
use crate::output::tables::EvalRow;
use crate::output::tables::{CodeLengthRow, TrajectoryRow, WeightNormRow};
use crate::pipeline::keys::hash_parts;
use crate::pipeline::options::RepresentationOptions;
use crate::pipeline::store::JsonlStore;
use crate::pipeline::units::{KeyedCheckpoint, check_cancel};
use crate::progress::Progress;

/// A run's trajectory as cached: per checkpoint (dist, pc1, pc2, tensor norms), and the explained
/// variance of the two components. Non-finite numbers are stored as null.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedTrajectory {
    points: Vec<CachedPoint>,
    explained: [Option<f64>; 2],
}

/// The zoo's joint trajectory as cached: every checkpoint's coordinates on the components of all
/// runs' checkpoints together, and their explained variance.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedJoint {
    pcs: Vec<[Option<f64>; 2]>,
    explained: [Option<f64>; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedPoint {
    dist_from_init: Option<f64>,
    pcs: [Option<f64>; 2],
    norms: Vec<(String, Option<f64>)>,
}

/// Computes (or takes from the cache) every run's trajectory and weight norms. A run's unit is
/// keyed by the content keys of all its readable checkpoints, in step order.
pub(crate) fn trajectories(
    zoo: &Zoo,
    schema: &Schema,
    keyed: &[KeyedCheckpoint],
    options: &RepresentationOptions,
    cache_dir: &Path,
    progress: &dyn Progress,
    result: &mut Representations,
) -> Result<(), CoreError> {
    let store = JsonlStore::<CachedTrajectory>::open(&cache_dir.join("views_trajectories.jsonl"))?;
    let runs: Vec<(&str, Vec<&KeyedCheckpoint>)> = zoo
        .runs
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                keyed.iter().filter(|k| k.id.run == r.name).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, members)| !members.is_empty())
        .collect();
    let key_of = |members: &[&KeyedCheckpoint]| {
        let mut parts = vec![CACHE_VERSION.to_string(), "trajectory".into()];
        parts.extend(members.iter().map(|k| format!("{}:{}", k.id.step, k.key)));
        hash_parts(&parts)
    };
    let pending: Vec<&(&str, Vec<&KeyedCheckpoint>)> =
        runs.iter().filter(|(_, m)| !store.contains(&key_of(m))).collect();
    result.counts.computed += pending.len();
    result.counts.cached += runs.len() - pending.len();
    progress.start("trajectories", pending.len() as u64);
    for (run, members) in pending {
        check_cancel(progress)?;
        let mut load = |i: usize| -> Result<FlatParams, CoreError> {
            check_cancel(progress)?;
            let params =
                load_checkpoint_matching(members[i].checkpoint, schema).map_err(|e| CoreError::Load(e.to_string()))?;
            FlatParams::from_params(&params)
        };
        match run_trajectory(members.len(), options.trajectory_block, &mut load) {
            Ok(t) => {
                let points = (0..members.len())
                    .map(|i| CachedPoint {
                        dist_from_init: finite(t.dist_from_init[i]),
                        pcs: [finite(t.pca.coords[i][0]), finite(t.pca.coords[i][1])],
                        norms: t.tensor_norms[i].iter().map(|(n, v)| (n.clone(), finite(*v))).collect(),
                    })
                    .collect();
                let explained = [finite(t.pca.explained[0]), finite(t.pca.explained[1])];
                store.insert(&key_of(members), &CachedTrajectory { points, explained })?;
            }
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            Err(e) => result.warnings.push(format!("{run}: trajectory: {e}")),
        }
        progress.advance(1);
    }
    progress.finish();

    let all: Vec<&KeyedCheckpoint> = runs.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let joint = joint_trajectory(&all, schema, options, cache_dir, progress, result)?;
    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let mut index = 0;
    for (run, members) in &runs {
        let Some(cached) = store.get(&key_of(members)) else {
            index += members.len();
            continue;
        };
        for (k, point) in members.iter().zip(&cached.points) {
            let joint_pcs = joint.as_ref().map_or([None; 2], |j| j.pcs[index]);
            let joint_explained = joint.as_ref().map_or([None; 2], |j| j.explained);
            index += 1;
            result.trajectories.push(TrajectoryRow {
                run: run.to_string(),
                step: k.id.step,
                dist_from_init: nan(point.dist_from_init),
                pc1: nan(point.pcs[0]),
                pc2: nan(point.pcs[1]),
                pc1_explained: nan(cached.explained[0]),
                pc2_explained: nan(cached.explained[1]),
                joint_pc1: nan(joint_pcs[0]),
                joint_pc2: nan(joint_pcs[1]),
                joint_pc1_explained: nan(joint_explained[0]),
                joint_pc2_explained: nan(joint_explained[1]),
            });
            for (tensor, norm) in &point.norms {
                result.weight_norms.push(WeightNormRow {
                    run: run.to_string(),
                    step: k.id.step,
                    tensor: tensor.clone(),
                    norm: nan(*norm),
                });
            }
        }
    }
    Ok(())
}

/// Computes (or takes from the cache) the joint projection of every checkpoint of `all` (runs in
/// zoo order, steps ascending) on the principal components of all of them together, streamed
/// through one Gram matrix as a run's own trajectory is; `None` (with a warning) above
/// `options.joint_trajectory_max` checkpoints, as its cost grows with their square.
fn joint_trajectory(
    all: &[&KeyedCheckpoint],
    schema: &Schema,
    options: &RepresentationOptions,
    cache_dir: &Path,
    progress: &dyn Progress,
    result: &mut Representations,
) -> Result<Option<CachedJoint>, CoreError> {
    if all.len() > options.joint_trajectory_max {
        result.warnings.push(format!(
            "joint trajectory skipped: {} checkpoints, more than joint_trajectory_max = {}",
            all.len(),
            options.joint_trajectory_max
        ));
        return Ok(None);
    }
    let store = JsonlStore::<CachedJoint>::open(&cache_dir.join("views_joint_trajectory.jsonl"))?;
    let mut parts = vec![CACHE_VERSION.to_string(), "joint trajectory".into()];
    parts.extend(all.iter().map(|k| format!("{}:{}:{}", k.id.run, k.id.step, k.key)));
    let key = hash_parts(&parts);
    if let Some(cached) = store.get(&key) {
        result.counts.cached += 1;
        return Ok(Some(cached));
    }
    result.counts.computed += 1;
    progress.start("joint trajectory", 1);
    let mut load = |i: usize| -> Result<FlatParams, CoreError> {
        check_cancel(progress)?;
        let params = load_checkpoint_matching(all[i].checkpoint, schema).map_err(|e| CoreError::Load(e.to_string()))?;
        FlatParams::from_params(&params)
    };
    let joint = match run_trajectory(all.len(), options.trajectory_block, &mut load) {
        Ok(t) => {
            let pcs = t.pca.coords.iter().map(|c| [finite(c[0]), finite(c[1])]).collect();
            let explained = [finite(t.pca.explained[0]), finite(t.pca.explained[1])];
            let joint = CachedJoint { pcs, explained };
            store.insert(&key, &joint)?;
            Some(joint)
        }
        Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
        Err(e) => {
            result.warnings.push(format!("joint trajectory: {e}"));
            None
        }
    };
    progress.advance(1);
    progress.finish();
    Ok(joint)
}

/// One row per run: prequential code length from its training log (null, with a warning, when
/// the log or the batch size is missing) and the eval code length at its last evaluated step.
pub(crate) fn code_lengths(zoo: &Zoo, evals: &[EvalRow], warnings: &mut Vec<String>) -> Vec<CodeLengthRow> {
    let mut last_eval: BTreeMap<&str, &EvalRow> = BTreeMap::new();
    for row in evals {
        let entry = last_eval.entry(row.run.as_str()).or_insert(row);
        if row.step > entry.step {
            *entry = row;
        }
    }
    zoo.runs
        .iter()
        .map(|run| {
            let code = run_prequential_code(run)
                .map_err(|w| warnings.push(format!("code length: {w}")))
                .ok();
            let eval = last_eval.get(run.name.as_str());
            CodeLengthRow {
                run: run.name.clone(),
                prequential_bits: code.map(|c| c.bits),
                n_examples: code.map(|c| c.n_examples),
                prequential_bits_per_example: code.map(|c| c.bits / c.n_examples as f64),
                batch_size: code.map(|c| c.batch_size),
                final_step: eval.map(|e| e.step),
                final_eval_bits_per_example: eval.map(|e| e.bits_per_example),
            }
        })
        .collect()
}
