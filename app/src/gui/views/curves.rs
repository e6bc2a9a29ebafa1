//! Loss and error along the interpolation path of the selected pair at the selected step, each with
//! the chord between its endpoints, and the pair's barriers.

use egui::Ui;
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};
use lineage_core::Named;
use lineage_core::output::tables::InterpolationRow;
use lineage_core::pipeline::plan::PairKind;

use super::Selection;
use crate::gui::session::Analysed;

/// Draws the curves of `selection.pair` at `selection.step`.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &Selection, plot_height: f32) {
    let (Some(step), Some((a, b))) = (selection.step, selection.pair.as_ref()) else {
        ui.label("Click a heatmap cell to see the interpolation path of that pair.");
        return;
    };
    let path = |aligned: bool| -> Vec<&InterpolationRow> {
        let mut rows: Vec<&InterpolationRow> = analysed
            .analysis()
            .sweep
            .interpolation
            .iter()
            .filter(|r| {
                r.step == step && r.pair == PairKind::Seeds && r.aligned == aligned && &r.run_a == a && &r.run_b == b
            })
            .collect();
        rows.sort_by(|x, y| x.alpha.total_cmp(&y.alpha));
        rows
    };
    let (raw, aligned) = (path(false), path(true));
    ui.heading(format!("Interpolation {a} → {b} at step {step}"));
    if raw.is_empty() {
        ui.label("No interpolation path was computed for this pair.");
        return;
    }
    for r in analysed
        .analysis()
        .sweep
        .barriers
        .iter()
        .filter(|r| r.step == step && r.pair == PairKind::Seeds && &r.run_a == a && &r.run_b == b)
    {
        let which = if r.aligned { " (aligned)" } else { "" };
        ui.label(format!(
            "{} barrier{which}: loss {:.4}, error {:.4}",
            r.kind.name(),
            r.loss_barrier,
            r.error_barrier
        ));
    }
    for (name, f) in [
        ("loss", (|r: &InterpolationRow| r.loss) as fn(&InterpolationRow) -> f64),
        ("error", |r: &InterpolationRow| r.error),
    ] {
        let curve = |rows: &[&InterpolationRow]| -> Vec<[f64; 2]> { rows.iter().map(|r| [r.alpha, f(r)]).collect() };
        let raw_curve = curve(&raw);
        let chord = vec![raw_curve[0], raw_curve[raw_curve.len() - 1]];
        let aligned_curve = curve(&aligned);
        Plot::new(("interpolation", name))
            .height(plot_height)
            .legend(Legend::default())
            .x_axis_label("alpha")
            .y_axis_label(name)
            .allow_scroll(false)
            .show(ui, |plot| {
                plot.line(Line::new(format!("{name} along the path"), PlotPoints::from(raw_curve)).width(2.0));
                if !aligned_curve.is_empty() {
                    plot.line(
                        Line::new("after permutation alignment", PlotPoints::from(aligned_curve))
                            .width(2.0)
                            .style(LineStyle::dashed_dense()),
                    );
                }
                plot.line(Line::new("chord", PlotPoints::from(chord)).style(LineStyle::dashed_loose()));
            });
    }
}
