//! Figures for papers, written by `lineage batch` (ARCHITECTURE.md, "Figures" and "Basins over time").
//!
//! Every figure is written twice, as `<stem>.svg` (vector, text kept as text) and `<stem>.png`
//! ([`SIZE`] = 1200 x 800 px), and its writer returns both paths. Text uses the bundled DejaVu Sans
//! (registered as `sans-serif`, so PNGs render identically on machines without fonts). Categorical
//! colours come from the colour-blind-safe Okabe–Ito palette ([`OKABE_ITO`], a run keeps its
//! [`seed_style`] in every figure); heatmaps use [`viridis`].
//!
//! - [`basin_tree()`]: the basin tree as a phylogeny / alluvial plot, one thread per run.
//! - [`barrier_heatmap`] / [`barrier_heatmap_scaled`]: a step's seeds x seeds barrier matrix in
//!   dendrogram order, with a colour bar.
//! - [`interpolation_curves`]: loss and error along the interpolation paths at one step, with the chord.
//! - [`barrier_vs_step`]: barriers over training (mean and min–max band per pair kind).
//! - [`training_curves`]: each run's eval loss and error over training.
//! - [`write_all_figures`]: the standard set into one folder, from the rows and basins the caller has.
//!
//! **Empty inputs are not errors**: a figure with nothing to draw (no basins, an empty matrix, no
//! interpolation rows at the step, no barrier rows of the kind) is still written, showing its title and
//! a centred "no data: ..." message, so the standard set of files always exists. Errors
//! ([`FigureError`]) are kept for invalid arguments (e.g. a heatmap order that is not a permutation,
//! an unknown barrier kind) and for files that cannot be written.

mod axes;
mod chart;
mod layout;
mod legend;
mod render;

pub mod all;
pub mod barrier_steps;
pub mod basin_tree;
pub mod error;
mod font;
pub mod generalization;
pub mod geometry;
pub mod heatmap;
pub mod interpolation;
pub mod palette;
pub mod training;

pub use all::{FigureInputs, FigureOptions, auto_log_x, default_figure_steps, write_all_figures};
pub use barrier_steps::barrier_vs_step;
pub use basin_tree::basin_tree;
pub use error::FigureError;
pub use font::DEJAVU_SANS;
pub use generalization::generalization_by_basin;
pub use heatmap::{barrier_heatmap, barrier_heatmap_scaled};
pub use interpolation::interpolation_curves;
pub use palette::{Marker, OKABE_ITO, SeedStyle, seed_style, viridis};
pub use render::SIZE;
pub use training::training_curves;
