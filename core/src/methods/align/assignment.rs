//! Maximum-weight linear assignment on f64 costs: the shortest augmenting path algorithm of
//! Jonker–Volgenant as laid out by Crouse (2016), the one behind SciPy's `linear_sum_assignment`
//! that the Git Re-Basin reference calls.
//!
//! Column potentials start from the column minima (a cold start) or from the potentials of a
//! previous solve of a similar matrix (a warm start: weight matching solves each group's matrix
//! again after small changes); two passes of augmenting row reduction (Jonker & Volgenant 1987)
//! then match most rows cheaply. The remaining rows are added one at a time by a Dijkstra search over reduced costs, kept
//! non-negative by row and column potentials: O(n^3) in the worst case, with a single pass over
//! the unvisited columns per search step. Costs are scaled by a power of two so that the largest
//! magnitude is at most 1 (exact: the order of all sums is unchanged), which keeps every reduced
//! cost far from overflow.

/// A solved assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// `perm[i]`: the column given to row `i`.
    pub perm: Vec<usize>,
    /// Column potentials proving the assignment optimal: pass them to the next
    /// [`max_assignment`] of a similar matrix to warm-start it.
    pub potentials: Vec<f64>,
}

/// The permutation `p` maximising `sum_i cost[i * n + p[i]]` for a row-major `n x n` matrix,
/// warm-started from `warm` (the potentials of an earlier [`Assignment`]) when given. Errors when
/// the matrix or `warm` has the wrong size or a non-finite entry.
pub fn max_assignment(cost: &[f64], n: usize, warm: Option<&[f64]>) -> Result<Assignment, String> {
    if cost.len() != n * n {
        return Err(format!("cost matrix has {} entries, expected {n} x {n}", cost.len()));
    }
    if cost.iter().any(|c| !c.is_finite()) {
        return Err("non-finite similarity (overflow in the weights?)".into());
    }
    if warm.is_some_and(|w| w.len() != n || w.iter().any(|p| !p.is_finite())) {
        return Err(format!("warm start needs {n} finite potentials"));
    }
    let largest = cost.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if largest == 0.0 {
        return Ok(Assignment {
            perm: (0..n).collect(),
            potentials: vec![0.0; n],
        });
    }
    // A power of two (exact), within f64's range even for subnormal or huge largest costs.
    let scale = (-largest.log2().ceil()).clamp(-1074.0, 1023.0).exp2();
    let minimise: Vec<f64> = cost.iter().map(|c| -c * scale).collect();
    let potentials = match warm {
        Some(w) => w.iter().map(|p| p * scale).collect(),
        None => column_minima(&minimise, n),
    };
    let mut solver = Solver::start(&minimise, n, potentials);
    for row in 0..n {
        if solver.col_of_row[row] == NONE {
            solver.add_row(&minimise, row);
        }
    }
    Ok(Assignment {
        perm: solver.col_of_row,
        potentials: solver.v.iter().map(|v| v / scale).collect(),
    })
}

/// The smallest entry of each column of a row-major `n x n` matrix.
fn column_minima(cost: &[f64], n: usize) -> Vec<f64> {
    cost.chunks(n).fold(vec![f64::INFINITY; n], |mut minima, row| {
        for (m, &c) in minima.iter_mut().zip(row) {
            *m = m.min(c);
        }
        minima
    })
}

/// State of the shortest augmenting path search on an `n x n` minimisation problem.
struct Solver {
    n: usize,
    /// Row potentials.
    u: Vec<f64>,
    /// Column potentials.
    v: Vec<f64>,
    /// Column matched to each row (`usize::MAX` while unmatched).
    col_of_row: Vec<usize>,
    /// Row matched to each column (`usize::MAX` while unmatched).
    row_of_col: Vec<usize>,
}

/// Marks an unmatched row or column.
const NONE: usize = usize::MAX;
/// Rows processed per row of the matrix, at most, in one pass of augmenting row reduction.
const REDUCTION_STEPS: usize = 8;

/// The cheapest and second-cheapest reduced costs `c - v` of a row, with their columns.
fn two_cheapest(row: &[f64], v: &[f64]) -> (usize, f64, usize, f64) {
    let (mut j1, mut u1, mut j2, mut u2) = (0, f64::INFINITY, 0, f64::INFINITY);
    for (j, (&c, &p)) in row.iter().zip(v).enumerate() {
        let h = c - p;
        if h < u1 {
            (j2, u2, j1, u1) = (j1, u1, j, h);
        } else if h < u2 {
            (j2, u2) = (j, h);
        }
    }
    (j1, u1, j2, u2)
}

impl Solver {
    /// A partial matching and feasible potentials from column potentials `v`: two passes of
    /// augmenting row reduction over all rows, then `u[i] = min_j (cost[i][j] - v[j])`.
    fn start(cost: &[f64], n: usize, v: Vec<f64>) -> Self {
        let mut solver = Self {
            n,
            u: vec![0.0; n],
            v,
            col_of_row: vec![NONE; n],
            row_of_col: vec![NONE; n],
        };
        let mut free: Vec<usize> = (0..n).rev().collect();
        for _ in 0..2 {
            free = solver.reduce_rows(cost, free);
        }
        for (u, row) in solver.u.iter_mut().zip(cost.chunks(n)) {
            *u = two_cheapest(row, &solver.v).1;
        }
        solver
    }

    /// One pass of augmenting row reduction (Jonker & Volgenant 1987) over the `free` rows: each
    /// takes its cheapest column in reduced cost `c - v`, whose potential is lowered until the
    /// row's second-cheapest column costs as much; a row it displaces is processed next when the
    /// potential dropped, in the next pass otherwise. Every matched row stays at one of its
    /// cheapest columns. Work is capped at `REDUCTION_STEPS` rows per row; returns the rows left free.
    fn reduce_rows(&mut self, cost: &[f64], mut free: Vec<usize>) -> Vec<usize> {
        let n = self.n;
        let mut left = Vec::new();
        let mut budget = REDUCTION_STEPS * n;
        while let Some(i) = free.pop() {
            if budget == 0 {
                left.push(i);
                break;
            }
            budget -= 1;
            let (j1, u1, j2, u2) = two_cheapest(&cost[i * n..(i + 1) * n], &self.v);
            let lowered = u1 < u2 && u2.is_finite();
            let j = if lowered || self.row_of_col[j1] == NONE { j1 } else { j2 };
            if lowered {
                self.v[j1] -= u2 - u1;
            }
            self.col_of_row[i] = j;
            let displaced = std::mem::replace(&mut self.row_of_col[j], i);
            if displaced != NONE {
                self.col_of_row[displaced] = NONE;
                if lowered {
                    free.push(displaced)
                } else {
                    left.push(displaced)
                }
            }
        }
        left.extend(free);
        left
    }

    /// Matches `start` (unmatched) along a shortest augmenting path of `cost`, updating the
    /// potentials so that reduced costs stay non-negative.
    fn add_row(&mut self, cost: &[f64], start: usize) {
        let n = self.n;
        let mut shortest = vec![f64::INFINITY; n];
        let mut path = vec![NONE; n];
        let mut visited_rows = Vec::new();
        let mut visited_cols = Vec::new();
        let mut remaining: Vec<usize> = (0..n).collect();
        let mut distance = 0.0;
        let mut row = start;
        let sink = loop {
            visited_rows.push(row);
            let (costs, u) = (&cost[row * n..(row + 1) * n], self.u[row]);
            let (mut lowest, mut index) = (f64::INFINITY, 0);
            for (it, &j) in remaining.iter().enumerate() {
                let reduced = distance + costs[j] - u - self.v[j];
                if reduced < shortest[j] {
                    path[j] = row;
                    shortest[j] = reduced;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && self.row_of_col[j] == NONE) {
                    lowest = shortest[j];
                    index = it;
                }
            }
            distance = lowest;
            let col = remaining.swap_remove(index);
            visited_cols.push(col);
            match self.row_of_col[col] {
                NONE => break col,
                next => row = next,
            }
        };
        self.u[start] += distance;
        for &i in &visited_rows[1..] {
            self.u[i] += distance - shortest[self.col_of_row[i]];
        }
        for &j in &visited_cols {
            self.v[j] -= distance - shortest[j];
        }
        let mut col = sink;
        loop {
            let row = path[col];
            self.row_of_col[col] = row;
            let previous = std::mem::replace(&mut self.col_of_row[row], col);
            if row == start {
                break;
            }
            col = previous;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(cost: &[f64], n: usize) -> Result<Vec<usize>, String> {
        max_assignment(cost, n, None).map(|a| a.perm)
    }

    /// Uniform numbers in [-1e-3, 1e-3) from a linear congruential stream.
    fn uniform(state: &mut u64, count: usize) -> Vec<f64> {
        (0..count)
            .map(|_| {
                *state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*state >> 11) as f64 / (1u64 << 53) as f64 * 2e-3 - 1e-3
            })
            .collect()
    }

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
            let cost = uniform(&mut state, n * n);
            let total = |p: &[usize]| p.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum::<f64>();
            let best = permutations(n).iter().map(|p| total(p)).fold(f64::MIN, f64::max);
            let found = solve(&cost, n).unwrap();
            assert!((total(&found) - best).abs() < 1e-15, "{} vs {best}", total(&found));
            // Any finite warm start gives the optimum too.
            let warm = uniform(&mut state, n);
            let found = max_assignment(&cost, n, Some(&warm)).unwrap().perm;
            assert!(
                (total(&found) - best).abs() < 1e-15,
                "warm: {} vs {best}",
                total(&found)
            );
        }
    }

    #[test]
    fn agrees_with_kuhn_munkres_on_larger_problems() {
        use pathfinding::kuhn_munkres::kuhn_munkres;
        use pathfinding::matrix::Matrix;
        let mut state = 777u64;
        for n in [1, 2, 17, 64, 150] {
            // Integer weights with many ties: only the optimal total is unique.
            let weights: Vec<i64> = (0..n * n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) as i64 % 50 - 25
                })
                .collect();
            let (best, _) = kuhn_munkres(&Matrix::from_vec(n, n, weights.clone()).unwrap());
            let cost: Vec<f64> = weights.iter().map(|&w| w as f64 * 1e-3).collect();
            let found = solve(&cost, n).unwrap();
            let mut seen = vec![false; n];
            assert!(found.iter().all(|&j| !std::mem::replace(&mut seen[j], true)));
            let total: i64 = found.iter().enumerate().map(|(i, &j)| weights[i * n + j]).sum();
            assert_eq!(total, best, "n = {n}");
        }
    }

    #[test]
    fn a_warm_start_from_a_similar_matrix_gives_the_same_optimum() {
        let (n, mut state) = (200, 99u64);
        let cost = uniform(&mut state, n * n);
        let first = max_assignment(&cost, n, None).unwrap();
        let nudged: Vec<f64> = cost
            .iter()
            .zip(uniform(&mut state, n * n))
            .map(|(c, d)| c + 0.05 * d)
            .collect();
        let total = |p: &[usize]| p.iter().enumerate().map(|(i, &j)| nudged[i * n + j]).sum::<f64>();
        let cold = solve(&nudged, n).unwrap();
        let warm = max_assignment(&nudged, n, Some(&first.potentials)).unwrap().perm;
        assert!(
            (total(&warm) - total(&cold)).abs() < 1e-12,
            "{} vs {}",
            total(&warm),
            total(&cold)
        );
        assert!(max_assignment(&cost, n, Some(&[0.0; 3])).is_err());
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(solve(&[], 0).unwrap(), Vec::<usize>::new());
        assert_eq!(solve(&[0.0; 4], 2).unwrap(), [0, 1]);
        assert!(solve(&[1.0, f64::NAN, 0.0, 1.0], 2).is_err());
        assert!(solve(&[1.0; 3], 2).is_err());
        assert_eq!(solve(&[-1e300, 1e300, 1e300, -1e300], 2).unwrap(), [1, 0]);
        assert_eq!(solve(&[f64::MAX, -f64::MAX, 0.0, f64::MAX], 2).unwrap(), [0, 1]);
    }
}
