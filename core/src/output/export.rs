//! `lineage export`: the cluster timeline of a batch output folder as one Parquet table.

use std::collections::HashMap;
use std::path::Path;

use crate::error::CoreError;
use crate::methods::basins::{BasinEvent, BasinId};
use crate::output::schema::{Table, read_table, write_parquet};
use crate::output::tables::{ClusterRow, ClusterTimelineRow, TimelineRow};

/// Joins `clusters.parquet` and `timeline.parquet` of the batch output `out` into one table with a row
/// per (step, run) ([`ClusterTimelineRow`]); writes it to `to` and returns the number of rows.
pub fn export_cluster_timeline(out: &Path, to: &Path) -> Result<usize, CoreError> {
    let clusters: Vec<ClusterRow> = read_table(out)?;
    let timeline: Vec<TimelineRow> = read_table(out)?;
    let rows = cluster_timeline(&clusters, &timeline).map_err(|e| {
        CoreError::Table(format!(
            "{} and {}: {e}",
            out.join("clusters.parquet").display(),
            out.join("timeline.parquet").display()
        ))
    })?;
    write_parquet(to, &mut ClusterTimelineRow::frame(&rows)?)?;
    Ok(rows.len())
}

/// The cluster timeline (see [`export_cluster_timeline`]) of `clusters` and `timeline` rows; diverged
/// runs (in no basin) are left out.
pub fn cluster_timeline(
    clusters: &[ClusterRow],
    timeline: &[TimelineRow],
) -> Result<Vec<ClusterTimelineRow>, CoreError> {
    let basins: HashMap<(u64, BasinId), &TimelineRow> = timeline
        .iter()
        .filter(|t| t.event != BasinEvent::Death)
        .map(|t| ((t.step, t.basin), t))
        .collect();
    clusters
        .iter()
        .filter_map(|c| c.basin.map(|basin| (c, basin)))
        .map(|(c, basin)| {
            let t = basins.get(&(c.step, basin)).ok_or_else(|| {
                CoreError::Table(format!(
                    "basin {basin} at step {} of the clusters table is missing from the timeline table",
                    c.step
                ))
            })?;
            Ok(ClusterTimelineRow {
                step: c.step,
                run: c.run.clone(),
                basin,
                basin_size: t.size,
                event: t.event,
                parent_basin: t.parent_basin,
            })
        })
        .collect()
}
