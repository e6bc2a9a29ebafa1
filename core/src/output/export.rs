//! `lineage export`: the cluster timeline of a batch output folder as one Parquet table.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::CoreError;
use crate::output::tables::{read_parquet, write_parquet};

/// Joins `clusters.parquet` and `timeline.parquet` of the batch output `out` into one table with a row
/// per (step, run): `step, run, basin, basin_size, event, parent_basin`; writes it to `to` and returns
/// the number of rows.
pub fn export_cluster_timeline(out: &Path, to: &Path) -> Result<usize, CoreError> {
    let clusters_path = out.join("clusters.parquet");
    let timeline_path = out.join("timeline.parquet");
    let clusters = read_parquet(&clusters_path)?;
    let timeline = read_parquet(&timeline_path)?;
    let mut df = cluster_timeline(&clusters, &timeline).map_err(|e| {
        CoreError::Table(format!(
            "{} and {}: {e}",
            clusters_path.display(),
            timeline_path.display()
        ))
    })?;
    write_parquet(to, &mut df)?;
    Ok(df.height())
}

/// The cluster timeline (see [`export_cluster_timeline`]) of a `clusters` and a `timeline` frame
/// ([`crate::output::tables::clusters_frame`], [`crate::output::tables::timeline_frame`]).
pub fn cluster_timeline(clusters: &DataFrame, timeline: &DataFrame) -> Result<DataFrame, CoreError> {
    let table_err = |table: &str, e: PolarsError| CoreError::Table(format!("{table} table: {e}"));
    let t_step = timeline
        .column("step")
        .and_then(|c| c.u64())
        .map_err(|e| table_err("timeline", e))?;
    let t_basin = timeline
        .column("basin")
        .and_then(|c| c.u32())
        .map_err(|e| table_err("timeline", e))?;
    let t_size = timeline
        .column("size")
        .and_then(|c| c.u64())
        .map_err(|e| table_err("timeline", e))?;
    let t_event = timeline
        .column("event")
        .and_then(|c| c.str())
        .map_err(|e| table_err("timeline", e))?;
    let t_parent = timeline
        .column("parent_basin")
        .and_then(|c| c.u32())
        .map_err(|e| table_err("timeline", e))?;
    let mut basins: HashMap<(u64, u32), (u64, String, Option<u32>)> = HashMap::new();
    for i in 0..timeline.height() {
        if let (Some(step), Some(basin), Some(size), Some(event)) =
            (t_step.get(i), t_basin.get(i), t_size.get(i), t_event.get(i))
            && event != "death"
        {
            basins.insert((step, basin), (size, event.to_string(), t_parent.get(i)));
        }
    }

    let c_step = clusters
        .column("step")
        .and_then(|c| c.u64())
        .map_err(|e| table_err("clusters", e))?;
    let c_run = clusters
        .column("run")
        .and_then(|c| c.str())
        .map_err(|e| table_err("clusters", e))?;
    let c_basin = clusters
        .column("basin")
        .and_then(|c| c.u32())
        .map_err(|e| table_err("clusters", e))?;
    let (mut steps, mut runs, mut ids, mut sizes, mut events, mut parents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..clusters.height() {
        let (Some(step), Some(run), Some(basin)) = (c_step.get(i), c_run.get(i), c_basin.get(i)) else {
            continue;
        };
        let (size, event, parent) = basins.get(&(step, basin)).cloned().ok_or_else(|| {
            CoreError::Table(format!(
                "basin {basin} at step {step} of the clusters table is missing from the timeline table"
            ))
        })?;
        steps.push(step);
        runs.push(run.to_string());
        ids.push(basin);
        sizes.push(size);
        events.push(event);
        parents.push(parent);
    }
    let n = steps.len();
    DataFrame::new(
        n,
        vec![
            Column::new("step".into(), steps),
            Column::new("run".into(), runs),
            Column::new("basin".into(), ids),
            Column::new("basin_size".into(), sizes),
            Column::new("event".into(), events),
            Column::new("parent_basin".into(), parents),
        ],
    )
    .map_err(|e| CoreError::Table(e.to_string()))
}
