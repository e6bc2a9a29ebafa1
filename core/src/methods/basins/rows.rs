//! Rows of the `clusters`, `timeline` and `tree_edges` tables (DESIGN.md, "Outputs").
//!
//! Plain structs; the caller writes them to Parquet. Rows are sorted, so outputs are reproducible.

use serde::Serialize;

use super::BasinId;
use super::track::{BasinEvent, BasinHistory};

/// `clusters`: the basin of each run at each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterRow {
    /// Training step.
    pub step: u64,
    /// Run name.
    pub run: String,
    /// Stable basin id.
    pub basin: BasinId,
}

/// `timeline`: one row per (step, basin), including a size-0 row for each death.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineRow {
    /// Training step.
    pub step: u64,
    /// Stable basin id.
    pub basin: BasinId,
    /// Number of member runs (0 for a death).
    pub size: u64,
    /// `birth`, `continue`, `split`, `merge` or `death`.
    pub event: String,
    /// The previous step's basin sharing the most members (its own id for `continue` and `death`);
    /// null for a birth.
    pub parent_basin: Option<BasinId>,
}

/// `tree_edges`: runs carried from a basin at one step to a basin at the next tracked step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeEdgeRow {
    /// Step of the source basin.
    pub step_from: u64,
    /// Source basin.
    pub basin_from: BasinId,
    /// Step of the target basin.
    pub step_to: u64,
    /// Target basin.
    pub basin_to: BasinId,
    /// Number of runs carried.
    pub n_runs: u64,
}

/// `clusters` rows, sorted by (step, run).
pub fn cluster_rows(history: &BasinHistory) -> Vec<ClusterRow> {
    let mut rows: Vec<ClusterRow> = history
        .steps
        .iter()
        .flat_map(|s| {
            s.basins.iter().flat_map(move |b| {
                b.members.iter().map(move |run| ClusterRow {
                    step: s.step,
                    run: run.clone(),
                    basin: b.id,
                })
            })
        })
        .collect();
    rows.sort_by(|a, b| (a.step, &a.run).cmp(&(b.step, &b.run)));
    rows
}

/// `timeline` rows, sorted by (step, basin); deaths are rows of size 0 at the step where the basin is
/// gone.
pub fn timeline_rows(history: &BasinHistory) -> Vec<TimelineRow> {
    let mut rows = Vec::new();
    for s in &history.steps {
        for b in &s.basins {
            rows.push(TimelineRow {
                step: s.step,
                basin: b.id,
                size: b.members.len() as u64,
                event: b.event.name().to_string(),
                parent_basin: b.parent,
            });
        }
        for &id in &s.deaths {
            rows.push(TimelineRow {
                step: s.step,
                basin: id,
                size: 0,
                event: BasinEvent::Death.name().to_string(),
                parent_basin: Some(id),
            });
        }
    }
    rows.sort_by_key(|r| (r.step, r.basin));
    rows
}

/// `tree_edges` rows, sorted by (step_from, basin_from, basin_to).
pub fn tree_edge_rows(history: &BasinHistory) -> Vec<TreeEdgeRow> {
    let mut rows = Vec::new();
    for w in history.steps.windows(2) {
        for b in &w[1].basins {
            for c in &b.inflow {
                rows.push(TreeEdgeRow {
                    step_from: w[0].step,
                    basin_from: c.from,
                    step_to: w[1].step,
                    basin_to: b.id,
                    n_runs: c.runs.len() as u64,
                });
            }
        }
    }
    rows.sort_by_key(|r| (r.step_from, r.basin_from, r.basin_to));
    rows
}
