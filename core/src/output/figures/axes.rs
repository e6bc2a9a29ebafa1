//! Custom plotters axes: training steps on a linear or log scale (with step 0 placed left of the first
//! positive step on a log axis), categories (lanes, heatmap rows), and number formatting.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};

/// Fraction of the shown range added on each side so markers at the ends are not cut.
const PAD: f64 = 0.05;
/// On a log axis, the gap between step 0 and the first positive step, as a fraction of the decades shown
/// (at least [`MIN_ZERO_GAP`] decades).
const ZERO_GAP: f64 = 0.12;
/// Smallest gap (in decades) between step 0 and the first positive step on a log axis.
const MIN_ZERO_GAP: f64 = 0.35;

/// Maps a pixel fraction in [0, 1] onto `limit`.
fn to_pixel(f: f64, limit: (i32, i32)) -> i32 {
    limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
}

/// The x axis of training steps.
///
/// Values are steps as `f64` (fractional values are used for curves between steps). On a log axis,
/// positive steps map to `log10(step)`; step 0 (if present) sits a small gap left of the first positive
/// step, and values between 0 and the first positive step are interpolated linearly across that gap
/// (the axis shows a break mark there, see [`StepAxis::break_span`]).
#[derive(Debug, Clone)]
pub(crate) struct StepAxis {
    log: bool,
    /// Smallest positive step (log axis only).
    first: f64,
    /// Transformed position of step 0 (log axis only).
    zero_t: f64,
    /// Shown range in transformed units.
    lo: f64,
    hi: f64,
    /// Labelled ticks and minor ticks, in steps.
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl StepAxis {
    /// An axis showing `steps` (any order, duplicates allowed); `log` asks for a log scale, which is
    /// used only when there is at least one positive step.
    pub(crate) fn new(steps: &[u64], log: bool) -> Self {
        Self::padded(steps, log, PAD)
    }

    /// Like [`StepAxis::new`] with `pad` (a fraction of the shown range) added on each side.
    pub(crate) fn padded(steps: &[u64], log: bool, pad: f64) -> Self {
        let min = steps.iter().copied().min().unwrap_or(0) as f64;
        let max = steps.iter().copied().max().unwrap_or(1) as f64;
        let first = steps.iter().copied().filter(|&s| s > 0).min();
        match first {
            Some(first) if log => Self::log(first as f64, max, min == 0.0, steps, pad),
            _ => Self::linear(min, max, pad),
        }
    }

    fn linear(min: f64, max: f64, pad: f64) -> Self {
        let span = if max > min { max - min } else { max.abs().max(1.0) };
        let (lo, hi) = (min - pad * span, max + pad * span);
        let ticks = nice_ticks(lo, hi, 6).into_iter().filter(|&t| t >= 0.0).collect();
        Self {
            log: false,
            first: 1.0,
            zero_t: 0.0,
            lo,
            hi,
            ticks,
            minor: Vec::new(),
        }
    }

    fn log(first: f64, max: f64, has_zero: bool, steps: &[u64], pad: f64) -> Self {
        let (a, b) = (first.log10(), max.log10());
        let decades = if b > a { b - a } else { 1.0 };
        let zero_t = a - (ZERO_GAP * decades).max(MIN_ZERO_GAP);
        let left = if has_zero { zero_t } else { a };
        let span = (b - left).max(0.5);
        let (lo, hi) = (left - pad * span, b + pad * span);
        let top = 10f64.powf(hi);
        let (mut ticks, mut minor) = (Vec::new(), Vec::new());
        if has_zero {
            ticks.push(0.0);
        }
        let in_range = |v: f64| v >= first * (1.0 - 1e-9) && v <= top;
        let mut labelled: Vec<f64> = Vec::new();
        for k in (a.floor() as i32)..=(hi.ceil() as i32) {
            let d = 10f64.powi(k);
            for m in 1..10 {
                let v = m as f64 * d;
                if !in_range(v) {
                    continue;
                }
                if m == 1 {
                    labelled.push(v);
                } else {
                    minor.push(v);
                }
            }
        }
        if labelled.len() < 2 {
            // Less than two decades: label 1-2-5 multiples too.
            labelled.extend(minor.iter().copied().filter(|v| {
                let m = v / 10f64.powf(v.log10().floor());
                (m - 2.0).abs() < 1e-6 || (m - 5.0).abs() < 1e-6
            }));
            labelled.sort_by(f64::total_cmp);
        }
        if labelled.len() < 2 {
            let mut positive: Vec<f64> = steps.iter().filter(|&&s| s > 0).map(|&s| s as f64).collect();
            positive.dedup();
            labelled.extend(positive);
            labelled.sort_by(f64::total_cmp);
            labelled.dedup();
        }
        ticks.extend(labelled);
        Self {
            log: true,
            first,
            zero_t,
            lo,
            hi,
            ticks,
            minor,
        }
    }

    /// Whether the axis is logarithmic.
    pub(crate) fn is_log(&self) -> bool {
        self.log
    }

    /// The transformed (drawing) position of a step.
    pub(crate) fn t(&self, step: f64) -> f64 {
        if !self.log {
            step
        } else if step >= self.first {
            step.log10()
        } else {
            self.zero_t + (step / self.first) * (self.first.log10() - self.zero_t)
        }
    }

    /// The step at a transformed position (inverse of [`StepAxis::t`]).
    pub(crate) fn inv(&self, t: f64) -> f64 {
        let a = self.first.log10();
        if !self.log {
            t
        } else if t >= a {
            10f64.powf(t)
        } else {
            (t - self.zero_t) / (a - self.zero_t) * self.first
        }
    }

    /// On a log axis with step 0, the steps between which to draw the axis break (0 .. first step).
    pub(crate) fn break_span(&self) -> Option<(f64, f64)> {
        (self.log && self.ticks.first() == Some(&0.0)).then_some((0.0, self.first))
    }
}

impl Ranged for StepAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        to_pixel((self.t(*value) - self.lo) / (self.hi - self.lo), limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let mut points = thin(&self.ticks, hint.max_num_points());
        if hint.weight().allow_light_points() {
            points.extend(self.minor.iter().copied());
        }
        points
    }

    fn range(&self) -> Range<f64> {
        self.inv(self.lo)..self.inv(self.hi)
    }
}

impl ValueFormatter<f64> for StepAxis {
    fn format_ext(&self, value: &f64) -> String {
        format_step(*value)
    }
}

/// Keeps at most `max` of `points`, evenly strided (always the first).
fn thin(points: &[f64], max: usize) -> Vec<f64> {
    if max == 0 {
        return Vec::new();
    }
    let stride = points.len().div_ceil(max).max(1);
    points.iter().copied().step_by(stride).collect()
}

/// A categorical axis: `labels.len()` cells centred on 0, 1, ..., n-1.
#[derive(Debug, Clone)]
pub(crate) struct CategoryAxis {
    labels: Vec<String>,
    /// Whether the first category is drawn at the far end (the top of a y axis).
    reversed: bool,
}

impl CategoryAxis {
    /// An axis of `labels`; `reversed` puts the first one at the top of a y axis.
    pub(crate) fn new(labels: Vec<String>, reversed: bool) -> Self {
        Self { labels, reversed }
    }

    fn n(&self) -> f64 {
        self.labels.len().max(1) as f64
    }
}

impl Ranged for CategoryAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value + 0.5) / self.n();
        to_pixel(if self.reversed { 1.0 - f } else { f }, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let all: Vec<f64> = (0..self.labels.len()).map(|i| i as f64).collect();
        thin(&all, hint.max_num_points())
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.n() - 0.5
    }
}

impl ValueFormatter<f64> for CategoryAxis {
    fn format_ext(&self, value: &f64) -> String {
        let i = value.round();
        if i >= 0.0 && (i as usize) < self.labels.len() && (value - i).abs() < 1e-6 {
            self.labels[i as usize].clone()
        } else {
            String::new()
        }
    }
}

/// About `n` "nice" tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
pub(crate) fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| (hi - lo) / s <= n as f64 + 0.5)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).floor() as i64;
    // Multiples computed in units of the magnitude, so 3 x 0.2 prints as 0.6.
    let scale = 10f64.powi(-(mag.log10().round() as i32));
    (start..=end)
        .map(|k| (k as f64 * step * scale).round() / scale)
        .collect()
}

/// A step label: plain integers below 10,000, then `12k`, `1.5M` style.
pub(crate) fn format_step(v: f64) -> String {
    let v = v.round();
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        format!("{v:.0}")
    }
}

/// A value label with about three significant digits and no trailing zeros.
pub(crate) fn format_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() { "0".into() } else { format!("{v}") };
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `x` with at most one decimal, without a trailing `.0`.
fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_places_zero_left_of_first_step() {
        let ax = StepAxis::new(&[0, 10, 100, 1000], true);
        assert!(ax.is_log());
        assert!(ax.t(0.0) < ax.t(10.0));
        assert!((ax.t(100.0) - 2.0).abs() < 1e-12);
        for s in [0.0, 3.0, 10.0, 500.0] {
            assert!((ax.inv(ax.t(s)) - s).abs() < 1e-9);
        }
        assert_eq!(ax.ticks, [0.0, 10.0, 100.0, 1000.0]);
        assert_eq!(ax.break_span(), Some((0.0, 10.0)));
        let px: Vec<i32> = [0.0, 10.0, 100.0].iter().map(|s| ax.map(s, (0, 1000))).collect();
        assert!(px[0] < px[1] && px[1] < px[2]);
    }

    #[test]
    fn log_axis_with_one_decade_labels_multiples() {
        let ax = StepAxis::new(&[100, 300], true);
        assert_eq!(ax.ticks, [100.0, 200.0]);
        let only_zero = StepAxis::new(&[0], true);
        assert!(!only_zero.is_log());
    }

    #[test]
    fn formats() {
        assert_eq!(format_step(1500.0), "1500");
        assert_eq!(format_step(143_000.0), "143k");
        assert_eq!(format_step(1_500_000.0), "1.5M");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(123.456), "123");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(nice_ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 1000.0, 5), [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
    }
}
