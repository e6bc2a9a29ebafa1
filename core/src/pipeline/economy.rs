//! `--economy`: fewer forward passes for the same basins (ARCHITECTURE.md, "Economy mode"). Off by
//! default: the exact full grid stays the reference. Three savings, each usable on its own:
//!
//! - **Adaptive alphas**: a path is first evaluated at the coarse interior grid
//!   [`COARSE_ALPHAS`]; the bump is then refined by golden-section search around its largest point
//!   ([`refine_peak`], at most [`REFINEMENTS`] more alphas, down to [`ALPHA_TOLERANCE`]).
//! - **Sequential examples**: where a threshold decides (the clustering's eps at the step), a path
//!   is evaluated on a first chunk of the eval examples, and chunks (doubling in size) are added
//!   only while the bootstrap interval of its barrier still straddles the threshold.
//! - **Pair pruning** (threshold clustering only, in [`crate::pipeline::sweep`]): a seed pair
//!   already joined by connected pairs at its step is not computed.
//!
//! A path's barrier is then computed on the alphas and examples actually used: its endpoints too are
//! the means over those examples (so the chord is measured on the same data).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::methods::bootstrap::{Resampler, interval, resample_path};
use crate::methods::interpolation::{BarrierKind, refine_peak};
use crate::models::evaluator::{EvalResult, Evaluator, Prepared};
use crate::names::Named;
use crate::pipeline::sweep::Metrics;

/// Bumped whenever cached economy paths would change meaning.
pub const ECONOMY_VERSION: &str = "lineage-economy-v1";

/// The interior alphas every economy path starts with.
pub const COARSE_ALPHAS: [f64; 3] = [0.25, 0.5, 0.75];

/// Most alphas added around the bump by golden-section refinement.
pub const REFINEMENTS: usize = 4;

/// Refinement stops when the bracket around the bump is narrower than this.
pub const ALPHA_TOLERANCE: f64 = 0.05;

/// The first chunk of examples is this fraction of the eval set (each later chunk doubles).
pub const FIRST_CHUNK_DIVISOR: usize = 8;

/// ... but at least this many examples (all of them when fewer).
pub const MIN_FIRST_CHUNK: usize = 32;

/// Resamples of the examples seen so far behind each sequential decision.
pub const DECISION_RESAMPLES: usize = 200;

/// Which savings economy mode uses: `--economy` turns on all three, `--economy alphas,pairs` some.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconomyOptions {
    /// Adaptive alphas (else the full grid).
    pub alphas: bool,
    /// Sequential examples (else every example).
    pub examples: bool,
    /// Pair pruning (threshold clustering).
    pub pairs: bool,
}

impl EconomyOptions {
    /// Every saving.
    pub const ALL: Self = Self {
        alphas: true,
        examples: true,
        pairs: true,
    };

    /// True when any saving is on.
    pub fn is_on(&self) -> bool {
        self.alphas || self.examples || self.pairs
    }

    /// True when every saving is off (the default: the exact grid).
    pub fn is_off(&self) -> bool {
        !self.is_on()
    }

    /// Parses `all` or a comma-separated list of `alphas`, `examples`, `pairs`.
    pub fn parse(text: &str) -> std::result::Result<Self, CoreError> {
        if text.trim() == "all" {
            return Ok(Self::ALL);
        }
        let mut parts = Self::default();
        for part in text.split(',').map(str::trim) {
            match part {
                "alphas" => parts.alphas = true,
                "examples" => parts.examples = true,
                "pairs" => parts.pairs = true,
                other => {
                    return Err(CoreError::InvalidArgument(format!(
                        "unknown --economy part `{other}` (expected `all` or a list of alphas, examples, pairs)"
                    )));
                }
            }
        }
        Ok(parts)
    }

    /// The parts on, as [`EconomyOptions::parse`] reads them (`off` when none).
    pub fn describe(&self) -> String {
        let on: Vec<&str> = [
            ("alphas", self.alphas),
            ("examples", self.examples),
            ("pairs", self.pairs),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
        if on.is_empty() { "off".into() } else { on.join(",") }
    }
}

/// The threshold that decides a path's sequential examples: is its loss barrier of `kind` below
/// `eps` (connected) or not? Decided once the bootstrap interval lies on one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Barrier threshold (the clustering's eps at the path's step).
    pub eps: f64,
    /// The barrier definition the basins use.
    pub kind: BarrierKind,
}

/// An economy path as cached: the curve on the alphas and examples actually used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EconomyPath {
    /// Alphas of the curve, 0 and 1 included, increasing.
    pub alphas: Vec<f64>,
    /// Mean loss and error at each alpha over the examples used (endpoints included).
    pub curve: Vec<Metrics>,
    /// Number of eval examples used (the first ones).
    pub examples: usize,
    /// Forward passes spent on the path's interior (one parameter set over one chunk each).
    pub forward_passes: u64,
    /// Example evaluations spent on the path's interior.
    pub example_evaluations: u64,
}

/// A computed economy path with its per-example curve (for the bootstrap summary).
pub struct EconomyResult {
    /// What the store keeps.
    pub path: EconomyPath,
    /// Per-example evaluations along the curve (endpoints included), on the examples used.
    pub curve: Vec<EvalResult>,
}

/// The ends of the chunks of examples: the first [`FIRST_CHUNK_DIVISOR`]th (at least
/// [`MIN_FIRST_CHUNK`]), then doubling, each end moved forward to a unit boundary (`unit_of`: the
/// resampling unit of each example, e.g. its sequence). One chunk of everything when not
/// `sequential`.
pub fn chunk_ends(unit_of: &[u32], sequential: bool) -> Vec<usize> {
    let n = unit_of.len();
    if !sequential || n == 0 {
        return vec![n];
    }
    let boundary = |mut end: usize| {
        while end < n && end > 0 && unit_of[end] == unit_of[end - 1] {
            end += 1;
        }
        end.min(n)
    };
    let mut ends = Vec::new();
    let mut size = (n / FIRST_CHUNK_DIVISOR).max(MIN_FIRST_CHUNK);
    let mut end = 0;
    while end < n {
        end = boundary((end + size).min(n));
        ends.push(end);
        size *= 2;
    }
    ends
}

/// Evaluates the path from `a` to `b` economically: the interior alphas `grid` on the first chunk
/// of examples, with `refine` golden-section refinement around the bump, then further chunks while
/// `decision` is undecided (all chunks of `chunks` without a decision). `ends` are the endpoints'
/// evaluations over every example; `decider` resamples the eval set's units for decisions.
pub fn economy_path(
    evaluator: &dyn Evaluator,
    (a, b): (&Prepared, &Prepared),
    ends: (&EvalResult, &EvalResult),
    (grid, refine): (&[f64], bool),
    chunks: &[usize],
    decision: Option<Decision>,
    decider: &Resampler,
) -> Result<EconomyResult> {
    let mut interior: Vec<f64> = grid.to_vec();
    let mut points: Vec<EvalResult> = vec![EvalResult::from_examples(Vec::new(), Vec::new()); interior.len()];
    let (mut passes, mut evaluations) = (0u64, 0u64);
    let mut done = 0;
    for (c, &end) in chunks.iter().enumerate() {
        let chunk = evaluator.evaluate_path_on(a, b, &interior, done..end)?;
        passes += interior.len() as u64;
        evaluations += (interior.len() * (end - done)) as u64;
        for (point, more) in points.iter_mut().zip(chunk) {
            *point = joined(point, more);
        }
        done = end;
        if c == 0 && refine {
            let (alphas, losses) = curve_losses(&interior, &points, ends, 0..done);
            if losses.iter().all(|l| l.is_finite()) {
                let mut added = Vec::new();
                refine_peak(&alphas, &losses, ALPHA_TOLERANCE, REFINEMENTS, |x| {
                    let r = evaluator.evaluate_path_on(a, b, &[x], 0..done)?;
                    passes += 1;
                    evaluations += done as u64;
                    let loss = r[0].loss;
                    added.push((x, r.into_iter().next().expect("one alpha asked")));
                    Ok(loss)
                })?;
                for (x, r) in added {
                    let at = interior.partition_point(|&y| y < x);
                    if interior.get(at) != Some(&x) {
                        interior.insert(at, x);
                        points.insert(at, r);
                    }
                }
            }
        }
        let Some(decision) = decision else { continue };
        if !(ends.0.loss.is_finite() && ends.1.loss.is_finite())
            || decided(&interior, &points, ends, done, decision, decider)
        {
            break;
        }
    }
    let curve = full_curve(&points, ends, 0..done);
    Ok(EconomyResult {
        path: EconomyPath {
            alphas: with_ends(&interior),
            curve: curve.iter().map(Metrics::from).collect(),
            examples: done,
            forward_passes: passes,
            example_evaluations: evaluations,
        },
        curve,
    })
}

/// `first` followed by `more` (examples in order).
fn joined(first: &EvalResult, more: EvalResult) -> EvalResult {
    let mut loss = first.per_example_loss.clone();
    let mut correct = first.per_example_correct.clone();
    loss.extend(more.per_example_loss);
    correct.extend(more.per_example_correct);
    EvalResult::from_examples(loss, correct)
}

/// The curve (endpoints included) restricted to `examples`.
fn full_curve(points: &[EvalResult], ends: (&EvalResult, &EvalResult), examples: Range<usize>) -> Vec<EvalResult> {
    let mut curve = vec![ends.0.restricted(examples.clone())];
    curve.extend(points.iter().map(|p| p.restricted(examples.clone())));
    curve.push(ends.1.restricted(examples));
    curve
}

/// The interior alphas with the endpoints 0 and 1.
fn with_ends(interior: &[f64]) -> Vec<f64> {
    let mut alphas = vec![0.0];
    alphas.extend(interior);
    alphas.push(1.0);
    alphas
}

/// Whole-curve alphas and mean losses on `examples`.
fn curve_losses(
    interior: &[f64],
    points: &[EvalResult],
    ends: (&EvalResult, &EvalResult),
    examples: Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    let losses = full_curve(points, ends, examples).iter().map(|r| r.loss).collect();
    (with_ends(interior), losses)
}

/// True when the bootstrap interval of the loss barrier over the first `done` examples lies
/// wholly below `eps` or wholly at or above it.
fn decided(
    interior: &[f64],
    points: &[EvalResult],
    ends: (&EvalResult, &EvalResult),
    done: usize,
    decision: Decision,
    decider: &Resampler,
) -> bool {
    let curve = full_curve(points, ends, 0..done);
    let refs: Vec<&EvalResult> = curve.iter().collect();
    let resampled = resample_path(&with_ends(interior), &refs, &decider.prefix(done));
    let kind = BarrierKind::ALL.iter().position(|k| *k == decision.kind).unwrap_or(0);
    let (lo, hi) = interval(&resampled.loss[kind]);
    hi < decision.eps || lo >= decision.eps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_and_end_on_unit_boundaries() {
        let examples: Vec<u32> = (0..1000).collect();
        assert_eq!(chunk_ends(&examples, true), [125, 375, 875, 1000]);
        assert_eq!(chunk_ends(&examples, false), [1000]);
        let small: Vec<u32> = (0..40).collect();
        assert_eq!(chunk_ends(&small, true), [32, 40]);
        // Sequences of 10 tokens: a chunk never splits one.
        let tokens: Vec<u32> = (0..400).map(|i| i / 10).collect();
        assert_eq!(chunk_ends(&tokens, true), [50, 150, 350, 400]);
        assert_eq!(chunk_ends(&[], true), [0]);
    }
}
