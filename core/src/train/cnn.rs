//! The trained convolutional model: a VGG-style stack (`features`: 3x3 convs, optional BatchNorm,
//! ReLU, 2x2 max pools; then `classifier`: Linear layers with ReLU between them), its tensors named
//! as torchvision's `VGG` names them (`features.{i}.weight`, `features.{i+1}.running_mean`,
//! `classifier.{j}.weight`, ...), so that lineage's `cnn` family reads the checkpoints
//! (`crate::models::cnn::vgg`). Initialised as PyTorch's default `Conv2d` / `Linear` (BatchNorm:
//! weight 1, bias 0, running mean 0, running variance 1), trained with BatchNorm in train mode
//! (batch statistics, running statistics updated with momentum 0.1 and the unbiased variance, as
//! PyTorch does); the `num_batches_tracked` counters are not written (lineage drops integer
//! buffers).

use candle_core::{Device, Tensor, Var};

use super::config::ConvLayers;
use super::mlp::pytorch_default_init;
use super::rng::Rng;
use crate::models::cnn::layers::conv2d;
use crate::models::cnn::vgg::Layer;

/// PyTorch's `BatchNorm2d` epsilon.
const EPS: f64 = 1e-5;
/// PyTorch's `BatchNorm2d` momentum for the running statistics.
const MOMENTUM: f64 = 0.1;

/// One conv of the features: indices into the variables, and its BatchNorm's.
#[derive(Debug, Clone, Copy)]
struct ConvIndex {
    /// Index of the weight in the variables (the bias follows).
    var: usize,
    /// Index of the BatchNorm weight in the variables (the bias follows) and of its running mean
    /// in the buffers (the variance follows).
    norm: Option<(usize, usize)>,
}

/// A VGG-style CNN being trained.
#[derive(Debug)]
pub struct Cnn {
    input_shape: [usize; 3],
    /// The features: a conv or a 2x2 max pool.
    features: Vec<Option<ConvIndex>>,
    /// Index of each classifier layer's weight in the variables (the bias follows).
    classifier: Vec<usize>,
    vars: Vec<Var>,
    /// BatchNorm running means and variances.
    buffers: Vec<Tensor>,
    /// Names of the variables, then of the buffers.
    names: Vec<String>,
}

impl Cnn {
    /// The network `conv` then `classifier` widths (hidden widths, then the classes), initialised
    /// from a seeded stream, layer by layer in order (weight row-major, then bias).
    pub fn init(conv: &ConvLayers, classifier: &[usize], init_seed: u64, device: &Device) -> candle_core::Result<Self> {
        let mut rng = Rng::new(init_seed, "init");
        let mut tensors = Vec::new();
        let [mut channels, mut height, mut width_px] = conv.input_shape;
        for layer in &conv.layers {
            match *layer {
                Layer::Conv(width) => {
                    let (w, b) = pytorch_default_init(&mut rng, channels * 9, width * channels * 9, width);
                    tensors.push(Tensor::from_vec(w, (width, channels, 3, 3), device)?);
                    tensors.push(Tensor::from_vec(b, width, device)?);
                    if conv.batch_norm {
                        tensors.push(Tensor::ones(width, candle_core::DType::F32, device)?);
                        tensors.push(Tensor::zeros(width, candle_core::DType::F32, device)?);
                    }
                    channels = width;
                }
                Layer::Pool => (height, width_px) = (height / 2, width_px / 2),
            }
        }
        let mut fan_in = channels * height * width_px;
        for &width in classifier {
            let (w, b) = pytorch_default_init(&mut rng, fan_in, width * fan_in, width);
            tensors.push(Tensor::from_vec(w, (width, fan_in), device)?);
            tensors.push(Tensor::from_vec(b, width, device)?);
            fan_in = width;
        }
        let mut stats = Vec::new();
        for layer in &conv.layers {
            if let (Layer::Conv(width), true) = (*layer, conv.batch_norm) {
                stats.push(Tensor::zeros(width, candle_core::DType::F32, device)?);
                stats.push(Tensor::ones(width, candle_core::DType::F32, device)?);
            }
        }
        tensors.extend(stats);
        Self::from_tensors(conv, classifier, &tensors)
    }

    /// A model holding (deep copies of) `tensors`, in [`Cnn::tensors`] order.
    pub fn from_tensors(conv: &ConvLayers, classifier: &[usize], tensors: &[Tensor]) -> candle_core::Result<Self> {
        let mut names = Vec::new();
        let mut stat_names = Vec::new();
        let mut features = Vec::new();
        let (mut index, mut n_stats) = (0, 0);
        for layer in &conv.layers {
            match layer {
                Layer::Conv(_) => {
                    let var = names.len();
                    names.extend([format!("features.{index}.weight"), format!("features.{index}.bias")]);
                    let norm = conv.batch_norm.then(|| {
                        let bn = index + 1;
                        names.extend([format!("features.{bn}.weight"), format!("features.{bn}.bias")]);
                        stat_names.extend([
                            format!("features.{bn}.running_mean"),
                            format!("features.{bn}.running_var"),
                        ]);
                        n_stats += 2;
                        (var + 2, n_stats - 2)
                    });
                    features.push(Some(ConvIndex { var, norm }));
                    // Conv2d, [BatchNorm2d,] ReLU: torchvision's `make_layers` indices.
                    index += if conv.batch_norm { 3 } else { 2 };
                }
                Layer::Pool => {
                    features.push(None);
                    index += 1;
                }
            }
        }
        let mut layers = Vec::new();
        for j in 0..classifier.len() {
            layers.push(names.len());
            // Linear, ReLU: the next Linear is two indices on.
            names.extend([
                format!("classifier.{}.weight", 2 * j),
                format!("classifier.{}.bias", 2 * j),
            ]);
        }
        let n_vars = names.len();
        names.extend(stat_names);
        if tensors.len() != names.len() {
            candle_core::bail!("this CNN has {} tensors, got {}", names.len(), tensors.len());
        }
        let vars = tensors[..n_vars]
            .iter()
            .map(|t| Var::from_tensor(&t.copy()?))
            .collect::<candle_core::Result<_>>()?;
        let buffers = tensors[n_vars..]
            .iter()
            .map(Tensor::copy)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            input_shape: conv.input_shape,
            features,
            classifier: layers,
            vars,
            buffers,
            names,
        })
    }

    /// The trainable variables (conv, BatchNorm and Linear weights and biases, in order).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// torchvision's names of [`Cnn::tensors`].
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Copies of the variables, then of the BatchNorm running statistics (mean, variance of each
    /// BatchNorm in order); later training steps do not change them.
    pub fn tensors(&self) -> candle_core::Result<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|v| v.as_detached_tensor().copy())
            .chain(self.buffers.iter().map(Tensor::copy))
            .collect()
    }

    /// Logits `[batch, classes]` of flattened images `x` (`[batch, C*H*W]`), BatchNorm in eval
    /// mode (running statistics).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.run(x, None)
    }

    /// Mean cross-entropy of a training batch (BatchNorm in train mode), updating the running
    /// statistics as PyTorch's train-mode forward does.
    pub fn train_loss(&mut self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let mut stats = Vec::new();
        let logits = self.run(x, Some(&mut stats))?;
        let batch = stats.into_iter().flat_map(|(mean, var)| [mean, var]);
        for (running, batch) in self.buffers.iter_mut().zip(batch) {
            *running = (running.affine(1.0 - MOMENTUM, 0.0)? + batch.affine(MOMENTUM, 0.0)?)?;
        }
        candle_nn::loss::cross_entropy(&logits, y)
    }

    /// The forward pass; with `batch_stats`, BatchNorms normalise with the batch's statistics and
    /// push each one's (mean, unbiased variance), detached.
    fn run(&self, x: &Tensor, mut batch_stats: Option<&mut Vec<(Tensor, Tensor)>>) -> candle_core::Result<Tensor> {
        let [c, h, w] = self.input_shape;
        let mut x = x.reshape((x.dim(0)?, c, h, w))?;
        for feature in &self.features {
            let Some(conv) = feature else {
                x = x.max_pool2d(2)?;
                continue;
            };
            let (weight, bias) = (self.vars[conv.var].as_tensor(), self.vars[conv.var + 1].as_tensor());
            x = conv2d(&x, weight, 1, 1)?.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
            if let Some((var, stat)) = conv.norm {
                let (gamma, beta) = (self.vars[var].as_tensor(), self.vars[var + 1].as_tensor());
                let (mean, variance) = match batch_stats.as_deref_mut() {
                    Some(stats) => {
                        let mean = x.mean_keepdim((0, 2, 3))?;
                        let variance = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
                        let count = (x.elem_count() / x.dim(1)?) as f64;
                        let unbiased = variance.affine(count / (count - 1.0).max(1.0), 0.0)?;
                        stats.push((mean.flatten_all()?.detach(), unbiased.flatten_all()?.detach()));
                        (mean, variance)
                    }
                    None => (
                        self.buffers[stat].reshape((1, (), 1, 1))?,
                        self.buffers[stat + 1].reshape((1, (), 1, 1))?,
                    ),
                };
                x = x
                    .broadcast_sub(&mean)?
                    .broadcast_div(&(variance + EPS)?.sqrt()?)?
                    .broadcast_mul(&gamma.reshape((1, (), 1, 1))?)?
                    .broadcast_add(&beta.reshape((1, (), 1, 1))?)?;
            }
            x = x.relu()?;
        }
        let mut x = x.flatten_from(1)?;
        for (j, &var) in self.classifier.iter().enumerate() {
            let (weight, bias) = (self.vars[var].as_tensor(), self.vars[var + 1].as_tensor());
            x = x.matmul(&weight.t()?)?.broadcast_add(bias)?;
            if j + 1 < self.classifier.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> ConvLayers {
        ConvLayers {
            input_shape: [1, 4, 4],
            layers: vec![Layer::Conv(2), Layer::Pool],
            batch_norm: true,
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn torchvision_names_running_statistics_and_copies() {
        let mut cnn = Cnn::init(&conv(), &[3], 0, &Device::Cpu).unwrap();
        assert_eq!(
            cnn.names(),
            [
                "features.0.weight",
                "features.0.bias",
                "features.1.weight",
                "features.1.bias",
                "classifier.0.weight",
                "classifier.0.bias",
                "features.1.running_mean",
                "features.1.running_var"
            ]
        );
        let x = Tensor::arange(0f32, 32.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 16))
            .unwrap();
        let y = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let conv_out = x
            .reshape((2, 1, 4, 4))
            .unwrap()
            .conv2d(cnn.vars()[0].as_tensor(), 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&cnn.vars()[1].as_tensor().reshape((1, 2, 1, 1)).unwrap())
            .unwrap();
        let mean = values(&conv_out.mean_keepdim((0, 2, 3)).unwrap());
        let loss = cnn.train_loss(&x, &y).unwrap().to_scalar::<f32>().unwrap();
        assert!(loss.is_finite());
        // PyTorch's update with momentum 0.1 from a running mean of 0.
        let running = values(&cnn.tensors().unwrap()[6]);
        for (r, m) in running.iter().zip(&mean) {
            assert!((r - 0.1 * m).abs() < 1e-5, "{running:?} vs 0.1 x {mean:?}");
        }
        // A copy computes the same function; training the original does not change the copy.
        let copy = Cnn::from_tensors(&conv(), &[3], &cnn.tensors().unwrap()).unwrap();
        let before = values(&copy.forward(&x).unwrap());
        assert_eq!(before, values(&cnn.forward(&x).unwrap()));
        cnn.train_loss(&x, &y).unwrap();
        assert_eq!(before, values(&copy.forward(&x).unwrap()));
        assert!(Cnn::from_tensors(&conv(), &[3], &cnn.tensors().unwrap()[1..]).is_err());
    }
}
