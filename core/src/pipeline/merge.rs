//! `lineage merge`: combine the outputs of `lineage batch --shard K/N` runs into the tables a single
//! run gives (same rows, same order), ready for the basin analysis.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::CoreError;
use crate::output::report::Report;
use crate::output::schema::read_table;
use crate::output::tables::{BarrierRow, CheckpointRow, EvalRow, InterpolationRow};
use crate::pipeline::plan::PairKind;
use crate::pipeline::sweep::Sweep;
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
        for row in read_table::<CheckpointRow>(dir)? {
            checkpoints.insert((row.run.clone(), row.step), row);
        }
        for row in read_table::<EvalRow>(dir)? {
            evals.insert((row.run.clone(), row.step), row);
        }
        for row in read_table::<InterpolationRow>(dir)? {
            // Raw rows before aligned ones, as a single run writes them.
            let order = pair_order(row.step, &row.run_a, &row.run_b, row.step_b, row.pair);
            interpolation.insert((order, row.aligned, row.alpha.to_bits()), row);
        }
        for row in read_table::<BarrierRow>(dir)? {
            let order = pair_order(row.step, &row.run_a, &row.run_b, row.step_b, row.pair);
            barriers.insert((order, row.aligned, row.kind), row);
        }
    }
    let first = first.ok_or_else(|| CoreError::InvalidArgument("no shard output folder to merge".into()))?;
    merged.data_key = first.data_sha256.clone();
    merged.evaluator = first.evaluator.clone();
    merged.checkpoints = checkpoints.into_values().collect();
    merged.evals = evals.into_values().collect();
    merged.interpolation = interpolation.into_values().collect();
    merged.barriers = barriers.into_values().collect();
    Ok((merged, first))
}

fn pair_order(step: u64, run_a: &str, run_b: &str, step_b: u64, kind: PairKind) -> PairOrder {
    (step, kind, run_a.to_string(), run_b.to_string(), step_b)
}
