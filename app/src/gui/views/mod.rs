//! The panels of the app. Each is a function drawing one view of a [`Session`] and editing the
//! shared [`Selection`]; none computes anything beyond choosing what to show.
//!
//! [`Session`]: super::session::Session

pub mod curves;
pub mod filter;
pub mod generalization;
pub mod grid;
pub mod heatmap;
pub mod representations;
pub mod table;
pub mod training;
pub mod tree;

use egui::Color32;
use lineage_core::methods::basins::BasinId;
use lineage_core::output::figures::{seed_style, viridis};

/// What the user has picked: a step (from the basin tree or the slider) and a seed pair (from the
/// heatmap or the table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Selected step.
    pub step: Option<u64>,
    /// Selected seed pair (run A, run B) as in the interpolation table.
    pub pair: Option<(String, String)>,
}

/// Colour of the `i`-th run (the same Okabe–Ito colours as the figures).
pub fn run_color(i: usize) -> Color32 {
    let c = seed_style(i).color;
    Color32::from_rgb(c.0, c.1, c.2)
}

/// Colour of `basin`: its lane's in the basin tree (`lanes`, top to bottom), as the figures draw it.
pub fn basin_color(lanes: &[BasinId], basin: BasinId) -> Color32 {
    run_color(lanes.iter().position(|&l| l == basin).unwrap_or(lanes.len()))
}

/// Viridis colour at `t` in [0, 1].
pub fn heat_color(t: f64) -> Color32 {
    let c = viridis(t);
    Color32::from_rgb(c.0, c.1, c.2)
}

/// Where a step goes along an axis: linear, or log(1 + step) so step 0 has a place.
pub fn step_coordinate(step: u64, log_x: bool) -> f64 {
    if log_x { (step as f64).ln_1p() } else { step as f64 }
}

/// `plot` with a step x axis: its label, and tick labels in steps (the inverse of [`step_coordinate`]).
pub fn with_step_axis(plot: egui_plot::Plot<'_>, log_x: bool) -> egui_plot::Plot<'_> {
    plot.x_axis_label(if log_x { "step (log scale)" } else { "step" })
        .x_axis_formatter(move |mark, _| {
            let step = if log_x { mark.value.exp_m1() } else { mark.value };
            format!("{:.0}", step.max(0.0))
        })
}

/// `label` cut to at most `max` characters, with an ellipsis.
pub fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}
