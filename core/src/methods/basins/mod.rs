//! Basins over time (ARCHITECTURE.md, "Basins over time", "Commitment" and "Tables").
//!
//! From per-step barrier matrices to the history of basins:
//!
//! 1. [`matrix`]: build one [`BarrierMatrix`] per step from barrier table rows (the zoo is ragged: a
//!    run absent at a step is simply not in that step's matrix).
//! 2. [`cluster`]: cluster each step with a [`ClusterMethod`] — [`threshold`] (connected components of
//!    the graph of pairs with barrier < eps), [`linkage`] (average-linkage dendrogram cut at eps) or
//!    [`spectral`] (RBF affinity, Ng–Jordan–Weiss embedding, deterministic [`kmeans`]).
//! 3. [`track`]: match the clusters of consecutive steps by Jaccard overlap (Hungarian assignment) so
//!    basin ids are stable over time, with birth / continue / split / merge / death events.
//! 4. [`tree`]: the basin tree as a petgraph `DiGraph`; [`layout`]: its lanes and threads, for drawing.
//! 5. [`commitment`]: the step after which a run stays connected to its own final checkpoint.
//! 6. [`co_membership`]: how often two runs are clustered together over bootstrap resamples of the
//!    eval examples.
//!
//! The `clusters`, `timeline` and `tree_edges` table rows are made from the history by
//! [`crate::pipeline::basins_over_time`]. Everything here is pure and deterministic: results do not depend on the order of the input rows.

pub mod cluster;
pub mod co_membership;
pub mod commitment;
pub mod error;
pub mod kmeans;
pub mod layout;
pub mod linkage;
pub mod matrix;
pub mod spectral;
pub mod threshold;
pub mod track;
pub mod tree;

pub use cluster::{
    ClusterMethod, DEFAULT_DELTA, DEFAULT_EPS_FRACTION, FALLBACK_EPS, MIN_EPS, StepClusters, cluster_step,
    cluster_steps, default_eps,
};
pub use co_membership::{CoMembership, co_membership};
pub use commitment::commitment_step;
pub use error::BasinError;
pub use layout::{DivergedMark, NodeLayout, ThreadLayout, ThreadPoint, TreeLayout};
pub use linkage::{Dendrogram, Merge, average_linkage};
pub use matrix::{BarrierMatrix, GroupStats, matrices_from_rows};
pub use track::{BasinEvent, BasinHistory, BasinState, Carry, TrackedStep, basin_history, track};
pub use tree::{BasinNode, BasinTree, TreeEdge, basin_tree};

/// A basin's identifier, stable across steps (assigned by [`track`]); never reused.
pub type BasinId = u32;
