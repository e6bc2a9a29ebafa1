//! `lineage merge`: combine the outputs of `lineage batch --shard K/N` runs into the tables a single
//! run gives (same rows, same order), ready for the basin analysis.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::CoreError;
use crate::output::report::Report;
use crate::output::schema::read_table;
use crate::output::tables::{BarrierRow, CheckpointRow, EvalRow, InterpolationRow};
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::{SetRows, Sweep};
use crate::pipeline::units::UnitCounts;

/// The sort key of a pair in the single-run plan: (step, pair kind, run A, run B, step B).
type PairOrder = (u64, PairKind, String, String, u64);

/// Reads the shard output folders and returns their union in single-run order, without duplicates,
/// and the first shard's report. Every shard must come from the same eval data and evaluator
/// (checked through `report.json`).
pub fn merge_shards(dirs: &[PathBuf]) -> Result<(Sweep, Report), CoreError> {
    let mut merged = Sweep::default();
    let mut first: Option<Report> = None;
    let mut checkpoints = BTreeMap::new();
    let mut evals = BTreeMap::new();
    let mut interpolation = BTreeMap::new();
    let mut barriers = BTreeMap::new();
    for dir in dirs {
        let report = Report::read(dir)?;
        let reference = first.get_or_insert_with(|| report.clone());
        if reference.data_sha256 != report.data_sha256 || reference.evaluator != report.evaluator {
            return Err(CoreError::InvalidArgument(format!(
                "{}: this shard used other eval data or another model ({}) than the first ({})",
                dir.display(),
                report.evaluator,
                reference.evaluator
            )));
        }
        for w in &report.warnings {
            if !merged.warnings.contains(w) {
                merged.warnings.push(w.clone());
            }
        }
        merged.counts += UnitCounts {
            computed: report.computed,
            cached: report.cached,
        };
        for (kind, count) in &report.work {
            *merged.work.entry(kind.clone()).or_default() += *count;
        }
        for row in read_table::<CheckpointRow>(dir)? {
            checkpoints.insert((row.run.clone(), row.step), row);
        }
        let sets = set_order(reference);
        let set_of = |name: &str| {
            sets.iter().position(|s| s == name).ok_or_else(|| {
                CoreError::InvalidArgument(format!(
                    "{}: rows of eval set `{name}`, which the first shard does not have ({})",
                    dir.display(),
                    sets.join(", ")
                ))
            })
        };
        for row in read_table::<EvalRow>(dir)? {
            evals.insert((set_of(&row.set)?, row.run.clone(), row.step), row);
        }
        for row in read_table::<InterpolationRow>(dir)? {
            // Raw rows before aligned ones, as a single run writes them.
            let order = pair_order(row.step, &row.run_a, &row.run_b, row.step_b, row.pair);
            interpolation.insert((set_of(&row.set)?, order, row.aligned, row.alpha.to_bits()), row);
        }
        for row in read_table::<BarrierRow>(dir)? {
            let order = pair_order(row.step, &row.run_a, &row.run_b, row.step_b, row.pair);
            barriers.insert((set_of(&row.set)?, order, row.aligned, row.kind), row);
        }
    }
    let first = first.ok_or_else(|| CoreError::InvalidArgument("no shard output folder to merge".into()))?;
    merged.data_key = first.data_sha256.clone();
    merged.evaluator = first.evaluator.clone();
    merged.checkpoints = checkpoints.into_values().collect();
    let sets = set_order(&first);
    merged.set = sets[0].clone();
    merged.other_sets = sets[1..]
        .iter()
        .map(|name| SetRows {
            name: name.clone(),
            ..SetRows::default()
        })
        .collect();
    // Rows in set order: the basins' set, then the others as the options list them.
    for ((set, ..), row) in evals {
        rows_of(&mut merged, set).0.push(row);
    }
    for ((set, ..), row) in interpolation {
        rows_of(&mut merged, set).1.push(row);
    }
    for ((set, ..), row) in barriers {
        rows_of(&mut merged, set).2.push(row);
    }
    Ok((merged, first))
}

/// The eval set names of a shard's report: the basins' set, then the others.
fn set_order(report: &Report) -> Vec<String> {
    let basins_set = report.options.data_set_name(Path::new(&report.data));
    std::iter::once(basins_set)
        .chain(report.options.more_sets.iter().map(|s| s.name.clone()))
        .collect()
}

/// The evals, interpolation and barrier rows of the `index`-th eval set of `sweep` (0: the basins'
/// set, then `other_sets` in order).
fn rows_of(sweep: &mut Sweep, index: usize) -> (&mut Vec<EvalRow>, &mut Vec<InterpolationRow>, &mut Vec<BarrierRow>) {
    match index.checked_sub(1) {
        Some(i) => {
            let set = &mut sweep.other_sets[i];
            (&mut set.evals, &mut set.interpolation, &mut set.barriers)
        }
        None => (&mut sweep.evals, &mut sweep.interpolation, &mut sweep.barriers),
    }
}

fn pair_order(step: u64, run_a: &str, run_b: &str, step_b: u64, kind: PairKind) -> PairOrder {
    (step, kind, run_a.to_string(), run_b.to_string(), step_b)
}
