//! Pure geometry shared by the figures and the desktop app's views, so both draw the same marks:
//! the hatching of uncertain heatmap cells and the ring around uncertain basins.

/// Diagonal hatching of the rectangle from `min` to `max` (y down): segments of the lines
/// `x + y = const`, every `spacing` along x + y, clipped to the rectangle.
pub fn hatch_segments(min: (f64, f64), max: (f64, f64), spacing: f64) -> Vec<[(f64, f64); 2]> {
    let (w, h) = (max.0 - min.0, max.1 - min.1);
    if !(spacing > 0.0 && w > 0.0 && h > 0.0) {
        return Vec::new();
    }
    (1..)
        .map(|k| k as f64 * spacing)
        .take_while(|&s| s < w + h)
        .map(|s| {
            let start = (min.0 + (s - h).max(0.0), min.1 + s.min(h));
            let end = (min.0 + s.min(w), min.1 + (s - w).max(0.0));
            [start, end]
        })
        .collect()
}

/// `n + 1` points around the circle of radius `r` at `c`, the last equal to the first (closed).
pub fn circle_points(c: (f64, f64), r: f64, n: usize) -> Vec<(f64, f64)> {
    let n = n.max(3);
    (0..=n)
        .map(|i| {
            let t = std::f64::consts::TAU * i as f64 / n as f64;
            (c.0 + r * t.cos(), c.1 + r * t.sin())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hatching_stays_in_its_rectangle_on_lines_of_constant_sum() {
        let lines = hatch_segments((10.0, 20.0), (24.0, 27.0), 7.0);
        // x + y - 30 = 7, 14 (< 14 + 7 = 21).
        assert_eq!(lines.len(), 2);
        for (k, [a, b]) in lines.iter().enumerate() {
            let sum = 30.0 + 7.0 * (k + 1) as f64;
            for p in [a, b] {
                assert!((p.0 + p.1 - sum).abs() < 1e-12);
                assert!((10.0..=24.0).contains(&p.0) && (20.0..=27.0).contains(&p.1));
            }
        }
        assert!(hatch_segments((0.0, 0.0), (0.0, 5.0), 7.0).is_empty());
    }

    #[test]
    fn circle_is_closed_at_its_radius() {
        let points = circle_points((1.0, 2.0), 3.0, 24);
        assert_eq!(points.len(), 25);
        assert!((points[0].0 - points[24].0).abs() < 1e-12 && (points[0].1 - points[24].1).abs() < 1e-12);
        for p in &points {
            assert!((((p.0 - 1.0).powi(2) + (p.1 - 2.0).powi(2)).sqrt() - 3.0).abs() < 1e-12);
        }
    }
}
