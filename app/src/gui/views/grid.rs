//! The zoo as a runs x steps grid (format and dtype on hover), and every problem found while reading it.

use egui::{CollapsingHeader, Grid, RichText, ScrollArea, Ui};

use super::{run_color, shorten};
use crate::gui::session::Session;
use lineage_core::data::eval_sets::EvalSet;
use lineage_core::pipeline::selection::SelectionOptions;

/// Beyond this many steps the grid shows one cell per run with its step count.
const MAX_GRID_STEPS: usize = 40;

/// Draws the eval sets, the grid (checkpoints outside `selection` hollow) and the problems.
pub fn show(ui: &mut Ui, session: &Session, selection: &SelectionOptions, more_sets: &[EvalSet]) {
    let zoo = &session.zoo;
    let steps = zoo.steps();
    // A selection that does not compile selects nothing new: the editor says why. (Drawn every
    // frame: the zoo is copied only when a selection narrows it.)
    let selected = if selection.keeps_all_checkpoints() {
        None
    } else {
        selection.select(zoo).map(|(z, _)| z).ok()
    };
    let is_selected = |run: &str, step: u64| {
        selected
            .as_ref()
            .is_none_or(|z| z.run(run).and_then(|r| r.at(step)).is_some())
    };
    let n_selected = selected.as_ref().map_or(zoo.n_checkpoints(), |z| z.n_checkpoints());
    ui.label(format!(
        "{} runs × {} steps, {} checkpoints ({} selected)",
        zoo.runs.len(),
        steps.len(),
        zoo.n_checkpoints(),
        n_selected
    ));
    match &session.data {
        Some(data) => ui.label(format!("eval data: {}", data.display())),
        None => ui.colored_label(ui.visuals().warn_fg_color, "no eval data: File > Choose eval data…"),
    };
    for set in more_sets {
        ui.label(format!("eval set {}: {}", set.name, set.path.display()));
    }
    ScrollArea::both()
        .id_salt("zoo-grid")
        .max_height(ui.available_height() * 0.6)
        .show(ui, |ui| {
            Grid::new("runs-by-steps").striped(true).show(ui, |ui| {
                ui.strong("run");
                if steps.len() <= MAX_GRID_STEPS {
                    for s in &steps {
                        ui.strong(s.to_string());
                    }
                } else {
                    ui.strong("steps");
                }
                ui.end_row();
                for (i, run) in zoo.runs.iter().enumerate() {
                    ui.label(RichText::new(shorten(&run.name, 24)).color(run_color(i)))
                        .on_hover_text(run.dir.display().to_string());
                    if steps.len() <= MAX_GRID_STEPS {
                        for &s in &steps {
                            match run.at(s) {
                                Some(c) => {
                                    let (glyph, note) = if is_selected(&run.name, s) {
                                        ("■", "")
                                    } else {
                                        ("□", "\nnot selected")
                                    };
                                    ui.label(glyph).on_hover_text(format!(
                                        "{} step {s}\n{:?}, {:?}\n{}{note}",
                                        run.name,
                                        c.format,
                                        c.layout,
                                        c.display_path().display()
                                    ));
                                }
                                None => {
                                    ui.weak("·")
                                        .on_hover_text(format!("{}: no checkpoint at step {s}", run.name));
                                }
                            }
                        }
                    } else {
                        ui.label(format!("{} of {}", run.checkpoints.len(), steps.len()));
                    }
                    ui.end_row();
                }
            });
        });
    let n_problems = zoo.problems.len() + session.log_problems.len();
    CollapsingHeader::new(format!("Problems ({n_problems})"))
        .default_open(n_problems > 0 && n_problems <= 5)
        .show(ui, |ui| {
            ScrollArea::vertical().id_salt("problems").show(ui, |ui| {
                for p in &zoo.problems {
                    ui.label(p.to_string());
                }
                for p in &session.log_problems {
                    ui.label(p);
                }
            });
        });
    if let Some(analysis) = &session.analysis {
        let from_zoo = |w: &String| zoo.problems.iter().any(|p| &p.message == w);
        for w in analysis.analysis().warnings.iter().filter(|w| !from_zoo(w)) {
            ui.colored_label(ui.visuals().warn_fg_color, w);
        }
    }
}
