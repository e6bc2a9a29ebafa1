//! Where the basin tree puts things: one lane per basin, and each run's thread through the nodes.
//!
//! Pure geometry in abstract units (lane index, position within a node), shared by the paper figure
//! ([`crate::output::figures::basin_tree()`]) and the desktop app, which map it to pixels their own way.

use std::collections::{BTreeMap, BTreeSet};

use super::{BasinHistory, BasinId, BasinTree, TrackedStep};

/// Where a run's thread passes at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPoint {
    /// Index of the step in the history.
    pub k: usize,
    /// Training step.
    pub step: u64,
    /// Lane of the run's basin.
    pub lane: usize,
    /// Position of the run among the node's members (0 = top).
    pub pos: usize,
    /// Number of members of the node.
    pub m: usize,
}

/// One run's thread: wherever the run is present, in step order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadLayout {
    /// The run.
    pub run: String,
    /// Its points, in step order (a gap in `k` means the run is missing in between).
    pub points: Vec<ThreadPoint>,
}

/// A (step, basin) node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// Training step.
    pub step: u64,
    /// Lane (index into [`TreeLayout::lanes`]).
    pub lane: usize,
    /// The basin.
    pub basin: BasinId,
    /// Its members, top to bottom as the threads pass through it.
    pub members: Vec<String>,
}

/// Where a diverged checkpoint is drawn: at its step, on the lane of the run's last point before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivergedMark {
    /// Index of the run's thread in [`TreeLayout::threads`].
    pub thread: usize,
    /// The run's last point before the step it diverged at.
    pub last: ThreadPoint,
    /// The step it diverged at.
    pub step: u64,
}

/// The basin tree laid out in lanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    /// Steps of the history, in order.
    pub steps: Vec<u64>,
    /// The basin of each lane, top to bottom: [`BasinTree::lane_order`] (a basin that split off sits
    /// next to its parent), then any basin of the history the tree lacks.
    pub lanes: Vec<BasinId>,
    /// Every (step, basin) node.
    pub nodes: Vec<NodeLayout>,
    /// One thread per run: `runs` (deduplicated, in order), then any other run of the history, sorted.
    pub threads: Vec<ThreadLayout>,
}

impl TreeLayout {
    /// Marks for the diverged `(step, run)` checkpoints of runs that have a point before their step
    /// (a run that diverged at its first step has no thread to end).
    pub fn diverged_marks<'a>(&self, diverged: impl IntoIterator<Item = &'a (u64, String)>) -> Vec<DivergedMark> {
        diverged
            .into_iter()
            .filter_map(|(step, run)| {
                let thread = self.threads.iter().position(|t| &t.run == run)?;
                let last = *self.threads[thread].points.iter().rev().find(|p| p.step < *step)?;
                Some(DivergedMark {
                    thread,
                    last,
                    step: *step,
                })
            })
            .collect()
    }

    /// Lays out `history` (whose tree is `tree`); `runs` fixes the order of the threads (and so their
    /// colours). Within a node, runs coming from (then going to) upper lanes are placed higher, so
    /// threads cross as little as possible and runs bound for the same basin travel as one bundle;
    /// ties keep the order of `runs`.
    pub fn new(tree: &BasinTree, history: &BasinHistory, runs: &[String]) -> Self {
        let lanes = lanes(tree, history);
        let lane_of: BTreeMap<BasinId, usize> = lanes.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let names = run_names(history, runs);
        // lane_at[run][k]: the run's lane at history step k.
        let lane_at: Vec<Vec<Option<usize>>> = names
            .iter()
            .map(|name| {
                let lane = |s: &TrackedStep| {
                    s.basins
                        .iter()
                        .find(|b| b.members.contains(name))
                        .map(|b| lane_of[&b.id])
                };
                history.steps.iter().map(lane).collect()
            })
            .collect();
        let mut points: Vec<Vec<ThreadPoint>> = vec![Vec::new(); names.len()];
        let mut nodes = Vec::new();
        for (k, s) in history.steps.iter().enumerate() {
            let mut by_lane: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (r, lanes) in lane_at.iter().enumerate() {
                if let Some(l) = lanes[k] {
                    by_lane.entry(l).or_default().push(r);
                }
            }
            for (lane, mut members) in by_lane {
                // Key: the lane the run comes from, then the lanes it goes through next (its future
                // path).
                let key = |r: usize| {
                    let prev = k.checked_sub(1).and_then(|p| lane_at[r][p]).unwrap_or(lane);
                    let future: Vec<usize> = lane_at[r][k + 1..].iter().map(|l| l.unwrap_or(usize::MAX)).collect();
                    (prev, future, r)
                };
                members.sort_by_cached_key(|&r| key(r));
                let m = members.len();
                for (pos, &r) in members.iter().enumerate() {
                    points[r].push(ThreadPoint {
                        k,
                        step: s.step,
                        lane,
                        pos,
                        m,
                    });
                }
                nodes.push(NodeLayout {
                    step: s.step,
                    lane,
                    basin: lanes[lane],
                    members: members.iter().map(|&r| names[r].clone()).collect(),
                });
            }
        }
        let threads = names
            .into_iter()
            .zip(points)
            .map(|(run, points)| ThreadLayout { run, points })
            .collect();
        Self {
            steps: history.steps.iter().map(|s| s.step).collect(),
            lanes,
            nodes,
            threads,
        }
    }
}

/// Run names: `runs` (deduplicated, in order) then any other run of the history, sorted.
fn run_names(history: &BasinHistory, runs: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        if !names.contains(r) {
            names.push(r.clone());
        }
    }
    let in_history: BTreeSet<&String> = history
        .steps
        .iter()
        .flat_map(|s| s.basins.iter())
        .flat_map(|b| &b.members)
        .collect();
    for r in in_history {
        if !names.contains(r) {
            names.push(r.clone());
        }
    }
    names
}

/// Lanes: the tree's lane order, then any basin of the history the tree lacks.
fn lanes(tree: &BasinTree, history: &BasinHistory) -> Vec<BasinId> {
    let mut lanes = tree.lane_order();
    let known: BTreeSet<BasinId> = lanes.iter().copied().collect();
    let extra: BTreeSet<BasinId> = history
        .steps
        .iter()
        .flat_map(|s| s.basins.iter().map(|b| b.id))
        .filter(|id| !known.contains(id))
        .collect();
    lanes.extend(extra);
    lanes
}
