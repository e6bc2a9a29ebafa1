//! Tracking basins across steps: Jaccard matching (Hungarian) for stable ids, and events.
//!
//! Rules (documented for the `timeline` table):
//! - Step 1 of the history: every cluster is a `birth`; ids `0, 1, ...` in canonical label order.
//! - Between consecutive steps t -> t' (the next step that has a matrix), clusters are matched by a
//!   maximum-total-Jaccard assignment (Kuhn–Munkres on Jaccard scaled by 1e6; ties go to the pairs
//!   with the smallest labels / oldest ids). A matched pair with overlap > 0 passes the id on; every
//!   other cluster at t' gets a fresh id (ids are never reused), in canonical label order.
//! - The event of a basin at t' is decided by its predecessors (basins at t sharing members with it),
//!   in this precedence: `birth` (no predecessor), `merge` (>= 2 predecessors), `split` (one
//!   predecessor that also feeds another basin at t'), `continue` (one predecessor feeding only it).
//! - `parent` = the predecessor sharing the most members (ties: the one whose id was inherited, then
//!   the smallest id); for `continue` it is the basin's own id.
//! - `death`: a basin at t none of whose members is in any basin at t' (all its runs are gone) is
//!   recorded **at step t'** (in [`TrackedStep::deaths`]; a `timeline` row with size 0 and
//!   `parent_basin` = its own id). A basin whose runs all moved into other basins is not a death: its
//!   runs show up as a `merge` (or `split`) of the receiving basins.
//! - Ragged zoos: runs that appear later (forks) or come back after a gap are new members at the step
//!   they appear; a basin whose runs are all missing at a step dies there, and a later cluster of
//!   the same runs is a new basin (matching looks one step back only).

use std::collections::BTreeSet;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use serde::Serialize;

use super::BasinId;
use super::cluster::{ClusterMethod, StepClusters, cluster_steps};
use super::error::BasinError;
use super::matrix::BarrierMatrix;
use crate::names::Named;

/// Scale of Jaccard indices turned into integer assignment weights.
const JACCARD_SCALE: f64 = 1e6;

/// What happened to a basin at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BasinEvent {
    /// No predecessor shares members (first step, or only new runs).
    Birth,
    /// Exactly one predecessor, which feeds only this basin.
    Continue,
    /// Exactly one predecessor, which also feeds another basin at this step.
    Split,
    /// Two or more predecessors.
    Merge,
    /// The basin existed at the previous step and none of its runs is in any basin now.
    Death,
}

impl Named for BasinEvent {
    const ALL: &'static [Self] = &[Self::Birth, Self::Continue, Self::Split, Self::Merge, Self::Death];

    /// Lowercase name used in tables: `birth`, `continue`, `split`, `merge`, `death`.
    fn name(self) -> &'static str {
        match self {
            Self::Birth => "birth",
            Self::Continue => "continue",
            Self::Split => "split",
            Self::Merge => "merge",
            Self::Death => "death",
        }
    }
}

/// Runs carried into a basin from one basin of the previous step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carry {
    /// The basin at the previous step.
    pub from: BasinId,
    /// The runs it carried (sorted).
    pub runs: Vec<String>,
}

/// One live basin at one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasinState {
    /// Stable basin id.
    pub id: BasinId,
    /// Member runs, sorted.
    pub members: Vec<String>,
    /// What happened to it at this step.
    pub event: BasinEvent,
    /// The previous step's basin sharing the most members; `None` for a birth.
    pub parent: Option<BasinId>,
    /// Runs received from each basin of the previous step, sorted by source id.
    pub inflow: Vec<Carry>,
}

/// The basins of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackedStep {
    /// Training step.
    pub step: u64,
    /// Clustering method with the parameters used at this step (report the eps).
    pub method: ClusterMethod,
    /// Live basins, sorted by id.
    pub basins: Vec<BasinState>,
    /// Basins of the previous step that died here, sorted.
    pub deaths: Vec<BasinId>,
}

/// The history of basins over all steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasinHistory {
    /// Tracked steps in increasing step order.
    pub steps: Vec<TrackedStep>,
    /// Number of basin ids handed out (ids are `0..n_ids`).
    pub n_ids: BasinId,
}

impl BasinHistory {
    /// The tracked step `step`, if it has a matrix.
    pub fn step(&self, step: u64) -> Option<&TrackedStep> {
        self.steps
            .binary_search_by_key(&step, |s| s.step)
            .ok()
            .map(|i| &self.steps[i])
    }

    /// The basin of `run` at `step`, if the run is present there.
    pub fn basin_of(&self, step: u64, run: &str) -> Option<BasinId> {
        let s = self.step(step)?;
        s.basins
            .iter()
            .find(|b| b.members.iter().any(|m| m == run))
            .map(|b| b.id)
    }

    /// A run's thread through the history: `(step, basin)` at every step where it is present.
    pub fn thread(&self, run: &str) -> Vec<(u64, BasinId)> {
        self.steps
            .iter()
            .filter_map(|s| {
                let b = s.basins.iter().find(|b| b.members.iter().any(|m| m == run))?;
                Some((s.step, b.id))
            })
            .collect()
    }
}

/// For each cluster at the next step, the index of the previous basin it is matched to.
fn hungarian_match(overlap: &[Vec<usize>], prev_sizes: &[usize], next_sizes: &[usize]) -> Vec<Option<usize>> {
    let (m, n) = (prev_sizes.len(), next_sizes.len());
    let mut matched = vec![None; n];
    if m == 0 || n == 0 {
        return matched;
    }
    // Tie-break bonus (m - i) + (n - j) is below one Jaccard unit of any assignment's total.
    let unit = (m.min(n) * (m + n) + 1) as i64;
    let weight = |i: usize, j: usize| -> i64 {
        let o = overlap[i][j];
        if o == 0 {
            return 0;
        }
        let jaccard = o as f64 / (prev_sizes[i] + next_sizes[j] - o) as f64;
        (jaccard * JACCARD_SCALE).round() as i64 * unit + (m - i + n - j) as i64
    };
    if m <= n {
        let (_, assign) = kuhn_munkres(&Matrix::from_fn(m, n, |(i, j)| weight(i, j)));
        for (i, j) in assign.into_iter().enumerate() {
            if overlap[i][j] > 0 {
                matched[j] = Some(i);
            }
        }
    } else {
        let (_, assign) = kuhn_munkres(&Matrix::from_fn(n, m, |(j, i)| weight(i, j)));
        for (j, i) in assign.into_iter().enumerate() {
            if overlap[i][j] > 0 {
                matched[j] = Some(i);
            }
        }
    }
    matched
}

/// Tracks clustered steps (strictly increasing steps) into a basin history with stable ids.
pub fn track(steps: &[StepClusters]) -> Result<BasinHistory, BasinError> {
    if let Some(w) = steps.windows(2).find(|w| w[0].step >= w[1].step) {
        return Err(BasinError::UnorderedSteps {
            previous: w[0].step,
            next: w[1].step,
        });
    }
    let mut next_id: BasinId = 0;
    let mut out: Vec<TrackedStep> = Vec::with_capacity(steps.len());
    for clusters in steps {
        let members = clusters.members();
        let sets: Vec<BTreeSet<&str>> = members
            .iter()
            .map(|ms| ms.iter().map(String::as_str).collect())
            .collect();
        let prev: &[BasinState] = out.last().map_or(&[], |s| &s.basins);
        let prev_sets: Vec<BTreeSet<&str>> = prev
            .iter()
            .map(|b| b.members.iter().map(String::as_str).collect())
            .collect();
        let overlap: Vec<Vec<usize>> = prev_sets
            .iter()
            .map(|p| sets.iter().map(|c| p.intersection(c).count()).collect())
            .collect();
        let matched = hungarian_match(
            &overlap,
            &prev_sets.iter().map(BTreeSet::len).collect::<Vec<_>>(),
            &sets.iter().map(BTreeSet::len).collect::<Vec<_>>(),
        );
        let successors: Vec<usize> = overlap
            .iter()
            .map(|row| row.iter().filter(|&&o| o > 0).count())
            .collect();
        let mut basins = Vec::with_capacity(sets.len());
        for (j, set) in sets.iter().enumerate() {
            let id = match matched[j] {
                Some(i) => prev[i].id,
                None => {
                    next_id += 1;
                    next_id - 1
                }
            };
            let preds: Vec<usize> = (0..prev.len()).filter(|&i| overlap[i][j] > 0).collect();
            let event = match preds.as_slice() {
                [] => BasinEvent::Birth,
                [i] if successors[*i] >= 2 => BasinEvent::Split,
                [_] => BasinEvent::Continue,
                _ => BasinEvent::Merge,
            };
            let parent = preds
                .iter()
                .max_by_key(|&&i| (overlap[i][j], matched[j] == Some(i), std::cmp::Reverse(prev[i].id)))
                .map(|&i| prev[i].id);
            let mut inflow: Vec<Carry> = preds
                .iter()
                .map(|&i| Carry {
                    from: prev[i].id,
                    runs: prev_sets[i].intersection(set).map(|r| r.to_string()).collect(),
                })
                .collect();
            inflow.sort_by_key(|c| c.from);
            basins.push(BasinState {
                id,
                members: members[j].clone(),
                event,
                parent,
                inflow,
            });
        }
        basins.sort_by_key(|b| b.id);
        let mut deaths: Vec<BasinId> = (0..prev.len())
            .filter(|&i| successors[i] == 0)
            .map(|i| prev[i].id)
            .collect();
        deaths.sort_unstable();
        out.push(TrackedStep {
            step: clusters.step,
            method: clusters.method,
            basins,
            deaths,
        });
    }
    Ok(BasinHistory {
        steps: out,
        n_ids: next_id,
    })
}

/// Clusters every matrix (see [`cluster_steps`]) and tracks the result: the whole pipeline from
/// barrier matrices to the basin history. Matrices must be in strictly increasing step order (as
/// returned by [`super::matrix::matrices_from_rows`]).
pub fn basin_history(
    matrices: &[BarrierMatrix],
    method: &ClusterMethod,
    mean_endpoint_losses: &std::collections::BTreeMap<u64, f64>,
) -> Result<BasinHistory, BasinError> {
    track(&cluster_steps(matrices, method, mean_endpoint_losses)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, runs: &[&str], labels: &[usize]) -> StepClusters {
        StepClusters::new(
            step,
            runs.iter().map(|s| s.to_string()).collect(),
            labels,
            ClusterMethod::Threshold { eps: Some(0.1) },
        )
    }

    #[test]
    fn jaccard_assignment_prefers_larger_overlap() {
        // prev: {a,b,c,d} (id 0), {e} (id 1); next: {a}, {b,c,d,e}.
        let h = track(&[
            step(1, &["a", "b", "c", "d", "e"], &[0, 0, 0, 0, 1]),
            step(2, &["a", "b", "c", "d", "e"], &[0, 1, 1, 1, 1]),
        ])
        .unwrap();
        let s = &h.steps[1];
        // {b,c,d,e} vs id 0: J = 3/5; {a} vs id 0: J = 1/4. {b,c,d,e} keeps id 0, {a} is new id 2.
        assert_eq!(s.basins[0].members, ["b", "c", "d", "e"]);
        assert_eq!(s.basins[0].id, 0);
        assert_eq!(s.basins[0].event, BasinEvent::Merge);
        assert_eq!(s.basins[1].id, 2);
        assert_eq!(s.basins[1].members, ["a"]);
        assert_eq!(s.basins[1].event, BasinEvent::Split);
        assert_eq!(s.basins[1].parent, Some(0));
        assert_eq!(h.n_ids, 3);
    }

    #[test]
    fn unordered_steps_are_rejected() {
        let err = track(&[step(2, &["a"], &[0]), step(1, &["a"], &[0])]).unwrap_err();
        assert_eq!(err, BasinError::UnorderedSteps { previous: 2, next: 1 });
    }

    #[test]
    fn death_is_recorded_at_the_next_step() {
        let h = track(&[step(1, &["a", "b"], &[0, 1]), step(2, &["a"], &[0])]).unwrap();
        assert_eq!(h.steps[1].deaths, [1]);
        assert_eq!(h.steps[1].basins.len(), 1);
        assert_eq!(h.steps[1].basins[0].event, BasinEvent::Continue);
    }

    #[test]
    fn event_names() {
        let names: Vec<&str> = [
            BasinEvent::Birth,
            BasinEvent::Continue,
            BasinEvent::Split,
            BasinEvent::Merge,
            BasinEvent::Death,
        ]
        .iter()
        .map(|e| e.name())
        .collect();
        assert_eq!(names, ["birth", "continue", "split", "merge", "death"]);
    }
}
