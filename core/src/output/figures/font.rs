//! The bundled DejaVu Sans font, registered once as plotters' `sans-serif` so PNG text renders without
//! system fonts (SVG text names the family and is rendered by the viewer).

use std::sync::OnceLock;

use plotters::style::FontStyle;

use super::error::FigureError;

/// DejaVu Sans (see `assets/fonts/LICENSE-DejaVu.txt`): the figures' font, and the desktop app's
/// fallback for symbols its default font lacks.
pub static DEJAVU_SANS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/fonts/DejaVuSans.ttf"));

/// The font family every figure uses.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the bundled font under [`FAMILY`] (once per process); later calls return the first result.
pub(crate) fn ensure_font() -> Result<(), FigureError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the bundled DejaVuSans.ttf is not a valid font".to_string())
        })
        .clone()
        .map_err(FigureError::Font)
}
