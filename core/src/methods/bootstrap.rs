//! Bootstrap uncertainty of barriers (ARCHITECTURE.md, "Bootstrap intervals and co-membership").
//!
//! A barrier is a statistic of the eval examples: resampling them with replacement and recomputing it
//! tells how much it owes to the particular examples drawn. Resample `b` of [`Resampler`] draws the
//! eval set's *units* (examples, or whole sequences for a language model whose examples are tokens)
//! with replacement, from a generator seeded by the seed and `b` alone, so every path of an analysis
//! is resampled with the same weights: the barriers of one resample are those of one alternative eval
//! set, and clustering them gives that eval set's basins (co-membership).
//!
//! A resampled curve value is the weighted mean `sum_i w_i f_i / sum_i w_i` of the per-example
//! losses (or errors) at each alpha, `w_i` the number of times example `i`'s unit was drawn. The 95%
//! interval is the percentile interval of the `B` resampled barriers: their 2.5% and 97.5%
//! quantiles, linearly interpolated between order statistics as NumPy's default `quantile` does.

use crate::methods::interpolation::BarrierKind;
use crate::models::evaluator::EvalResult;
use crate::names::Named;
use crate::train::rng::Rng;

/// Default number of resamples (`--bootstrap`).
pub const DEFAULT_RESAMPLES: usize = 1000;

/// Lower and upper quantile of the reported interval.
pub const INTERVAL: (f64, f64) = (0.025, 0.975);

/// Co-membership frequencies in this closed range mark an uncertain split (dashed tree edge,
/// hatched heatmap cell): neither always together nor always apart, to 5% either way.
pub const UNCERTAIN: std::ops::RangeInclusive<f64> = 0.05..=0.95;

/// True when a co-membership frequency says the split is uncertain (see [`UNCERTAIN`]).
pub fn is_uncertain(co_membership: f64) -> bool {
    UNCERTAIN.contains(&co_membership)
}

/// The resampling plan of an eval set: which unit each example belongs to, how many resamples, and
/// the seed.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Unit of each example (`0..n_units`).
    unit_of: Vec<u32>,
    n_units: usize,
    resamples: usize,
    seed: u64,
}

impl Resampler {
    /// Resamples examples one by one: `n_examples` units of one example each.
    pub fn examples(n_examples: usize, resamples: usize, seed: u64) -> Self {
        Self {
            unit_of: (0..n_examples as u32).collect(),
            n_units: n_examples,
            resamples,
            seed,
        }
    }

    /// Resamples groups of examples: `units[i]` names the unit (e.g. the sequence) of example `i`;
    /// units without an example are never drawn.
    pub fn units(units: Vec<u32>, resamples: usize, seed: u64) -> Self {
        // Numbered 0.. in order of first appearance.
        let mut number: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let unit_of: Vec<u32> = units
            .iter()
            .map(|&u| {
                let next = number.len() as u32;
                *number.entry(u).or_insert(next)
            })
            .collect();
        let n_units = number.len();
        Self {
            unit_of,
            n_units,
            resamples,
            seed,
        }
    }

    /// The same resamples restricted to the first `n` examples (whole units when `n` ends on a unit
    /// boundary): what a bootstrap over those examples alone draws.
    pub fn prefix(&self, n: usize) -> Self {
        Self::units(
            self.unit_of[..n.min(self.unit_of.len())].to_vec(),
            self.resamples,
            self.seed,
        )
    }

    /// The resampling unit of each example.
    pub fn unit_of(&self) -> &[u32] {
        &self.unit_of
    }

    /// Number of resamples.
    pub fn resamples(&self) -> usize {
        self.resamples
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many times each *example* is drawn in resample `b`: its unit's draw count, from
    /// `n_units` uniform draws with replacement of generator (`seed`, `b`).
    pub fn weights(&self, b: usize) -> Vec<u32> {
        let mut rng = Rng::new(self.seed, &format!("bootstrap resample {b}"));
        let mut counts = vec![0u32; self.n_units];
        for _ in 0..self.n_units {
            counts[rng.below(self.n_units)] += 1;
        }
        self.unit_of.iter().map(|&u| counts[u as usize]).collect()
    }
}

/// The resampled barriers of one interpolation path: for each barrier kind (in
/// [`BarrierKind::ALL`] order), the `B` loss barriers and the `B` error barriers, resample by
/// resample.
#[derive(Debug, Clone, PartialEq)]
pub struct ResampledPath {
    /// Loss barriers, `[kind][b]`.
    pub loss: Vec<Vec<f64>>,
    /// Error barriers, `[kind][b]`.
    pub error: Vec<Vec<f64>>,
}

/// Resamples the curve `curve` (one evaluation per alpha, endpoints included, each with its
/// per-example losses and correctness over the same examples) and computes every barrier of every
/// resample.
pub fn resample_path(alphas: &[f64], curve: &[&EvalResult], resampler: &Resampler) -> ResampledPath {
    let kinds = BarrierKind::ALL.len();
    let mut out = ResampledPath {
        loss: vec![Vec::with_capacity(resampler.resamples); kinds],
        error: vec![Vec::with_capacity(resampler.resamples); kinds],
    };
    let (mut losses, mut errors) = (vec![0.0; curve.len()], vec![0.0; curve.len()]);
    for b in 0..resampler.resamples {
        let weights = resampler.weights(b);
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (k, point) in curve.iter().enumerate() {
            let (mut loss, mut wrong) = (0.0f64, 0.0f64);
            for ((&w, &l), &c) in weights
                .iter()
                .zip(&point.per_example_loss)
                .zip(&point.per_example_correct)
            {
                if w > 0 {
                    loss += f64::from(w) * f64::from(l);
                    wrong += if c { 0.0 } else { f64::from(w) };
                }
            }
            losses[k] = loss / total;
            errors[k] = wrong / total;
        }
        for (i, kind) in BarrierKind::ALL.iter().enumerate() {
            out.loss[i].push(kind.barrier(alphas, &losses));
            out.error[i].push(kind.barrier(alphas, &errors));
        }
    }
    out
}

/// The `q`-quantile of `values` (`0 <= q <= 1`) as NumPy's default (`linear`) method computes it:
/// with the values sorted, position `h = (n-1)·q` between order statistics `x[floor h]` and
/// `x[floor h + 1]`. NaN when there is no value or any value is NaN.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let h = (sorted.len() - 1) as f64 * q;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let (x0, x1) = (sorted[below], sorted[above]);
    if x0 == x1 {
        return x0;
    }
    x0 + (h - below as f64) * (x1 - x0)
}

/// The 95% percentile interval of `values` ([`INTERVAL`]).
pub fn interval(values: &[f64]) -> (f64, f64) {
    (quantile(values, INTERVAL.0), quantile(values, INTERVAL.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([3, 1, 2, 10], [0, 0.25, 0.5, 0.9, 1]) = [1, 1.75, 2.5, 7.9, 10]
        let v = [3.0, 1.0, 2.0, 10.0];
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 7.9), (1.0, 10.0)] {
            assert!((quantile(&v, q) - want).abs() < 1e-12, "q {q}: {}", quantile(&v, q));
        }
        assert!(quantile(&[], 0.5).is_nan());
        assert!(quantile(&[1.0, f64::NAN], 0.5).is_nan());
        assert_eq!(quantile(&[4.0], 0.975), 4.0);
    }

    #[test]
    fn weights_draw_every_unit_count_times_and_repeat_by_seed() {
        let r = Resampler::examples(50, 3, 7);
        for b in 0..3 {
            let w = r.weights(b);
            assert_eq!(w.iter().sum::<u32>(), 50);
            assert_eq!(w, r.weights(b), "resample {b} is a function of the seed and b");
        }
        assert_ne!(r.weights(0), r.weights(1));
        assert_ne!(r.weights(0), Resampler::examples(50, 3, 8).weights(0));
    }

    #[test]
    fn grouped_units_share_their_weight() {
        // Examples 0-2 are sequence 0, 3-4 sequence 2, 5 sequence 5 (the others predict nothing).
        let r = Resampler::units(vec![0, 0, 0, 2, 2, 5], 20, 1);
        for b in 0..20 {
            let w = r.weights(b);
            assert!(w[0] == w[1] && w[1] == w[2] && w[3] == w[4], "{w:?}");
            assert_eq!(w[0] + w[3] + w[5], 3, "three units drawn: {w:?}");
        }
    }

    #[test]
    fn a_flat_path_has_zero_barriers_under_every_resample() {
        let point = EvalResult::from_examples(vec![0.5, 1.5, 0.25, 2.0], vec![true, false, true, true]);
        let alphas = [0.0, 0.5, 1.0];
        let r = Resampler::examples(4, 25, 3);
        let out = resample_path(&alphas, &[&point, &point, &point], &r);
        for kind in 0..BarrierKind::ALL.len() {
            assert_eq!(out.loss[kind].len(), 25);
            assert!(out.loss[kind].iter().chain(&out.error[kind]).all(|&v| v == 0.0));
        }
    }
}
