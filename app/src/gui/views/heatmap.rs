//! The seed-pair barrier matrix at the selected step, rows and columns in dendrogram (average
//! linkage) order, one colour scale for all steps. Click a cell to select that pair.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Ui, pos2, vec2};
use lineage_core::Named;
use lineage_core::methods::bootstrap::is_uncertain;
use lineage_core::output::figures::geometry::hatch_segments;

use super::{Selection, heat_color, shorten};
use crate::gui::session::Analysed;

/// Room for the row labels.
const LABEL_WIDTH: f32 = 120.0;
/// Largest cell side.
const MAX_CELL: f32 = 44.0;

/// Diagonal hatching of `rect` ([`hatch_segments`]), every 6 points.
fn hatch(painter: &egui::Painter, rect: Rect, color: Color32) {
    let corner = |p: Pos2| (f64::from(p.x), f64::from(p.y));
    for [a, b] in hatch_segments(corner(rect.min), corner(rect.max), 6.0) {
        let point = |(x, y): (f64, f64)| pos2(x as f32, y as f32);
        painter.line_segment([point(a), point(b)], Stroke::new(1.0, color));
    }
}

/// Black or white, whichever reads on `fill`.
fn contrast(fill: Color32) -> Color32 {
    let [r, g, b, _] = fill.to_array();
    let luminance = 0.2126 * f32::from(r) + 0.7152 * f32::from(g) + 0.0722 * f32::from(b);
    if luminance > 0.35 * 255.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// Draws the heatmap of `selection.step` and updates `selection.pair` on click.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &mut Selection) {
    let Some(step) = selection.step else {
        ui.label("Select a step in the basin tree.");
        return;
    };
    let Some((matrix, order)) = analysed.basins().at(step) else {
        ui.label(format!("No seed-pair barriers at step {step}."));
        return;
    };
    let vmax = analysed.basins().colour_max.unwrap_or(0.0).max(1e-12);
    let n = order.len();
    ui.label(format!(
        "{} barrier (loss) at step {step}; colour scale 0 to {vmax:.3} over all steps",
        analysed.analysis().options.basins.barrier.name()
    ));
    let co_membership = analysed
        .basins()
        .co_membership_at(step)
        .filter(|c| c.runs == matrix.runs);
    if let Some(c) = co_membership {
        ui.label(format!(
            "hatched: co-membership between 0.05 and 0.95 over {} bootstrap resamples",
            c.resamples
        ));
    }
    if matrix.has_gaps() {
        ui.label("grey: not computed (pruned by --economy: connected pairs already join the two runs)");
    }
    let cell = ((ui.available_width() - LABEL_WIDTH - 8.0) / n as f32).clamp(6.0, MAX_CELL);
    let size = vec2(LABEL_WIDTH + cell * n as f32 + 8.0, cell * n as f32 + 18.0);
    let (response, painter) = ui.allocate_painter(size, Sense::hover());
    let origin = pos2(response.rect.left() + LABEL_WIDTH, response.rect.top() + 18.0);
    let text_color = ui.visuals().text_color();
    for col in 0..n {
        painter.text(
            pos2(origin.x + (col as f32 + 0.5) * cell, response.rect.top()),
            Align2::CENTER_TOP,
            (col + 1).to_string(),
            FontId::proportional(10.0),
            text_color,
        );
    }
    for (row, &i) in order.iter().enumerate() {
        painter.text(
            pos2(origin.x - 4.0, origin.y + (row as f32 + 0.5) * cell),
            Align2::RIGHT_CENTER,
            format!("{} {}", row + 1, shorten(&matrix.runs[i], 16)),
            FontId::proportional(11.0),
            text_color,
        );
        for (col, &j) in order.iter().enumerate() {
            let rect = Rect::from_min_size(
                pos2(origin.x + col as f32 * cell, origin.y + row as f32 * cell),
                vec2(cell, cell),
            );
            let value = matrix.get(i, j);
            let fill = if value.is_nan() {
                Color32::from_gray(120)
            } else {
                heat_color(value / vmax)
            };
            painter.rect_filled(rect.shrink(0.5), 0.0, fill);
            if i == j {
                continue;
            }
            let together = co_membership.map(|c| c.get(i, j));
            if together.is_some_and(is_uncertain) {
                hatch(&painter, rect.shrink(0.5), contrast(fill));
            }
            let (a, b) = ordered_pair(&matrix.runs[i], &matrix.runs[j]);
            let selected = selection.pair.as_ref() == Some(&(a.clone(), b.clone()));
            if selected {
                painter.rect_stroke(rect, 0.0, Stroke::new(2.0, Color32::WHITE), StrokeKind::Inside);
            }
            // Row × column, so each cell has its own name; both select the same pair.
            let label = format!("{} × {} at step {step}", matrix.runs[i], matrix.runs[j]);
            let id = response.id.with(("cell", step, i, j));
            let cell_response = ui.interact(rect, id, Sense::click());
            cell_response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            if cell_response.clicked() {
                selection.pair = Some((a.clone(), b.clone()));
            }
            let mut hover = if value.is_nan() {
                format!("{label}\nnot computed: --economy pruned it (connected pairs join the two runs)")
            } else {
                format!("{label}\nloss barrier {value:.4}")
            };
            if let Some(c) = together {
                hover.push_str(&format!("\nsame basin in {:.0}% of bootstrap resamples", 100.0 * c));
            }
            cell_response.on_hover_text(hover);
        }
    }
}

/// A seed pair in the order of the interpolation table (run names ascending, as the zoo orders runs).
pub fn ordered_pair(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_string(), y.to_string())
    } else {
        (y.to_string(), x.to_string())
    }
}
