//! From a batch run's barrier rows to basins over time: per-step barrier matrices, clustering,
//! tracking, the basin tree, commitment steps, and the `clusters` / `timeline` / `tree_edges` rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::methods::basins::{
    BarrierMatrix, BasinHistory, BasinTree, ClusterMethod, ClusterRow, TimelineRow, TreeEdgeRow, basin_history,
    basin_tree, cluster_rows, commitment_step, default_eps, matrices_from_rows, timeline_rows, tree_edge_rows,
};
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::BatchResult;

/// Which barrier definition feeds the clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BarrierKind {
    /// Largest bump above the chord of any sub-segment (Juneja et al. 2023, who cluster with it).
    #[default]
    Segment,
    /// Bump above the chord between the endpoints (Frankle et al. 2020).
    Endpoint,
}

impl BarrierKind {
    /// Name used in the `kind` column of the barriers table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Segment => "segment",
            Self::Endpoint => "endpoint",
        }
    }
}

/// Options of the basin analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasinOptions {
    /// Clustering method (eps `None` = per-step default, see [`default_eps`]).
    pub method: ClusterMethod,
    /// Loss barrier definition used as the distance between seeds.
    pub barrier: BarrierKind,
}

impl Default for BasinOptions {
    fn default() -> Self {
        Self {
            method: ClusterMethod::Threshold { eps: None },
            barrier: BarrierKind::Segment,
        }
    }
}

/// The history of basins of one zoo.
#[derive(Debug, Clone)]
pub struct BasinAnalysis {
    /// Seed-pair barrier matrix at each step.
    pub matrices: Vec<BarrierMatrix>,
    /// Clusters tracked over time.
    pub history: BasinHistory,
    /// The basin tree.
    pub tree: BasinTree,
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
}

/// Clusters the seeds at every step of `result` and tracks the basins over time. Basins and
/// commitment use the raw (unaligned) barriers: aligned rows, when present, are reported alongside.
pub fn analyse_basins(result: &BatchResult, options: &BasinOptions) -> Result<BasinAnalysis, CoreError> {
    let kind = options.barrier.name();
    let seeds = PairKind::Seeds.name();
    // Runs present at a step but in no seed pair (a step with one run) are declared by a zero self pair.
    let self_pairs = result.evals.iter().map(|e| (e.step, e.run.clone(), e.run.clone(), 0.0));
    let pairs = result
        .barriers
        .iter()
        .filter(|b| b.pair == seeds && b.kind == kind && !b.aligned)
        .map(|b| (b.step, b.run_a.clone(), b.run_b.clone(), b.loss_barrier));
    let matrices = matrices_from_rows(self_pairs.chain(pairs))?;
    let mut mean_loss: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for e in &result.evals {
        let entry = mean_loss.entry(e.step).or_default();
        entry.0 += e.loss;
        entry.1 += 1;
    }
    let mean_loss: BTreeMap<u64, f64> = mean_loss.into_iter().map(|(s, (sum, n))| (s, sum / n as f64)).collect();
    let history = basin_history(&matrices, &options.method, &mean_loss)?;
    let tree = basin_tree(&history);
    let eps_by_step = history.steps.iter().map(|s| (s.step, s.method.eps())).collect();
    let commitment = commitment_steps(result, options, &mean_loss);
    Ok(BasinAnalysis {
        clusters: cluster_rows(&history),
        timeline: timeline_rows(&history),
        tree_edges: tree_edge_rows(&history),
        matrices,
        history,
        tree,
        eps_by_step,
        commitment,
    })
}

/// A run's final step and its (step, barrier to the final checkpoint) rows.
type FinalRows = (u64, Vec<(u64, f64)>);

/// Commitment step of every run with checkpoint-vs-final pairs. The threshold is the method's eps
/// (or the default eps of the run's final step when the method has none or chooses per step).
fn commitment_steps(
    result: &BatchResult,
    options: &BasinOptions,
    mean_loss: &BTreeMap<u64, f64>,
) -> BTreeMap<String, Option<u64>> {
    // Per run: its final step and the (step, barrier to the final checkpoint) rows.
    let mut by_run: BTreeMap<&str, FinalRows> = BTreeMap::new();
    for b in result
        .barriers
        .iter()
        .filter(|b| b.pair == PairKind::ToFinal.name() && b.kind == options.barrier.name() && !b.aligned)
    {
        let entry = by_run.entry(&b.run_a).or_insert((b.step_b, Vec::new()));
        entry.1.push((b.step, b.loss_barrier));
    }
    by_run
        .into_iter()
        .map(|(run, (final_step, rows))| {
            let final_loss = result
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
