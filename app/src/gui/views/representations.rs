//! Representations and dynamics over training, beside the basin tree: similarity of each checkpoint's
//! hidden representation to its run's final one (linear CKA) and between seeds (mean over seed pairs),
//! linear-probe accuracy, and each run's weight-space path (PCA of its trajectory) coloured by the
//! basin it ends in.

use std::collections::BTreeMap;

use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use lineage_core::pipeline::plan::PairKind;

use super::{basin_color, run_color, step_coordinate, with_step_axis};
use crate::gui::session::{Analysed, Session};

/// Draws the three plots side by side.
pub fn show(ui: &mut Ui, session: &Session, analysed: &Analysed, log_x: bool, height: f32) {
    let Some(views) = &analysed.analysis().representations else {
        let why: Vec<&str> = analysed
            .analysis()
            .warnings
            .iter()
            .filter(|w| w.starts_with("representations"))
            .map(String::as_str)
            .collect();
        ui.label(format!("No representation views. {}", why.join("; ")));
        return;
    };
    let runs = session.run_names();
    let layer = views.layer.map_or("-".to_string(), |l| l.to_string());
    ui.label(format!(
        "hidden layer {layer}: linear CKA to the run's final checkpoint (lines) and mean CKA between seeds \
         (black); held-out linear-probe accuracy; weight-space path of each run (PCA)"
    ));
    ui.columns(3, |columns| {
        with_step_axis(Plot::new("cka-over-steps"), log_x)
            .height(height)
            .legend(Legend::default())
            .y_axis_label("linear CKA")
            .show(&mut columns[0], |plot| {
                for (i, run) in runs.iter().enumerate() {
                    let points: PlotPoints = views
                        .similarity
                        .iter()
                        .filter(|r| r.pair == PairKind::ToFinal && &r.run_a == run)
                        .map(|r| [step_coordinate(r.step, log_x), r.linear_cka])
                        .collect();
                    plot.line(Line::new(run.as_str(), points).color(run_color(i)));
                }
                let mut by_step: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
                for r in views.similarity.iter().filter(|r| r.pair == PairKind::Seeds) {
                    let e = by_step.entry(r.step).or_default();
                    e.0 += r.linear_cka;
                    e.1 += 1;
                }
                let mean: PlotPoints = by_step
                    .iter()
                    .map(|(&s, &(sum, n))| [step_coordinate(s, log_x), sum / n as f64])
                    .collect();
                plot.line(
                    Line::new("between seeds (mean)", mean)
                        .color(egui::Color32::BLACK)
                        .width(2.5),
                );
            });
        with_step_axis(Plot::new("probe-accuracy"), log_x)
            .height(height)
            .y_axis_label("probe accuracy (held out)")
            .show(&mut columns[1], |plot| {
                for (i, run) in runs.iter().enumerate() {
                    let points: PlotPoints = views
                        .probes
                        .iter()
                        .filter(|r| &r.run == run)
                        .map(|r| [step_coordinate(r.step, log_x), r.heldout_accuracy])
                        .collect();
                    plot.line(Line::new(run.as_str(), points).color(run_color(i)));
                }
            });
        // Each run's path in weight space, coloured by the basin the run ends in.
        let final_step = analysed.basins().history.steps.last();
        let lanes = &analysed.basins().layout.lanes;
        // One set of axes for every run (the joint projection) when it was computed; else each
        // run's path in its own plane.
        let joint = views
            .trajectories
            .iter()
            .all(|r| r.joint_pc1.is_finite() && r.joint_pc2.is_finite());
        let (x_label, y_label) = if joint {
            ("PC 1 of all runs' checkpoints", "PC 2 (all runs)")
        } else {
            ("PC 1 of the run's own path", "PC 2 (own path)")
        };
        Plot::new("weight-trajectories")
            .height(height)
            .legend(Legend::default())
            .x_axis_label(x_label)
            .y_axis_label(y_label)
            .show(&mut columns[2], |plot| {
                for run in &runs {
                    let basin =
                        final_step.and_then(|s| s.basins.iter().find(|b| b.members.contains(run)).map(|b| b.id));
                    let color = basin.map_or(run_color(lanes.len()), |b| basin_color(lanes, b));
                    let name = basin.map_or("no basin".to_string(), |b| format!("ends in basin {b}"));
                    let path: Vec<[f64; 2]> = views
                        .trajectories
                        .iter()
                        .filter(|r| &r.run == run)
                        .map(|r| {
                            if joint {
                                [r.joint_pc1, r.joint_pc2]
                            } else {
                                [r.pc1, r.pc2]
                            }
                        })
                        .collect();
                    if let Some(&last) = path.last() {
                        plot.points(Points::new(name.as_str(), vec![last]).radius(4.0).color(color));
                    }
                    plot.line(Line::new(name.as_str(), PlotPoints::from(path)).color(color));
                }
            });
    });
}
