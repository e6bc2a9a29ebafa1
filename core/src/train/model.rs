//! The model a run trains: an MLP ([`Mlp`]) or, when the configuration has convolutional layers,
//! a CNN ([`Cnn`]), behind one interface for the training loop.

use candle_core::{D, DType, Device, Tensor, Var};

use super::cnn::Cnn;
use super::config::TrainConfig;
use super::mlp::Mlp;

/// A model being trained.
#[derive(Debug)]
pub enum Model {
    /// A ReLU MLP.
    Mlp(Mlp),
    /// A VGG-style CNN.
    Cnn(Cnn),
}

impl Model {
    /// `config`'s model for `dim` features and `classes` classes, initialised from `init_seed`.
    pub fn init(
        config: &TrainConfig,
        dim: usize,
        classes: usize,
        init_seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(match &config.conv {
            None => Self::Mlp(Mlp::init(&config.layers(dim, classes), init_seed, device)?),
            Some(conv) => Self::Cnn(Cnn::init(conv, &classifier(config, classes), init_seed, device)?),
        })
    }

    /// `config`'s model holding copies of `tensors` (in [`Model::tensors`] order).
    pub fn from_tensors(
        config: &TrainConfig,
        dim: usize,
        classes: usize,
        tensors: &[Tensor],
    ) -> candle_core::Result<Self> {
        Ok(match &config.conv {
            None => Self::Mlp(Mlp::from_tensors(&config.layers(dim, classes), tensors)?),
            Some(conv) => Self::Cnn(Cnn::from_tensors(conv, &classifier(config, classes), tensors)?),
        })
    }

    /// The trainable variables.
    pub fn vars(&self) -> &[Var] {
        match self {
            Self::Mlp(m) => m.vars(),
            Self::Cnn(c) => c.vars(),
        }
    }

    /// The checkpoint's tensor names, in [`Model::tensors`] order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Mlp(m) => m.names(),
            Self::Cnn(c) => c.names(),
        }
    }

    /// Copies of every tensor of a checkpoint: the variables, then any buffers (BatchNorm running
    /// statistics).
    pub fn tensors(&self) -> candle_core::Result<Vec<Tensor>> {
        match self {
            Self::Mlp(m) => m.tensors(),
            Self::Cnn(c) => c.tensors(),
        }
    }

    /// Number of values in a checkpoint.
    pub fn n_params(&self) -> candle_core::Result<usize> {
        Ok(self.tensors()?.iter().map(Tensor::elem_count).sum())
    }

    /// Mean cross-entropy of a training batch (BatchNorms in train mode, updating their statistics).
    pub fn train_loss(&mut self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Mlp(m) => m.loss(x, y),
            Self::Cnn(c) => c.train_loss(x, y),
        }
    }

    /// Mean cross-entropy and accuracy on an eval set (BatchNorms in eval mode).
    pub fn evaluate(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<(f32, f32)> {
        let logits = match self {
            Self::Mlp(m) => m.forward(x)?,
            Self::Cnn(c) => c.forward(x)?,
        };
        let loss = candle_nn::loss::cross_entropy(&logits, y)?.to_scalar::<f32>()?;
        let correct = logits.argmax(D::Minus1)?.eq(y)?.to_dtype(DType::F32)?;
        Ok((loss, correct.mean_all()?.to_scalar::<f32>()?))
    }

    /// The architecture name in messages: `MLP` or `CNN`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "MLP",
            Self::Cnn(_) => "CNN",
        }
    }
}

/// The classifier widths after a CNN's features: the hidden widths, then the classes.
fn classifier(config: &TrainConfig, classes: usize) -> Vec<usize> {
    let mut widths = config.hidden.clone();
    widths.push(classes);
    widths
}
