//! Colour-blind-safe colours: the Okabe–Ito palette for categories and viridis for continuous values.

use plotters::style::RGBColor;

/// The eight Okabe–Ito colours (Okabe & Ito 2008), ordered for lines on white: the low-contrast yellow
/// comes last.
pub const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];

/// Okabe–Ito orange.
pub const ORANGE: RGBColor = OKABE_ITO[0];
/// Okabe–Ito sky blue.
pub const SKY_BLUE: RGBColor = OKABE_ITO[1];
/// Okabe–Ito bluish green.
pub const GREEN: RGBColor = OKABE_ITO[2];
/// Okabe–Ito blue.
pub const BLUE: RGBColor = OKABE_ITO[3];
/// Okabe–Ito vermillion.
pub const VERMILLION: RGBColor = OKABE_ITO[4];
/// Okabe–Ito reddish purple.
pub const PURPLE: RGBColor = OKABE_ITO[5];
/// Dark grey used for text, axes and neutral elements.
pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Light grey used for grid lines and context curves.
pub const GRID: RGBColor = RGBColor(0xE3, 0xE3, 0xE3);
/// Mid grey used for secondary elements.
pub const MUTED: RGBColor = RGBColor(0x9A, 0x9A, 0x9A);

/// Viridis (matplotlib) sampled at 0, 0.1, ..., 1; [`viridis`] interpolates linearly between them.
const VIRIDIS: [RGBColor; 11] = [
    RGBColor(0x44, 0x01, 0x54),
    RGBColor(0x48, 0x24, 0x75),
    RGBColor(0x41, 0x44, 0x87),
    RGBColor(0x35, 0x5f, 0x8d),
    RGBColor(0x2a, 0x78, 0x8e),
    RGBColor(0x21, 0x91, 0x8c),
    RGBColor(0x22, 0xa8, 0x84),
    RGBColor(0x44, 0xbf, 0x70),
    RGBColor(0x7a, 0xd1, 0x51),
    RGBColor(0xbd, 0xdf, 0x26),
    RGBColor(0xfd, 0xe7, 0x25),
];

/// The viridis colour at `t` in [0, 1] (clamped; NaN maps to 0): dark purple (low) to yellow (high).
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Relative luminance (sRGB, 0..1) of a colour, to pick black or white text on it.
pub fn luminance(c: RGBColor) -> f64 {
    let lin = |v: u8| {
        let v = v as f64 / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2)
}

/// Marker shapes that, with the colour, tell up to 32 seeds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Filled circle.
    Circle,
    /// Filled square.
    Square,
    /// Filled upward triangle.
    Triangle,
    /// Filled diamond.
    Diamond,
}

/// How one run is drawn in every figure: the same colour and marker everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedStyle {
    /// Okabe–Ito colour (cycled).
    pub color: RGBColor,
    /// Marker (changes every eight runs).
    pub marker: Marker,
    /// Whether the run's lines are dashed (runs 33 and beyond, when colours and markers have cycled).
    pub dashed: bool,
}

/// The style of the `index`-th run (runs in the caller's order, usually sorted names).
pub fn seed_style(index: usize) -> SeedStyle {
    const MARKERS: [Marker; 4] = [Marker::Circle, Marker::Square, Marker::Triangle, Marker::Diamond];
    SeedStyle {
        color: OKABE_ITO[index % OKABE_ITO.len()],
        marker: MARKERS[(index / OKABE_ITO.len()) % MARKERS.len()],
        dashed: index >= OKABE_ITO.len() * MARKERS.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_clamps() {
        assert_eq!(viridis(0.0), VIRIDIS[0]);
        assert_eq!(viridis(1.0), VIRIDIS[10]);
        assert_eq!(viridis(-3.0), VIRIDIS[0]);
        assert_eq!(viridis(7.0), VIRIDIS[10]);
        assert_eq!(viridis(f64::NAN), VIRIDIS[0]);
        assert_eq!(viridis(0.5), VIRIDIS[5]);
        assert!(luminance(viridis(0.9)) > luminance(viridis(0.1)));
    }

    #[test]
    fn seed_styles_cycle_colours_then_markers() {
        assert_eq!(seed_style(0).color, ORANGE);
        assert_eq!(seed_style(8).color, ORANGE);
        assert_eq!(seed_style(8).marker, Marker::Square);
        assert!(!seed_style(31).dashed);
        assert!(seed_style(32).dashed);
    }
}
