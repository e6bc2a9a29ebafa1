//! A step's seeds x seeds barrier matrix as a heatmap (viridis), rows and columns in a given order
//! (usually the average-linkage dendrogram's leaf order), with run names and a colour bar.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{format_value, nice_ticks};
use super::error::FigureError;
use super::geometry::hatch_segments;
use super::layout::{AXIS_TITLE, MARGIN, NoData, TICK, anchored, fit_text, header, plural, text};
use super::palette::{INK, luminance, viridis};
use super::render::{DrawResult, Figure, write_figure};
use crate::methods::basins::{BarrierMatrix, CoMembership};
use crate::methods::bootstrap::is_uncertain;

/// Longest run name drawn beside the matrix before it is shortened (px).
const MAX_NAME: u32 = 190;
/// Width of the colour bar strip, ticks and title included (px).
const BAR_STRIP: i32 = 150;
/// Width of the colour bar itself (px).
const BAR_W: i32 = 28;
/// Shortest common prefix of the run names worth removing from the labels of big matrices.
const MIN_PREFIX: usize = 4;
/// Most cells per side that get their value written in them (and beyond which a common prefix of
/// the run names is left out of the labels).
const MAX_ANNOTATED: usize = 12;

/// Draws `matrix` as a heatmap into `<path_stem>.svg` / `.png` and returns both paths, with the colour
/// scale running from 0 to the matrix's largest barrier.
///
/// Row and column `i` show run `matrix.runs[order[i]]` (pass `average_linkage(&matrix).leaf_order()`
/// so every basin is a block on the diagonal); the first run is at the top left. Colours are viridis
/// from 0 (dark) to the largest barrier (yellow), explained by a colour bar titled "loss barrier
/// (nats)"; matrices of up to 12 runs also carry each value in its cell; bigger ones leave a common
/// prefix of the run names (`pythia-160m-seed`) out of the labels and say so. `title` is drawn on top,
/// with the step, the number of runs and the largest barrier below it.
///
/// An empty matrix gives a "no data" figure; an `order` that is not a permutation of `0..n` is
/// [`FigureError::InvalidInput`]. See [`barrier_heatmap_scaled`] for a colour scale shared by
/// several steps.
pub fn barrier_heatmap(
    matrix: &BarrierMatrix,
    order: &[usize],
    title: &str,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    barrier_heatmap_scaled(matrix, order, title, None, None, path_stem)
}

/// Like [`barrier_heatmap`], with the top of the colour scale at `vmax` (nats) when given (e.g. the
/// largest barrier over all steps, so heatmaps of different steps compare by colour); values above it
/// get the top colour. `vmax` must be finite and > 0. With the step's bootstrap `co_membership` (over
/// the matrix's runs), a cell whose pair is neither together nor apart under 95% of the resamples is
/// hatched, and the subtitle says so.
pub fn barrier_heatmap_scaled(
    matrix: &BarrierMatrix,
    order: &[usize],
    title: &str,
    vmax: Option<f64>,
    co_membership: Option<&CoMembership>,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let n = matrix.len();
    let mut seen = vec![false; n];
    let is_permutation = order.len() == n && order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
    if !is_permutation {
        let problem = format!(
            "heatmap order {order:?} is not a permutation of the {n} runs of step {}",
            matrix.step
        );
        return Err(FigureError::invalid(path_stem, problem));
    }
    if let Some(v) = vmax.filter(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(FigureError::invalid(
            path_stem,
            format!("colour scale maximum {v} is not finite and > 0"),
        ));
    }
    if n == 0 {
        let message = format!("no runs at step {}", matrix.step);
        return write_figure(&NoData { title, message }, path_stem);
    }
    let max = matrix.values.iter().copied().fold(0.0, f64::max);
    let mut subtitle = format!(
        "step {} · {} · largest barrier {} nats",
        matrix.step,
        plural(n, "run"),
        format_value(max)
    );
    if let Some(v) = vmax {
        subtitle.push_str(&format!(" · colour scale 0–{} nats", format_value(v)));
    }
    let mut names: Vec<String> = order.iter().map(|&i| matrix.runs[i].clone()).collect();
    if n > MAX_ANNOTATED {
        let prefix = common_prefix(&names);
        if prefix.chars().count() >= MIN_PREFIX {
            names = names.iter().map(|s| s[prefix.len()..].to_string()).collect();
            subtitle.push_str(&format!(" · names after “{prefix}”"));
        }
    }
    let co_membership = co_membership.filter(|c| c.runs == matrix.runs);
    let hatched: Vec<bool> = match co_membership {
        Some(c) => order
            .iter()
            .flat_map(|&i| order.iter().map(move |&j| i != j && is_uncertain(c.get(i, j))))
            .collect(),
        None => Vec::new(),
    };
    if matrix.has_gaps() {
        subtitle.push_str(" · grey: not computed (pruned by --economy: joined through connected pairs)");
    }
    if let Some(c) = co_membership {
        subtitle.push_str(&format!(
            " · hatched: co-membership 0.05–0.95 over {} resamples",
            c.resamples
        ));
    }
    let figure = Heatmap {
        title,
        subtitle,
        names,
        hatched,
        values: matrix.reordered_values(order),
        vmax: vmax.unwrap_or(if max > 0.0 { max } else { 1.0 }),
    };
    write_figure(&figure, path_stem)
}

/// The colour of a cell of barrier `value`: viridis up to `vmax`, grey for a pair not computed.
fn cell_colour(value: f64, vmax: f64) -> RGBColor {
    if value.is_nan() {
        NOT_COMPUTED
    } else {
        viridis(value / vmax)
    }
}

/// Spacing of the hatching of uncertain cells, in pixels.
const HATCH_PX: f64 = 7.0;

/// The colour of a cell whose pair was not computed.
const NOT_COMPUTED: RGBColor = RGBColor(215, 215, 215);

/// The longest common prefix of `names` that leaves every name non-empty and does not end inside a
/// number (so `seed10`, `seed11` keep their whole numbers).
fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let same = |name: &String| first.chars().zip(name.chars()).take_while(|(a, b)| a == b).count();
    let n_chars = names[1..].iter().map(same).min().unwrap_or(first.chars().count());
    let end = first.char_indices().nth(n_chars).map_or(first.len(), |(i, _)| i);
    let shortest = names.iter().map(String::len).min().unwrap_or(0);
    let mut prefix = &first[..end];
    while !prefix.is_empty() && (prefix.len() >= shortest || prefix.ends_with(|c: char| c.is_ascii_digit())) {
        let cut = prefix.char_indices().last().map_or(0, |(i, _)| i);
        prefix = &prefix[..cut];
    }
    prefix.to_string()
}

/// The heatmap, reordered.
struct Heatmap<'a> {
    title: &'a str,
    subtitle: String,
    names: Vec<String>,
    /// Row-major, in display order: whether the cell's pair is uncertain (empty: none is).
    hatched: Vec<bool>,
    /// Row-major values in display order.
    values: Vec<f64>,
    vmax: f64,
}

impl Heatmap<'_> {
    /// Font size of the run names: smaller for big matrices.
    fn name_size(&self) -> f64 {
        match self.names.len() {
            0..=20 => TICK,
            21..=40 => 14.0,
            _ => 11.0,
        }
    }

    /// Every how many runs a name is written (all up to 60 runs).
    fn name_stride(&self) -> usize {
        self.names.len().div_ceil(60).max(1)
    }
}

impl Figure for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, self.title, Some(&self.subtitle))?;
        let n = self.names.len();
        let name_style = text(self.name_size(), &INK);
        let mut names = Vec::with_capacity(n);
        let mut name_w = 0;
        for (i, name) in self.names.iter().enumerate() {
            let shown = if i % self.name_stride() == 0 {
                fit_text(&body, name, &name_style, MAX_NAME)?
            } else {
                String::new()
            };
            name_w = name_w.max(body.estimate_text_size(&shown, &name_style)?.0 as i32);
            names.push(shown);
        }
        // Geometry (pixels of `body`): axis title, names, square matrix, colour bar strip.
        let (w, h) = body.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        let m = MARGIN as i32;
        let title_gap = AXIS_TITLE as i32 + 12;
        let label_gap = name_w + 10;
        let side = (w - 2 * m - title_gap - label_gap - BAR_STRIP - 24)
            .min(h - m - title_gap - label_gap - 8)
            .max(n as i32);
        let cell = side as f64 / n as f64;
        let side = (cell * n as f64).round() as i32;
        let total_w = title_gap + label_gap + side + 24 + BAR_STRIP;
        let x0 = (w - total_w) / 2 + title_gap + label_gap;
        let y0 = 8;
        let px = |k: usize| (k as f64 * cell).round() as i32;

        for r in 0..n {
            for c in 0..n {
                let color = cell_colour(self.values[r * n + c], self.vmax);
                let rect = [(x0 + px(c), y0 + px(r)), (x0 + px(c + 1), y0 + px(r + 1))];
                body.draw(&Rectangle::new(rect, color.filled()))?;
                if self.hatched.get(r * n + c) == Some(&true) {
                    let ink = if luminance(color) > 0.35 { BLACK } else { WHITE };
                    let ((x0, y0), (x1, y1)) = (rect[0], rect[1]);
                    let corner = |x: i32, y: i32| (f64::from(x), f64::from(y));
                    for [a, b] in hatch_segments(corner(x0, y0), corner(x1, y1), HATCH_PX) {
                        let pixel = |p: (f64, f64)| (p.0.round() as i32, p.1.round() as i32);
                        body.draw(&PathElement::new(vec![pixel(a), pixel(b)], ink.stroke_width(1)))?;
                    }
                }
            }
        }
        body.draw(&Rectangle::new([(x0, y0), (x0 + side, y0 + side)], INK.stroke_width(1)))?;
        if n <= MAX_ANNOTATED && cell >= 30.0 {
            let size = (cell / 3.4).min(17.0);
            // One number format for all cells: two significant digits of the colour scale's top.
            let decimals = (1 - self.vmax.log10().floor() as i32).clamp(0, 6) as usize;
            for r in 0..n {
                for c in 0..n {
                    let v = self.values[r * n + c];
                    let bg = cell_colour(v, self.vmax);
                    let fg = if luminance(bg) > 0.35 { BLACK } else { WHITE };
                    let style = anchored(text(size, &fg), HPos::Center, VPos::Center);
                    let at = (x0 + (px(c) + px(c + 1)) / 2, y0 + (px(r) + px(r + 1)) / 2);
                    let label = if v.is_nan() {
                        "–".to_string()
                    } else {
                        format!("{v:.decimals$}")
                    };
                    body.draw_text(&label, &style, at)?;
                }
            }
        }

        // Run names: rows on the left, columns below (reading upwards).
        let row_style = anchored(name_style.clone(), HPos::Right, VPos::Center);
        let col_style = anchored(name_style.clone(), HPos::Right, VPos::Center).transform(FontTransform::Rotate270);
        for (i, name) in names.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let mid = (px(i) + px(i + 1)) / 2;
            body.draw(&PathElement::new(
                vec![(x0 - 5, y0 + mid), (x0, y0 + mid)],
                INK.stroke_width(1),
            ))?;
            body.draw_text(name, &row_style, (x0 - 8, y0 + mid))?;
            body.draw(&PathElement::new(
                vec![(x0 + mid, y0 + side), (x0 + mid, y0 + side + 5)],
                INK.stroke_width(1),
            ))?;
            body.draw_text(name, &col_style, (x0 + mid, y0 + side + 8))?;
        }
        let desc = anchored(text(AXIS_TITLE, &INK), HPos::Center, VPos::Center);
        body.draw_text("run", &desc, (x0 + side / 2, y0 + side + label_gap + title_gap / 2))?;
        body.draw_text(
            "run",
            &desc.transform(FontTransform::Rotate270),
            (x0 - label_gap - title_gap / 2, y0 + side / 2),
        )?;

        self.draw_colour_bar(&body, (x0 + side + 24, y0), side)
    }
}

impl Heatmap<'_> {
    /// The colour bar with its ticks and title, top-left at `at`, `height` px tall.
    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        at: (i32, i32),
        height: i32,
    ) -> DrawResult<DB> {
        let (x, y) = at;
        let steps = height.max(1);
        for k in 0..steps {
            let t = 1.0 - k as f64 / (steps - 1).max(1) as f64;
            area.draw(&Rectangle::new(
                [(x, y + k), (x + BAR_W, y + k + 1)],
                viridis(t).filled(),
            ))?;
        }
        area.draw(&Rectangle::new([(x, y), (x + BAR_W, y + height)], INK.stroke_width(1)))?;
        let tick_style = anchored(text(TICK, &INK), HPos::Left, VPos::Center);
        let mut widest = 0;
        for v in nice_ticks(0.0, self.vmax, 5) {
            let ty = y + height - (v / self.vmax * height as f64).round() as i32;
            area.draw(&PathElement::new(
                vec![(x + BAR_W, ty), (x + BAR_W + 6, ty)],
                INK.stroke_width(1),
            ))?;
            let label = format_value(v);
            widest = widest.max(area.estimate_text_size(&label, &tick_style)?.0 as i32);
            area.draw_text(&label, &tick_style, (x + BAR_W + 10, ty))?;
        }
        let title = anchored(text(AXIS_TITLE, &INK), HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
        area.draw_text(
            "loss barrier (nats)",
            &title,
            (x + BAR_W + 10 + widest + 22, y + height / 2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn common_prefix_keeps_whole_numbers() {
        assert_eq!(
            common_prefix(&names(&["pythia-seed10", "pythia-seed11"])),
            "pythia-seed"
        );
        assert_eq!(common_prefix(&names(&["run-a", "run-b"])), "run-");
        assert_eq!(common_prefix(&names(&["ab", "abc"])), "a");
        assert_eq!(common_prefix(&names(&["x", "y"])), "");
        assert_eq!(common_prefix(&names(&["αβ1", "αβ2"])), "αβ");
        assert_eq!(common_prefix(&[]), "");
    }
}
