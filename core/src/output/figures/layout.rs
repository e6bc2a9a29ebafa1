//! Shared look of the figures: font sizes, text styles, the title header, markers and the "no data" page.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::FAMILY;
use super::palette::{INK, MUTED, Marker};
use super::render::{DrawResult, Figure};

/// Title font size (px).
pub(crate) const TITLE: f64 = 30.0;
/// Subtitle font size (px).
pub(crate) const SUBTITLE: f64 = 19.0;
/// Axis title font size (px).
pub(crate) const AXIS_TITLE: f64 = 22.0;
/// Tick label font size (px).
pub(crate) const TICK: f64 = 18.0;
/// Legend font size (px).
pub(crate) const LEGEND: f64 = 18.0;
/// Height of the title header (px).
pub(crate) const HEADER: u32 = 84;
/// Outer margin (px).
pub(crate) const MARGIN: u32 = 16;

/// Text in the figure font, `size` px, `color`.
pub(crate) fn text(size: f64, color: &RGBColor) -> TextStyle<'static> {
    let mut style = TextStyle::from((FAMILY, size).into_font());
    style.color = color.to_backend_color();
    style
}

/// `text` anchored at `h`, `v`.
pub(crate) fn anchored(style: TextStyle<'static>, h: HPos, v: VPos) -> TextStyle<'static> {
    style.pos(Pos::new(h, v))
}

/// `n` and `noun`, with an `s` unless `n` is 1: `1 run`, `3 runs`.
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Draws the title (and an optional grey subtitle) centred at the top, shortened with an ellipsis if
/// wider than the figure; returns the area below.
pub(crate) fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: Option<&str>,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (top, body) = root.split_vertically(HEADER);
    let w = top.dim_in_pixel().0 as i32;
    let title_y = if subtitle.is_some() { 30 } else { 44 };
    let room = (w - 2 * MARGIN as i32).max(1) as u32;
    let style = anchored(text(TITLE, &INK), HPos::Center, VPos::Center);
    top.draw_text(&fit_text(&top, title, &style, room)?, &style, (w / 2, title_y))?;
    if let Some(sub) = subtitle {
        let style = anchored(text(SUBTITLE, &MUTED), HPos::Center, VPos::Center);
        top.draw_text(&fit_text(&top, sub, &style, room)?, &style, (w / 2, 64))?;
    }
    Ok(body)
}

/// Shortens `label` with an ellipsis until it is at most `max_px` wide in `style`.
pub(crate) fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    style: &TextStyle,
    max_px: u32,
) -> Result<String, DrawingAreaErrorKind<DB::ErrorType>> {
    if area.estimate_text_size(label, style)?.0 <= max_px {
        return Ok(label.to_string());
    }
    let chars: Vec<char> = label.chars().collect();
    for keep in (1..chars.len()).rev() {
        let s: String = chars[..keep].iter().chain(std::iter::once(&'…')).collect();
        if area.estimate_text_size(&s, style)?.0 <= max_px {
            return Ok(s);
        }
    }
    Ok("…".to_string())
}

/// Draws a marker of radius `r` px centred at pixel `at` (coordinates of `area`), filled or outlined
/// as `style` says.
pub(crate) fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    marker: Marker,
    at: (i32, i32),
    r: i32,
    style: ShapeStyle,
) -> DrawResult<DB> {
    let (x, y) = at;
    let polygon = |mut points: Vec<(i32, i32)>| -> DrawResult<DB> {
        if style.filled {
            area.draw(&Polygon::new(points, style))
        } else {
            // Plotters always fills polygons: outline with a closed path instead.
            points.push(points[0]);
            area.draw(&PathElement::new(points, style))
        }
    };
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, r, style)),
        Marker::Square => {
            let s = (r as f64 * 0.85).round() as i32;
            area.draw(&Rectangle::new([(x - s, y - s), (x + s, y + s)], style))
        }
        Marker::Triangle => {
            let h = (r as f64 * 1.15).round() as i32;
            polygon(vec![(x, y - h), (x + h, y + h * 2 / 3), (x - h, y + h * 2 / 3)])
        }
        Marker::Diamond => {
            let h = (r as f64 * 1.2).round() as i32;
            polygon(vec![(x, y - h), (x + h, y), (x, y + h), (x - h, y)])
        }
    }
}

/// A figure with only a title and a centred message: what every figure draws when its input is empty.
pub(crate) struct NoData<'a> {
    /// The figure's title.
    pub title: &'a str,
    /// Why there is nothing to draw.
    pub message: String,
}

impl Figure for NoData<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, self.title, None)?;
        let (w, h) = body.dim_in_pixel();
        let style = anchored(text(AXIS_TITLE, &MUTED), HPos::Center, VPos::Center);
        body.draw_text(
            &format!("no data: {}", self.message),
            &style,
            (w as i32 / 2, h as i32 / 2),
        )
    }
}
