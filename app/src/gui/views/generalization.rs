//! Generalization by basin: at the selected step, how each basin's members do on each eval set
//! (mean, min and max error) and whether two basins differ (permutation-test p-value); below, each
//! basin's mean error over training on every set, in the basin tree's colours (the
//! `generalization_by_basin` figure).

use egui::{Color32, Grid, ScrollArea, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};
use lineage_core::methods::basins::BasinId;

use super::{Selection, basin_color, step_coordinate, with_step_axis};
use crate::gui::session::Analysed;

/// Draws the table at `selection.step` and the curves.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &Selection, log_x: bool, height: f32) {
    let analysis = analysed.analysis();
    let Some(g) = &analysis.generalization else {
        ui.label("No basins, so no per-basin generalization.");
        return;
    };
    let sets = analysis.sweep.set_names();
    let lanes = &analysed.basins().layout.lanes;
    if let Some(step) = selection.step {
        ScrollArea::vertical()
            .id_salt("generalization-table")
            .max_height(height * 0.4)
            .show(ui, |ui| {
                Grid::new("generalization-grid").striped(true).show(ui, |ui| {
                    ui.strong("basin");
                    ui.strong("runs");
                    for set in &sets {
                        ui.strong(format!("error on {set}"));
                    }
                    ui.end_row();
                    let mut basins: Vec<(BasinId, u64)> = g
                        .basins
                        .iter()
                        .filter(|r| r.step == step)
                        .map(|r| (r.basin, r.n_runs))
                        .collect();
                    basins.sort();
                    basins.dedup_by_key(|b| b.0);
                    for (basin, n) in basins {
                        ui.colored_label(basin_color(lanes, basin), format!("basin {basin}"));
                        ui.label(n.to_string());
                        for set in &sets {
                            let row = g
                                .basins
                                .iter()
                                .find(|r| r.step == step && r.basin == basin && r.set == *set);
                            ui.label(row.map_or("–".into(), |r| {
                                format!("{:.3} [{:.3}, {:.3}]", r.mean_error, r.min_error, r.max_error)
                            }));
                        }
                        ui.end_row();
                    }
                });
                for c in g.comparisons.iter().filter(|c| c.step == step) {
                    ui.label(format!(
                        "basin {} vs {} on {}: error difference {:+.4}, permutation p = {:.3}",
                        c.basin_a, c.basin_b, c.set, c.error_difference, c.p_value
                    ));
                }
            });
    }
    let plot_height = (ui.available_height() - 10.0).max(100.0);
    ui.columns(sets.len().max(1), |columns| {
        for (ui, set) in columns.iter_mut().zip(&sets) {
            with_step_axis(Plot::new(format!("generalization-{set}")), log_x)
                .height(plot_height)
                .legend(Legend::default())
                .y_axis_label(format!("error on {set}"))
                .show(ui, |plot| {
                    for &basin in lanes {
                        let points: PlotPoints = g
                            .basins
                            .iter()
                            .filter(|r| r.basin == basin && r.set == *set && r.mean_error.is_finite())
                            .map(|r| [step_coordinate(r.step, log_x), r.mean_error])
                            .collect();
                        let name = format!("basin {basin}");
                        plot.line(Line::new(name, points).color(basin_color(lanes, basin)));
                    }
                    if let Some(step) = selection.step {
                        plot.vline(VLine::new("selected step", step_coordinate(step, log_x)).color(Color32::GRAY));
                    }
                });
        }
    });
}
