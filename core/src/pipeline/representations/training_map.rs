//! The training map view ([`crate::methods::training_map`]) over the runs of a zoo. Each checkpoint is the
//! metric vector [eval loss, eval error, distance from init, total weight norm]; checkpoints
//! missing one of them (or with a non-finite one) are left out of their run's sequence.

use std::collections::BTreeMap;

use crate::methods::training_map::{MapOptions, training_map};
use crate::output::tables::{EvalRow, MapStateRow, MapTransitionRow, TrajectoryRow, WeightNormRow};

/// Names of the metrics, in vector order (documented in the README).
pub const MAP_METRICS: [&str; 4] = ["loss", "error", "dist_from_init", "weight_norm"];

/// The per-checkpoint states and the state-transition counts, or a warning why there are none.
pub(crate) fn training_map_rows(
    evals: &[EvalRow],
    trajectories: &[TrajectoryRow],
    norms: &[WeightNormRow],
) -> Result<(Vec<MapStateRow>, Vec<MapTransitionRow>), String> {
    let mut total_sq: BTreeMap<(&str, u64), f64> = BTreeMap::new();
    for n in norms {
        *total_sq.entry((n.run.as_str(), n.step)).or_default() += n.norm * n.norm;
    }
    let dist: BTreeMap<(&str, u64), f64> = trajectories
        .iter()
        .map(|t| ((t.run.as_str(), t.step), t.dist_from_init))
        .collect();
    let mut runs: BTreeMap<&str, Vec<(u64, Vec<f64>)>> = BTreeMap::new();
    for e in evals {
        let id = (e.run.as_str(), e.step);
        let (Some(d), Some(sq)) = (dist.get(&id), total_sq.get(&id)) else {
            continue;
        };
        let vector = vec![e.loss, e.error, *d, sq.sqrt()];
        if vector.iter().all(|v| v.is_finite()) {
            runs.entry(e.run.as_str()).or_default().push((e.step, vector));
        }
    }
    for points in runs.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    let sequences: Vec<Vec<Vec<f64>>> = runs
        .values()
        .map(|points| points.iter().map(|p| p.1.clone()).collect())
        .collect();
    let map = training_map(&sequences, &MapOptions::default()).map_err(|e| e.to_string())?;
    let n_states = map.model.states() as u64;
    let states = runs
        .iter()
        .zip(&map.states)
        .flat_map(|((run, points), path)| {
            points.iter().zip(path).map(move |((step, _), state)| MapStateRow {
                run: run.to_string(),
                step: *step,
                state: *state as u64,
                n_states,
            })
        })
        .collect();
    let mut transitions: Vec<MapTransitionRow> = map
        .graph
        .edge_indices()
        .filter_map(|e| {
            let (a, b) = map.graph.edge_endpoints(e)?;
            Some(MapTransitionRow {
                state_from: map.graph[a] as u64,
                state_to: map.graph[b] as u64,
                count: map.graph[e] as u64,
            })
        })
        .collect();
    transitions.sort_by_key(|t| (t.state_from, t.state_to));
    Ok((states, transitions))
}
