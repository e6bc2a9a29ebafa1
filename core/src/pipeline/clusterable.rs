//! The seed-pair barrier matrices that basins are clustered from, made from whatever the sweep could
//! compute (ARCHITECTURE.md, "Diverged runs and incomplete steps"):
//! - a run whose loss at a step is NaN or infinite has *diverged* there and is left out of that step;
//! - a non-finite barrier between two runs that did not diverge (the path between them blew up
//!   while both ends are fine) counts as the zoo's ceiling: the largest of every finite barrier and
//!   every step's mean loss (at least 1), so it is above any threshold and drawn as the top colour;
//! - a run missing a barrier to another run at a step (a path that failed) is left out of that step,
//!   the run with the most missing pairs first, until the matrix is complete;
//! - a seed pair `--economy` pruned (its runs already joined by connected pairs) is a gap (`NaN`) in
//!   the matrix, not a missing pair.
//!
//! Each choice is reported as a warning that names the step and the runs.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::CoreError;
use crate::methods::basins::BarrierMatrix;
use crate::methods::interpolation::BarrierKind;
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::Sweep;

/// (step, run) of every diverged checkpoint.
pub type Diverged = BTreeSet<(u64, String)>;

/// The checkpoints of `sweep` whose loss is not finite.
pub fn diverged(sweep: &Sweep) -> Diverged {
    sweep
        .evals
        .iter()
        .filter(|e| e.diverged)
        .map(|e| (e.step, e.run.clone()))
        .collect()
}

/// Mean loss of the runs at each step that did not diverge.
pub fn mean_loss_by_step(sweep: &Sweep) -> BTreeMap<u64, f64> {
    let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for e in sweep.evals.iter().filter(|e| !e.diverged) {
        let entry = sums.entry(e.step).or_default();
        entry.0 += e.loss;
        entry.1 += 1;
    }
    sums.into_iter().map(|(s, (sum, n))| (s, sum / n as f64)).collect()
}

/// One step's runs and barriers before they become a matrix.
#[derive(Default)]
struct StepPairs {
    runs: BTreeSet<String>,
    barriers: BTreeMap<(String, String), f64>,
}

/// The raw seed-pair matrices of `kind` at every step, with the warnings that explain what was left
/// out or capped; `mean_loss` is [`mean_loss_by_step`] of `sweep`.
pub fn clusterable_matrices(
    sweep: &Sweep,
    kind: BarrierKind,
    diverged: &Diverged,
    mean_loss: &BTreeMap<u64, f64>,
) -> Result<(Vec<BarrierMatrix>, Vec<String>), CoreError> {
    let live = |step: u64, run: &str| !diverged.contains(&(step, run.to_string()));
    let rows: Vec<_> = sweep
        .barriers
        .iter()
        .filter(|b| b.pair == PairKind::Seeds && b.kind == kind && !b.aligned)
        .filter(|b| live(b.step, &b.run_a) && live(b.step, &b.run_b))
        .collect();
    let ceiling = ceiling(rows.iter().map(|b| b.loss_barrier), mean_loss.values().copied());
    let mut warnings = Vec::new();
    let mut steps: BTreeMap<u64, StepPairs> = BTreeMap::new();
    for e in sweep.evals.iter().filter(|e| !e.diverged) {
        steps.entry(e.step).or_default().runs.insert(e.run.clone());
    }
    for b in rows {
        let value = if b.loss_barrier.is_finite() {
            b.loss_barrier
        } else {
            warnings.push(format!(
                "step {}: the path between {} and {} has a non-finite loss though neither diverged; \
                 its barrier counts as the ceiling {ceiling:.4}",
                b.step, b.run_a, b.run_b
            ));
            ceiling
        };
        let entry = steps.entry(b.step).or_default();
        entry.runs.extend([b.run_a.clone(), b.run_b.clone()]);
        let key = ordered(&b.run_a, &b.run_b);
        entry.barriers.insert(key, value);
    }
    for (step, a, b) in &sweep.pruned {
        if live(*step, a) && live(*step, b) {
            let entry = steps.entry(*step).or_default();
            entry.barriers.insert(ordered(a, b), f64::NAN);
        }
    }
    let mut matrices = Vec::new();
    for (step, mut pairs) in steps {
        leave_out_incomplete(step, &mut pairs, &mut warnings);
        let self_pairs = pairs.runs.iter().map(|r| (r.clone(), r.clone(), 0.0));
        let others = pairs.barriers.into_iter().map(|((a, b), v)| (a, b, v));
        matrices.push(BarrierMatrix::from_pairs(step, self_pairs.chain(others))?);
    }
    Ok((matrices, warnings))
}

/// The value a non-finite barrier between live runs stands for.
fn ceiling(barriers: impl Iterator<Item = f64>, mean_losses: impl Iterator<Item = f64>) -> f64 {
    barriers
        .chain(mean_losses)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
}

/// `(a, b)` in name order.
fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Removes runs until every pair of the remaining runs has a barrier: each time the run with the most
/// missing pairs (ties: the last in name order), with a warning.
fn leave_out_incomplete(step: u64, pairs: &mut StepPairs, warnings: &mut Vec<String>) {
    loop {
        let runs: Vec<&String> = pairs.runs.iter().collect();
        let mut missing: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                if !pairs.barriers.contains_key(&ordered(a, b)) {
                    missing.entry(a).or_default().push(b);
                    missing.entry(b).or_default().push(a);
                }
            }
        }
        let Some((worst, partners)) = missing.into_iter().rev().max_by_key(|(_, p)| p.len()) else {
            return;
        };
        let worst = worst.clone();
        warnings.push(format!(
            "step {step}: {worst} left out of the basins: no barrier to {} (its path was not computed)",
            partners.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        ));
        pairs.runs.remove(&worst);
        pairs.barriers.retain(|(a, b), _| a != &worst && b != &worst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tables::{BarrierRow, EvalRow};

    fn eval(run: &str, step: u64, loss: f64) -> EvalRow {
        EvalRow {
            run: run.into(),
            step,
            loss,
            error: 0.0,
            bits_per_example: loss / std::f64::consts::LN_2,
            diverged: !loss.is_finite(),
            set: "eval".into(),
        }
    }

    fn barrier(a: &str, b: &str, step: u64, value: f64) -> BarrierRow {
        BarrierRow {
            step,
            run_a: a.into(),
            run_b: b.into(),
            step_b: step,
            pair: PairKind::Seeds,
            kind: BarrierKind::Segment,
            loss_barrier: value,
            error_barrier: 0.0,
            aligned: false,
            set: "eval".into(),
            loss_barrier_lo: None,
            loss_barrier_hi: None,
            error_barrier_lo: None,
            error_barrier_hi: None,
        }
    }

    #[test]
    fn diverged_runs_are_left_out_and_blown_up_paths_capped() {
        let sweep = Sweep {
            evals: vec![
                eval("a", 1, 1.0),
                eval("b", 1, f64::NAN),
                eval("c", 1, 2.0),
                eval("d", 1, 1.5),
            ],
            barriers: vec![
                barrier("a", "b", 1, f64::NAN),
                barrier("a", "c", 1, 0.5),
                barrier("a", "d", 1, f64::INFINITY),
                barrier("b", "c", 1, f64::NAN),
                barrier("b", "d", 1, f64::NAN),
                barrier("c", "d", 1, 0.25),
            ],
            ..Sweep::default()
        };
        let diverged = diverged(&sweep);
        assert_eq!(diverged, BTreeSet::from([(1, "b".to_string())]));
        let mean_loss = mean_loss_by_step(&sweep);
        let (matrices, warnings) = clusterable_matrices(&sweep, BarrierKind::Segment, &diverged, &mean_loss).unwrap();
        assert_eq!(matrices[0].runs, ["a", "c", "d"]);
        // The ceiling is the largest of the finite barriers and the mean loss of live runs (1.5), at least 1.
        assert_eq!(matrices[0].barrier("a", "d"), Some(1.5));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("a and d"), "{warnings:?}");
    }

    #[test]
    fn a_run_with_missing_pairs_is_left_out() {
        let sweep = Sweep {
            evals: vec![eval("a", 3, 1.0), eval("b", 3, 1.0), eval("c", 3, 1.0)],
            barriers: vec![barrier("a", "b", 3, 0.5)],
            ..Sweep::default()
        };
        let mean_loss = mean_loss_by_step(&sweep);
        let (matrices, warnings) =
            clusterable_matrices(&sweep, BarrierKind::Segment, &Diverged::new(), &mean_loss).unwrap();
        assert_eq!(matrices[0].runs, ["a", "b"]);
        assert_eq!(
            warnings,
            ["step 3: c left out of the basins: no barrier to a, b (its path was not computed)"]
        );
    }
}
