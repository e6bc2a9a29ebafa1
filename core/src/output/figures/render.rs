//! Drawing one figure to `<stem>.svg` and `<stem>.png`: the [`Figure`] trait, atomic file writes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::FigureError;
use super::font::ensure_font;

/// Pixel size of every figure (the SVG uses the same user units).
pub const SIZE: (u32, u32) = (1200, 800);

/// The result of drawing on a backend.
pub(crate) type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something that can draw itself on any plotters backend (the whole canvas, origin at 0,0).
pub(crate) trait Figure {
    /// Draws the figure on `root`, which covers the whole canvas.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// `<stem>.<ext>` (keeps any dots already in the stem's file name).
pub(crate) fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// A hidden temporary path next to `path`, keeping its extension (the PNG encoder picks the format from it).
fn temp_path(path: &Path, ext: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp.{ext}", std::process::id()))
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> FigureError {
    FigureError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Renames `tmp` to `path`, removing `tmp` on failure.
fn finish(tmp: &Path, path: &Path) -> Result<(), FigureError> {
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        FigureError::io(path, e)
    })
}

/// Draws `figure` into `<stem>.svg` and `<stem>.png` ([`SIZE`] pixels) and returns both paths.
///
/// The parent folder is created if missing. Each file is written to a temporary name and renamed, so a
/// failed or killed run never leaves a half-written figure.
pub(crate) fn write_figure(figure: &impl Figure, stem: &Path) -> Result<Vec<PathBuf>, FigureError> {
    ensure_font()?;
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| FigureError::io(parent, e))?;
    }
    let svg = with_ext(stem, "svg");
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        figure.draw(&root).map_err(|e| draw_error(&svg, e))?;
        root.present().map_err(|e| draw_error(&svg, e))?;
    }
    let tmp = temp_path(&svg, "svg");
    std::fs::write(&tmp, text).map_err(|e| FigureError::io(&svg, e))?;
    finish(&tmp, &svg)?;

    let png = with_ext(stem, "png");
    let tmp = temp_path(&png, "png");
    let drawn = {
        let root = BitMapBackend::new(&tmp, SIZE).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(&png, e))
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    finish(&tmp, &png)?;
    Ok(vec![svg, png])
}
