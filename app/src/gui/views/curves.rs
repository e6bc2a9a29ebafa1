//! Loss and error along the interpolation path of the selected pair at the selected step, each with
//! the chord between its endpoints, and the pair's barriers.

use egui::Ui;
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};
use lineage_core::tables::InterpolationRow;

use super::Selection;
use crate::gui::session::Analysed;

/// Draws the curves of `selection.pair` at `selection.step`.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &Selection, plot_height: f32) {
    let (Some(step), Some((a, b))) = (selection.step, selection.pair.as_ref()) else {
        ui.label("Click a heatmap cell to see the interpolation path of that pair.");
        return;
    };
    let mut rows: Vec<&InterpolationRow> = analysed
        .result
        .interpolation
        .iter()
        .filter(|r| r.step == step && r.pair == "seeds" && !r.aligned && &r.run_a == a && &r.run_b == b)
        .collect();
    rows.sort_by(|x, y| x.alpha.total_cmp(&y.alpha));
    ui.heading(format!("Interpolation {a} → {b} at step {step}"));
    if rows.is_empty() {
        ui.label("No interpolation path was computed for this pair.");
        return;
    }
    let barriers: Vec<String> = analysed
        .result
        .barriers
        .iter()
        .filter(|r| r.step == step && r.pair == "seeds" && !r.aligned && &r.run_a == a && &r.run_b == b)
        .map(|r| format!("{}: loss {:.4}, error {:.4}", r.kind, r.loss_barrier, r.error_barrier))
        .collect();
    ui.label(format!("barriers — {}", barriers.join("; ")));
    let series = |f: fn(&InterpolationRow) -> f64| -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
        let curve: Vec<[f64; 2]> = rows.iter().map(|r| [r.alpha, f(r)]).collect();
        let (first, last) = (curve[0], curve[curve.len() - 1]);
        (curve, vec![first, last])
    };
    for (name, f) in [
        ("loss", (|r: &InterpolationRow| r.loss) as fn(&InterpolationRow) -> f64),
        ("error", |r: &InterpolationRow| r.error),
    ] {
        let (curve, chord) = series(f);
        Plot::new(("interpolation", name))
            .height(plot_height)
            .legend(Legend::default())
            .x_axis_label("alpha")
            .y_axis_label(name)
            .allow_scroll(false)
            .show(ui, |plot| {
                plot.line(Line::new(format!("{name} along the path"), PlotPoints::from(curve)).width(2.0));
                plot.line(Line::new("chord", PlotPoints::from(chord)).style(LineStyle::dashed_loose()));
            });
    }
}
