//! The basin tree drawn like a phylogeny / alluvial plot: steps along x, one lane per basin, node disks
//! sized by member count, one coloured thread per run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{CategoryAxis, StepAxis};
use super::chart::{builder, draw_step_break, mesh, step_desc, with_legend};
use super::error::FigureError;
use super::geometry::circle_points;
use super::layout::{NoData, anchored, draw_marker, header, plural, text};
use super::legend::{Legend, LegendEntry, Swatch};
use super::palette::{INK, OKABE_ITO, SeedStyle, seed_style};
use super::render::{DrawResult, Figure, write_figure};
use crate::methods::basins::layout::{DivergedMark, ThreadPoint, TreeLayout};
use crate::methods::basins::{BasinHistory, BasinId, BasinTree};
use crate::pipeline::clusterable::Diverged;

/// Fill of the basin nodes.
const NODE_FILL: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
/// Outline of the basin nodes.
const NODE_EDGE: RGBColor = RGBColor(0x70, 0x70, 0x70);
/// Fill of every other lane.
const LANE_FILL: RGBColor = RGBColor(0xF7, 0xF7, 0xF7);
/// Colour of the cross that marks a diverged checkpoint (Okabe–Ito vermillion).
const DIVERGED: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
/// Title of the figure.
const TITLE: &str = "Basins over training";
/// Samples per curved thread segment.
const CURVE_SAMPLES: usize = 28;
/// Thread segments rising or falling by at most this many pixels are drawn straight (a shallow
/// S-curve would only show pixel steps).
const STRAIGHT_PX: i32 = 8;
/// Beyond this many runs, threads are coloured by the basin they end in (runs cannot be told apart).
const MAX_SEED_COLOURED: usize = 16;
/// Beyond this many steps, threads carry no markers and nodes no counts.
const MAX_ANNOTATED_STEPS: usize = 24;

/// Draws the basin tree of `history` into `<path_stem>.svg` and `<path_stem>.png` and returns both paths.
///
/// - x = training step (`log_x`: log scale, step 0 drawn left of the first positive step behind an axis
///   break);
/// - one horizontal lane per basin in [`BasinTree::lane_order`] (a basin that split off sits next to
///   its parent), labelled `basin <id>`;
/// - a grey disk per (step, basin) whose area is proportional to its member count, the count written
///   above it;
/// - one thread per run through its basin's disk at every step where it is present: straight within a
///   lane, an S-curve when the run changes basin, broken where the run is missing. Within a disk the
///   runs are stacked by where they come from and where they go next, so runs bound for the same basin
///   travel as one bundle.
///
/// Up to 16 runs, each thread has its run's [`seed_style`] (colour, marker at every step, legend of
/// runs), styled in the order of `runs` (runs of the history missing from `runs` are appended). With
/// more runs, the threads are thin lines coloured by the basin they end in and the legend counts the
/// runs of each final basin. A run that diverged at a step (`diverged`) ends there in a cross, on a
/// dashed stretch from its last basin. A basin whose membership is uncertain under bootstrap
/// resampling (`uncertain`, (step, basin) pairs) has a dashed outline, explained in the subtitle. An
/// empty history gives a "no data" figure.
pub fn basin_tree(
    tree: &BasinTree,
    history: &BasinHistory,
    runs: &[String],
    diverged: &Diverged,
    uncertain: &BTreeSet<(u64, BasinId)>,
    log_x: bool,
    path_stem: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    if history.steps.is_empty() || tree.graph.node_count() == 0 {
        let message = "no basins (no step has a barrier matrix)".to_string();
        return write_figure(&NoData { title: TITLE, message }, path_stem);
    }
    write_figure(
        &TreeFigure::new(tree, history, runs, diverged, uncertain, log_x),
        path_stem,
    )
}

/// One run's thread.
struct Thread {
    name: String,
    style: SeedStyle,
    /// Wherever the run is present, in step order.
    points: Vec<ThreadPoint>,
}

/// Everything needed to draw the tree, precomputed.
struct TreeFigure {
    axis: StepAxis,
    lane_labels: Vec<String>,
    /// (step, lane, members) per node.
    nodes: Vec<(u64, usize, usize)>,
    /// Whether each node's membership is uncertain (as `nodes`).
    uncertain: Vec<bool>,
    threads: Vec<Thread>,
    /// Where diverged checkpoints end their threads.
    crosses: Vec<DivergedMark>,
    n_runs: usize,
    n_steps: usize,
    subtitle: String,
}

impl TreeFigure {
    fn new(
        tree: &BasinTree,
        history: &BasinHistory,
        runs: &[String],
        diverged: &Diverged,
        uncertain: &BTreeSet<(u64, BasinId)>,
        log_x: bool,
    ) -> Self {
        let layout = TreeLayout::new(tree, history, runs);
        let n_runs = layout.threads.len();
        let method = history.steps[0].method.name();
        let crosses = layout.diverged_marks(diverged);
        let mut subtitle = format!(
            "{} · {} · {method} clustering · disk area ∝ runs in the basin",
            plural(n_runs, "run"),
            plural(layout.lanes.len(), "basin")
        );
        if !diverged.is_empty() {
            subtitle += &format!(" · × {}", plural(diverged.len(), "diverged checkpoint"));
        }
        let uncertain: Vec<bool> = layout
            .nodes
            .iter()
            .map(|n| uncertain.contains(&(n.step, n.basin)))
            .collect();
        if uncertain.contains(&true) {
            subtitle += " · dashed disk: membership uncertain under resampling";
        }
        Self {
            axis: StepAxis::padded(&layout.steps, log_x, 0.07),
            lane_labels: layout.lanes.iter().map(|b| format!("basin {b}")).collect(),
            nodes: layout.nodes.iter().map(|n| (n.step, n.lane, n.members.len())).collect(),
            uncertain,
            threads: layout
                .threads
                .into_iter()
                .enumerate()
                .map(|(i, t)| Thread {
                    name: t.run,
                    style: seed_style(i),
                    points: t.points,
                })
                .collect(),
            crosses,
            n_runs,
            n_steps: layout.steps.len(),
            subtitle,
        }
    }

    /// Whether runs are too many to tell apart: threads are then coloured by final basin.
    fn by_final_basin(&self) -> bool {
        self.n_runs > MAX_SEED_COLOURED
    }

    /// Lane of the basin a thread ends in.
    fn final_lane(t: &Thread) -> usize {
        t.points.last().map_or(0, |p| p.lane)
    }

    /// Colour of a thread: its run's colour, or its final basin's for big zoos.
    fn color(&self, t: &Thread) -> RGBColor {
        if self.by_final_basin() {
            OKABE_ITO[Self::final_lane(t) % OKABE_ITO.len()]
        } else {
            t.style.color
        }
    }

    fn legend(&self) -> Legend {
        if self.by_final_basin() {
            let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
            for t in self.threads.iter().filter(|t| !t.points.is_empty()) {
                *counts.entry(Self::final_lane(t)).or_default() += 1;
            }
            let entries = counts
                .into_iter()
                .map(|(lane, n)| LegendEntry {
                    label: format!("{} ({})", self.lane_labels[lane], plural(n, "run")),
                    swatch: Swatch::Line {
                        color: OKABE_ITO[lane % OKABE_ITO.len()],
                        width: 3,
                        dashed: false,
                    },
                })
                .collect();
            return Legend {
                title: Some("runs by final basin".into()),
                entries,
            };
        }
        Legend {
            title: Some("runs".into()),
            entries: self
                .threads
                .iter()
                .map(|t| LegendEntry {
                    label: t.name.clone(),
                    swatch: Swatch::Seed(t.style),
                })
                .collect(),
        }
    }
}

/// Pixel points around a circle of radius `r` at `c`, closed.
fn circle(c: (i32, i32), r: i32) -> Vec<(i32, i32)> {
    let n = (r * 2).clamp(24, 96) as usize;
    circle_points((f64::from(c.0), f64::from(c.1)), f64::from(r), n)
        .into_iter()
        .map(|(x, y)| (x.round() as i32, y.round() as i32))
        .collect()
}

/// Pixel points of a thread segment from `a` to `b`: straight within a lane or when nearly level, else
/// an S-curve (cosine ease) sampled uniformly along x.
fn segment(a: (i32, i32), b: (i32, i32), same_lane: bool) -> Vec<(i32, i32)> {
    if same_lane || (a.1 - b.1).abs() <= STRAIGHT_PX {
        return vec![a, b];
    }
    (0..=CURVE_SAMPLES)
        .map(|i| {
            let u = i as f64 / CURVE_SAMPLES as f64;
            let ease = (1.0 - (std::f64::consts::PI * u).cos()) / 2.0;
            let x = a.0 as f64 + (b.0 - a.0) as f64 * u;
            let y = a.1 as f64 + (b.1 - a.1) as f64 * ease;
            (x.round() as i32, y.round() as i32)
        })
        .collect()
}

impl Figure for TreeFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let body = header(root, TITLE, Some(&self.subtitle))?;
        let plot = with_legend(&body, &self.legend())?;
        let n_lanes = self.lane_labels.len();
        let y_axis = CategoryAxis::new(self.lane_labels.clone(), true);
        let mut chart = builder(&plot, 100).build_cartesian_2d(self.axis.clone(), y_axis)?;
        let x_range = chart.x_range();
        chart.draw_series((0..n_lanes).filter(|i| i % 2 == 0).map(|i| {
            let y = i as f64;
            Rectangle::new([(x_range.start, y - 0.5), (x_range.end, y + 0.5)], LANE_FILL.filled())
        }))?;
        mesh(&mut chart, step_desc(&self.axis), "")
            .x_max_light_lines(9)
            .disable_y_mesh()
            .y_labels(n_lanes)
            .draw()?;
        draw_step_break(root, &chart, &self.axis)?;

        // Node size: fit the lane height, the spacing between steps and the plot's left/right edges.
        let px = |s: f64, y: f64| chart.backend_coord(&(s, y));
        let lane_px = (px(0.0, 0.0).1 - px(0.0, 1.0).1).abs() as f64;
        let mut xs: Vec<i32> = self.nodes.iter().map(|n| px(n.0 as f64, 0.0).0).collect();
        xs.sort_unstable();
        xs.dedup();
        let edges = chart.plotting_area().get_pixel_range().0;
        let mut room = f64::INFINITY;
        if let (Some(first), Some(last)) = (xs.first(), xs.last()) {
            room = room.min((first - edges.start) as f64).min((edges.end - last) as f64);
        }
        let min_dx = xs.windows(2).map(|w| (w[1] - w[0]) as f64 / 2.0).fold(room, f64::min);
        // Steps crowded together (a linear axis over log-spaced steps) may overlap rather than vanish.
        let r_max = (0.42 * lane_px).min(56.0).min((0.9 * min_dx).max(12.0)).max(6.0);
        let radius = |m: usize| (r_max * (m as f64 / self.n_runs.max(1) as f64).sqrt()).max(5.0);
        // Pixel position of a thread at a node: spread over 70% of the disk's diameter.
        let at = |p: &ThreadPoint| {
            let (x, y) = px(p.step as f64, p.lane as f64);
            let spacing = if p.m > 1 {
                1.4 * radius(p.m) / (p.m - 1) as f64
            } else {
                0.0
            };
            (
                x,
                y + ((p.pos as f64 - (p.m - 1) as f64 / 2.0) * spacing).round() as i32,
            )
        };

        for (&(step, lane, m), &uncertain) in self.nodes.iter().zip(&self.uncertain) {
            let c = px(step as f64, lane as f64);
            let r = radius(m).round() as i32;
            root.draw(&Circle::new(c, r, NODE_FILL.filled()))?;
            if uncertain {
                root.draw(&DashedPathElement::new(circle(c, r + 2), 6, 4, INK.stroke_width(2)))?;
            } else {
                root.draw(&Circle::new(c, r, NODE_EDGE.stroke_width(2)))?;
            }
        }

        // Big zoos: thin threads without halos or markers, coloured by final basin.
        let big = self.by_final_basin();
        let width = if big { 2 } else { 3 };
        for t in &self.threads {
            let color = self.color(t);
            for w in t.points.windows(2) {
                let (a, b) = (w[0], w[1]);
                if b.k != a.k + 1 {
                    continue; // the run is missing in between: break the thread
                }
                let pts = segment(at(&a), at(&b), a.lane == b.lane);
                if !big {
                    root.draw(&PathElement::new(pts.clone(), WHITE.stroke_width(width + 3)))?;
                }
                let style = color.stroke_width(width);
                if t.style.dashed && !big {
                    root.draw(&DashedPathElement::new(pts, 8, 5, style))?;
                } else {
                    root.draw(&PathElement::new(pts, style))?;
                }
            }
        }
        for mark in &self.crosses {
            let from = at(&mark.last);
            let (x, y) = px(mark.step as f64, mark.last.lane as f64);
            let color = self.color(&self.threads[mark.thread]);
            root.draw(&DashedPathElement::new([from, (x, y)], 4, 4, color.stroke_width(2)))?;
            for (dx, dy) in [(7, 7), (7, -7)] {
                let arm = PathElement::new([(x - dx, y - dy), (x + dx, y + dy)], DIVERGED.stroke_width(3));
                root.draw(&arm)?;
            }
        }
        let annotate = self.n_steps <= MAX_ANNOTATED_STEPS;
        if annotate && !big {
            for t in &self.threads {
                for p in &t.points {
                    let c = at(p);
                    draw_marker(root, t.style.marker, c, 5, t.style.color.filled())?;
                    draw_marker(root, t.style.marker, c, 5, WHITE.stroke_width(1))?;
                }
            }
        }
        // Member counts above the disks, on top of everything.
        if annotate && lane_px >= 36.0 && min_dx >= 12.0 {
            let count_style = anchored(text(15.0, &INK), HPos::Center, VPos::Bottom);
            for &(step, lane, m) in &self.nodes {
                let c = px(step as f64, lane as f64);
                let label = m.to_string();
                let (tw, th) = root.estimate_text_size(&label, &count_style)?;
                let (x, y) = (c.0, c.1 - radius(m).round() as i32 - 3);
                let (hw, h) = (tw as i32 / 2 + 2, th as i32 + 2);
                root.draw(&Rectangle::new([(x - hw, y - h), (x + hw, y)], WHITE.mix(0.8).filled()))?;
                root.draw_text(&label, &count_style, (x, y))?;
            }
        }
        Ok(())
    }
}
