//! The results table: every pair evaluated at the selected step with its endpoint and segment
//! barriers (loss and error). Clicking a seed pair selects it.

use std::collections::BTreeMap;

use egui::{Grid, ScrollArea, Ui};
use lineage_core::Named;
use lineage_core::methods::interpolation::BarrierKind;
use lineage_core::pipeline::plan::PairKind;

use super::Selection;
use crate::gui::session::Analysed;

/// Barriers of one pair: (endpoint loss, segment loss, endpoint error, segment error).
type PairBarriers = [Option<f64>; 4];

/// Draws the table for `selection.step`.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &mut Selection) {
    let Some(step) = selection.step else {
        ui.label("Select a step in the basin tree.");
        return;
    };
    // (pair kind, run A, run B, step B, aligned) -> barriers.
    let mut rows: BTreeMap<(PairKind, &str, &str, u64, bool), PairBarriers> = BTreeMap::new();
    for r in analysed.analysis().sweep.barriers.iter().filter(|r| r.step == step) {
        let entry = rows
            .entry((r.pair, r.run_a.as_str(), r.run_b.as_str(), r.step_b, r.aligned))
            .or_default();
        let offset = usize::from(r.kind == BarrierKind::Segment);
        entry[offset] = Some(r.loss_barrier);
        entry[2 + offset] = Some(r.error_barrier);
    }
    ui.label(format!("{} paths at step {step}", rows.len()));
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    ScrollArea::vertical().id_salt("results-table").show(ui, |ui| {
        Grid::new("results-grid").striped(true).num_columns(9).show(ui, |ui| {
            for title in [
                "pair",
                "run A",
                "run B",
                "step B",
                "aligned",
                "loss (endpoint)",
                "loss (segment)",
                "error (endpoint)",
                "error (segment)",
            ] {
                ui.strong(title);
            }
            ui.end_row();
            for ((kind, a, b, step_b, aligned), values) in &rows {
                let is_seed = *kind == PairKind::Seeds;
                let selected = is_seed && selection.pair.as_ref().is_some_and(|(x, y)| x == a && y == b);
                if ui.selectable_label(selected, kind.name()).clicked() && is_seed {
                    selection.pair = Some((a.to_string(), b.to_string()));
                }
                ui.label(*a);
                ui.label(*b);
                ui.label(step_b.to_string());
                ui.label(if *aligned { "yes" } else { "no" });
                for v in values {
                    ui.label(fmt(*v));
                }
                ui.end_row();
            }
        });
    });
}
