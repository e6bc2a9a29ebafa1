//! Mutual k-nearest-neighbour alignment (Huh, Cheung, Wang, Isola 2024).

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::{check_rows, non_finite};
use crate::error::{CoreError, Result};

/// Mutual kNN alignment of `x` `[n, p]` and `y` `[n, q]`: rows are L2-normalised, each example's
/// `k` nearest neighbours are the other examples with the largest inner product (self excluded,
/// ties broken by the lower index; a zero row stays zero), and the score is the mean over
/// examples of `|kNN_x(i) ∩ kNN_y(i)| / k`, in [0, 1]. Needs `1 <= k < n`. O(n² (p + q)) time,
/// O(n) memory per thread. NaN for non-finite input.
pub fn mutual_knn(x: &DMatrix<f64>, y: &DMatrix<f64>, k: usize) -> Result<f64> {
    check_rows(x, y, 2)?;
    let n = x.nrows();
    if k == 0 || k >= n {
        return Err(CoreError::InvalidArgument(format!(
            "mutual kNN: k = {k} must be between 1 and the number of examples - 1 ({})",
            n - 1
        )));
    }
    if non_finite(x) || non_finite(y) {
        return Ok(f64::NAN);
    }
    let (xn, yn) = (normalised_rows(x), normalised_rows(y));
    let shared: usize = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut a, mut b) = (neighbours(&xn, i, k), neighbours(&yn, i, k));
            a.sort_unstable();
            b.sort_unstable();
            a.iter().filter(|j| b.binary_search(j).is_ok()).count()
        })
        .sum();
    Ok(shared as f64 / (n * k) as f64)
}

/// Rows of `m` scaled to unit L2 norm, transposed to `[p, n]` so that each example is a column.
fn normalised_rows(m: &DMatrix<f64>) -> DMatrix<f64> {
    let mut t = m.transpose();
    for mut column in t.column_iter_mut() {
        let norm = column.norm();
        if norm > 0.0 {
            column /= norm;
        }
    }
    t
}

/// The `k` columns other than `i` with the largest inner product with column `i`.
fn neighbours(columns: &DMatrix<f64>, i: usize, k: usize) -> Vec<usize> {
    let me = columns.column(i);
    let mut scored: Vec<(f64, usize)> = columns
        .column_iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(j, c)| (c.dot(&me), j))
        .collect();
    let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    scored.select_nth_unstable_by(k - 1, order);
    scored.truncate(k);
    scored.into_iter().map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_scaled_representations_agree_fully() {
        let x = DMatrix::from_fn(25, 3, |i, j| ((i * 7 + j * 11) % 13) as f64 - 6.0 + 0.01 * i as f64);
        assert_eq!(mutual_knn(&x, &x, 5).unwrap(), 1.0);
        // Scaling rows does not change cosine neighbours.
        let scaled = DMatrix::from_fn(25, 3, |i, j| x[(i, j)] * (1.0 + i as f64));
        assert_eq!(mutual_knn(&x, &scaled, 5).unwrap(), 1.0);
        assert!(mutual_knn(&x, &x, 0).is_err());
        assert!(mutual_knn(&x, &x, 25).is_err());
    }

    #[test]
    fn neighbours_exclude_self_and_break_ties_by_index() {
        // Four points on the unit circle at 0, 10, 20 and 180 degrees.
        let deg = [0.0f64, 10.0, 20.0, 180.0];
        let m = DMatrix::from_fn(4, 2, |i, j| {
            let a = deg[i].to_radians();
            if j == 0 { a.cos() } else { a.sin() }
        });
        let cols = normalised_rows(&m);
        let mut n0 = neighbours(&cols, 0, 2);
        n0.sort_unstable();
        assert_eq!(n0, vec![1, 2]);
        let mut n1 = neighbours(&cols, 1, 2);
        n1.sort_unstable();
        assert_eq!(n1, vec![0, 2]);
        let zero = DMatrix::<f64>::zeros(2, 4);
        let mut nz = neighbours(&zero, 2, 2);
        nz.sort_unstable();
        assert_eq!(nz, vec![0, 1]);
    }
}
