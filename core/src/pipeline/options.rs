//! The options of an analysis, each default defined here once. `lineage batch`, `lineage merge`,
//! `lineage demo` and the desktop app only translate flags, plan keys and clicks into these.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::eval_sets::{EvalSet, set_name};
use crate::methods::basins::ClusterMethod;
use crate::methods::interpolation::BarrierKind;
use crate::methods::probe::ProbeOptions;
use crate::models::cnn::BnOptions;
use crate::models::matmul::MatmulPrecision;
use crate::pipeline::economy::EconomyOptions;
use crate::pipeline::plan::{PairSets, Shard};
use crate::pipeline::selection::SelectionOptions;

/// Everything that decides what an analysis computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// The interpolation sweep.
    pub sweep: SweepOptions,
    /// Basins over time.
    pub basins: BasinOptions,
    /// The representation and dynamics analyses (None: skipped). Never computed for a shard.
    pub representations: Option<RepresentationOptions>,
    /// Where the transformer families run: `cpu`, `cuda` or `cuda:N` (the mlp family always runs on
    /// the CPU).
    pub device: String,
    /// How the transformers' CPU matrix products are computed (`--matmul`; f32 by default).
    #[serde(default, skip_serializing_if = "is_f32")]
    pub matmul: MatmulPrecision,
}

fn is_f32(precision: &MatmulPrecision) -> bool {
    *precision == MatmulPrecision::F32
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            sweep: SweepOptions::default(),
            basins: BasinOptions::default(),
            representations: Some(RepresentationOptions::default()),
            device: "cpu".into(),
            matmul: MatmulPrecision::F32,
        }
    }
}

/// Options of the interpolation sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepOptions {
    /// Number of alpha grid points, endpoints included (>= 3).
    pub alphas: usize,
    /// Which pair sets to compute (also the pairs compared by representation similarity).
    pub pairs: PairSets,
    /// Folder of the result store (shared by every analysis and the desktop app).
    pub cache_dir: PathBuf,
    /// Also interpolate each pair with B permutation-aligned to A (weight matching), giving
    /// `aligned = true` rows next to the raw ones.
    #[serde(default)]
    pub align: bool,
    /// Compute only one deterministic share of the work (see [`Shard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The runs, steps, eval examples and tensors read (everything by default).
    #[serde(default, skip_serializing_if = "SelectionOptions::is_everything")]
    pub selection: SelectionOptions,
    /// Name of the eval set the analysis is given (barriers and basins are computed on it); `None`:
    /// named after its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_name: Option<String>,
    /// More eval sets: every checkpoint is also evaluated on each (cached per set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_sets: Vec<EvalSet>,
    /// Interpolation paths on every eval set, not only the basins' (`--paths-on all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paths_on_all: bool,
    /// Most checkpoints of a step held in memory at once (`None`: twice the worker threads, at
    /// least 2); peak memory follows it, not the number of runs. Results do not depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Bootstrap resamples of the eval examples per path (0: none): each barrier gets a 95%
    /// interval, and each pair of seeds a co-membership frequency.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the bootstrap resamples.
    #[serde(default)]
    pub bootstrap_seed: u64,
    /// BatchNorm statistics of interpolated models (`--bn`); models without BatchNorm ignore it
    /// (the evaluator's description, part of every cache key, names the mode of those with it).
    #[serde(default, skip_serializing_if = "BnOptions::is_default")]
    pub bn: BnOptions,
    /// Economy mode (`--economy`, [`crate::pipeline::economy`]): adaptive alphas, sequential
    /// examples and pair pruning, for the same basins with fewer forward passes. Off: the exact
    /// full grid.
    #[serde(default, skip_serializing_if = "EconomyOptions::is_off")]
    pub economy: EconomyOptions,
}

fn default_bootstrap() -> usize {
    crate::methods::bootstrap::DEFAULT_RESAMPLES
}

impl SweepOptions {
    /// The number of checkpoints of a step held in memory at once (see [`SweepOptions::in_flight`]).
    pub fn models_in_flight(&self) -> usize {
        self.in_flight
            .unwrap_or_else(|| 2 * rayon::current_num_threads())
            .max(2)
    }

    /// The name of the eval set at `data` (the basins' set).
    pub fn data_set_name(&self, data: &Path) -> String {
        self.data_name.clone().unwrap_or_else(|| set_name(data))
    }
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            alphas: 11,
            pairs: PairSets::default(),
            cache_dir: default_cache_dir(),
            align: false,
            shard: None,
            selection: SelectionOptions::default(),
            data_name: None,
            more_sets: Vec::new(),
            paths_on_all: false,
            in_flight: None,
            bootstrap: default_bootstrap(),
            bootstrap_seed: 0,
            bn: BnOptions::default(),
            economy: EconomyOptions::default(),
        }
    }
}

/// Options of the basin analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasinOptions {
    /// Clustering method (eps `None` = per-step default, see [`crate::methods::basins::default_eps`]).
    pub method: ClusterMethod,
    /// Loss barrier definition used as the distance between seeds.
    pub barrier: BarrierKind,
}

impl Default for BasinOptions {
    fn default() -> Self {
        Self {
            method: ClusterMethod::Threshold { eps: None },
            barrier: BarrierKind::Segment,
        }
    }
}

/// Which representation and dynamics analyses to compute, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationOptions {
    /// Hidden layer for similarity and probes (0-based); `None` = the last hidden layer.
    pub layer: Option<usize>,
    /// Representation similarity between checkpoint pairs (the sweep's pair sets).
    pub similarity: bool,
    /// Linear probes per checkpoint.
    pub probes: bool,
    /// Weight-space trajectories and per-tensor norms.
    pub trajectories: bool,
    /// Prequential and eval code lengths.
    pub code_length: bool,
    /// Training map (needs the trajectories).
    pub training_map: bool,
    /// Probe options.
    pub probe: ProbeOptions,
    /// Checkpoints of one run held in memory at once while building a trajectory's Gram matrix.
    pub trajectory_block: usize,
    /// Most checkpoints (all runs together) for the joint trajectory projection, whose cost grows
    /// with their square; above it the projection is skipped with a warning.
    #[serde(default = "default_joint_trajectory_max")]
    pub joint_trajectory_max: usize,
}

fn default_joint_trajectory_max() -> usize {
    256
}

impl Default for RepresentationOptions {
    /// Every analysis, last hidden layer, default probe, 16 checkpoints per trajectory block.
    fn default() -> Self {
        Self {
            layer: None,
            similarity: true,
            probes: true,
            trajectories: true,
            code_length: true,
            training_map: true,
            probe: ProbeOptions::default(),
            trajectory_block: 16,
            joint_trajectory_max: default_joint_trajectory_max(),
        }
    }
}

/// The default result store folder: `$LINEAGE_CACHE`, else `$XDG_CACHE_HOME/lineage/results`, else
/// `~/.cache/lineage/results` (the system's temporary folder without a home).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LINEAGE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("lineage").join("results")
}
