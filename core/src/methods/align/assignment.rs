//! Maximum-weight linear assignment on f64 costs, through `pathfinding`'s Kuhn–Munkres (which needs
//! integer weights).
//!
//! Costs are scaled so that the largest magnitude becomes [`RESOLUTION`] (about 1e12) and rounded
//! to i64: the assignment is optimal up to a relative error of ~1e-12 of the largest cost per
//! entry, and the integer sums inside Kuhn–Munkres stay far from overflow for any size used here.
//! Callers compare gains in f64 themselves, so rounding can never make a result worse than keeping
//! the previous assignment.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// Integer magnitude of the largest cost after scaling (2^40).
const RESOLUTION: f64 = (1u64 << 40) as f64;
/// Largest integer total allowed: keeps Kuhn–Munkres' label sums below i64::MAX with a wide margin.
const MAX_TOTAL: f64 = (1u64 << 60) as f64;

/// The permutation `p` maximising `sum_i cost[i * n + p[i]]` for a row-major `n x n` matrix.
/// Errors when the matrix has the wrong size or a non-finite entry.
pub fn max_assignment(cost: &[f64], n: usize) -> Result<Vec<usize>, String> {
    if cost.len() != n * n {
        return Err(format!("cost matrix has {} entries, expected {n} x {n}", cost.len()));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if cost.iter().any(|c| !c.is_finite()) {
        return Err("non-finite similarity (overflow in the weights?)".into());
    }
    let largest = cost.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if largest == 0.0 {
        return Ok((0..n).collect());
    }
    let scale = RESOLUTION.min(MAX_TOTAL / n as f64) / largest;
    let weights: Vec<i64> = cost.iter().map(|c| (c * scale).round() as i64).collect();
    let matrix = Matrix::from_vec(n, n, weights).map_err(|e| e.to_string())?;
    Ok(kuhn_munkres(&matrix).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All permutations of 0..n (Heap's algorithm).
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        fn heap(k: usize, p: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(p.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, p, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                p.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(n, &mut (0..n).collect(), &mut out);
        out
    }

    #[test]
    fn finds_the_best_of_all_permutations() {
        let n = 5;
        let mut state = 12345u64;
        for _ in 0..20 {
            let cost: Vec<f64> = (0..n * n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 11) as f64 / (1u64 << 53) as f64 * 2e-3 - 1e-3
                })
                .collect();
            let total = |p: &[usize]| p.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum::<f64>();
            let best = permutations(n).iter().map(|p| total(p)).fold(f64::MIN, f64::max);
            let found = max_assignment(&cost, n).unwrap();
            assert!((total(&found) - best).abs() < 1e-15, "{} vs {best}", total(&found));
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(max_assignment(&[], 0).unwrap(), Vec::<usize>::new());
        assert_eq!(max_assignment(&[0.0; 4], 2).unwrap(), [0, 1]);
        assert!(max_assignment(&[1.0, f64::NAN, 0.0, 1.0], 2).is_err());
        assert!(max_assignment(&[1.0; 3], 2).is_err());
        assert_eq!(max_assignment(&[-1e300, 1e300, 1e300, -1e300], 2).unwrap(), [1, 0]);
    }
}
