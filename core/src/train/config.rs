//! What to train: the hyper-parameters shared by every run of a zoo ([`TrainConfig`]), the zoo's
//! shape ([`Recipe`]), the checkpoint schedule, and the `config.json` written next to each run.

use serde::Serialize;

use super::data::Task;
use super::error::TrainError;
use crate::models::cnn::vgg::Layer;

/// Hyper-parameters shared by all runs of a zoo. Run `init{i}` uses init seed `seed + i`; data
/// order `order{j}` uses data seed `seed + 1000 + j`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The data.
    pub task: Task,
    /// Hidden layer widths; the input and output widths come from the task. With `conv`, the
    /// hidden widths of the classifier after the convolutional layers.
    pub hidden: Vec<usize>,
    /// Convolutional layers in front of the hidden layers (a CNN); `None` trains an MLP.
    pub conv: Option<ConvLayers>,
    /// SGD learning rate.
    pub lr: f64,
    /// SGD momentum (PyTorch convention).
    pub momentum: f64,
    /// Examples per minibatch.
    pub batch_size: usize,
    /// Optimiser steps per run.
    pub total_steps: u64,
    /// When to write checkpoints.
    pub checkpoints: Schedule,
    /// The train loss (mean over the minibatches since the last line) is logged every this-many steps.
    pub log_every: u64,
    /// Base seed (see the type's documentation).
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The demo: a 64-128-128-10 MLP on the digits, SGD lr 0.02, momentum 0.9, batch 64,
    /// 1,000 steps, 9 log-spaced checkpoints (0, 7, 14, 29, 59, 120, 240, 490, 1000), loss logged
    /// every 10 steps. With these settings a families zoo has the known basin structure: runs that
    /// share an init are linearly connected at the end (loss barrier below 0.005), runs from
    /// different inits are not (barrier above 0.19 on the 500 eval digits).
    fn default() -> Self {
        Self {
            task: Task::Digits,
            hidden: vec![128, 128],
            conv: None,
            lr: 0.02,
            momentum: 0.9,
            batch_size: 64,
            total_steps: 1000,
            checkpoints: Schedule::LogSpaced(9),
            log_every: 10,
            seed: 0,
        }
    }
}

/// The convolutional layers of a CNN (torchvision's VGG `features` layout): 3x3 convs with
/// padding 1, each followed by a BatchNorm (optional) and a ReLU, and 2x2 max pools; the flattened
/// maps then feed the hidden layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvLayers {
    /// One example as an image `[C, H, W]`; `C * H * W` must be the task's number of features.
    pub input_shape: [usize; 3],
    /// Conv widths and max pools, in order (as torchvision's `cfgs`).
    pub layers: Vec<Layer>,
    /// Whether a BatchNorm follows each conv.
    pub batch_norm: bool,
}

impl ConvLayers {
    /// Checks the layers against an input of `dim` features.
    pub fn validate(&self, dim: usize) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        let [c, h, w] = self.input_shape;
        if c * h * w != dim {
            return bad(format!(
                "input_shape {:?} holds {} values, but the task's examples have {dim} features",
                self.input_shape,
                c * h * w
            ));
        }
        if !self.layers.iter().any(|l| matches!(l, Layer::Conv(_))) || self.layers.contains(&Layer::Conv(0)) {
            return bad("a CNN needs at least one conv layer, each of positive width".into());
        }
        let pools = self.layers.iter().filter(|l| **l == Layer::Pool).count();
        if pools >= usize::BITS as usize || h >> pools == 0 || w >> pools == 0 {
            return bad(format!("{pools} max pools leave nothing of a {h}x{w} image"));
        }
        Ok(())
    }
}

/// When checkpoints are written. Step 0 (the init) and the last step are always included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// About this many checkpoints: 0, then geometric up to `total_steps` (see [`log_spaced_steps`]).
    LogSpaced(usize),
    /// Exactly these steps (plus 0 and the last).
    Steps(Vec<u64>),
}

/// The shape of a zoo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// `inits x orders` independent runs named `init{i}_order{j}`: runs sharing `i` start from the
    /// same weights, runs sharing `j` see the same minibatch sequence.
    Families {
        /// Number of initialisations.
        inits: usize,
        /// Number of data orders.
        orders: usize,
    },
    /// Frankle et al. (2020)'s instability analysis: one run `parent` (init 0, order 0); at each
    /// fork step k, `children_per_fork` runs `fork_k{k}_order{j}` (j = 1, 2, ...) continue from the
    /// parent's exact state at k (weights and momentum) with data order j, up to `total_steps`.
    Forks {
        /// Steps of the parent at which children are forked (0 allowed: same init, new order).
        fork_steps: Vec<u64>,
        /// Children per fork step.
        children_per_fork: usize,
    },
}

impl TrainConfig {
    /// Layer widths: the task's input width, the hidden widths, the number of classes.
    pub fn layers(&self, input_dim: usize, classes: usize) -> Vec<usize> {
        let mut layers = vec![input_dim];
        layers.extend(&self.hidden);
        layers.push(classes);
        layers
    }

    /// The checkpoint steps, ascending, always holding 0 and `total_steps`.
    pub fn save_steps(&self) -> Vec<u64> {
        let mut steps = match &self.checkpoints {
            Schedule::LogSpaced(n) => log_spaced_steps(self.total_steps, *n),
            Schedule::Steps(s) => s.clone(),
        };
        steps.extend([0, self.total_steps]);
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Init seed of initialisation `i`.
    pub fn init_seed(&self, i: usize) -> u64 {
        self.seed.wrapping_add(i as u64)
    }

    /// Data seed of data order `j`.
    pub fn data_seed(&self, j: usize) -> u64 {
        self.seed.wrapping_add(1000 + j as u64)
    }

    /// Checks the settings; the message names the bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.total_steps == 0 {
            return bad("total_steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.log_every == 0 {
            return bad("log_every must be at least 1".into());
        }
        if self.hidden.contains(&0) {
            return bad(format!("hidden layer widths must be positive, got {:?}", self.hidden));
        }
        if let Schedule::Steps(steps) = &self.checkpoints
            && let Some(s) = steps.iter().find(|&&s| s > self.total_steps)
        {
            return bad(format!("checkpoint step {s} is after total_steps {}", self.total_steps));
        }
        Ok(())
    }
}

impl Recipe {
    /// Checks the recipe against the configuration.
    pub fn validate(&self, config: &TrainConfig) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        match self {
            Recipe::Families { inits, orders } if *inits == 0 || *orders == 0 => bad(format!(
                "a families zoo needs at least one init and one order, got {inits} x {orders}"
            )),
            Recipe::Forks {
                fork_steps,
                children_per_fork,
            } => {
                if fork_steps.is_empty() || *children_per_fork == 0 {
                    return bad("a forks zoo needs at least one fork step and one child per fork".into());
                }
                if let Some(k) = fork_steps.iter().find(|&&k| k >= config.total_steps) {
                    return bad(format!(
                        "fork step {k} is not before total_steps {}",
                        config.total_steps
                    ));
                }
                Ok(())
            }
            Recipe::Families { .. } => Ok(()),
        }
    }

    /// Optimiser steps the whole zoo takes (for progress).
    pub fn total_work(&self, config: &TrainConfig) -> u64 {
        match self {
            Recipe::Families { inits, orders } => (inits * orders) as u64 * config.total_steps,
            Recipe::Forks {
                fork_steps,
                children_per_fork,
            } => {
                let mut steps: Vec<u64> = fork_steps.clone();
                steps.sort_unstable();
                steps.dedup();
                config.total_steps
                    + steps
                        .iter()
                        .map(|k| (config.total_steps - k) * *children_per_fork as u64)
                        .sum::<u64>()
            }
        }
    }
}

/// `count` checkpoint steps: 0, then geometric from about `total / 150` up to `total`, rounded to
/// two significant digits (1,500 steps, 9 checkpoints: 0, 10, 20, 42, 86, 180, 360, 730, 1500).
/// Fewer come back when `total` is too small to hold `count` distinct steps.
pub fn log_spaced_steps(total: u64, count: usize) -> Vec<u64> {
    if total == 0 {
        return vec![0];
    }
    let mut steps = vec![0];
    if count >= 3 {
        let first = ((total as f64 / 150.0).round() as u64).max(1);
        let ratio = (total as f64 / first as f64).powf(1.0 / (count - 2) as f64);
        for i in 0..count - 2 {
            let x = first as f64 * ratio.powi(i as i32);
            steps.push(round_2_significant(x).clamp(1, total));
        }
    }
    steps.push(total);
    steps.sort_unstable();
    steps.dedup();
    steps
}

fn round_2_significant(x: f64) -> u64 {
    if x < 100.0 {
        return x.round() as u64;
    }
    let magnitude = 10f64.powi(x.log10().floor() as i32 - 1);
    ((x / magnitude).round() * magnitude) as u64
}

/// The architecture keys of a run's `config.json`, as lineage's evaluators read them.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum ModelConfig {
    /// `"arch": "mlp"`, for the `mlp` family.
    Mlp {
        /// Layer widths, input first.
        layers: Vec<usize>,
        /// Always `"relu"`.
        activation: &'static str,
    },
    /// `"arch": "cnn"`, for the `cnn` family's VGG layout.
    Cnn {
        /// One example as an image `[C, H, W]` (the eval set stores them flattened).
        input_shape: [usize; 3],
        /// Conv widths and `"M"` (max pools), as torchvision's `cfgs`.
        layers: Vec<serde_json::Value>,
        /// Whether a BatchNorm follows each conv.
        batch_norm: bool,
        /// The classifier's hidden widths.
        hidden: Vec<usize>,
        /// Number of classes.
        num_classes: usize,
    },
}

impl ModelConfig {
    /// The keys for `config`'s model on a task of `dim` features and `classes` classes.
    pub fn of(config: &TrainConfig, dim: usize, classes: usize) -> Self {
        match &config.conv {
            None => Self::Mlp {
                layers: config.layers(dim, classes),
                activation: "relu",
            },
            Some(conv) => Self::Cnn {
                input_shape: conv.input_shape,
                layers: conv
                    .layers
                    .iter()
                    .map(|l| match l {
                        Layer::Conv(w) => serde_json::json!(w),
                        Layer::Pool => serde_json::json!("M"),
                    })
                    .collect(),
                batch_norm: conv.batch_norm,
                hidden: config.hidden.clone(),
                num_classes: classes,
            },
        }
    }
}

/// A run's `config.json`: the architecture (read by lineage's `mlp` or `cnn` evaluator) and how
/// it was trained.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// The architecture.
    #[serde(flatten)]
    pub model: ModelConfig,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Seed of the minibatch order.
    pub data_seed: u64,
    /// Always `"sgd"`.
    pub optimizer: &'static str,
    /// Learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Last step.
    pub total_steps: u64,
    /// Steps with a checkpoint.
    pub save_steps: Vec<u64>,
    /// Steps between two lines of `metrics.jsonl`.
    pub log_every: u64,
    /// The task (`"task": "digits"` or `"modular_addition"` with its parameters).
    #[serde(flatten)]
    pub task: Task,
    /// For a forked run: the parent run and step it continues from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
}

/// Where a forked run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkedFrom {
    /// Parent run name.
    pub run: String,
    /// Parent step.
    pub step: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_spaced_schedule() {
        assert_eq!(log_spaced_steps(1500, 9), [0, 10, 20, 42, 86, 180, 360, 730, 1500]);
        assert_eq!(log_spaced_steps(1000, 9).len(), 9);
        assert_eq!(log_spaced_steps(1000, 2), [0, 1000]);
        assert_eq!(log_spaced_steps(3, 9), [0, 1, 2, 3]);
    }

    #[test]
    fn save_steps_hold_both_ends() {
        let c = TrainConfig {
            checkpoints: Schedule::Steps(vec![50, 5]),
            total_steps: 100,
            ..Default::default()
        };
        assert_eq!(c.save_steps(), [0, 5, 50, 100]);
    }

    #[test]
    fn config_json_has_the_evaluator_keys() {
        let c = RunConfig {
            model: ModelConfig::Mlp {
                layers: vec![64, 10],
                activation: "relu",
            },
            init_seed: 1,
            data_seed: 1001,
            optimizer: "sgd",
            lr: 0.02,
            momentum: 0.9,
            batch_size: 64,
            total_steps: 10,
            save_steps: vec![0, 10],
            log_every: 10,
            task: Task::Digits,
            forked_from: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["arch"], "mlp");
        assert_eq!(v["task"], "digits");
        assert_eq!(v["layers"], serde_json::json!([64, 10]));
        assert!(v.get("forked_from").is_none());
        let cnn = TrainConfig {
            hidden: vec![32],
            conv: Some(ConvLayers {
                input_shape: [1, 8, 8],
                layers: vec![Layer::Conv(4), Layer::Pool],
                batch_norm: true,
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(ModelConfig::of(&cnn, 64, 10)).unwrap();
        assert_eq!(v["arch"], "cnn");
        assert_eq!(v["layers"], serde_json::json!([4, "M"]));
        assert_eq!(v["input_shape"], serde_json::json!([1, 8, 8]));
        assert_eq!(
            (v["batch_norm"].as_bool(), v["num_classes"].as_u64()),
            (Some(true), Some(10))
        );
    }

    #[test]
    fn conv_layers_must_fit_the_input() {
        let conv = |input_shape, layers| ConvLayers {
            input_shape,
            layers,
            batch_norm: false,
        };
        assert!(conv([1, 8, 8], vec![Layer::Conv(4), Layer::Pool]).validate(64).is_ok());
        let err = conv([1, 8, 8], vec![Layer::Conv(4)]).validate(63).unwrap_err();
        assert!(
            err.to_string().contains("input_shape [1, 8, 8] holds 64 values"),
            "{err}"
        );
        assert!(conv([1, 8, 8], vec![Layer::Pool]).validate(64).is_err());
        let pools = vec![Layer::Conv(4), Layer::Pool, Layer::Pool, Layer::Pool, Layer::Pool];
        assert!(
            conv([1, 8, 8], pools)
                .validate(64)
                .unwrap_err()
                .to_string()
                .contains("4 max pools")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let c = TrainConfig {
            lr: -1.0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("lr"));
        let r = Recipe::Forks {
            fork_steps: vec![2000],
            children_per_fork: 2,
        };
        assert!(r.validate(&TrainConfig::default()).is_err());
    }
}
