//! Loss and error along the linear interpolation paths of one step, one curve per pair, with the
//! chord between the endpoints of the pair with the largest barrier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::format_value;
use super::chart::{builder, mesh, with_legend};
use super::error::FigureError;
use super::layout::{NoData, anchored, header, text};
use super::legend::{Legend, LegendEntry, Swatch};
use super::palette::{BLUE, INK, MUTED, OKABE_ITO, VERMILLION};
use super::render::{DrawResult, Figure, write_figure};
use crate::names::Named;
use crate::output::tables::InterpolationRow;
use crate::pipeline::plan::PairKind;

/// Relative size under which a bump above the chord is rounding noise.
const NOISE: f64 = 1e-9;
/// Beyond this many pairs, pairs are drawn in grey with the mean and the extreme pairs highlighted.
const MAX_COLOURED: usize = 8;

/// One point of a path: (alpha, loss, error %).
type Point = (f64, f64, f64);
/// A path's identity: (run A, run B, step of B, aligned).
type PairKey<'a> = (&'a str, &'a str, u64, bool);

/// One interpolation path.
#[derive(Debug, Clone)]
struct Path1 {
    label: String,
    /// (alpha, loss, error %) sorted by alpha.
    points: Vec<Point>,
    /// Endpoint loss barrier and the alpha where it is reached.
    barrier: f64,
    at: f64,
}

/// Endpoint barrier of a curve and where it is reached: max over alpha of value minus the chord,
/// clipped at 0 (bumps below [`NOISE`] times the largest value count as 0).
fn endpoint_barrier(points: &[(f64, f64)]) -> (f64, f64) {
    let (Some(&(a0, f0)), Some(&(a1, f1))) = (points.first(), points.last()) else {
        return (0.0, 0.5);
    };
    let chord = |a: f64| {
        if a1 > a0 {
            f0 + (f1 - f0) * (a - a0) / (a1 - a0)
        } else {
            f0
        }
    };
    // Bumps within rounding error of the values are no barrier.
    let noise = NOISE * points.iter().fold(1.0f64, |m, p| m.max(p.1.abs()));
    points
        .iter()
        .map(|&(a, f)| (f - chord(a), a))
        .fold((0.0, (a0 + a1) / 2.0), |best, (b, a)| {
            if b > best.0 && b > noise { (b, a) } else { best }
        })
}

/// The label of a pair: `a – b` (same step), `a → step N` (a run's checkpoint against its own later
/// checkpoint), `a → b @ N` (another run at another step, e.g. a fork); ` (aligned)` when B was
/// permutation-aligned.
fn pair_label(r: &InterpolationRow) -> String {
    let base = if r.step_b == r.step {
        format!("{} – {}", r.run_a, r.run_b)
    } else if r.run_a == r.run_b {
        format!("{} → step {}", r.run_a, r.step_b)
    } else {
        format!("{} → {} @ {}", r.run_a, r.run_b, r.step_b)
    };
    if r.aligned { format!("{base} (aligned)") } else { base }
}

/// How a pair kind is described in titles.
pub(crate) fn pair_kind_name(pair_kind: PairKind) -> &'static str {
    match pair_kind {
        PairKind::Seeds => "seed pairs",
        PairKind::ToFinal => "checkpoint-vs-final pairs",
        PairKind::Fork => "parent-vs-fork pairs",
    }
}

/// Draws loss (left panel) and error (right panel) against alpha for every `pair_kind` pair at
/// `step`, into `<path_stem>.svg` / `.png`; returns both paths.
///
/// Up to eight pairs each get an Okabe–Ito colour and a legend entry; with more, every pair is a thin
/// grey line and the figure highlights the mean over pairs (black), the pair with the largest endpoint
/// loss barrier (vermillion) and the one with the smallest (blue). In both cases the chord between the
/// endpoints of the largest-barrier pair is drawn dashed, with the barrier marked as a vertical bar
/// from chord to curve. Rows of other steps or pair kinds are ignored; when none is left, the figure
/// says "no data".
pub fn interpolation_curves(
    rows: &[InterpolationRow],
    step: u64,
    pair_kind: PairKind,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let title = format!("Linear interpolation at step {step}");
    let mut groups: BTreeMap<PairKey, (String, Vec<Point>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.step == step && r.pair == pair_kind) {
        let key = (r.run_a.as_str(), r.run_b.as_str(), r.step_b, r.aligned);
        let entry = groups.entry(key).or_insert_with(|| (pair_label(r), Vec::new()));
        entry.1.push((r.alpha, r.loss, 100.0 * r.error));
    }
    let mut paths: Vec<Path1> = groups
        .into_values()
        .map(|(label, mut points)| {
            points.retain(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite());
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            let (barrier, at) = endpoint_barrier(&points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>());
            Path1 {
                label,
                points,
                barrier,
                at,
            }
        })
        .filter(|p| !p.points.is_empty())
        .collect();
    if paths.is_empty() {
        let message = format!("no {} interpolation rows at step {step}", pair_kind.name());
        return write_figure(&NoData { title: &title, message }, path_stem);
    }
    paths.sort_by(|a, b| a.label.cmp(&b.label));
    let max = (0..paths.len())
        .max_by(|&i, &j| paths[i].barrier.total_cmp(&paths[j].barrier))
        .unwrap_or(0);
    let min = (0..paths.len())
        .min_by(|&i, &j| paths[i].barrier.total_cmp(&paths[j].barrier))
        .unwrap_or(0);
    let subtitle = format!(
        "{} {} · model (1 − α)·A + α·B · largest endpoint loss barrier {} nats ({})",
        paths.len(),
        pair_kind_name(pair_kind),
        format_value(paths[max].barrier),
        paths[max].label
    );
    let figure = Curves {
        title,
        subtitle,
        paths,
        max,
        min,
    };
    write_figure(&figure, path_stem)
}

/// The figure, precomputed.
struct Curves {
    title: String,
    subtitle: String,
    paths: Vec<Path1>,
    /// Index of the pair with the largest / smallest barrier.
    max: usize,
    min: usize,
}

/// How a curve is drawn.
#[derive(Clone, Copy)]
struct Look {
    color: RGBColor,
    width: u32,
}

impl Curves {
    fn coloured(&self) -> bool {
        self.paths.len() <= MAX_COLOURED
    }

    /// Mean curve over pairs at every alpha shared by all pairs.
    fn mean(&self) -> Vec<Point> {
        let mut sums: BTreeMap<u64, (f64, f64, f64, usize)> = BTreeMap::new();
        for p in &self.paths {
            for &(a, l, e) in &p.points {
                let s = sums.entry(a.to_bits()).or_insert((a, 0.0, 0.0, 0));
                s.1 += l;
                s.2 += e;
                s.3 += 1;
            }
        }
        let mut mean: Vec<Point> = sums
            .into_values()
            .filter(|s| s.3 == self.paths.len())
            .map(|(a, l, e, n)| (a, l / n as f64, e / n as f64))
            .collect();
        mean.sort_by(|a, b| a.0.total_cmp(&b.0));
        mean
    }

    /// Curves to draw, back to front: (points, look).
    fn layers(&self) -> Vec<(Vec<Point>, Look)> {
        if self.coloured() {
            let mut layers: Vec<_> = self
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let width = if i == self.max { 4 } else { 3 };
                    (
                        p.points.clone(),
                        Look {
                            color: OKABE_ITO[i % OKABE_ITO.len()],
                            width,
                        },
                    )
                })
                .collect();
            // The largest-barrier pair on top.
            let top = layers.remove(self.max);
            layers.push(top);
            return layers;
        }
        let grey = Look {
            color: RGBColor(0xBB, 0xBB, 0xBB),
            width: 1,
        };
        let mut layers: Vec<_> = self.paths.iter().map(|p| (p.points.clone(), grey)).collect();
        let mean = self.mean();
        if mean.len() >= 2 {
            layers.push((mean, Look { color: INK, width: 3 }));
        }
        layers.push((self.paths[self.min].points.clone(), Look { color: BLUE, width: 3 }));
        layers.push((
            self.paths[self.max].points.clone(),
            Look {
                color: VERMILLION,
                width: 4,
            },
        ));
        layers
    }

    fn max_color(&self) -> RGBColor {
        if self.coloured() {
            OKABE_ITO[self.max % OKABE_ITO.len()]
        } else {
            VERMILLION
        }
    }

    fn legend(&self) -> Legend {
        let line = |color, width| Swatch::Line {
            color,
            width,
            dashed: false,
        };
        let mut entries: Vec<LegendEntry> = if self.coloured() {
            self.paths
                .iter()
                .enumerate()
                .map(|(i, p)| LegendEntry {
                    label: p.label.clone(),
                    swatch: line(OKABE_ITO[i % OKABE_ITO.len()], 3),
                })
                .collect()
        } else {
            let mut e = vec![LegendEntry {
                label: format!("each pair (n = {})", self.paths.len()),
                swatch: line(RGBColor(0xBB, 0xBB, 0xBB), 2),
            }];
            if self.mean().len() >= 2 {
                e.push(LegendEntry {
                    label: "mean over pairs".into(),
                    swatch: line(INK, 3),
                });
            }
            // The pair names go on their own row: they are often long.
            for (title, i, color, width) in [
                ("largest barrier:", self.max, VERMILLION, 4),
                ("smallest barrier:", self.min, BLUE, 3),
            ] {
                e.push(LegendEntry {
                    label: title.into(),
                    swatch: line(color, width),
                });
                e.push(LegendEntry {
                    label: self.paths[i].label.clone(),
                    swatch: Swatch::Blank,
                });
            }
            e
        };
        entries.push(LegendEntry {
            label: "chord (max pair)".into(),
            swatch: Swatch::Line {
                color: self.max_color(),
                width: 2,
                dashed: true,
            },
        });
        Legend {
            title: Some(if self.coloured() {
                "pairs".into()
            } else {
                "curves".into()
            }),
            entries,
        }
    }

    /// One panel: `value` picks loss (1) or error (2) from the points.
    fn panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
        y_desc: &str,
        value: fn(&Point) -> f64,
        barrier_note: bool,
    ) -> DrawResult<DB> {
        let layers = self.layers();
        let (lo, hi) = layers
            .iter()
            .flat_map(|(pts, _)| pts.iter().map(value))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) * 0.1 };
        let y_range = (lo - 0.06 * span)..(hi + 0.1 * span);
        let mut chart = builder(area, 84).build_cartesian_2d(-0.03f64..1.03f64, y_range)?;
        let fmt = |v: &f64| format_value(*v);
        mesh(&mut chart, "interpolation coefficient α", y_desc)
            .x_labels(6)
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .draw()?;
        for (pts, look) in &layers {
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, value(p))).collect();
            chart.draw_series(std::iter::once(PathElement::new(
                xy.clone(),
                look.color.stroke_width(look.width),
            )))?;
            if look.width >= 3 && xy.len() <= 41 {
                chart.draw_series(xy.iter().map(|&c| Circle::new(c, look.width + 1, look.color.filled())))?;
            }
        }
        // The chord of the largest-barrier pair, and the barrier itself.
        let max = &self.paths[self.max];
        let (Some(first), Some(last)) = (max.points.first(), max.points.last()) else {
            return Ok(());
        };
        let chord = [(first.0, value(first)), (last.0, value(last))];
        let color = self.max_color();
        chart.draw_series(std::iter::once(DashedPathElement::new(
            chord,
            9,
            6,
            color.stroke_width(2),
        )))?;
        if barrier_note && max.barrier > 0.0 {
            let t = if last.0 > first.0 {
                (max.at - first.0) / (last.0 - first.0)
            } else {
                0.0
            };
            let on_chord = chord[0].1 + (chord[1].1 - chord[0].1) * t;
            let top = chart.backend_coord(&(max.at, on_chord + max.barrier));
            let bottom = chart.backend_coord(&(max.at, on_chord));
            root.draw(&PathElement::new(vec![top, bottom], INK.stroke_width(2)))?;
            for y in [top.1, bottom.1] {
                root.draw(&PathElement::new(
                    vec![(top.0 - 6, y), (top.0 + 6, y)],
                    INK.stroke_width(2),
                ))?;
            }
            // A boxed label beside the bar, a third of the way up from the chord.
            let note = format!("barrier {} nats", format_value(max.barrier));
            let style = anchored(text(17.0, &INK), HPos::Left, VPos::Center);
            let (tw, th) = root.estimate_text_size(&note, &style)?;
            let (tw, th) = (tw as i32, th as i32);
            let y = bottom.1 - (bottom.1 - top.1) / 3;
            let left_side = top.0 + tw + 24 > area.get_pixel_range().0.end;
            let x = if left_side { top.0 - 12 - tw - 8 } else { top.0 + 12 };
            root.draw(&Rectangle::new(
                [(x, y - th / 2 - 6), (x + tw + 8, y + th / 2 + 6)],
                WHITE.filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x, y - th / 2 - 6), (x + tw + 8, y + th / 2 + 6)],
                MUTED.stroke_width(1),
            ))?;
            root.draw_text(&note, &style, (x + 4, y))?;
        }
        Ok(())
    }
}

impl Figure for Curves {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, &self.title, Some(&self.subtitle))?;
        let plot = with_legend(&body, &self.legend())?;
        let (w, _) = plot.dim_in_pixel();
        let (left, right) = plot.split_horizontally(w / 2);
        self.panel(root, &left, "loss (nats, mean cross-entropy)", |p| p.1, true)?;
        self.panel(root, &right, "error (%)", |p| p.2, false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_barrier;

    #[test]
    fn endpoint_barrier_above_the_chord() {
        let (b, at) = endpoint_barrier(&[(0.0, 1.0), (0.5, 2.5), (1.0, 2.0)]);
        assert!((b - 1.0).abs() < 1e-12 && at == 0.5);
        // Below the chord everywhere: no barrier.
        assert_eq!(endpoint_barrier(&[(0.0, 2.0), (0.5, 0.5), (1.0, 1.0)]).0, 0.0);
        // Rounding noise is no barrier.
        assert_eq!(endpoint_barrier(&[(0.0, 2.0), (0.5, 1.5 + 1e-15), (1.0, 1.0)]).0, 0.0);
        assert_eq!(endpoint_barrier(&[]).0, 0.0);
    }
}
