//! Per-step barrier matrices built from barrier table rows.

use std::collections::{BTreeMap, BTreeSet};

use super::error::BasinError;

/// Relative tolerance under which two barriers for the same pair (or the two triangles of a matrix)
/// count as equal.
const SAME_VALUE_TOL: f64 = 1e-9;

/// The barriers between all runs present at one step: `runs x runs`, symmetric, zero diagonal.
///
/// Fields are public for reading; build with [`BarrierMatrix::new`] or [`BarrierMatrix::from_pairs`]
/// so the invariants (sorted unique runs, `n*n` finite non-negative values, symmetric, zero diagonal)
/// are checked. One exception: an off-diagonal `NaN` is a pair *not computed* (`--economy` pruned it
/// because connected pairs already join its runs); only threshold clustering accepts such a matrix,
/// and it reads the pair as no edge ([`BarrierMatrix::has_gaps`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BarrierMatrix {
    /// Training step.
    pub step: u64,
    /// Runs present at this step, sorted and unique. Row/column `i` is `runs[i]`.
    pub runs: Vec<String>,
    /// Row-major `n*n` barriers.
    pub values: Vec<f64>,
}

fn same_value(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME_VALUE_TOL * a.abs().max(b.abs()).max(1.0)
}

impl BarrierMatrix {
    /// Checks and wraps a full matrix.
    ///
    /// `runs` must be sorted and unique, `values` row-major `n*n`, finite, >= 0, symmetric (within a
    /// relative 1e-9) with a zero diagonal.
    pub fn new(step: u64, runs: Vec<String>, values: Vec<f64>) -> Result<Self, BasinError> {
        let n = runs.len();
        let bad = |problem: String| BasinError::InvalidMatrix { step, problem };
        if values.len() != n * n {
            return Err(bad(format!(
                "{} values for {n} runs (expected {})",
                values.len(),
                n * n
            )));
        }
        if let Some(w) = runs.windows(2).find(|w| w[0] >= w[1]) {
            return Err(bad(format!(
                "runs must be sorted and unique ({:?} before {:?})",
                w[0], w[1]
            )));
        }
        for i in 0..n {
            for j in 0..n {
                let v = values[i * n + j];
                if v.is_nan() && i != j && values[j * n + i].is_nan() {
                    continue;
                }
                if !v.is_finite() || v < 0.0 {
                    return Err(BasinError::InvalidBarrier {
                        step,
                        run_a: runs[i].clone(),
                        run_b: runs[j].clone(),
                        value: v,
                    });
                }
                if i == j && v != 0.0 {
                    return Err(bad(format!("diagonal entry of {:?} is {v}, expected 0", runs[i])));
                }
                if j > i && !same_value(v, values[j * n + i]) {
                    return Err(bad(format!(
                        "not symmetric: {:?} - {:?} is {v} but {} the other way",
                        runs[i],
                        runs[j],
                        values[j * n + i]
                    )));
                }
            }
        }
        Ok(Self { step, runs, values })
    }

    /// Builds the matrix of one step from pairs `(run_a, run_b, barrier)`, each pair listed once in
    /// either order.
    ///
    /// The runs of the matrix are exactly the runs named by the pairs. A pair listed twice must carry
    /// the same barrier. A self pair `(a, a, 0.0)` is allowed and declares `a` present (useful for a
    /// step with a single run). Every pair of present runs must have a barrier.
    pub fn from_pairs<S: AsRef<str>>(
        step: u64,
        pairs: impl IntoIterator<Item = (S, S, f64)>,
    ) -> Result<Self, BasinError> {
        let mut runs = BTreeSet::new();
        let mut barriers: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (a, b, value) in pairs {
            let (a, b) = (a.as_ref(), b.as_ref());
            let invalid = || BasinError::InvalidBarrier {
                step,
                run_a: a.to_string(),
                run_b: b.to_string(),
                value,
            };
            let not_computed = value.is_nan() && a != b;
            if (!value.is_finite() && !not_computed) || value < 0.0 {
                return Err(invalid());
            }
            runs.insert(a.to_string());
            runs.insert(b.to_string());
            if a == b {
                if value != 0.0 {
                    return Err(BasinError::InvalidMatrix {
                        step,
                        problem: format!("self pair of {a:?} has barrier {value}, expected 0"),
                    });
                }
                continue;
            }
            let key = if a < b {
                (a.to_string(), b.to_string())
            } else {
                (b.to_string(), a.to_string())
            };
            if let Some(&first) = barriers.get(&key) {
                if !same_value(first, value) {
                    return Err(BasinError::ConflictingPair {
                        step,
                        run_a: key.0,
                        run_b: key.1,
                        first,
                        second: value,
                    });
                }
            } else {
                barriers.insert(key, value);
            }
        }
        let runs: Vec<String> = runs.into_iter().collect();
        let n = runs.len();
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let key = (runs[i].clone(), runs[j].clone());
                let Some(&v) = barriers.get(&key) else {
                    return Err(BasinError::MissingPair {
                        step,
                        run_a: key.0,
                        run_b: key.1,
                    });
                };
                values[i * n + j] = v;
                values[j * n + i] = v;
            }
        }
        Ok(Self { step, runs, values })
    }

    /// Number of runs at this step.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no run is present.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Barrier between runs `i` and `j` (indices into [`BarrierMatrix::runs`]).
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.runs.len() + j]
    }

    /// Index of `run` in [`BarrierMatrix::runs`], if present at this step.
    pub fn index_of(&self, run: &str) -> Option<usize> {
        self.runs.binary_search_by(|r| r.as_str().cmp(run)).ok()
    }

    /// True when some pair was not computed (a `NaN` entry, see [`BarrierMatrix`]).
    pub fn has_gaps(&self) -> bool {
        self.values.iter().any(|v| v.is_nan())
    }

    /// Barrier between two runs by name, if both are present.
    pub fn barrier(&self, run_a: &str, run_b: &str) -> Option<f64> {
        Some(self.get(self.index_of(run_a)?, self.index_of(run_b)?))
    }

    /// Barrier statistics of a group of runs (e.g. a basin's members) at this step: the mean and
    /// largest barrier between two members, and the smallest barrier from a member to a run outside
    /// the group. Runs absent from the matrix are ignored; a statistic over no pair is `None`.
    pub fn group_stats<S: AsRef<str>>(&self, members: &[S]) -> GroupStats {
        let inside: Vec<usize> = members.iter().filter_map(|m| self.index_of(m.as_ref())).collect();
        let mut within = Vec::new();
        for (k, &i) in inside.iter().enumerate() {
            for &j in &inside[k + 1..] {
                within.push(self.get(i, j));
                within.retain(|v| !v.is_nan());
            }
        }
        let to_others = inside
            .iter()
            .flat_map(|&i| {
                (0..self.len())
                    .filter(|j| !inside.contains(j))
                    .map(move |j| self.get(i, j))
            })
            .filter(|v| !v.is_nan())
            .reduce(f64::min);
        GroupStats {
            within_mean: (!within.is_empty()).then(|| within.iter().sum::<f64>() / within.len() as f64),
            within_max: within.iter().copied().reduce(f64::max),
            to_others_min: to_others,
        }
    }

    /// The values reordered by `order` (a permutation of `0..n`, e.g. a dendrogram leaf order):
    /// entry `(i, j)` of the result is `get(order[i], order[j])`. Used to draw heatmaps.
    pub fn reordered_values(&self, order: &[usize]) -> Vec<f64> {
        order
            .iter()
            .flat_map(|&i| order.iter().map(move |&j| self.get(i, j)))
            .collect()
    }
}

/// Barriers within a group of runs and from it to the others ([`BarrierMatrix::group_stats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupStats {
    /// Mean barrier over pairs of members.
    pub within_mean: Option<f64>,
    /// Largest barrier between two members.
    pub within_max: Option<f64>,
    /// Smallest barrier between a member and a run outside the group.
    pub to_others_min: Option<f64>,
}

/// Builds one matrix per step from barrier rows `(step, run_a, run_b, barrier)`, sorted by step.
///
/// Each step's matrix holds exactly the runs named at that step (see [`BarrierMatrix::from_pairs`]);
/// the result does not depend on the order of the rows.
pub fn matrices_from_rows<S: AsRef<str>>(
    rows: impl IntoIterator<Item = (u64, S, S, f64)>,
) -> Result<Vec<BarrierMatrix>, BasinError> {
    let mut by_step: BTreeMap<u64, Vec<(S, S, f64)>> = BTreeMap::new();
    for (step, a, b, v) in rows {
        by_step.entry(step).or_default().push((a, b, v));
    }
    by_step
        .into_iter()
        .map(|(step, pairs)| BarrierMatrix::from_pairs(step, pairs))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_symmetric_matrix_from_pairs_in_any_order() {
        let m = BarrierMatrix::from_pairs(5, [("c", "a", 2.0), ("a", "b", 1.0), ("b", "c", 3.0)]).unwrap();
        assert_eq!(m.runs, ["a", "b", "c"]);
        assert_eq!(m.values, [0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 3.0, 0.0]);
        assert_eq!(m.barrier("c", "b"), Some(3.0));
        assert_eq!(m.barrier("c", "z"), None);
        assert_eq!(BarrierMatrix::new(5, m.runs.clone(), m.values.clone()).unwrap(), m);
    }

    #[test]
    fn rejects_missing_conflicting_and_invalid_pairs() {
        let missing = BarrierMatrix::from_pairs(1, [("a", "b", 1.0), ("b", "c", 1.0)]);
        assert!(matches!(missing, Err(BasinError::MissingPair { .. })));
        let conflict = BarrierMatrix::from_pairs(1, [("a", "b", 1.0), ("b", "a", 2.0)]);
        assert!(matches!(conflict, Err(BasinError::ConflictingPair { .. })));
        let same_twice = BarrierMatrix::from_pairs(1, [("a", "b", 1.0), ("b", "a", 1.0)]);
        assert!(same_twice.is_ok());
        let infinite = BarrierMatrix::from_pairs(1, [("a", "b", f64::INFINITY)]);
        assert!(matches!(infinite, Err(BasinError::InvalidBarrier { .. })));
        let self_nan = BarrierMatrix::from_pairs(1, [("a", "a", f64::NAN)]);
        assert!(matches!(self_nan, Err(BasinError::InvalidBarrier { .. })));
        // NaN between two runs: a pair not computed (pruned), a gap.
        let gap = BarrierMatrix::from_pairs(1, [("a", "b", f64::NAN)]).unwrap();
        assert!(gap.has_gaps() && gap.get(0, 1).is_nan());
        assert!(!same_twice.unwrap().has_gaps());
        let negative = BarrierMatrix::from_pairs(1, [("a", "b", -0.5)]);
        assert!(matches!(negative, Err(BasinError::InvalidBarrier { .. })));
    }

    #[test]
    fn group_stats_within_and_to_others() {
        let m = BarrierMatrix::from_pairs(
            7,
            [
                ("a", "b", 0.1),
                ("a", "c", 0.3),
                ("b", "c", 0.2),
                ("a", "d", 0.9),
                ("b", "d", 0.8),
                ("c", "d", 0.7),
            ],
        )
        .unwrap();
        let s = m.group_stats(&["a", "b", "c", "absent"]);
        assert!((s.within_mean.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(s.within_max, Some(0.3));
        assert_eq!(s.to_others_min, Some(0.7));
        let lone = m.group_stats(&["d"]);
        assert_eq!((lone.within_mean, lone.within_max), (None, None));
        assert_eq!(lone.to_others_min, Some(0.7));
        let all = m.group_stats(&["a", "b", "c", "d"]);
        assert_eq!(all.to_others_min, None);
    }

    #[test]
    fn self_pair_declares_a_lone_run() {
        let m = BarrierMatrix::from_pairs(1, [("solo", "solo", 0.0)]).unwrap();
        assert_eq!(m.runs, ["solo"]);
        assert_eq!(m.values, [0.0]);
    }

    #[test]
    fn new_checks_invariants() {
        let runs = vec!["a".to_string(), "b".to_string()];
        assert!(BarrierMatrix::new(0, runs.clone(), vec![0.0, 1.0, 2.0, 0.0]).is_err());
        assert!(BarrierMatrix::new(0, runs.clone(), vec![1.0, 1.0, 1.0, 0.0]).is_err());
        assert!(BarrierMatrix::new(0, runs.clone(), vec![0.0, 1.0]).is_err());
        let unsorted = vec!["b".to_string(), "a".to_string()];
        assert!(BarrierMatrix::new(0, unsorted, vec![0.0, 1.0, 1.0, 0.0]).is_err());
    }

    #[test]
    fn groups_rows_by_step_and_keeps_ragged_runs() {
        let rows = vec![
            (20, "a", "b", 1.0),
            (10, "a", "b", 0.5),
            (10, "a", "c", 0.5),
            (10, "b", "c", 0.5),
        ];
        let ms = matrices_from_rows(rows).unwrap();
        assert_eq!(ms.iter().map(|m| m.step).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(ms[0].len(), 3);
        assert_eq!(ms[1].runs, ["a", "b"]);
    }
}
