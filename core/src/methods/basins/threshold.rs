//! Threshold clustering: connected components of the graph of pairs with barrier < eps.

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::unionfind::UnionFind;
use petgraph::visit::EdgeRef;

use super::cluster::canonical_labels;
use super::matrix::BarrierMatrix;

/// The connectivity graph of a step: a node per run (weight = run name, node `i` = `runs[i]`) and an
/// edge, weighted by the barrier, wherever barrier < eps.
pub fn threshold_graph(matrix: &BarrierMatrix, eps: f64) -> UnGraph<String, f64> {
    let n = matrix.len();
    let mut graph = UnGraph::with_capacity(n, 0);
    for run in &matrix.runs {
        graph.add_node(run.clone());
    }
    for i in 0..n {
        for j in i + 1..n {
            let b = matrix.get(i, j);
            if b < eps {
                graph.add_edge(NodeIndex::new(i), NodeIndex::new(j), b);
            }
        }
    }
    graph
}

/// Canonical cluster labels (see [`canonical_labels`]) of the connected components of
/// [`threshold_graph`].
pub fn threshold_labels(matrix: &BarrierMatrix, eps: f64) -> Vec<usize> {
    let graph = threshold_graph(matrix, eps);
    let mut sets = UnionFind::new(graph.node_count());
    for e in graph.edge_references() {
        sets.union(e.source().index(), e.target().index());
    }
    canonical_labels(&sets.into_labeling())
}

#[cfg(test)]
mod tests {
    use super::*;
    use petgraph::algo::connected_components;

    #[test]
    fn chains_connect_transitively() {
        // a-b and b-c are close, a-c is not: single linkage joins all three; d is far from all.
        let m = BarrierMatrix::from_pairs(
            0,
            [
                ("a", "b", 0.01),
                ("b", "c", 0.01),
                ("a", "c", 0.5),
                ("a", "d", 0.9),
                ("b", "d", 0.9),
                ("c", "d", 0.9),
            ],
        )
        .unwrap();
        let g = threshold_graph(&m, 0.1);
        assert_eq!(g.edge_count(), 2);
        assert_eq!(connected_components(&g), 2);
        assert_eq!(threshold_labels(&m, 0.1), [0, 0, 0, 1]);
        // Strict inequality: a barrier equal to eps is not an edge.
        assert_eq!(threshold_labels(&m, 0.01), [0, 1, 2, 3]);
        assert_eq!(threshold_labels(&m, 1.0), [0, 0, 0, 0]);
    }
}
