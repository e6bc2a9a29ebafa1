//! Training one run: from an init (or a fork of another run's state) to the last step, writing
//! checkpoints, the config and the loss log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::batches::BatchStream;
use super::config::{ForkedFrom, ModelConfig, RunConfig, TrainConfig};
use super::data::Dataset;
use super::error::TrainError;
use super::model::Model;
use super::output::{MetricsLog, create_dir, write_checkpoint, write_json};
use super::sgd::Sgd;
use crate::progress::Progress;

/// The exact training state after some step: weights and momentum buffers (what a fork copies).
#[derive(Debug, Clone)]
pub struct TrainState {
    /// The step the state is after.
    pub step: u64,
    /// Every tensor of the model, in [`Model::tensors`] order.
    pub params: Vec<Tensor>,
    /// Momentum buffers, in [`Model::vars`] order.
    pub momentum: Vec<Tensor>,
}

/// One run to train.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Run name (and folder name under the zoo).
    pub name: String,
    /// Seed of the initial weights (of the parent, for a fork).
    pub init_seed: u64,
    /// Seed of the minibatch order.
    pub data_seed: u64,
    /// Parent run and its state, for a fork; `None` trains from the init at step 0.
    pub fork: Option<(String, Arc<TrainState>)>,
    /// Steps to checkpoint; those before the start step are ignored, the start step (0, or the
    /// fork step) is always written.
    pub save_steps: Vec<u64>,
    /// Steps whose state is returned (for forking children).
    pub capture_steps: Vec<u64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunSummary {
    /// Run name.
    pub name: String,
    /// Run folder.
    pub dir: PathBuf,
    /// Init seed.
    pub init_seed: u64,
    /// Data seed.
    pub data_seed: u64,
    /// (parent run, fork step) for a forked run.
    pub parent: Option<(String, u64)>,
    /// Steps written, ascending.
    pub steps: Vec<u64>,
    /// Mean train loss over the last logging interval (NaN if no step was taken).
    pub final_train_loss: f64,
    /// Mean cross-entropy of the final model on the eval set.
    pub final_eval_loss: f32,
    /// Accuracy of the final model on the eval set.
    pub final_eval_accuracy: f32,
}

/// Trains `spec` to `config.total_steps` in `<zoo>/<name>/`; returns its summary and the states
/// at `spec.capture_steps`.
pub fn train_run(
    spec: &RunSpec,
    config: &TrainConfig,
    data: (&Dataset, &Dataset),
    zoo: &Path,
    progress: &dyn Progress,
) -> Result<(RunSummary, Vec<TrainState>), TrainError> {
    let (train, eval) = data;
    let device = Device::Cpu;
    let err = |what: &str| TrainError::tensor(format!("run `{}`: {what}", spec.name));
    let (mut model, mut opt, mut step) = starting_point(spec, config, train, &device).map_err(err("start"))?;
    let mut save_steps: Vec<u64> = spec.save_steps.iter().copied().filter(|&s| s > step).collect();
    save_steps.insert(0, step);
    let dir = zoo.join(&spec.name);
    create_dir(&dir)?;
    write_json(&dir.join("config.json"), &run_config(spec, config, train, &save_steps))?;
    let names = model.names();
    let mut captured = Vec::new();
    let mut checkpoint = |step: u64, model: &Model, opt: &Sgd| -> Result<(), TrainError> {
        if save_steps.contains(&step) {
            write_checkpoint(&dir, step, &names, &model.tensors().map_err(err("snapshot"))?)?;
        }
        if spec.capture_steps.contains(&step) {
            let momentum = opt
                .buffers()
                .iter()
                .map(Tensor::copy)
                .collect::<candle_core::Result<_>>();
            captured.push(TrainState {
                step,
                params: model.tensors().map_err(err("snapshot"))?,
                momentum: momentum.map_err(err("snapshot"))?,
            });
        }
        Ok(())
    };
    checkpoint(step, &model, &opt)?;
    let mut log = MetricsLog::create(&dir.join("metrics.jsonl"))?;
    let mut batches = BatchStream::new(train.len(), spec.data_seed);
    let (mut loss_sum, mut loss_count, mut last_logged) = (0.0f64, 0u64, f64::NAN);
    while step < config.total_steps {
        if progress.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        let (x, y) = train
            .select(batches.next_batch(config.batch_size))
            .tensors(&device)
            .map_err(err("batch"))?;
        let loss = model.train_loss(&x, &y).map_err(err("forward"))?;
        let grads = loss.backward().map_err(err("backward"))?;
        opt.step(model.vars(), &grads).map_err(err("update"))?;
        step += 1;
        let value = loss.to_scalar::<f32>().map_err(err("loss"))?;
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                run: spec.name.clone(),
                step,
                loss: value,
            });
        }
        loss_sum += f64::from(value);
        loss_count += 1;
        if step % config.log_every == 0 || step == config.total_steps {
            last_logged = loss_sum / loss_count as f64;
            log.log(step, last_logged)?;
            (loss_sum, loss_count) = (0.0, 0);
        }
        checkpoint(step, &model, &opt)?;
        progress.advance(1);
    }
    log.finish()?;
    let (ex, ey) = eval.tensors(&device).map_err(err("eval set"))?;
    let (final_eval_loss, final_eval_accuracy) = model.evaluate(&ex, &ey).map_err(err("eval"))?;
    let summary = RunSummary {
        name: spec.name.clone(),
        dir,
        init_seed: spec.init_seed,
        data_seed: spec.data_seed,
        parent: spec.fork.as_ref().map(|(run, s)| (run.clone(), s.step)),
        steps: save_steps,
        final_train_loss: last_logged,
        final_eval_loss,
        final_eval_accuracy,
    };
    Ok((summary, captured))
}

/// The model, optimiser and step a run starts from: a fresh init, or a copy of the fork state.
fn starting_point(
    spec: &RunSpec,
    config: &TrainConfig,
    train: &Dataset,
    device: &Device,
) -> candle_core::Result<(Model, Sgd, u64)> {
    match &spec.fork {
        None => {
            let model = Model::init(config, train.dim, train.classes, spec.init_seed, device)?;
            let opt = Sgd::new(model.vars(), config.lr, config.momentum)?;
            Ok((model, opt, 0))
        }
        Some((_, state)) => {
            let model = Model::from_tensors(config, train.dim, train.classes, &state.params)?;
            let momentum = state
                .momentum
                .iter()
                .map(Tensor::copy)
                .collect::<candle_core::Result<_>>()?;
            Ok((
                model,
                Sgd::with_buffers(config.lr, config.momentum, momentum),
                state.step,
            ))
        }
    }
}

/// The run's `config.json`.
fn run_config(spec: &RunSpec, config: &TrainConfig, train: &Dataset, save_steps: &[u64]) -> RunConfig {
    RunConfig {
        model: ModelConfig::of(config, train.dim, train.classes),
        init_seed: spec.init_seed,
        data_seed: spec.data_seed,
        optimizer: "sgd",
        lr: config.lr,
        momentum: config.momentum,
        batch_size: config.batch_size,
        total_steps: config.total_steps,
        save_steps: save_steps.to_vec(),
        log_every: config.log_every,
        task: config.task.clone(),
        forked_from: spec.fork.as_ref().map(|(run, s)| ForkedFrom {
            run: run.clone(),
            step: s.step,
        }),
    }
}
