//! Training data: a classification data set held in memory, and the built-in tasks that produce one.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::shortcut::{self, ShortcutSpec};
use super::{digits, modular};

/// A classification data set: `len()` examples of `dim` f32 features and a label in `0..classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Row-major features, `len() * dim` values.
    pub inputs: Vec<f32>,
    /// One label per example, each below `classes`.
    pub labels: Vec<u32>,
    /// Features per example.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut inputs = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            inputs.extend_from_slice(&self.inputs[i * self.dim..(i + 1) * self.dim]);
        }
        Dataset {
            inputs,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            dim: self.dim,
            classes: self.classes,
        }
    }

    /// Inputs `[len, dim]` f32 and labels `[len]` u32 as tensors (the batch a training step consumes).
    pub fn tensors(&self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let x = Tensor::from_slice(&self.inputs, (self.len(), self.dim), device)?;
        let y = Tensor::from_slice(&self.labels, self.len(), device)?;
        Ok((x, y))
    }

    /// Writes the set as an eval file lineage reads: `inputs` f32 `[N, dim]`, `labels` i64 `[N]`.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), TrainError> {
        let context = format!("writing {}", path.display());
        let labels: Vec<i64> = self.labels.iter().map(|&l| i64::from(l)).collect();
        let tensors = std::collections::HashMap::from([
            (
                "inputs".to_string(),
                Tensor::from_slice(&self.inputs, (self.len(), self.dim), &Device::Cpu)
                    .map_err(TrainError::tensor(context.clone()))?,
            ),
            (
                "labels".to_string(),
                Tensor::from_vec(labels, self.len(), &Device::Cpu).map_err(TrainError::tensor(context.clone()))?,
            ),
        ]);
        candle_core::safetensors::save(&tensors, path).map_err(TrainError::tensor(context))
    }
}

/// A built-in task: where the train and eval sets come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// The UCI optical digits (1,797 8x8 images, pixels scaled to [0, 1], 10 classes), embedded in
    /// the library; the last [`digits::EVAL_EXAMPLES`] examples are held out for evaluation.
    Digits,
    /// Modular addition `(a + b) mod modulus` from one-hot `a` and `b` concatenated (`2 * modulus`
    /// inputs, `modulus` classes); all `modulus^2` pairs, split at random by `seed` with
    /// `train_fraction` of them for training.
    ModularAddition {
        /// The modulus p (at least 2).
        modulus: usize,
        /// Fraction of the p^2 pairs used for training, in (0, 1).
        train_fraction: f64,
        /// Seed of the train/eval split.
        split_seed: u64,
    },
    /// Sparse parity with a shortcut (see [`ShortcutSpec`]): the label is the parity of some ±1
    /// bits, and one more input (the shortcut) also gives it away, except in the out-of-distribution
    /// eval set, where it points to the wrong label.
    Shortcut(ShortcutSpec),
}

/// The data sets of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskData {
    /// What every run trains on.
    pub train: Dataset,
    /// The eval set (in-distribution).
    pub eval: Dataset,
    /// An out-of-distribution eval set, for the tasks that have one ([`Task::Shortcut`]).
    pub ood: Option<Dataset>,
}

impl Task {
    /// Short name written to `config.json` (`"task"`).
    pub fn name(&self) -> &'static str {
        match self {
            Task::Digits => "digits",
            Task::ModularAddition { .. } => "modular_addition",
            Task::Shortcut(_) => "shortcut",
        }
    }

    /// The data sets of the task; deterministic.
    pub fn load(&self) -> Result<TaskData, TrainError> {
        let in_distribution = |(train, eval)| TaskData { train, eval, ood: None };
        match self {
            Task::Digits => digits::train_eval().map(in_distribution),
            Task::ModularAddition {
                modulus,
                train_fraction,
                split_seed,
            } => modular::train_eval(*modulus, *train_fraction, *split_seed).map(in_distribution),
            Task::Shortcut(spec) => {
                let (train, eval, ood) = shortcut::sets(spec)?;
                Ok(TaskData {
                    train,
                    eval,
                    ood: Some(ood),
                })
            }
        }
    }
}
