//! Training curves: each run's eval loss and error against the step, in the run's colour and marker
//! (the same as its thread in the basin tree).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::axes::StepAxis;
use super::chart::{step_value_chart, with_legend};
use super::error::FigureError;
use super::layout::{NoData, draw_marker, header, plural};
use super::legend::{Legend, LegendEntry, Swatch};
use super::palette::{SeedStyle, seed_style};
use super::render::{DrawResult, Figure, write_figure};
use crate::output::tables::EvalRow;

/// Draws every run's eval loss (left panel, nats) and error (right panel, %) against the training step
/// into `<path_stem>.svg` / `.png` and returns both paths.
///
/// Runs are styled in the order of `runs` ([`seed_style`], as in [`super::basin_tree()`]); runs of
/// `evals` missing from `runs` are appended. `log_x` puts the steps on a log scale. No rows gives a
/// "no data" figure.
pub fn training_curves(
    evals: &[EvalRow],
    runs: &[String],
    log_x: bool,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let title = "Training curves";
    let mut by_run: BTreeMap<&str, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for e in evals.iter().filter(|e| e.loss.is_finite() && e.error.is_finite()) {
        by_run
            .entry(&e.run)
            .or_default()
            .push((e.step, e.loss, 100.0 * e.error));
    }
    if by_run.is_empty() {
        let message = "no evaluated checkpoints".to_string();
        return write_figure(&NoData { title, message }, path_stem);
    }
    let mut names: Vec<&str> = Vec::new();
    for r in runs.iter().map(String::as_str).chain(by_run.keys().copied()) {
        if !names.contains(&r) {
            names.push(r);
        }
    }
    let curves: Vec<Curve> = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let mut points = by_run.remove(name)?;
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            Some(Curve {
                name: name.to_string(),
                style: seed_style(i),
                points,
            })
        })
        .collect();
    let steps: Vec<u64> = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).collect();
    let figure = Training {
        title,
        subtitle: format!("{} · evaluation set", plural(curves.len(), "run")),
        axis: StepAxis::new(&steps, log_x),
        curves,
    };
    write_figure(&figure, path_stem)
}

/// One run's curve.
struct Curve {
    name: String,
    style: SeedStyle,
    /// (step, loss, error %) sorted by step.
    points: Vec<(u64, f64, f64)>,
}

/// The figure, precomputed.
struct Training {
    title: &'static str,
    subtitle: String,
    axis: StepAxis,
    curves: Vec<Curve>,
}

impl Training {
    fn panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        y_desc: &str,
        value: fn(&(u64, f64, f64)) -> f64,
    ) -> DrawResult<DB> {
        let (lo, hi) = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(value))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) * 0.1 };
        let y_range = lo - 0.05 * span..hi + 0.06 * span;
        let mut chart = step_value_chart(root, area, &self.axis, y_range, y_desc)?;
        let markers = self.curves.iter().map(|c| c.points.len()).max().unwrap_or(0) <= 30;
        for c in &self.curves {
            let line: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0 as f64, value(p))).collect();
            let style = c.style.color.stroke_width(2);
            if c.style.dashed {
                chart.draw_series(std::iter::once(DashedPathElement::new(line.clone(), 8, 5, style)))?;
            } else {
                chart.draw_series(std::iter::once(PathElement::new(line.clone(), style)))?;
            }
            if markers {
                for p in &line {
                    let at = chart.backend_coord(p);
                    draw_marker(root, c.style.marker, at, 5, c.style.color.filled())?;
                    draw_marker(root, c.style.marker, at, 5, WHITE.stroke_width(1))?;
                }
            }
        }
        Ok(())
    }
}

impl Figure for Training {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, self.title, Some(&self.subtitle))?;
        let legend = Legend {
            title: Some("runs".into()),
            entries: self
                .curves
                .iter()
                .map(|c| LegendEntry {
                    label: c.name.clone(),
                    swatch: Swatch::Seed(c.style),
                })
                .collect(),
        };
        let plot = with_legend(&body, &legend)?;
        let (w, _) = plot.dim_in_pixel();
        let (left, right) = plot.split_horizontally(w / 2);
        self.panel(root, &left, "loss (nats, mean cross-entropy)", |p| p.1)?;
        self.panel(root, &right, "error (%)", |p| p.2)
    }
}
