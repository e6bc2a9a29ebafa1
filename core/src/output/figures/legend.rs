//! A legend drawn in its own strip beside the plot (never over the data), in up to three columns.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::layout::{LEGEND, anchored, draw_marker, fit_text, text};
use super::palette::{INK, MUTED, SeedStyle};
use super::render::DrawResult;

/// Height of one legend row (px).
const ROW: i32 = 28;
/// Width of the sample drawn left of each label (px).
const SWATCH: i32 = 40;
/// Space between sample and label, and around the legend (px).
const GAP: i32 = 10;
/// Widest label before it is shortened with an ellipsis (px).
const MAX_LABEL: u32 = 230;
/// Most columns a legend uses; further entries are summarised as "+N more".
const MAX_COLUMNS: usize = 3;

/// What a legend entry's sample looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swatch {
    /// A line.
    Line {
        /// Colour.
        color: RGBColor,
        /// Stroke width (px).
        width: u32,
        /// Dashed or solid.
        dashed: bool,
    },
    /// A run's line with its marker.
    Seed(SeedStyle),
    /// No sample: the label continues the entry above.
    Blank,
    /// A translucent band with a line through it.
    Band {
        /// Colour.
        color: RGBColor,
    },
}

/// One legend entry.
#[derive(Debug, Clone)]
pub(crate) struct LegendEntry {
    /// Text.
    pub label: String,
    /// Sample.
    pub swatch: Swatch,
}

/// A legend: optional title and entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Legend {
    /// Title above the entries.
    pub title: Option<String>,
    /// Entries, top to bottom, then column by column.
    pub entries: Vec<LegendEntry>,
}

impl Legend {
    fn rows_per_column(&self, height: u32) -> usize {
        let title = if self.title.is_some() { ROW } else { 0 };
        (((height as i32 - title - 2 * GAP) / ROW).max(1)) as usize
    }

    /// Columns used in an area `height` px tall and at most `max_width` px wide, for columns
    /// `column_w` px wide.
    fn columns(&self, height: u32, max_width: u32, column_w: u32) -> usize {
        let fit = ((max_width.saturating_sub(GAP as u32)) / column_w.max(1)).max(1) as usize;
        self.entries
            .len()
            .div_ceil(self.rows_per_column(height))
            .clamp(1, MAX_COLUMNS.min(fit))
    }

    /// Width (px) of one column: sample, gap and the widest (capped) label or the title.
    fn column_width<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<u32, DrawingAreaErrorKind<DB::ErrorType>> {
        let style = text(LEGEND, &INK);
        let mut widest = 0;
        for e in &self.entries {
            widest = widest.max(area.estimate_text_size(&e.label, &style)?.0.min(MAX_LABEL));
        }
        if let Some(t) = &self.title {
            let title = area.estimate_text_size(t, &style)?.0;
            widest = widest.max(title.saturating_sub((SWATCH + GAP) as u32));
        }
        Ok((SWATCH + GAP) as u32 + widest + 2 * GAP as u32)
    }

    /// The width (px) the legend takes in an area `height` px tall when it may use up to `max_width`
    /// px (entries that do not fit are summarised as "+N more"); 0 when it has no entries.
    pub(crate) fn width<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        height: u32,
        max_width: u32,
    ) -> Result<u32, DrawingAreaErrorKind<DB::ErrorType>> {
        if self.entries.is_empty() {
            return Ok(0);
        }
        let column = self.column_width(area)?;
        let columns = self.columns(height, max_width, column) as u32;
        Ok((column * columns + GAP as u32).min(max_width))
    }

    /// Draws the legend in `area` (from its top-left corner).
    pub(crate) fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let (w, h) = area.dim_in_pixel();
        let style = anchored(text(LEGEND, &INK), HPos::Left, VPos::Center);
        let mut y0 = GAP;
        if let Some(t) = &self.title {
            area.draw_text(t, &style, (GAP, y0 + ROW / 2))?;
            y0 += ROW;
        }
        let rows = self.rows_per_column(h);
        let columns = self.columns(h, w, self.column_width(area)?);
        let capacity = rows * columns;
        let overflow = self.entries.len() > capacity;
        let shown = if overflow { capacity - 1 } else { self.entries.len() };
        let column_w = (w as i32 - GAP) / columns as i32;
        let label_w = (column_w - SWATCH - 3 * GAP).clamp(20, MAX_LABEL as i32) as u32;
        for (i, e) in self.entries.iter().take(shown).enumerate() {
            let x = GAP + (i / rows) as i32 * column_w;
            let y = y0 + (i % rows) as i32 * ROW + ROW / 2;
            draw_swatch(area, e.swatch, (x, y))?;
            let label = fit_text(area, &e.label, &style, label_w)?;
            area.draw_text(&label, &style, (x + SWATCH + GAP, y))?;
        }
        if overflow {
            let i = shown;
            let x = GAP + (i / rows) as i32 * column_w;
            let y = y0 + (i % rows) as i32 * ROW + ROW / 2;
            let more = format!("+{} more", self.entries.len() - shown);
            area.draw_text(&more, &anchored(text(LEGEND, &MUTED), HPos::Left, VPos::Center), (x, y))?;
        }
        Ok(())
    }
}

/// Draws a sample `SWATCH` px wide whose left end is at `(x, y)` (vertically centred on `y`).
fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    swatch: Swatch,
    (x, y): (i32, i32),
) -> DrawResult<DB> {
    let line = |color: RGBColor, width: u32, dashed: bool| -> DrawResult<DB> {
        let style = color.stroke_width(width);
        if dashed {
            area.draw(&DashedPathElement::new(vec![(x, y), (x + SWATCH, y)], 7, 5, style))
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], style))
        }
    };
    match swatch {
        Swatch::Line { color, width, dashed } => line(color, width, dashed),
        Swatch::Seed(s) => {
            line(s.color, 3, s.dashed)?;
            draw_marker(area, s.marker, (x + SWATCH / 2, y), 6, s.color.filled())?;
            draw_marker(area, s.marker, (x + SWATCH / 2, y), 6, WHITE.stroke_width(1))
        }
        Swatch::Blank => Ok(()),
        Swatch::Band { color } => {
            area.draw(&Rectangle::new(
                [(x, y - 9), (x + SWATCH, y + 9)],
                color.mix(0.25).filled(),
            ))?;
            line(color, 3, false)
        }
    }
}
