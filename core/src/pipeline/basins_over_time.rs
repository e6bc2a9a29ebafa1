//! From the sweep's barrier rows to basins over time: per-step barrier matrices, their leaf order and
//! common colour scale, clustering, tracking, the basin tree and its layout, commitment steps, and the
//! `clusters` / `timeline` / `tree_edges` rows. Figures and the desktop app read these; they never
//! recompute them.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::CoreError;
use crate::methods::basins::BasinId;
use crate::methods::basins::{
    BarrierMatrix, BasinEvent, BasinHistory, BasinTree, CoMembership, TrackedStep, TreeLayout, average_linkage,
    basin_history, basin_tree, co_membership, commitment_step, default_eps,
};
use crate::methods::bootstrap::is_uncertain;
use crate::methods::interpolation::BarrierKind;
use crate::output::tables::{ClusterRow, CoMembershipRow, TimelineRow, TreeEdgeRow};
use crate::pipeline::clusterable::{Diverged, clusterable_matrices, diverged, mean_loss_by_step};
use crate::pipeline::options::BasinOptions;
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::Sweep;

/// The history of basins of one zoo, with everything drawn from it.
#[derive(Debug, Clone)]
pub struct BasinsOverTime {
    /// Seed-pair barrier matrix at each step, in step order.
    pub matrices: Vec<BarrierMatrix>,
    /// Per step (as [`BasinsOverTime::matrices`]): the average-linkage leaf order of the matrix's
    /// runs, the order heatmaps draw them in.
    pub leaf_orders: Vec<Vec<usize>>,
    /// The largest barrier of all steps (None when every barrier is 0): the top of one colour scale
    /// shared by every heatmap, so steps compare by colour.
    pub colour_max: Option<f64>,
    /// Clusters tracked over time.
    pub history: BasinHistory,
    /// The basin tree.
    pub tree: BasinTree,
    /// The basin tree laid out for drawing (runs coloured in zoo order).
    pub layout: TreeLayout,
    /// `clusters` table rows.
    pub clusters: Vec<ClusterRow>,
    /// `timeline` table rows.
    pub timeline: Vec<TimelineRow>,
    /// `tree_edges` table rows.
    pub tree_edges: Vec<TreeEdgeRow>,
    /// The eps used at each step (`None` for spectral clustering).
    pub eps_by_step: BTreeMap<u64, Option<f64>>,
    /// Per run: the first step after which it stays connected to its own final checkpoint.
    pub commitment: BTreeMap<String, Option<u64>>,
    /// (step, run) of every diverged checkpoint: in no basin at that step.
    pub diverged: Diverged,
    /// Co-membership over the bootstrap resamples, per step with resampled barriers for every pair.
    pub co_membership: Vec<CoMembership>,
    /// (step, basin) of every basin whose membership is uncertain under resampling (one of its runs
    /// has a co-membership frequency in [`crate::methods::bootstrap::UNCERTAIN`] with some run).
    pub uncertain: BTreeSet<(u64, BasinId)>,
    /// What was left out of the basins or capped, and why.
    pub warnings: Vec<String>,
}

impl BasinsOverTime {
    /// The co-membership frequencies of `step`, when the bootstrap gave them.
    pub fn co_membership_at(&self, step: u64) -> Option<&CoMembership> {
        self.co_membership.iter().find(|c| c.step == step)
    }

    /// The matrix of `step` and its leaf order.
    pub fn at(&self, step: u64) -> Option<(&BarrierMatrix, &[usize])> {
        let i = self.matrices.iter().position(|m| m.step == step)?;
        Some((&self.matrices[i], &self.leaf_orders[i]))
    }

    /// Steps that have a seed-pair barrier matrix, in order.
    pub fn steps(&self) -> Vec<u64> {
        self.matrices.iter().map(|m| m.step).collect()
    }
}

/// Clusters the seeds at every step of `sweep` and tracks the basins over time; `runs` (zoo order)
/// fixes the layout's colours. Basins and commitment use the raw (unaligned) barriers: aligned rows,
/// when present, are reported alongside. Diverged runs are left out of the steps where they diverged
/// (see [`crate::pipeline::clusterable`]).
pub fn basins_over_time(sweep: &Sweep, options: &BasinOptions, runs: &[String]) -> Result<BasinsOverTime, CoreError> {
    let diverged = diverged(sweep);
    let mean_loss = mean_loss_by_step(sweep);
    let (matrices, mut warnings) = clusterable_matrices(sweep, options.barrier, &diverged, &mean_loss)?;
    let history = basin_history(&matrices, &options.method, &mean_loss)?;
    let tree = basin_tree(&history);
    let co_membership = resampled_co_membership(sweep, options.barrier, &matrices, &history, &mut warnings)?;
    let uncertain = uncertain_basins(&co_membership, &history);
    let top = matrices
        .iter()
        .flat_map(|m| m.values.iter().copied())
        .fold(0.0, f64::max);
    Ok(BasinsOverTime {
        leaf_orders: matrices.iter().map(|m| average_linkage(m).leaf_order()).collect(),
        colour_max: (top > 0.0).then_some(top),
        layout: TreeLayout::new(&tree, &history, runs),
        clusters: cluster_rows(&history, &diverged),
        timeline: timeline_rows(&history, &diverged),
        tree_edges: tree_edge_rows(&history, &uncertain),
        eps_by_step: history.steps.iter().map(|s| (s.step, s.method.eps())).collect(),
        commitment: commitment_steps(sweep, options, &mean_loss),
        matrices,
        history,
        tree,
        diverged,
        co_membership,
        uncertain,
        warnings,
    })
}

/// Co-membership at every step whose seed pairs all have resampled barriers of `kind` (none without
/// the bootstrap); a step where only some pairs have them is skipped with a warning.
fn resampled_co_membership(
    sweep: &Sweep,
    kind: BarrierKind,
    matrices: &[BarrierMatrix],
    history: &BasinHistory,
    warnings: &mut Vec<String>,
) -> Result<Vec<CoMembership>, CoreError> {
    if sweep.resampled.is_empty() {
        return Ok(Vec::new());
    }
    let resampled = |step: u64, a: &str, b: &str| {
        let key = |x: &str, y: &str| (step, x.to_string(), y.to_string());
        sweep
            .resampled
            .get(&key(a, b))
            .or_else(|| sweep.resampled.get(&key(b, a)))
            .and_then(|p| p.loss_barriers(kind))
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for m in matrices.iter().filter(|m| m.len() >= 2) {
        let Some(tracked) = history.step(m.step) else { continue };
        let n = m.len();
        let mut pairs = BTreeMap::new();
        for i in 0..n {
            for j in i + 1..n {
                if let Some(v) = resampled(m.step, &m.runs[i], &m.runs[j]) {
                    pairs.insert((i, j), v);
                }
            }
        }
        // A pair not computed (pruned) has no resamples: it stays a gap in every resample.
        let resamples = pairs.values().next().map_or(0, Vec::len);
        for i in 0..n {
            for j in i + 1..n {
                if m.get(i, j).is_nan() {
                    pairs.entry((i, j)).or_insert_with(|| vec![f32::NAN; resamples]);
                }
            }
        }
        if pairs.len() < n * (n - 1) / 2 {
            skipped.push(m.step.to_string());
            continue;
        }
        out.push(co_membership(m, &tracked.method, |i, j| pairs[&(i, j)].clone())?);
    }
    if !skipped.is_empty() {
        warnings.push(format!(
            "co-membership skipped at step {}: some seed pairs there have no bootstrap resamples",
            skipped.join(", ")
        ));
    }
    Ok(out)
}

/// The basins with a run whose co-membership with some run of its step is uncertain.
fn uncertain_basins(co_membership: &[CoMembership], history: &BasinHistory) -> BTreeSet<(u64, BasinId)> {
    let mut uncertain = BTreeSet::new();
    for c in co_membership {
        let n = c.runs.len();
        for i in 0..n {
            if (0..n).any(|j| j != i && is_uncertain(c.get(i, j)))
                && let Some(basin) = history.basin_of(c.step, &c.runs[i])
            {
                uncertain.insert((c.step, basin));
            }
        }
    }
    uncertain
}

/// `co_membership` rows, sorted by (step, run A, run B): one per pair of runs clustered at a step.
pub fn co_membership_rows(basins: &BasinsOverTime) -> Vec<CoMembershipRow> {
    let mut rows = Vec::new();
    for c in &basins.co_membership {
        for i in 0..c.runs.len() {
            for j in i + 1..c.runs.len() {
                let (a, b) = (&c.runs[i], &c.runs[j]);
                let basin = |run: &str| basins.history.basin_of(c.step, run);
                rows.push(CoMembershipRow {
                    step: c.step,
                    run_a: a.clone(),
                    run_b: b.clone(),
                    co_membership: c.get(i, j),
                    same_basin: basin(a).is_some() && basin(a) == basin(b),
                    resamples: c.resamples as u64,
                });
            }
        }
    }
    rows
}

/// A run's final step and its (step, barrier to the final checkpoint) rows.
type FinalRows = (u64, Vec<(u64, f64)>);

/// Commitment step of every run with checkpoint-vs-final pairs. The threshold is the method's eps
/// (or the default eps of the run's final step when the method has none or chooses per step).
fn commitment_steps(
    sweep: &Sweep,
    options: &BasinOptions,
    mean_loss: &BTreeMap<u64, f64>,
) -> BTreeMap<String, Option<u64>> {
    let mut by_run: BTreeMap<&str, FinalRows> = BTreeMap::new();
    for b in sweep
        .barriers
        .iter()
        .filter(|b| b.pair == PairKind::ToFinal && b.kind == options.barrier && !b.aligned)
    {
        let entry = by_run.entry(&b.run_a).or_insert((b.step_b, Vec::new()));
        entry.1.push((b.step, b.loss_barrier));
    }
    by_run
        .into_iter()
        .map(|(run, (final_step, rows))| {
            let final_loss = sweep
                .evals
                .iter()
                .find(|e| e.run == run && e.step == final_step)
                .map(|e| e.loss);
            let eps = options.method.eps().unwrap_or_else(|| {
                default_eps(
                    final_loss
                        .or_else(|| mean_loss.get(&final_step).copied())
                        .unwrap_or(f64::NAN),
                )
            });
            (run.to_string(), commitment_step(&rows, final_step, eps))
        })
        .collect()
}

/// `clusters` rows, sorted by (step, run): one per basin member, and one without a basin for each
/// diverged run.
pub fn cluster_rows(history: &BasinHistory, diverged: &Diverged) -> Vec<ClusterRow> {
    let members = history.steps.iter().flat_map(|s| {
        s.basins.iter().flat_map(move |b| {
            b.members.iter().map(move |run| ClusterRow {
                step: s.step,
                run: run.clone(),
                basin: Some(b.id),
                diverged: false,
            })
        })
    });
    let gone = diverged.iter().map(|(step, run)| ClusterRow {
        step: *step,
        run: run.clone(),
        basin: None,
        diverged: true,
    });
    let mut rows: Vec<ClusterRow> = members.chain(gone).collect();
    rows.sort_by(|a, b| (a.step, &a.run).cmp(&(b.step, &b.run)));
    rows
}

/// `timeline` rows, sorted by (step, basin); deaths are rows of size 0 at the step where the basin is
/// gone. `diverged` counts the basin's runs of the previous step that have diverged at this step.
pub fn timeline_rows(history: &BasinHistory, diverged: &Diverged) -> Vec<TimelineRow> {
    let mut rows = Vec::new();
    let mut previous: Option<&TrackedStep> = None;
    for s in &history.steps {
        let lost = |id| {
            previous
                .and_then(|p| p.basins.iter().find(|b| b.id == id))
                .map_or(0, |b| {
                    b.members
                        .iter()
                        .filter(|r| diverged.contains(&(s.step, r.to_string())))
                        .count() as u64
                })
        };
        for b in &s.basins {
            rows.push(TimelineRow {
                step: s.step,
                basin: b.id,
                size: b.members.len() as u64,
                event: b.event,
                parent_basin: b.parent,
                diverged: lost(b.id),
            });
        }
        for &id in &s.deaths {
            rows.push(TimelineRow {
                step: s.step,
                basin: id,
                size: 0,
                event: BasinEvent::Death,
                parent_basin: Some(id),
                diverged: lost(id),
            });
        }
        previous = Some(s);
    }
    rows.sort_by_key(|r| (r.step, r.basin));
    rows
}

/// `tree_edges` rows, sorted by (step_from, basin_from, basin_to); an edge into a basin of
/// `uncertain` is marked so.
pub fn tree_edge_rows(history: &BasinHistory, uncertain: &BTreeSet<(u64, BasinId)>) -> Vec<TreeEdgeRow> {
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
                    uncertain: uncertain.contains(&(w[1].step, b.id)),
                });
            }
        }
    }
    rows.sort_by_key(|r| (r.step_from, r.basin_from, r.basin_to));
    rows
}
