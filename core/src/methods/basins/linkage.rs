//! Average-linkage (UPGMA) agglomerative clustering: the dendrogram, its leaf order and its cut.

use serde::Serialize;

use super::cluster::canonical_labels;
use super::matrix::BarrierMatrix;

/// One merge of the dendrogram (SciPy convention: node ids `0..n` are the leaves = runs, merge `m`
/// creates node `n + m`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Merge {
    /// Node id of the child holding the smaller leaf index.
    pub left: usize,
    /// Node id of the other child.
    pub right: usize,
    /// Average barrier between the two children's runs.
    pub distance: f64,
    /// Number of runs under the new node.
    pub size: usize,
}

/// The full average-linkage dendrogram of one step: `n - 1` merges in order of increasing distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dendrogram {
    /// The leaves (runs), sorted; leaf `i` is `runs[i]`.
    pub runs: Vec<String>,
    /// Merges in the order they happen (non-decreasing distance for UPGMA).
    pub merges: Vec<Merge>,
}

/// Builds the UPGMA dendrogram of a step's barrier matrix (O(n^3), fine for zoos of hundreds of runs).
///
/// At each stage the two clusters with the smallest average barrier merge; ties go to the pair with the
/// smallest leaf indices, so the result is deterministic.
pub fn average_linkage(matrix: &BarrierMatrix) -> Dendrogram {
    let n = matrix.len();
    // Slot i holds the cluster whose smallest leaf is i (merged clusters keep the smaller slot).
    // A pair not computed (pruned: connected pairs join its runs) counts as connected.
    let mut dist: Vec<f64> = matrix
        .values
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    let mut size = vec![1usize; n];
    let mut node: Vec<usize> = (0..n).collect();
    let mut active: Vec<bool> = vec![true; n];
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    for m in 0..n.saturating_sub(1) {
        let mut best: Option<(usize, usize, f64)> = None;
        for i in (0..n).filter(|&i| active[i]) {
            for j in (i + 1..n).filter(|&j| active[j]) {
                let d = dist[i * n + j];
                if best.is_none_or(|(_, _, bd)| d < bd) {
                    best = Some((i, j, d));
                }
            }
        }
        let (i, j, d) = best.expect("at least two active clusters");
        let (si, sj) = (size[i] as f64, size[j] as f64);
        for k in (0..n).filter(|&k| active[k] && k != i && k != j) {
            let v = (si * dist[i * n + k] + sj * dist[j * n + k]) / (si + sj);
            dist[i * n + k] = v;
            dist[k * n + i] = v;
        }
        merges.push(Merge {
            left: node[i],
            right: node[j],
            distance: d,
            size: size[i] + size[j],
        });
        size[i] += size[j];
        node[i] = n + m;
        active[j] = false;
    }
    Dendrogram {
        runs: matrix.runs.clone(),
        merges,
    }
}

impl Dendrogram {
    /// Number of leaves (runs).
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether the dendrogram has no leaves.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Leaf indices in dendrogram order (left child before right child, depth first), for ordering
    /// heatmap rows: every cluster of every cut is a contiguous block of this order.
    pub fn leaf_order(&self) -> Vec<usize> {
        let n = self.runs.len();
        if n == 0 {
            return Vec::new();
        }
        let mut order = Vec::with_capacity(n);
        let mut stack = vec![n + self.merges.len() - 1];
        while let Some(id) = stack.pop() {
            if id < n {
                order.push(id);
            } else {
                let m = &self.merges[id - n];
                stack.push(m.right);
                stack.push(m.left);
            }
        }
        order
    }

    /// Run names in [`Dendrogram::leaf_order`].
    pub fn leaf_order_runs(&self) -> Vec<String> {
        self.leaf_order().into_iter().map(|i| self.runs[i].clone()).collect()
    }

    /// Canonical cluster labels (see [`canonical_labels`]) of the cut at `eps`: merges are applied
    /// in order while their distance is < eps.
    pub fn cut(&self, eps: f64) -> Vec<usize> {
        let n = self.runs.len();
        // Representative leaf of each node; merged leaves point to the left child's representative.
        let mut label: Vec<usize> = (0..n).collect();
        let mut rep: Vec<usize> = (0..n).collect();
        for m in self.merges.iter().take_while(|m| m.distance < eps) {
            let (l, r) = (rep[m.left], rep[m.right]);
            let old = label[r];
            let new = label[l];
            for x in label.iter_mut().filter(|x| **x == old) {
                *x = new;
            }
            rep.push(l);
        }
        canonical_labels(&label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> BarrierMatrix {
        // Points on a line at 0, 1, 5, 6 (barrier = distance).
        let xs = [0.0, 1.0, 5.0, 6.0];
        let runs: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let values = xs
            .iter()
            .flat_map(|x: &f64| xs.iter().map(move |y| (x - y).abs()))
            .collect();
        BarrierMatrix::new(0, runs, values).unwrap()
    }

    #[test]
    fn upgma_merges_with_average_distances() {
        let d = average_linkage(&line());
        assert_eq!(d.merges.len(), 3);
        assert_eq!((d.merges[0].left, d.merges[0].right, d.merges[0].distance), (0, 1, 1.0));
        assert_eq!((d.merges[1].left, d.merges[1].right, d.merges[1].distance), (2, 3, 1.0));
        // Average of |{0,1} - {5,6}| = (5 + 6 + 4 + 5) / 4 = 5.
        assert_eq!((d.merges[2].left, d.merges[2].right, d.merges[2].distance), (4, 5, 5.0));
        assert_eq!(d.merges[2].size, 4);
        assert_eq!(d.leaf_order(), [0, 1, 2, 3]);
    }

    #[test]
    fn cut_merges_while_below_eps() {
        let d = average_linkage(&line());
        assert_eq!(d.cut(0.5), [0, 1, 2, 3]);
        assert_eq!(d.cut(1.0), [0, 1, 2, 3]);
        assert_eq!(d.cut(1.5), [0, 0, 1, 1]);
        assert_eq!(d.cut(5.5), [0, 0, 0, 0]);
    }

    #[test]
    fn single_and_empty() {
        let one = BarrierMatrix::new(0, vec!["a".into()], vec![0.0]).unwrap();
        let d = average_linkage(&one);
        assert!(d.merges.is_empty());
        assert_eq!(d.leaf_order(), [0]);
        assert_eq!(d.cut(1.0), [0]);
        let none = average_linkage(&BarrierMatrix::new(0, vec![], vec![]).unwrap());
        assert!(none.leaf_order().is_empty());
        assert!(none.cut(1.0).is_empty());
    }
}
