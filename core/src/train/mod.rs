//! A small deterministic trainer that writes real checkpoint zoos, for `lineage demo` and for tests
//! with a known truth: ReLU MLPs (PyTorch `nn.Linear` names and init), or VGG-style CNNs with
//! BatchNorm (torchvision names, [`Cnn`]), trained with SGD + momentum on
//! built-in data (the UCI digits, embedded; synthetic modular addition; sparse parity with a
//! shortcut, whose out-of-distribution eval set tells the two generalization strategies apart), saved as
//! `<zoo>/<run>/step<N>/model.safetensors` with `config.json` and `metrics.jsonl`.
//!
//! Two recipes ([`Recipe`]): a *families* grid of inits x data orders (runs sharing an init end up
//! linearly connected, runs from different inits do not), and Frankle et al. (2020)'s *forks*
//! (children continue a parent's exact state with new data orders), described by a `lineage.toml`.
//! Everything is reproducible bit for bit from the seeds ([`TrainConfig::seed`]).

mod batches;
mod cnn;
mod config;
mod data;
mod digits;
mod error;
mod mlp;
mod model;
mod modular;
mod output;
mod recipes;
pub(crate) mod rng;
mod run;
mod sgd;
mod shortcut;

pub use cnn::Cnn;
pub use config::{ConvLayers, ForkedFrom, ModelConfig, Recipe, RunConfig, Schedule, TrainConfig, log_spaced_steps};
pub use data::{Dataset, Task, TaskData};
pub use digits::{EVAL_EXAMPLES as DIGITS_EVAL_EXAMPLES, all as load_digits};
pub use error::TrainError;
pub use mlp::Mlp;
pub use model::Model;
pub use recipes::{EVAL_FILE, MANIFEST_FILE, OOD_EVAL_FILE, PARENT_RUN, ZooSummary, train_zoo};
pub(crate) use rng::Rng;
pub use run::RunSummary;
pub use shortcut::ShortcutSpec;
