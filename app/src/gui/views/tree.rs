//! The basin tree: x = step, one lane per basin, a disk per (step, basin) sized by its members, and
//! each run a coloured thread. Hover a disk for its members and barriers; click to select a step.

use egui::epaint::CubicBezierShape;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Ui, Vec2, pos2, vec2};
use lineage_core::Named;
use lineage_core::methods::basins::{BarrierMatrix, BasinHistory, ThreadPoint};
use lineage_core::output::figures::geometry::circle_points;

use super::{Selection, run_color, shorten, step_coordinate};
use crate::gui::session::Analysed;

/// Room for the lane labels on the left.
const LABEL_WIDTH: f32 = 74.0;
/// Room for the step labels below.
const AXIS_HEIGHT: f32 = 22.0;

/// Draws the tree in the space `ui` offers (height `height`) and updates `selection.step` on click.
pub fn show(ui: &mut Ui, analysed: &Analysed, selection: &mut Selection, log_x: bool, height: f32) {
    let layout = &analysed.basins().layout;
    if layout.steps.is_empty() {
        ui.label("No basins: no step has two runs to compare.");
        return;
    }
    let (response, painter) = ui.allocate_painter(vec2(ui.available_width(), height), Sense::click());
    let rect = response.rect;
    let plot = Rect::from_min_max(
        pos2(rect.left() + LABEL_WIDTH, rect.top() + 8.0),
        pos2(rect.right() - 24.0, rect.bottom() - AXIS_HEIGHT),
    );
    let visuals = ui.visuals().clone();
    let (vmin, vmax) = layout
        .steps
        .iter()
        .map(|&s| step_coordinate(s, log_x))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let x_of = |step: u64| -> f32 {
        let v = step_coordinate(step, log_x);
        if vmax > vmin {
            plot.left() + ((v - vmin) / (vmax - vmin)) as f32 * plot.width()
        } else {
            plot.center().x
        }
    };
    let n_lanes = layout.lanes.len().max(1);
    let lane_h = plot.height() / n_lanes as f32;
    let y_of = |lane: usize| plot.top() + (lane as f32 + 0.5) * lane_h;

    // Lanes and their labels.
    for (lane, basin) in layout.lanes.iter().enumerate() {
        if lane % 2 == 0 {
            let band = Rect::from_min_max(
                pos2(plot.left() - 12.0, y_of(lane) - lane_h / 2.0),
                pos2(plot.right() + 12.0, y_of(lane) + lane_h / 2.0),
            );
            painter.rect_filled(band, 0.0, visuals.faint_bg_color);
        }
        painter.text(
            pos2(rect.left() + 4.0, y_of(lane)),
            Align2::LEFT_CENTER,
            format!("basin {basin}"),
            FontId::proportional(12.0),
            visuals.text_color(),
        );
    }
    // Selected step, and step labels (thinned to avoid overlap).
    if let Some(step) = selection.step {
        let x = x_of(step);
        painter.rect_filled(
            Rect::from_min_max(pos2(x - 3.0, plot.top() - 6.0), pos2(x + 3.0, plot.bottom() + 4.0)),
            2.0,
            visuals.selection.bg_fill.gamma_multiply(0.5),
        );
    }
    let mut last_label_x = f32::NEG_INFINITY;
    for &step in &layout.steps {
        let x = x_of(step);
        if x - last_label_x >= 44.0 {
            painter.text(
                pos2(x, rect.bottom() - 2.0),
                Align2::CENTER_BOTTOM,
                step.to_string(),
                FontId::proportional(11.0),
                visuals.weak_text_color(),
            );
            last_label_x = x;
        }
    }

    // Disk sizes: fit the lane height and the spacing between steps.
    let mut xs: Vec<f32> = layout.steps.iter().map(|&s| x_of(s)).collect();
    xs.dedup();
    let min_dx = xs.windows(2).map(|w| w[1] - w[0]).fold(f32::INFINITY, f32::min);
    let n_runs = layout.threads.len().max(1);
    let r_max = (0.42 * lane_h).min(0.45 * min_dx).clamp(5.0, 26.0);
    let radius = |m: usize| (r_max * (m as f32 / n_runs as f32).sqrt()).max(4.0);
    let at = |p: &ThreadPoint| -> Pos2 {
        let spacing = if p.m > 1 {
            1.4 * radius(p.m) / (p.m - 1) as f32
        } else {
            0.0
        };
        pos2(
            x_of(p.step),
            y_of(p.lane) + (p.pos as f32 - (p.m - 1) as f32 / 2.0) * spacing,
        )
    };

    let uncertain = &analysed.basins().uncertain;
    for node in &layout.nodes {
        let c = pos2(x_of(node.step), y_of(node.lane));
        let r = radius(node.members.len());
        painter.circle_filled(c, r, Color32::from_gray(215));
        if uncertain.contains(&(node.step, node.basin)) {
            // Membership uncertain under bootstrap resampling: a dashed ring.
            let ring: Vec<Pos2> = circle_points((f64::from(c.x), f64::from(c.y)), f64::from(r + 2.0), 48)
                .into_iter()
                .map(|(x, y)| pos2(x as f32, y as f32))
                .collect();
            let stroke = Stroke::new(2.0, visuals.text_color());
            painter.extend(egui::Shape::dashed_line(&ring, stroke, 5.0, 3.0));
        } else {
            painter.circle_stroke(c, r, Stroke::new(1.5, Color32::from_gray(110)));
        }
    }
    for (i, thread) in layout.threads.iter().enumerate() {
        let stroke = Stroke::new(2.5, run_color(i));
        for w in thread.points.windows(2) {
            if w[1].k != w[0].k + 1 {
                continue; // the run is missing in between: break the thread
            }
            let (a, b) = (at(&w[0]), at(&w[1]));
            let mid = (a.x + b.x) / 2.0;
            let curve = CubicBezierShape::from_points_stroke(
                [a, pos2(mid, a.y), pos2(mid, b.y), b],
                false,
                Color32::TRANSPARENT,
                stroke,
            );
            painter.add(curve);
        }
        for p in &thread.points {
            painter.circle_filled(at(p), 3.0, run_color(i));
        }
    }

    diverged_crosses(ui, response.id, &painter, analysed, &at, &x_of, &y_of);

    // Disks answer hover and clicks; a click elsewhere selects the nearest step.
    let mut clicked_node = false;
    for node in &layout.nodes {
        let c = pos2(x_of(node.step), y_of(node.lane));
        let r = radius(node.members.len()).max(8.0);
        let id = response.id.with(("basin", node.step, node.basin));
        let label = format!("basin {} at step {}", node.basin, node.step);
        let disk = ui.interact(Rect::from_center_size(c, Vec2::splat(2.0 * r)), id, Sense::click());
        disk.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
        if disk.clicked() {
            selection.step = Some(node.step);
            clicked_node = true;
        }
        disk.on_hover_ui(|ui| {
            ui.strong(&label);
            ui.label(node_details(
                &analysed.basins().history,
                &analysed.basins().matrices,
                node.step,
                node.basin,
                &node.members,
            ));
        });
    }
    if !clicked_node
        && response.clicked()
        && let Some(pointer) = response.interact_pointer_pos()
    {
        selection.step = layout
            .steps
            .iter()
            .copied()
            .min_by(|&a, &b| (x_of(a) - pointer.x).abs().total_cmp(&(x_of(b) - pointer.x).abs()));
    }
}

/// A cross where a run diverged, on a dashed stretch from its last basin; hovering names it.
fn diverged_crosses(
    ui: &Ui,
    base: egui::Id,
    painter: &egui::Painter,
    analysed: &Analysed,
    at: &dyn Fn(&ThreadPoint) -> Pos2,
    x_of: &dyn Fn(u64) -> f32,
    y_of: &dyn Fn(usize) -> f32,
) {
    let layout = &analysed.basins().layout;
    for mark in layout.diverged_marks(&analysed.basins().diverged) {
        let (run, step) = (&layout.threads[mark.thread].run, mark.step);
        let c = pos2(x_of(step), y_of(mark.last.lane));
        painter.add(egui::Shape::dashed_line(
            &[at(&mark.last), c],
            Stroke::new(1.5, run_color(mark.thread)),
            4.0,
            4.0,
        ));
        let red = Stroke::new(3.0, Color32::from_rgb(0xD5, 0x5E, 0x00));
        painter.line_segment([c + vec2(-6.0, -6.0), c + vec2(6.0, 6.0)], red);
        painter.line_segment([c + vec2(-6.0, 6.0), c + vec2(6.0, -6.0)], red);
        let label = format!("{run} diverged at step {step}");
        let id = base.with(("diverged", step, run));
        let cross = ui.interact(Rect::from_center_size(c, Vec2::splat(14.0)), id, Sense::hover());
        cross.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &label));
        cross.on_hover_text(format!("{label}: its loss is not finite; it is in no basin from here"));
    }
}

/// The hover text of a node: its event, members and barriers.
fn node_details(
    history: &BasinHistory,
    matrices: &[BarrierMatrix],
    step: u64,
    basin: u32,
    members: &[String],
) -> String {
    let mut lines = Vec::new();
    if let Some(state) = history.step(step).and_then(|s| s.basins.iter().find(|b| b.id == basin)) {
        let parent = state.parent.map_or(String::new(), |p| format!(" from basin {p}"));
        lines.push(format!("{}{parent}", state.event.name()));
    }
    lines.push(format!(
        "{} members: {}",
        members.len(),
        shorten(&members.join(", "), 240)
    ));
    if let Some(matrix) = matrices.iter().find(|m| m.step == step) {
        let stats = matrix.group_stats(members);
        let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
        lines.push(format!(
            "loss barrier within: mean {}, max {}; to other runs: min {}",
            fmt(stats.within_mean),
            fmt(stats.within_max),
            fmt(stats.to_others_min)
        ));
    }
    lines.join("\n")
}
