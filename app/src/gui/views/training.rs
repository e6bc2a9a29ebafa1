//! Training curves: a logged metric of every run over steps (from `metrics.jsonl`,
//! `trainer_state.json` or CSV logs) as lines, with the eval loss of each checkpoint as markers.

use std::collections::BTreeSet;

use egui::Ui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::{run_color, step_coordinate, with_step_axis};
use crate::gui::session::Session;

/// Draws the curves of `metric` (replaced by the first logged metric if absent).
pub fn show(ui: &mut Ui, session: &Session, metric: &mut String, log_x: bool, height: f32) {
    let metrics: BTreeSet<&String> = session
        .logs
        .iter()
        .flat_map(|(_, log)| log.points.iter().flat_map(|p| p.metrics.keys()))
        .collect();
    if !metrics.contains(metric)
        && let Some(first) = metrics.iter().find(|m| m.as_str() == "loss").or(metrics.first())
    {
        *metric = (*first).clone();
    }
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("metric")
            .selected_text(metric.as_str())
            .show_ui(ui, |ui| {
                for m in &metrics {
                    ui.selectable_value(metric, (*m).clone(), m.as_str());
                }
            });
    });
    if metrics.is_empty() && session.analysis.is_none() {
        ui.label("No training logs found (metrics.jsonl, trainer_state.json or CSV) and no analysis yet.");
        return;
    }
    let runs = session.run_names();
    // Line (train log) and markers (eval loss) of a run share its name, hence one legend entry.
    with_step_axis(Plot::new("training-curves"), log_x)
        .height(height)
        .legend(Legend::default())
        .y_axis_label(metric.as_str())
        .show(ui, |plot| {
            for (i, run) in runs.iter().enumerate() {
                for (_, log) in session.logs.iter().filter(|(r, _)| r == run) {
                    let points: PlotPoints = log
                        .series(metric)
                        .into_iter()
                        .map(|(s, v)| [step_coordinate(s, log_x), v])
                        .collect();
                    plot.line(Line::new(run.as_str(), points).color(run_color(i)));
                }
                if let Some(analysis) = &session.analysis {
                    let evals: PlotPoints = analysis
                        .analysis()
                        .sweep
                        .evals
                        .iter()
                        .filter(|e| &e.run == run)
                        .map(|e| [step_coordinate(e.step, log_x), e.loss])
                        .collect();
                    plot.points(Points::new(run.as_str(), evals).radius(3.5).color(run_color(i)));
                }
            }
        });
}
