//! Whole zoos: the families grid and Frankle-style forks, trained in parallel, plus the eval set
//! and (for forks) the `lineage.toml` manifest naming each child's parent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use lineage_loaders::manifest::{Manifest, ManifestCheckpoint, ManifestParent, ManifestRun};
use rayon::prelude::*;

use super::config::{Recipe, TrainConfig};
use super::data::{Dataset, TaskData};
use super::error::TrainError;
use super::model::Model;
use super::output::{checkpoint_dir, prepare_output, write_text};
use super::run::{RunSpec, RunSummary, train_run};
use crate::progress::Progress;

/// Name of the eval-set file written at the zoo root.
pub const EVAL_FILE: &str = "eval.safetensors";
/// Name of the out-of-distribution eval-set file written at the zoo root, for the tasks that have one.
pub const OOD_EVAL_FILE: &str = "eval_ood.safetensors";
/// Name of the manifest written at the root of a forks zoo.
pub const MANIFEST_FILE: &str = "lineage.toml";
/// Name of the parent run of a forks zoo.
pub const PARENT_RUN: &str = "parent";

/// What [`train_zoo`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ZooSummary {
    /// The zoo folder.
    pub root: PathBuf,
    /// The eval set (`<root>/eval.safetensors`: `inputs` f32 `[N, dim]`, `labels` i64 `[N]`).
    pub eval_data: PathBuf,
    /// The out-of-distribution eval set (`<root>/eval_ood.safetensors`, same layout), for the tasks
    /// that have one ([`super::Task::Shortcut`]).
    pub ood_data: Option<PathBuf>,
    /// The manifest (forks zoos only).
    pub manifest: Option<PathBuf>,
    /// The runs, sorted by name.
    pub runs: Vec<RunSummary>,
    /// Training examples.
    pub n_train: usize,
    /// Eval examples.
    pub n_eval: usize,
    /// The model: `MLP` or `CNN`.
    pub model: &'static str,
    /// Values per checkpoint (parameters, and a CNN's BatchNorm running statistics).
    pub n_params: usize,
}

/// Trains the zoo `recipe` describes into the new or empty folder `out`: `<out>/<run>/step<N>/
/// model.safetensors` (f32), `<out>/<run>/config.json`, `<out>/<run>/metrics.jsonl`,
/// `<out>/eval.safetensors` (and `<out>/eval_ood.safetensors` for a task with an out-of-distribution
/// set), and for forks `<out>/lineage.toml`. Deterministic: the same recipe and
/// configuration give bitwise identical checkpoints. Runs train in parallel (rayon); progress
/// counts optimiser steps, and cancelling stops every run within one step.
pub fn train_zoo(
    recipe: &Recipe,
    config: &TrainConfig,
    out: &Path,
    progress: &dyn Progress,
) -> Result<ZooSummary, TrainError> {
    config.validate()?;
    recipe.validate(config)?;
    let TaskData { train, eval, ood } = config.task.load()?;
    if let Some(conv) = &config.conv {
        conv.validate(train.dim)?;
    }
    let model = Model::init(config, train.dim, train.classes, config.init_seed(0), &Device::Cpu)
        .and_then(|m| Ok((m.kind(), m.n_params()?)))
        .map_err(TrainError::tensor("building the model"))?;
    if config.batch_size > train.len() {
        return Err(TrainError::Config(format!(
            "batch_size {} is larger than the {} training examples",
            config.batch_size,
            train.len()
        )));
    }
    prepare_output(out)?;
    let eval_data = out.join(EVAL_FILE);
    eval.save_safetensors(&eval_data)?;
    let ood_data = match ood {
        Some(set) => {
            let path = out.join(OOD_EVAL_FILE);
            set.save_safetensors(&path)?;
            Some(path)
        }
        None => None,
    };
    progress.start("training", recipe.total_work(config));
    let data = (&train, &eval);
    let result = match recipe {
        Recipe::Families { inits, orders } => families(*inits, *orders, config, data, out, progress).map(|r| (r, None)),
        Recipe::Forks {
            fork_steps,
            children_per_fork,
        } => forks(fork_steps, *children_per_fork, config, data, out, progress),
    };
    progress.finish();
    let (mut runs, manifest) = result?;
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ZooSummary {
        root: out.to_path_buf(),
        eval_data,
        ood_data,
        manifest,
        runs,
        n_train: train.len(),
        n_eval: eval.len(),
        model: model.0,
        n_params: model.1,
    })
}

/// `init{i}_order{j}` for every (i, j).
fn families(
    inits: usize,
    orders: usize,
    config: &TrainConfig,
    data: (&Dataset, &Dataset),
    out: &Path,
    progress: &dyn Progress,
) -> Result<Vec<RunSummary>, TrainError> {
    let specs: Vec<RunSpec> = (0..inits)
        .flat_map(|i| (0..orders).map(move |j| (i, j)))
        .map(|(i, j)| RunSpec {
            name: format!("init{i}_order{j}"),
            init_seed: config.init_seed(i),
            data_seed: config.data_seed(j),
            fork: None,
            save_steps: config.save_steps(),
            capture_steps: Vec::new(),
        })
        .collect();
    specs
        .par_iter()
        .with_max_len(1)
        .map(|spec| train_run(spec, config, data, out, progress).map(|(summary, _)| summary))
        .collect()
}

/// The parent, then its children in parallel; returns the runs and the manifest path.
fn forks(
    fork_steps: &[u64],
    children: usize,
    config: &TrainConfig,
    data: (&Dataset, &Dataset),
    out: &Path,
    progress: &dyn Progress,
) -> Result<(Vec<RunSummary>, Option<PathBuf>), TrainError> {
    let mut fork_steps = fork_steps.to_vec();
    fork_steps.sort_unstable();
    fork_steps.dedup();
    let mut parent_saves = config.save_steps();
    parent_saves.extend(&fork_steps);
    parent_saves.sort_unstable();
    parent_saves.dedup();
    let parent = RunSpec {
        name: PARENT_RUN.to_string(),
        init_seed: config.init_seed(0),
        data_seed: config.data_seed(0),
        fork: None,
        save_steps: parent_saves,
        capture_steps: fork_steps.clone(),
    };
    let (parent_summary, states) = train_run(&parent, config, data, out, progress)?;
    let specs: Vec<RunSpec> = states
        .into_iter()
        .map(Arc::new)
        .flat_map(|state| {
            (1..=children).map(move |j| RunSpec {
                name: format!("fork_k{}_order{j}", state.step),
                init_seed: config.init_seed(0),
                data_seed: config.data_seed(j),
                fork: Some((PARENT_RUN.to_string(), state.clone())),
                save_steps: config.save_steps(),
                capture_steps: Vec::new(),
            })
        })
        .collect();
    let mut runs: Vec<RunSummary> = specs
        .par_iter()
        .with_max_len(1)
        .map(|spec| train_run(spec, config, data, out, progress).map(|(summary, _)| summary))
        .collect::<Result<_, _>>()?;
    runs.insert(0, parent_summary);
    let path = out.join(MANIFEST_FILE);
    write_text(&path, &manifest(&runs, out).to_toml())?;
    Ok((runs, Some(path)))
}

/// The manifest of a zoo's runs; paths relative to the zoo root.
fn manifest(runs: &[RunSummary], root: &Path) -> Manifest {
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    Manifest {
        runs: runs
            .iter()
            .map(|r| ManifestRun {
                name: r.name.clone(),
                parent: r.parent.as_ref().map(|(run, step)| ManifestParent {
                    run: run.clone(),
                    step: *step,
                }),
                config: Some(rel(&r.dir.join("config.json"))),
                logs: vec![rel(&r.dir.join("metrics.jsonl"))],
                checkpoints: r
                    .steps
                    .iter()
                    .map(|&step| ManifestCheckpoint {
                        step,
                        path: rel(&checkpoint_dir(&r.dir, step)),
                    })
                    .collect(),
            })
            .collect(),
    }
}
