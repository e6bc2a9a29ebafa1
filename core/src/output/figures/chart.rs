//! Chart scaffolding shared by the figures: the plot/legend split, the mesh look, the log-axis break.

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::prelude::*;

use super::axes::{StepAxis, format_value};
use super::layout::{AXIS_TITLE, MARGIN, TICK, text};
use super::legend::Legend;
use super::palette::{GRID, INK};
use super::render::DrawResult;

/// Very light grey of minor grid lines.
const MINOR_GRID: RGBColor = RGBColor(0xF2, 0xF2, 0xF2);

/// Splits `body` into the plot area (left) and the legend strip (right, sized to the legend, at most 30%
/// of the width) and draws the legend, top-aligned with the plot. Returns the plot area.
pub(crate) fn with_legend<DB: DrawingBackend>(
    body: &DrawingArea<DB, Shift>,
    legend: &Legend,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, h) = body.dim_in_pixel();
    let legend_w = legend.width(body, h.saturating_sub(2 * MARGIN), w * 3 / 10)?;
    if legend_w == 0 {
        return Ok(body.margin(0, MARGIN, MARGIN, MARGIN));
    }
    let (plot, strip) = body.split_horizontally(w - legend_w - MARGIN);
    legend.draw(&strip.margin(MARGIN, MARGIN, 0, 0))?;
    Ok(plot.margin(0, MARGIN, MARGIN, 0))
}

/// A chart builder with the standard label areas.
pub(crate) fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    y_label_w: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin_top(10)
        .margin_right(18)
        .x_label_area_size(64)
        .y_label_area_size(y_label_w);
    b
}

/// The standard mesh look: light grid (no minor lines; step axes turn them back on), dark axes, readable
/// tick labels and axis titles.
pub(crate) fn mesh<'a, 'b, X, Y, DB>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
) -> MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend,
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    let mut m = chart.configure_mesh();
    m.bold_line_style(GRID.stroke_width(1))
        .light_line_style(MINOR_GRID.stroke_width(1))
        .axis_style(INK.stroke_width(2))
        .label_style(text(TICK, &INK))
        .axis_desc_style(text(AXIS_TITLE, &INK))
        .max_light_lines(0)
        .x_labels(10)
        .y_labels(8)
        .x_desc(x_desc.to_string())
        .y_desc(y_desc.to_string());
    m
}

/// The x-axis title for steps.
pub(crate) fn step_desc(axis: &StepAxis) -> &'static str {
    if axis.is_log() {
        "training step (log scale)"
    } else {
        "training step"
    }
}

/// A chart with training steps along x and values along y.
pub(crate) type StepChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<StepAxis, plotters::coord::types::RangedCoordf64>>;

/// A chart of values over training steps in `area` (of the figure `root`): the standard label areas
/// and mesh (8 step labels, minor step lines, values formatted by [`format_value`]) and the log-axis
/// break.
pub(crate) fn step_value_chart<'a, DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &'a DrawingArea<DB, Shift>,
    axis: &StepAxis,
    y_range: std::ops::Range<f64>,
    y_desc: &str,
) -> Result<StepChart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = builder(area, 84).build_cartesian_2d(axis.clone(), y_range)?;
    let fmt = |v: &f64| format_value(*v);
    mesh(&mut chart, step_desc(axis), y_desc)
        .x_labels(8)
        .x_max_light_lines(9)
        .y_label_formatter(&fmt)
        .draw()?;
    draw_step_break(root, &chart, axis)?;
    Ok(chart)
}

/// Draws a break mark (`//`) on the x axis between step 0 and the first positive step of a log axis.
pub(crate) fn draw_step_break<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    root: &DrawingArea<DB, Shift>,
    chart: &ChartContext<DB, Cartesian2d<StepAxis, Y>>,
    axis: &StepAxis,
) -> DrawResult<DB> {
    let Some((a, b)) = axis.break_span() else { return Ok(()) };
    let y_any = chart.y_range().start;
    let x = (chart.backend_coord(&(a, y_any)).0 + chart.backend_coord(&(b, y_any)).0) / 2;
    let y = chart.plotting_area().get_pixel_range().1.end;
    root.draw(&Rectangle::new([(x - 6, y - 3), (x + 6, y + 3)], WHITE.filled()))?;
    for dx in [-5, 3] {
        root.draw(&PathElement::new(
            vec![(x + dx - 3, y + 8), (x + dx + 3, y - 8)],
            INK.stroke_width(2),
        ))?;
    }
    Ok(())
}
