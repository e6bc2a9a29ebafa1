//! Spectral clustering (Ng, Jordan & Weiss 2001; the setting of Juneja et al. 2023).
//!
//! Affinity `A_ij = exp(-D_ij^2 / (2 delta^2))` (diagonal `exp(0) = 1`, so every degree is >= 1),
//! normalised affinity `M = Deg^-1/2 A Deg^-1/2` (the normalised Laplacian is `I - M`, so the top
//! eigenvectors of `M` are its bottom ones), embedding = the `k` eigenvectors of `M` with the largest
//! eigenvalues, rows L2-normalised, then deterministic [`kmeans`].

use nalgebra::{DMatrix, SymmetricEigen};

use super::kmeans::{RESTARTS, kmeans};
use super::matrix::BarrierMatrix;

/// RBF affinity matrix `exp(-D^2 / (2 delta^2))` of a step (ones on the diagonal).
pub fn rbf_affinity(matrix: &BarrierMatrix, delta: f64) -> DMatrix<f64> {
    let n = matrix.len();
    let two_d2 = 2.0 * delta * delta;
    DMatrix::from_fn(n, n, |i, j| {
        let d = matrix.get(i, j);
        (-(d * d) / two_d2).exp()
    })
}

/// The Ng–Jordan–Weiss embedding: one L2-normalised row of length `min(k, n)` per run.
///
/// Eigenvectors are ordered by decreasing eigenvalue (ties by index), so the embedding is a pure
/// function of the matrix.
pub fn spectral_embedding(matrix: &BarrierMatrix, k: usize, delta: f64) -> Vec<Vec<f64>> {
    let n = matrix.len();
    let k = k.min(n);
    let a = rbf_affinity(matrix, delta);
    let inv_sqrt_deg: Vec<f64> = (0..n).map(|i| 1.0 / a.row(i).sum().sqrt()).collect();
    let m = DMatrix::from_fn(n, n, |i, j| inv_sqrt_deg[i] * a[(i, j)] * inv_sqrt_deg[j]);
    let eig = SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| eig.eigenvalues[y].total_cmp(&eig.eigenvalues[x]).then(x.cmp(&y)));
    (0..n)
        .map(|i| {
            let row: Vec<f64> = order[..k].iter().map(|&c| eig.eigenvectors[(i, c)]).collect();
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.into_iter().map(|x| x / norm).collect()
            } else {
                row
            }
        })
        .collect()
}

/// Canonical cluster labels of spectral clustering into at most `k` clusters with bandwidth `delta`.
pub fn spectral_labels(matrix: &BarrierMatrix, k: usize, delta: f64) -> Vec<usize> {
    if matrix.is_empty() {
        return Vec::new();
    }
    kmeans(&spectral_embedding(matrix, k, delta), k, RESTARTS).labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_blocks() -> BarrierMatrix {
        // {a, c} close, {b, d} close, far across.
        let rows = [
            ("a", "b", 5.0),
            ("a", "c", 0.05),
            ("a", "d", 5.0),
            ("b", "c", 5.0),
            ("b", "d", 0.1),
            ("c", "d", 5.0),
        ];
        BarrierMatrix::from_pairs(0, rows).unwrap()
    }

    #[test]
    fn affinity_is_rbf() {
        let a = rbf_affinity(&two_blocks(), 1.0);
        assert_eq!(a[(0, 0)], 1.0);
        assert!((a[(0, 2)] - (-0.05f64 * 0.05 / 2.0).exp()).abs() < 1e-15);
    }

    #[test]
    fn embedding_rows_are_unit_length() {
        for row in spectral_embedding(&two_blocks(), 2, 1.0) {
            let norm: f64 = row.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn finds_two_blocks() {
        assert_eq!(spectral_labels(&two_blocks(), 2, 1.0), [0, 1, 0, 1]);
    }
}
