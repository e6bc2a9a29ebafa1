//! The data model of a discovered zoo: runs x steps, ragged.

use std::path::PathBuf;

use serde::Serialize;

use crate::formats::FileFormat;
use crate::problem::Problem;

/// How a checkpoint was found (see `ARCHITECTURE.md`, "Layouts to discover").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `run/step1500/model.safetensors`, `run/step_1500/`, Pythia `step1000/`.
    FolderPerStep,
    /// `run/checkpoint-500/` written by the Hugging Face Trainer.
    HfTrainer,
    /// `run/epoch=3-step=1000.ckpt`, `run/ckpt_1000.pt`, `seed0_step100.safetensors`.
    FilePerStep,
    /// Listed in `lineage.toml` / `manifest.json`.
    Manifest,
    /// OLMo folders: `step1000-tokens4B`, `step1000-unsharded`, `stage2-ingredient2-step1000-tokens10B`.
    Olmo,
    /// Sibling folders named by run and step: `multiberts-seed_0-step_20k` (see [`crate::layouts::step_name`]).
    SiblingFolders,
    /// A Hugging Face hub cache: `models--ORG--NAME/snapshots/HASH/` named by a `refs/stepN` revision.
    HfHubCache,
}

impl Layout {
    /// True for layouts that store a checkpoint as a folder (its files inside), false for one file per step.
    pub fn is_folder(self) -> bool {
        !matches!(self, Self::FilePerStep | Self::Manifest)
    }
}

/// One checkpoint: a (run, step) cell of the grid, stored in one file or several shards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    /// Training step.
    pub step: u64,
    /// The file(s) holding the tensors (several for a sharded checkpoint), in shard order.
    #[serde(serialize_with = "crate::lossy_path::list")]
    pub files: Vec<PathBuf>,
    /// File format.
    pub format: FileFormat,
    /// How it was found.
    pub layout: Layout,
    /// Training tokens seen, when the name says (OLMo `tokens4B` = 4e9); `None` when unknown.
    pub tokens: Option<u64>,
}

impl Checkpoint {
    /// The path shown to users: the step folder for folder layouts, else the file.
    pub fn display_path(&self) -> PathBuf {
        match (self.layout, self.files.first()) {
            (layout, Some(f)) if layout.is_folder() => f.parent().map(PathBuf::from).unwrap_or_else(|| f.clone()),
            (_, Some(f)) => f.clone(),
            (_, None) => PathBuf::new(),
        }
    }
}

/// Where a forked run branched off its parent (Frankle's instability analysis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkParent {
    /// Parent run name.
    pub run: String,
    /// Step of the parent at which the child was forked.
    pub step: u64,
}

/// One training run (a seed): its checkpoints sorted by step, and its side files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Run name, unique in the zoo (folder path relative to the zoo root, or a manifest name).
    pub name: String,
    /// The run's folder.
    #[serde(serialize_with = "crate::lossy_path::path")]
    pub dir: PathBuf,
    /// Checkpoints sorted by step, at most one per step.
    pub checkpoints: Vec<Checkpoint>,
    /// `config.json` describing the architecture, if found.
    #[serde(serialize_with = "crate::lossy_path::option")]
    pub config: Option<PathBuf>,
    /// Training logs found (`metrics.jsonl`, `trainer_state.json`, `*.csv`).
    #[serde(serialize_with = "crate::lossy_path::list")]
    pub logs: Vec<PathBuf>,
    /// Fork parent, when a manifest names one.
    pub parent: Option<ForkParent>,
}

impl Run {
    /// Steps present, ascending.
    pub fn steps(&self) -> Vec<u64> {
        self.checkpoints.iter().map(|c| c.step).collect()
    }

    /// The checkpoint at `step`, if present.
    pub fn at(&self, step: u64) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.step == step)
    }

    /// The last checkpoint (the run's final state).
    pub fn last(&self) -> Option<&Checkpoint> {
        self.checkpoints.last()
    }
}

/// A discovered zoo: ragged grid of runs x steps plus every problem found on the way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zoo {
    /// Folder the zoo was discovered from.
    #[serde(serialize_with = "crate::lossy_path::path")]
    pub root: PathBuf,
    /// Runs sorted by name.
    pub runs: Vec<Run>,
    /// Problems found; none of them stopped discovery.
    pub problems: Vec<Problem>,
}

impl Zoo {
    /// Union of all runs' steps, ascending.
    pub fn steps(&self) -> Vec<u64> {
        let mut steps: Vec<u64> = self.runs.iter().flat_map(Run::steps).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// The run called `name`.
    pub fn run(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// Number of checkpoints in the grid.
    pub fn n_checkpoints(&self) -> usize {
        self.runs.iter().map(|r| r.checkpoints.len()).sum()
    }
}
