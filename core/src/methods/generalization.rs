//! Do basins predict generalization? Per-basin summaries of the members' loss and error on an eval
//! set, and a permutation test of the difference in mean error between two basins (Juneja et al.
//! 2023: seeds in different basins differ out of distribution).
//!
//! The test permutes run labels: under the null hypothesis that basin membership says nothing about a
//! run's error, every split of the pooled runs into groups of the two basins' sizes is equally
//! likely. The p-value is two-sided, the fraction of splits whose |difference in means| is at least
//! the observed one. When there are at most [`EXACT_SPLITS`] splits all are enumerated (exact);
//! otherwise [`RESAMPLES`] seeded random splits estimate it as (hits + 1) / (resamples + 1).

use crate::train::rng::Rng;

/// Largest number of splits enumerated exactly.
pub const EXACT_SPLITS: u64 = 20_000;

/// Random splits drawn when there are more.
pub const RESAMPLES: usize = 10_000;

/// Relative tolerance under which a split's difference counts as equal to the observed one (so that
/// the observed split itself, recomputed in another order, always counts).
const TIE_TOLERANCE: f64 = 1e-12;

/// Mean, smallest and largest of some values (NaN when there are none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// The summary of `values`.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self {
                mean: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        Self {
            mean: mean(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// Two-sided permutation-test p-value of the difference in means between `a` and `b` (see the
/// module docs); `seed` fixes the random splits when they are not enumerated. NaN when either group
/// is empty or a value is not finite.
pub fn permutation_p_value(a: &[f64], b: &[f64], seed: u64) -> f64 {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let total: f64 = pooled.iter().sum();
    let (n, k) = (pooled.len(), a.len());
    let statistic = |sum_a: f64| (sum_a / k as f64 - (total - sum_a) / (n - k) as f64).abs();
    let observed = statistic(a.iter().sum());
    let at_least = |sum_a: f64| statistic(sum_a) >= observed * (1.0 - TIE_TOLERANCE) - TIE_TOLERANCE;
    match binomial(n as u64, k as u64) {
        Some(splits) if splits <= EXACT_SPLITS => {
            let mut hits = 0u64;
            for_each_subset_sum(&pooled, k, &mut |sum_a| hits += u64::from(at_least(sum_a)));
            hits as f64 / splits as f64
        }
        _ => {
            let mut rng = Rng::new(seed, "permutation-test");
            let mut order: Vec<usize> = (0..n).collect();
            let mut hits = 0usize;
            for _ in 0..RESAMPLES {
                rng.shuffle(&mut order);
                let sum_a: f64 = order[..k].iter().map(|&i| pooled[i]).sum();
                hits += usize::from(at_least(sum_a));
            }
            (hits + 1) as f64 / (RESAMPLES + 1) as f64
        }
    }
}

/// Calls `visit` with the sum of every `k`-element subset of `values`.
fn for_each_subset_sum(values: &[f64], k: usize, visit: &mut dyn FnMut(f64)) {
    fn walk(values: &[f64], start: usize, left: usize, sum: f64, visit: &mut dyn FnMut(f64)) {
        if left == 0 {
            visit(sum);
            return;
        }
        for i in start..=values.len() - left {
            walk(values, i + 1, left - 1, sum + values[i], visit);
        }
    }
    walk(values, 0, k, 0.0, visit);
}

/// n choose k, or None when it overflows.
fn binomial(n: u64, k: u64) -> Option<u64> {
    let k = k.min(n - k);
    let mut result: u64 = 1;
    for i in 0..k {
        result = result.checked_mul(n - i)? / (i + 1);
    }
    Some(result)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_values() {
        let s = Summary::of(&[0.25, 0.5, 0.75]);
        assert_eq!((s.mean, s.min, s.max), (0.5, 0.25, 0.75));
        assert!(Summary::of(&[]).mean.is_nan());
    }

    #[test]
    fn exact_p_value_of_a_hand_built_case() {
        // Pooled {1, 2, 3, 4}, groups of 2: the 6 splits' |differences| are
        // {1,2}|{3,4}: 2, {1,3}|{2,4}: 1, {1,4}|{2,3}: 0, and their mirrors: 0, 1, 2.
        assert_eq!(permutation_p_value(&[1.0, 2.0], &[3.0, 4.0], 0), 2.0 / 6.0);
        assert_eq!(permutation_p_value(&[1.0, 3.0], &[2.0, 4.0], 0), 4.0 / 6.0);
        assert_eq!(permutation_p_value(&[1.0, 4.0], &[2.0, 3.0], 0), 1.0);
        // One run against three: splits {x}|rest, |x - mean(rest)| = 4/3 |x - 2.5|.
        assert_eq!(permutation_p_value(&[4.0], &[1.0, 2.0, 3.0], 0), 2.0 / 4.0);
        assert!(permutation_p_value(&[], &[1.0], 0).is_nan());
        assert!(permutation_p_value(&[f64::NAN], &[1.0], 0).is_nan());
    }

    #[test]
    fn sampled_p_value_is_seeded_and_agrees_with_a_clear_difference() {
        // 40 runs (C(40, 20) splits, sampled): clearly separated groups.
        let a: Vec<f64> = (0..20).map(|i| 0.1 + 0.001 * i as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| 0.3 + 0.001 * i as f64).collect();
        let p = permutation_p_value(&a, &b, 7);
        assert_eq!(p, 1.0 / (RESAMPLES + 1) as f64);
        assert_eq!(p, permutation_p_value(&a, &b, 7));
        // Interleaved groups: no difference to speak of.
        let c: Vec<f64> = (0..40).step_by(2).map(|i| i as f64).collect();
        let d: Vec<f64> = (1..40).step_by(2).map(|i| i as f64).collect();
        assert!(permutation_p_value(&c, &d, 7) > 0.5);
    }

    #[test]
    fn binomials() {
        assert_eq!(binomial(4, 2), Some(6));
        assert_eq!(binomial(40, 20), Some(137_846_528_820));
        assert_eq!(binomial(200, 100), None);
    }
}
