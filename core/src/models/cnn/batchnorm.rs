//! BatchNorm for the convolutional family, and what `--bn` does to the statistics of an
//! interpolated model.
//!
//! The running statistics of theta(a) = (1-a)·A + a·B are not the statistics of its activations:
//! blending them like every other tensor (`interpolate`) lets the activations' variance collapse
//! along the path and inflates barriers (Jordan et al. 2023, "REPAIR", section 3). `reset`
//! recomputes them as PyTorch does after `reset_running_stats()` with `momentum=None`: train-mode
//! passes over a reset set, the running mean being the average of the batch means and the running
//! variance the average of the batches' unbiased variances. `repair` also sets each BatchNorm's
//! weight and bias so that the mean and standard deviation of each output channel are the blend of
//! the endpoints' (measured in eval mode on the reset set), then resets. The PyTorch procedures
//! these reproduce are written out in `core/tests/fixtures/cnn/make_fixture.py`
//! (`reset_statistics`, `output_statistics`, `point`).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::names::Named;

/// PyTorch's default `eps` of `BatchNorm2d`, used for every BatchNorm.
pub const EPS: f64 = 1e-5;

/// How the BatchNorm statistics of an interpolated model are obtained (`--bn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Blended like every other tensor: biased (variance collapse), kept for comparison.
    Interpolate,
    /// Recomputed in train-mode passes over the reset set.
    #[default]
    Reset,
    /// REPAIR: each channel's output mean and std set to the blend of the endpoints', then reset.
    Repair,
}

impl Named for BnMode {
    const ALL: &'static [Self] = &[Self::Interpolate, Self::Reset, Self::Repair];

    fn name(self) -> &'static str {
        match self {
            Self::Interpolate => "interpolate",
            Self::Reset => "reset",
            Self::Repair => "repair",
        }
    }
}

/// The BatchNorm handling of an analysis: the mode and the reset set. Only models with BatchNorm
/// are affected; with `reset` and `repair`, every model evaluated (checkpoints too, so that the
/// endpoints of a path are computed like its interior) has its statistics recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnOptions {
    /// The mode.
    pub mode: BnMode,
    /// Images the statistics are computed on (`--bn-data`; `inputs` as in an eval set, labels
    /// unused); `None`: the eval set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The first this many examples of the reset set are used (all when it has fewer).
    pub examples: usize,
    /// Examples per train-mode pass; the running statistics average the batches' statistics.
    pub batch: usize,
}

impl Default for BnOptions {
    /// `reset` on the first 512 eval examples in batches of 128.
    fn default() -> Self {
        Self {
            mode: BnMode::Reset,
            data: None,
            examples: 512,
            batch: 128,
        }
    }
}

impl BnOptions {
    /// Whether these are the defaults.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Per-channel mean and variance, summed over batches until [`Moments::average`].
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Unbiased variance of each channel.
    pub var: Vec<f64>,
    batches: usize,
}

impl Moments {
    /// No batch yet, `channels` wide.
    pub fn new(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            var: vec![0.0; channels],
            batches: 0,
        }
    }

    /// Adds one batch's per-channel mean and unbiased variance of `x` (`[N, C, H, W]`), computed in
    /// f64 as PyTorch's CPU kernels do. Returns them, with the biased variance.
    fn add_batch(&mut self, x: &Tensor) -> candle_core::Result<BatchMoments> {
        let values = x.transpose(0, 1)?.flatten_from(1)?.to_dtype(DType::F64)?;
        let n = values.dim(1)?;
        if n < 2 {
            candle_core::bail!("a train-mode BatchNorm pass needs more than 1 value per channel, got {n}");
        }
        let mean = values.mean_keepdim(1)?;
        let var = values.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)?;
        let mean = mean.flatten_all()?.to_vec1::<f64>()?;
        let sum_sq = var.flatten_all()?.to_vec1::<f64>()?;
        let unbiased: Vec<f64> = sum_sq.iter().map(|s| s / (n - 1) as f64).collect();
        for (sum, m) in self.mean.iter_mut().zip(&mean) {
            *sum += m;
        }
        for (sum, v) in self.var.iter_mut().zip(&unbiased) {
            *sum += v;
        }
        self.batches += 1;
        Ok(BatchMoments {
            biased: sum_sq.iter().map(|s| s / n as f64).collect(),
            mean,
        })
    }

    /// The average over the batches added.
    pub fn average(mut self) -> Self {
        let n = self.batches.max(1) as f64;
        self.mean.iter_mut().chain(self.var.iter_mut()).for_each(|v| *v /= n);
        self.batches = 1;
        self
    }
}

/// One batch's statistics, for its train-mode normalisation.
struct BatchMoments {
    mean: Vec<f64>,
    biased: Vec<f64>,
}

/// How the BatchNorms of a model behave in one forward pass. The recorded moments are indexed
/// like the model's BatchNorms ([`crate::models::cnn::ConvNet::norms`]).
pub enum Pass {
    /// Eval mode: normalise with the running statistics.
    Eval,
    /// Train mode: normalise each batch with its own statistics and add them (of each input) to the moments.
    Train(Vec<Moments>),
    /// Eval mode, adding the moments of each output.
    Outputs(Vec<Moments>),
}

/// A `BatchNorm2d` in eval form: weight, bias and running statistics of `C` channels.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale (`weight`).
    pub weight: Vec<f32>,
    /// Shift (`bias`).
    pub bias: Vec<f32>,
    /// `running_mean`.
    pub mean: Vec<f32>,
    /// `running_var`.
    pub var: Vec<f32>,
    /// `[1, C, 1, 1]` scale and shift of the eval-mode affine map, on the model's device.
    eval: (Tensor, Tensor),
}

impl BatchNorm {
    /// A BatchNorm from its four tensors (`[C]` each, read back to the host).
    pub fn new(weight: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor) -> candle_core::Result<Self> {
        let host = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        let device = weight.device().clone();
        let (weight, bias, mean, var) = (host(weight)?, host(bias)?, host(mean)?, host(var)?);
        let eval = affine(&weight, &bias, &mean, &var, &device)?;
        Ok(Self {
            weight,
            bias,
            mean,
            var,
            eval,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    /// Replaces the running statistics (and the eval-mode map).
    pub fn set_statistics(&mut self, moments: &Moments) -> candle_core::Result<()> {
        self.mean = moments.mean.iter().map(|&v| v as f32).collect();
        self.var = moments.var.iter().map(|&v| v as f32).collect();
        self.refresh()
    }

    /// Replaces weight and bias (and the eval-mode map).
    pub fn set_affine(&mut self, weight: Vec<f32>, bias: Vec<f32>) -> candle_core::Result<()> {
        self.weight = weight;
        self.bias = bias;
        self.refresh()
    }

    fn refresh(&mut self) -> candle_core::Result<()> {
        let device = self.eval.0.device().clone();
        self.eval = affine(&self.weight, &self.bias, &self.mean, &self.var, &device)?;
        Ok(())
    }

    /// Applies the BatchNorm number `index` of its model to `x` (`[N, C, H, W]`) in `pass`.
    pub fn forward(&self, index: usize, x: &Tensor, pass: &mut Pass) -> candle_core::Result<Tensor> {
        let (scale, shift) = match pass {
            Pass::Eval | Pass::Outputs(_) => self.eval.clone(),
            Pass::Train(moments) => {
                let batch = moments[index].add_batch(x)?;
                affine_f64(&self.weight, &self.bias, &batch.mean, &batch.biased, x.device())?
            }
        };
        let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
        if let Pass::Outputs(moments) = pass {
            moments[index].add_batch(&y)?;
        }
        Ok(y)
    }
}

/// The `[1, C, 1, 1]` scale `w / sqrt(var + eps)` and shift `b - mean·scale` (PyTorch's eval-mode
/// BatchNorm), computed in f64 and rounded to f32.
fn affine(
    weight: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    affine_f64(weight, bias, &widen(mean), &widen(var), device)
}

fn affine_f64(
    weight: &[f32],
    bias: &[f32],
    mean: &[f64],
    var: &[f64],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let c = weight.len();
    let scale: Vec<f64> = (0..c).map(|i| f64::from(weight[i]) / (var[i] + EPS).sqrt()).collect();
    let shift: Vec<f32> = (0..c)
        .map(|i| (f64::from(bias[i]) - mean[i] * scale[i]) as f32)
        .collect();
    let scale: Vec<f32> = scale.iter().map(|&s| s as f32).collect();
    Ok((
        Tensor::from_vec(scale, (1, c, 1, 1), device)?,
        Tensor::from_vec(shift, (1, c, 1, 1), device)?,
    ))
}

/// REPAIR's BatchNorm weight and bias at `alpha`: each channel's output std and mean blended
/// between the endpoints' (`a`, `b`, averaged [`Moments`] of the outputs, std = sqrt of the
/// variance), the weight keeping the sign of the blended model's (`weight`; +1 for 0).
pub fn repair_affine(weight: &[f32], a: &Moments, b: &Moments, alpha: f64) -> (Vec<f32>, Vec<f32>) {
    let (wa, wb) = (f64::from((1.0 - alpha) as f32), f64::from(alpha as f32));
    let std = |m: &Moments, i: usize| m.var[i].max(0.0).sqrt();
    (0..weight.len())
        .map(|i| {
            let s = (wa * std(a, i) + wb * std(b, i)) as f32;
            let mean = (wa * a.mean[i] + wb * b.mean[i]) as f32;
            (if weight[i] < 0.0 { -s } else { s }, mean)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bn(weight: Vec<f32>, bias: Vec<f32>, mean: Vec<f32>, var: Vec<f32>) -> BatchNorm {
        let t = |v: Vec<f32>| Tensor::new(v, &Device::Cpu).unwrap();
        BatchNorm::new(&t(weight), &t(bias), &t(mean), &t(var)).unwrap()
    }

    #[test]
    fn eval_mode_uses_running_statistics() {
        let norm = bn(vec![2.0, 1.0], vec![0.5, 0.0], vec![1.0, -1.0], vec![4.0, 1.0]);
        let x = Tensor::new(&[1.0f32, 3.0, 0.0, -1.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 2, 1))
            .unwrap();
        let y = norm.forward(0, &x, &mut Pass::Eval).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s0 = 2.0 / (4.0f64 + EPS).sqrt();
        let s1 = 1.0 / (1.0f64 + EPS).sqrt();
        let expected = [0.5, 2.0 * s0 + 0.5, s1, 0.0];
        for (got, want) in y.iter().zip(expected) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn train_mode_normalises_by_the_batch_and_averages_unbiased_variances() {
        let norm = bn(vec![1.0], vec![0.0], vec![0.0], vec![1.0]);
        let batch = |v: [f32; 4]| Tensor::new(&v, &Device::Cpu).unwrap().reshape((4, 1, 1, 1)).unwrap();
        let mut pass = Pass::Train(vec![Moments::new(1)]);
        let y = norm.forward(0, &batch([1.0, 2.0, 3.0, 4.0]), &mut pass).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Mean 2.5, biased variance 1.25.
        assert!((f64::from(y[0]) + 1.5 / (1.25f64 + EPS).sqrt()).abs() < 1e-6, "{y:?}");
        norm.forward(0, &batch([0.0, 0.0, 0.0, 4.0]), &mut pass).unwrap();
        let Pass::Train(moments) = pass else { unreachable!() };
        let m = moments.into_iter().next().unwrap().average();
        assert_eq!(m.mean, [(2.5 + 1.0) / 2.0]);
        // Unbiased variances 5/3 and 4.
        assert!((m.var[0] - (5.0 / 3.0 + 4.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn one_value_per_channel_is_an_error() {
        let norm = bn(vec![1.0], vec![0.0], vec![0.0], vec![1.0]);
        let x = Tensor::zeros((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let err = norm
            .forward(0, &x, &mut Pass::Train(vec![Moments::new(1)]))
            .unwrap_err();
        assert!(err.to_string().contains("more than 1 value per channel"), "{err}");
    }

    #[test]
    fn repair_blends_std_and_mean_and_keeps_the_sign() {
        let mut a = Moments::new(2);
        a.mean = vec![1.0, 0.0];
        a.var = vec![4.0, 1.0];
        let mut b = Moments::new(2);
        b.mean = vec![3.0, 2.0];
        b.var = vec![16.0, 9.0];
        let (w, bias) = repair_affine(&[0.5, -0.1], &a, &b, 0.25);
        assert_eq!(w, [0.75 * 2.0 + 0.25 * 4.0, -(0.75 + 0.25 * 3.0)]);
        assert_eq!(bias, [1.5, 0.5]);
    }
}
