//! Do basins predict generalization? For each step with basins and each eval set: the loss and
//! error of each basin's members, and each pair of basins' difference in mean error with its
//! permutation-test p-value (`methods::generalization`). Diverged runs are in no basin, so in no row.

use std::collections::{BTreeMap, HashMap};

use crate::methods::basins::BasinId;
use crate::methods::generalization::{Summary, permutation_p_value};
use crate::output::tables::{BasinComparisonRow, GeneralizationRow};
use crate::pipeline::basins_over_time::BasinsOverTime;
use crate::pipeline::sweep::Sweep;

/// The `generalization` and `generalization_tests` tables.
#[derive(Debug, Clone, Default)]
pub struct Generalization {
    /// One row per (step, set, basin).
    pub basins: Vec<GeneralizationRow>,
    /// One row per (step, set, pair of basins).
    pub comparisons: Vec<BasinComparisonRow>,
}

/// Loss and error of each run, by (run, step), on one eval set.
type Scores<'a> = HashMap<(&'a str, u64), (f64, f64)>;

/// Summarises every basin of `basins` on every eval set of `sweep`.
pub fn generalization(sweep: &Sweep, basins: &BasinsOverTime) -> Generalization {
    let mut members: BTreeMap<u64, BTreeMap<BasinId, Vec<&str>>> = BTreeMap::new();
    for c in &basins.clusters {
        if let Some(basin) = c.basin {
            members
                .entry(c.step)
                .or_default()
                .entry(basin)
                .or_default()
                .push(&c.run);
        }
    }
    let mut out = Generalization::default();
    for set in sweep.set_names() {
        let scores: Scores = sweep
            .evals_on(set)
            .iter()
            .map(|e| ((e.run.as_str(), e.step), (e.loss, e.error)))
            .collect();
        for (&step, at_step) in &members {
            let of_basin: Vec<(BasinId, Vec<(f64, f64)>)> = at_step
                .iter()
                .map(|(&basin, runs)| {
                    let values = runs.iter().filter_map(|r| scores.get(&(*r, step)).copied()).collect();
                    (basin, values)
                })
                .collect();
            out.basins.extend(
                of_basin
                    .iter()
                    .map(|(basin, values)| basin_row(step, set, *basin, values)),
            );
            for (i, (a, va)) in of_basin.iter().enumerate() {
                for (b, vb) in &of_basin[i + 1..] {
                    out.comparisons.push(comparison_row(step, set, (*a, va), (*b, vb)));
                }
            }
        }
    }
    out
}

/// The row of one basin: its members' (loss, error) `values`.
fn basin_row(step: u64, set: &str, basin: BasinId, values: &[(f64, f64)]) -> GeneralizationRow {
    let losses: Vec<f64> = values.iter().map(|v| v.0).collect();
    let errors: Vec<f64> = values.iter().map(|v| v.1).collect();
    let (loss, error) = (Summary::of(&losses), Summary::of(&errors));
    GeneralizationRow {
        step,
        set: set.to_string(),
        basin,
        n_runs: values.len() as u64,
        mean_loss: loss.mean,
        min_loss: loss.min,
        max_loss: loss.max,
        mean_error: error.mean,
        min_error: error.min,
        max_error: error.max,
    }
}

/// The comparison of basins `a` and `b` (with their members' (loss, error) values).
fn comparison_row(
    step: u64,
    set: &str,
    (a, va): (BasinId, &[(f64, f64)]),
    (b, vb): (BasinId, &[(f64, f64)]),
) -> BasinComparisonRow {
    let errors = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<f64>>();
    let (ea, eb) = (errors(va), errors(vb));
    BasinComparisonRow {
        step,
        set: set.to_string(),
        basin_a: a,
        basin_b: b,
        n_a: ea.len() as u64,
        n_b: eb.len() as u64,
        error_difference: Summary::of(&ea).mean - Summary::of(&eb).mean,
        p_value: permutation_p_value(&ea, &eb, step),
    }
}
