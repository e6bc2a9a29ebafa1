//! The basin tree: a petgraph `DiGraph` with a node per (step, basin) and an edge per flow of runs.

use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use super::BasinId;
use super::track::BasinHistory;

/// A node of the basin tree: one basin at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasinNode {
    /// Training step.
    pub step: u64,
    /// Stable basin id.
    pub basin: BasinId,
    /// Member runs, sorted.
    pub members: Vec<String>,
}

/// An edge of the basin tree: runs carried from a basin at one step to a basin at the next step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeEdge {
    /// Number of runs carried.
    pub n_runs: usize,
    /// The runs carried, sorted.
    pub runs: Vec<String>,
}

/// The basin tree (a DAG when basins merge) with a lookup from (step, basin) to node.
#[derive(Debug, Clone)]
pub struct BasinTree {
    /// Nodes in (step, basin id) order; edges point from step t to the next tracked step.
    pub graph: DiGraph<BasinNode, TreeEdge>,
    index: BTreeMap<(u64, BasinId), NodeIndex>,
}

impl BasinTree {
    /// The node of `basin` at `step`, if it is alive there.
    pub fn node(&self, step: u64, basin: BasinId) -> Option<NodeIndex> {
        self.index.get(&(step, basin)).copied()
    }

    /// Basin ids ordered for drawing one lane per basin: depth-first from the basins born without a
    /// parent, each basin followed by the basins that split off it (by first step, then id), so a
    /// child's lane sits next to its parent's.
    pub fn lane_order(&self) -> Vec<BasinId> {
        // Each basin's first appearance: (step, parent at that step).
        let mut origin: BTreeMap<BasinId, (u64, Option<BasinId>)> = BTreeMap::new();
        for n in self.graph.node_weights() {
            origin.entry(n.basin).or_insert((n.step, None));
        }
        for e in self.graph.edge_indices() {
            let (a, b) = self.graph.edge_endpoints(e).expect("edge exists");
            let (from, to) = (&self.graph[a], &self.graph[b]);
            let entry = origin.get_mut(&to.basin).expect("node registered");
            if entry.0 == to.step && from.basin != to.basin {
                // Keep the source carrying the most runs (ties: smallest id).
                let n_runs = self.graph[e].n_runs;
                let better = match entry.1 {
                    None => true,
                    Some(p) => {
                        let current = self.carried(to.step, p, to.basin);
                        n_runs > current || (n_runs == current && from.basin < p)
                    }
                };
                if better {
                    entry.1 = Some(from.basin);
                }
            }
        }
        let mut children: BTreeMap<Option<BasinId>, Vec<(u64, BasinId)>> = BTreeMap::new();
        for (&id, &(step, parent)) in &origin {
            children.entry(parent).or_default().push((step, id));
        }
        for c in children.values_mut() {
            c.sort_unstable();
        }
        let mut order = Vec::with_capacity(origin.len());
        let mut stack: Vec<BasinId> = children
            .get(&None)
            .map_or(Vec::new(), |c| c.iter().rev().map(|&(_, id)| id).collect());
        while let Some(id) = stack.pop() {
            order.push(id);
            if let Some(c) = children.get(&Some(id)) {
                stack.extend(c.iter().rev().map(|&(_, child)| child));
            }
        }
        order
    }

    /// Runs carried into `to` at `step` from basin `from` at the previous step.
    fn carried(&self, step: u64, from: BasinId, to: BasinId) -> usize {
        let Some(target) = self.node(step, to) else { return 0 };
        self.graph
            .edges_directed(target, petgraph::Direction::Incoming)
            .filter(|e| self.graph[petgraph::visit::EdgeRef::source(e)].basin == from)
            .map(|e| e.weight().n_runs)
            .sum()
    }
}

/// Builds the basin tree of a history: a node per live basin per step, an edge for every basin of
/// the previous step that carried runs into it.
pub fn basin_tree(history: &BasinHistory) -> BasinTree {
    let mut graph = DiGraph::new();
    let mut index = BTreeMap::new();
    let mut prev_step: Option<u64> = None;
    for s in &history.steps {
        for b in &s.basins {
            let node = graph.add_node(BasinNode {
                step: s.step,
                basin: b.id,
                members: b.members.clone(),
            });
            index.insert((s.step, b.id), node);
            if let Some(p) = prev_step {
                for c in &b.inflow {
                    let source = index[&(p, c.from)];
                    graph.add_edge(
                        source,
                        node,
                        TreeEdge {
                            n_runs: c.runs.len(),
                            runs: c.runs.clone(),
                        },
                    );
                }
            }
        }
        prev_step = Some(s.step);
    }
    BasinTree { graph, index }
}
