//! Generalization by basin: the error of each basin's members on each eval set over training, one
//! line per basin in the basin tree's colours, one panel per eval set (Juneja et al. 2023: basins
//! that agree in distribution can differ out of distribution).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axes::StepAxis;
use super::chart::{step_value_chart, with_legend};
use super::error::FigureError;
use super::layout::{NoData, header};
use super::legend::{Legend, LegendEntry, Swatch};
use super::palette::OKABE_ITO;
use super::render::{DrawResult, Figure, write_figure};
use crate::methods::basins::BasinId;
use crate::output::tables::GeneralizationRow;

/// (step, mean error, min error, max error) of one basin on one set, in percent.
type Point = (u64, f64, f64, f64);

/// Draws `generalization_by_basin` into `<path_stem>.svg` / `.png` and returns both paths. `lanes`
/// orders the basins as the basin tree draws them (their colours follow it); `sets` names the
/// panels in order. A line joins a basin's mean member error over the steps it exists at; a bar
/// spans its members' min–max. No rows gives a "no data" figure.
pub fn generalization_by_basin(
    rows: &[GeneralizationRow],
    lanes: &[BasinId],
    sets: &[&str],
    log_x: bool,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let title = "Generalization by basin";
    let finite = |r: &&GeneralizationRow| r.mean_error.is_finite() && r.n_runs > 0;
    if !rows.iter().any(|r| finite(&r)) {
        let message = "no basin with evaluated members".to_string();
        return write_figure(&NoData { title, message }, path_stem);
    }
    let mut panels: Vec<(String, BTreeMap<BasinId, Vec<Point>>)> =
        sets.iter().map(|s| (s.to_string(), BTreeMap::new())).collect();
    for r in rows.iter().filter(finite) {
        if let Some((_, lines)) = panels.iter_mut().find(|(s, _)| *s == r.set) {
            let point = (r.step, 100.0 * r.mean_error, 100.0 * r.min_error, 100.0 * r.max_error);
            lines.entry(r.basin).or_default().push(point);
        }
    }
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let figure = ByBasin {
        title,
        axis: StepAxis::new(&steps, log_x),
        lanes: lanes.to_vec(),
        panels,
    };
    write_figure(&figure, path_stem)
}

/// The figure, precomputed.
struct ByBasin {
    title: &'static str,
    axis: StepAxis,
    lanes: Vec<BasinId>,
    /// Per eval set: each basin's points.
    panels: Vec<(String, BTreeMap<BasinId, Vec<Point>>)>,
}

impl ByBasin {
    /// The basin tree's colour of `basin`.
    fn color(&self, basin: BasinId) -> RGBColor {
        let lane = self.lanes.iter().position(|&b| b == basin).unwrap_or(basin as usize);
        OKABE_ITO[lane % OKABE_ITO.len()]
    }

    fn legend(&self) -> Legend {
        let mut basins: Vec<BasinId> = self.panels.iter().flat_map(|(_, l)| l.keys().copied()).collect();
        basins.sort_by_key(|&b| self.lanes.iter().position(|&l| l == b).unwrap_or(usize::MAX));
        basins.dedup();
        Legend {
            title: Some("basins".into()),
            entries: basins
                .into_iter()
                .map(|b| LegendEntry {
                    label: format!("basin {b}"),
                    swatch: Swatch::Line {
                        color: self.color(b),
                        width: 3,
                        dashed: false,
                    },
                })
                .collect(),
        }
    }

    fn panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        set: &str,
        lines: &BTreeMap<BasinId, Vec<Point>>,
    ) -> DrawResult<DB> {
        let top = lines.values().flatten().map(|p| p.3).fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.08 } else { 1.0 };
        let y_desc = format!("error on {set} (%)");
        let mut chart = step_value_chart(root, area, &self.axis, -0.02 * top..top, &y_desc)?;
        for (&basin, points) in lines {
            let color = self.color(basin);
            chart.draw_series(points.iter().map(|&(step, _, lo, hi)| {
                PathElement::new(
                    vec![(step as f64, lo), (step as f64, hi)],
                    color.mix(0.45).stroke_width(5),
                )
            }))?;
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, p.1)).collect();
            chart.draw_series(std::iter::once(PathElement::new(line.clone(), color.stroke_width(3))))?;
            chart.draw_series(line.iter().map(|&c| Circle::new(c, 5, color.filled())))?;
        }
        Ok(())
    }
}

impl Figure for ByBasin {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let subtitle = "line: mean error of the basin's member runs · bar: min–max over members";
        let body = header(root, self.title, Some(subtitle))?;
        let plot = with_legend(&body, &self.legend())?;
        let areas = plot.split_evenly((1, self.panels.len().max(1)));
        for (area, (set, lines)) in areas.iter().zip(&self.panels) {
            self.panel(root, area, set, lines)?;
        }
        Ok(())
    }
}
