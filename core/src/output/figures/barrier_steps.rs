//! Barriers over training: for each pair kind, the mean barrier over pairs at each step with a
//! min–max band, for loss and error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::axes::StepAxis;
use super::chart::{step_value_chart, with_legend};
use super::error::FigureError;
use super::interpolation::pair_kind_name;
use super::layout::{NoData, header};
use super::legend::{Legend, LegendEntry, Swatch};
use super::palette::{BLUE, GREEN, ORANGE, PURPLE, SKY_BLUE, VERMILLION};
use super::render::{DrawResult, Figure, write_figure};
use crate::methods::interpolation::BarrierKind;
use crate::names::Named;
use crate::output::tables::BarrierRow;
use crate::pipeline::plan::PairKind;

/// Colours of the series, in order.
const SERIES_COLOURS: [RGBColor; 6] = [BLUE, VERMILLION, GREEN, PURPLE, ORANGE, SKY_BLUE];

/// A series: (pair kind, in drawing order: seeds, to_final, fork; aligned).
type SeriesKey = (PairKind, bool);
/// (loss barrier, error barrier in percentage points) of every pair, by step.
type ByStep = BTreeMap<u64, Vec<(f64, f64)>>;

/// Per-step statistics of one series.
#[derive(Debug, Clone, Copy)]
struct Stat {
    step: u64,
    /// (mean, min, max) of the loss barrier (nats).
    loss: (f64, f64, f64),
    /// (mean, min, max) of the error barrier (percentage points).
    error: (f64, f64, f64),
    n: usize,
}

/// One line with its band.
#[derive(Debug, Clone)]
struct Series {
    label: String,
    color: RGBColor,
    dashed: bool,
    stats: Vec<Stat>,
}

/// Draws the barrier of kind `kind` against the training step into
/// `<path_stem>.svg` / `.png` and returns both paths.
///
/// Left panel: loss barrier (nats); right panel: error barrier (percentage points). For each pair kind
/// present (seed pairs first, then checkpoint-vs-final, then fork pairs; permutation-aligned rows as a
/// separate dashed series) a line joins the mean over pairs at each step and a translucent band spans
/// the minimum to the maximum. `log_x` puts the steps on a log scale (step 0 left of the first positive
/// step, behind an axis break). No rows of that kind gives a "no data" figure.
pub fn barrier_vs_step(
    rows: &[BarrierRow],
    kind: BarrierKind,
    log_x: bool,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let citation = match kind {
        BarrierKind::Endpoint => "endpoint barrier (Frankle et al. 2020)",
        BarrierKind::Segment => "segment barrier (Juneja et al. 2023)",
    };
    let title = "Linear-mode-connectivity barriers over training";
    let mut groups: BTreeMap<SeriesKey, ByStep> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == kind) {
        if !(r.loss_barrier.is_finite() && r.error_barrier.is_finite()) {
            continue;
        }
        let by_step = groups.entry((r.pair, r.aligned)).or_default();
        by_step
            .entry(r.step)
            .or_default()
            .push((r.loss_barrier, 100.0 * r.error_barrier));
    }
    if groups.is_empty() {
        let message = format!("no {} barrier rows", kind.name());
        return write_figure(&NoData { title, message }, path_stem);
    }
    let series: Vec<Series> = groups
        .into_iter()
        .enumerate()
        .map(|(i, ((pair, aligned), by_step))| Series {
            label: format!("{}{}", pair_kind_name(pair), if aligned { " (aligned)" } else { "" }),
            color: SERIES_COLOURS[i % SERIES_COLOURS.len()],
            dashed: aligned,
            stats: by_step.into_iter().map(|(step, v)| stat(step, &v)).collect(),
        })
        .collect();
    let steps: Vec<u64> = series.iter().flat_map(|s| s.stats.iter().map(|t| t.step)).collect();
    let figure = BarrierSteps {
        title,
        subtitle: format!("{citation} · line: mean over pairs · band: min–max over pairs"),
        axis: StepAxis::new(&steps, log_x),
        series,
    };
    write_figure(&figure, path_stem)
}

/// Mean, min and max of loss and error barriers at one step.
fn stat(step: u64, values: &[(f64, f64)]) -> Stat {
    let summary = |f: fn(&(f64, f64)) -> f64| {
        let n = values.len() as f64;
        let mean = values.iter().map(f).sum::<f64>() / n;
        let min = values.iter().map(f).fold(f64::INFINITY, f64::min);
        let max = values.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    };
    Stat {
        step,
        loss: summary(|v| v.0),
        error: summary(|v| v.1),
        n: values.len(),
    }
}

/// The figure, precomputed.
struct BarrierSteps {
    title: &'static str,
    subtitle: String,
    axis: StepAxis,
    series: Vec<Series>,
}

impl BarrierSteps {
    fn legend(&self) -> Legend {
        let entries = self
            .series
            .iter()
            .map(|s| LegendEntry {
                label: s.label.clone(),
                swatch: if s.stats.iter().any(|t| t.n > 1) {
                    Swatch::Band { color: s.color }
                } else {
                    Swatch::Line {
                        color: s.color,
                        width: 3,
                        dashed: s.dashed,
                    }
                },
            })
            .collect();
        Legend {
            title: Some("pairs".into()),
            entries,
        }
    }

    fn panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        y_desc: &str,
        value: fn(&Stat) -> (f64, f64, f64),
    ) -> DrawResult<DB> {
        let top = self
            .series
            .iter()
            .flat_map(|s| s.stats.iter().map(|t| value(t).2))
            .fold(0.0, f64::max);
        let top = if top > 0.0 { top * 1.08 } else { 1.0 };
        let mut chart = step_value_chart(root, area, &self.axis, -0.02 * top..top, y_desc)?;
        for s in &self.series {
            let stats = &s.stats;
            if stats.len() >= 2 && stats.iter().any(|t| t.n > 1) {
                let mut band: Vec<(f64, f64)> = stats.iter().map(|t| (t.step as f64, value(t).2)).collect();
                band.extend(stats.iter().rev().map(|t| (t.step as f64, value(t).1)));
                chart.draw_series(std::iter::once(Polygon::new(band, s.color.mix(0.2).filled())))?;
            } else {
                chart.draw_series(stats.iter().filter(|t| t.n > 1).map(|t| {
                    let (_, lo, hi) = value(t);
                    PathElement::new(
                        vec![(t.step as f64, lo), (t.step as f64, hi)],
                        s.color.mix(0.5).stroke_width(6),
                    )
                }))?;
            }
        }
        for s in &self.series {
            let line: Vec<(f64, f64)> = s.stats.iter().map(|t| (t.step as f64, value(t).0)).collect();
            let style = s.color.stroke_width(3);
            if s.dashed {
                chart.draw_series(std::iter::once(DashedPathElement::new(line.clone(), 10, 6, style)))?;
            } else {
                chart.draw_series(std::iter::once(PathElement::new(line.clone(), style)))?;
            }
            if line.len() <= 60 {
                chart.draw_series(line.iter().map(|&c| Circle::new(c, 5, s.color.filled())))?;
            }
        }
        Ok(())
    }
}

impl Figure for BarrierSteps {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, self.title, Some(&self.subtitle))?;
        let plot = with_legend(&body, &self.legend())?;
        let (w, _) = plot.dim_in_pixel();
        let (left, right) = plot.split_horizontally(w / 2);
        self.panel(root, &left, "loss barrier (nats)", |t| t.loss)?;
        self.panel(root, &right, "error barrier (percentage points)", |t| t.error)
    }
}
