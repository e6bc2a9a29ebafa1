//! The layers the convolutional models are built of, read from checkpoint tensors by name:
//! `Conv2d` (square kernels, padding `k / 2`), `Linear`, adaptive average pooling and max pooling
//! as PyTorch computes them.

use std::collections::HashMap;

use candle_core::{DType, Module, Tensor};
use candle_nn::Linear;

use crate::models::cnn::batchnorm::BatchNorm;
use crate::models::cnn::im2col::{Geometry, Im2Col};
use crate::models::transformer::kernels::{self, Then};

/// The tensors of one checkpoint, on the model's device, by name.
pub type Tensors = HashMap<String, Tensor>;

/// Tensor `name`, or an error naming it.
pub fn tensor<'a>(tensors: &'a Tensors, name: &str) -> candle_core::Result<&'a Tensor> {
    tensors
        .get(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor `{name}`")))
}

/// The shape of tensor `name` if it exists.
pub fn dims<'a>(shapes: &'a HashMap<String, Vec<usize>>, name: &str) -> Option<&'a [usize]> {
    shapes.get(name).map(Vec::as_slice)
}

/// A `Conv2d` with a square kernel (`weight` `[out, in, k, k]`), optional bias, `padding = k / 2`.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// The conv `prefix` (`{prefix}.weight`, optional `{prefix}.bias`) at `stride`.
    pub fn load(tensors: &Tensors, prefix: &str, stride: usize) -> candle_core::Result<Self> {
        let weight = tensor(tensors, &format!("{prefix}.weight"))?.clone();
        let (_, _, k, k2) = weight.dims4()?;
        if k != k2 {
            candle_core::bail!("`{prefix}.weight`: only square kernels are supported, got {k}x{k2}");
        }
        let bias = match tensors.get(&format!("{prefix}.bias")) {
            Some(b) => Some(b.reshape((1, b.elem_count(), 1, 1))?),
            None => None,
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding: k / 2,
        })
    }

    /// Applies the conv (and its bias) to `[N, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = conv2d(x, &self.weight, self.stride, self.padding)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Most elements of one im2col matrix: a larger batch is convolved in chunks of images.
const IM2COL_ELEMENTS: usize = 1 << 23;

/// PyTorch's `conv2d(x, weight, stride=stride, padding=padding)` without bias, for `x`
/// `[B, C, H, W]` and a square `weight` `[O, C, k, k]`. On the CPU (f32, f64) as im2col
/// ([`Im2Col`]) and one matmul per chunk of images; elsewhere, and for 1x1 convolutions with
/// stride 1 (a plain matmul there), candle's `conv2d`. candle's CPU conv2d builds its im2col tiles
/// image by image and multiplies each image separately, which was over half of an analysis of the
/// 8x8 CNN demo (`perf`), and its backward pass (`conv_transpose2d`, one dot product per output
/// value) about half of the demo's training; here the backward pass is col2im and a matmul.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
    let (o, c, k, k2) = weight.dims4()?;
    let g = Geometry::new(x.dims(), k, stride, padding)?;
    if g.channels != c || k != k2 {
        candle_core::bail!(
            "conv2d: input {:?}, weight {:?}: expected [B, C, H, W] and a square [O, C, k, k]",
            x.dims(),
            weight.dims()
        );
    }
    let own = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if !own || (k == 1 && stride == 1 && padding == 0) {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    let (ho, wo) = g.output();
    let weight = weight.reshape((o, g.rows()))?;
    let per_image = g.rows() * ho * wo;
    let chunk = (IM2COL_ELEMENTS / per_image.max(1)).clamp(1, g.batch.max(1));
    let op = Im2Col {
        kernel: k,
        stride,
        padding,
    };
    let mut outputs = Vec::with_capacity(g.batch.div_ceil(chunk));
    for first in (0..g.batch).step_by(chunk) {
        let images = chunk.min(g.batch - first);
        let columns = x.narrow(0, first, images)?.contiguous()?.apply_op1(op)?;
        let product = if kernels::supports(&columns) && !weight.track_op() && !columns.track_op() {
            // Without gradients, in f32: the product's output columns (positions) cut into one
            // slice per thread (2-5% faster on the `cnn_path` bench than candle's matmul).
            kernels::linear(&weight, &columns.t()?, None, Then::Nothing)?
        } else {
            weight.matmul(&columns)?
        };
        outputs.push(product.reshape((o, images, ho, wo))?.transpose(0, 1)?);
    }
    Tensor::cat(&outputs, 0)
}

/// A `BatchNorm2d` read from `{prefix}.weight`, `.bias`, `.running_mean`, `.running_var`.
pub fn batch_norm(tensors: &Tensors, prefix: &str) -> candle_core::Result<BatchNorm> {
    let get = |s: &str| tensor(tensors, &format!("{prefix}.{s}"));
    BatchNorm::new(get("weight")?, get("bias")?, get("running_mean")?, get("running_var")?)
}

/// A `Linear` (`{prefix}.weight` `[out, in]`, optional bias).
pub fn linear(tensors: &Tensors, prefix: &str) -> candle_core::Result<Linear> {
    let weight = tensor(tensors, &format!("{prefix}.weight"))?.clone();
    Ok(Linear::new(weight, tensors.get(&format!("{prefix}.bias")).cloned()))
}

/// Applies the first `upto` of the linear `layers` in order, each but the last of all followed by
/// a ReLU (torchvision's VGG classifier without its dropouts, which are inactive in eval mode):
/// `upto = layers.len()` gives the logits, a smaller `upto` the input of layer `upto`.
pub fn classifier(layers: &[Linear], x: Tensor, upto: usize) -> candle_core::Result<Tensor> {
    let mut x = x;
    for (i, layer) in layers.iter().enumerate().take(upto) {
        x = layer.forward(&x)?;
        if i + 1 < layers.len() {
            x = x.relu()?;
        }
    }
    Ok(x)
}

/// PyTorch's `AdaptiveAvgPool2d(size)` on `[N, C, H, W]`: output cell `(i, j)` averages rows
/// `floor(i·H/size) .. ceil((i+1)·H/size)` and the columns likewise (one average pool when the
/// size divides the map).
pub fn adaptive_avg_pool(x: &Tensor, size: usize) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h % size == 0 && w % size == 0 {
        let (kh, kw) = (h / size, w / size);
        if (kh, kw) == (1, 1) {
            return Ok(x.clone());
        }
        return x.avg_pool2d_with_stride((kh, kw), (kh, kw));
    }
    let window = |i: usize, n: usize| (i * n / size, ((i + 1) * n).div_ceil(size));
    let mut rows = Vec::with_capacity(size);
    for i in 0..size {
        let (r0, r1) = window(i, h);
        let band = x.narrow(2, r0, r1 - r0)?.mean_keepdim(2)?;
        let mut cells = Vec::with_capacity(size);
        for j in 0..size {
            let (c0, c1) = window(j, w);
            cells.push(band.narrow(3, c0, c1 - c0)?.mean_keepdim(3)?);
        }
        rows.push(Tensor::cat(&cells, 3)?);
    }
    Tensor::cat(&rows, 2)
}

/// `MaxPool2d(kernel, stride, padding)` on an input `>= 0` (after a ReLU), where padding with
/// zeros gives PyTorch's result (its padding is -inf, but every window holds a real value `>= 0`).
pub fn max_pool_nonnegative(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
    let x = if padding > 0 {
        x.pad_with_zeros(2, padding, padding)?
            .pad_with_zeros(3, padding, padding)?
    } else {
        x.clone()
    };
    x.max_pool2d_with_stride(kernel, stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn im2col_conv2d_is_candles_conv2d_in_value_and_gradient() {
        use candle_core::Var;
        let device = Device::Cpu;
        let random = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &device).unwrap()).unwrap();
        let largest = |a: &Tensor, b: &Tensor| {
            assert_eq!(a.dims(), b.dims());
            let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (a, b) = (values(a), values(b));
            a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
        };
        // (kernel, stride, padding): the 3x3 convs, a strided 3x3, the ImageNet stem's 7x7 with
        // stride 2, a strided 1x1 shortcut, a plain 1x1, a 2x2 without padding.
        for (k, stride, padding) in [(3, 1, 1), (3, 2, 1), (7, 2, 3), (1, 2, 0), (1, 1, 0), (2, 1, 0)] {
            let x = random(&[3, 2, 9, 7]);
            let weight = random(&[4, 2, k, k]);
            let ours = conv2d(&x, &weight, stride, padding).unwrap();
            let candles = x.conv2d(&weight, padding, stride, 1, 1).unwrap();
            let case = format!("k {k}, stride {stride}, padding {padding}");
            assert!(largest(&ours, &candles) < 1e-5, "{case}");
            // Without gradients (evaluation): the product runs on lineage's GEMM kernel.
            let evaluated = conv2d(&x.as_tensor().detach(), &weight.as_tensor().detach(), stride, padding).unwrap();
            assert!(largest(&evaluated, &candles) < 1e-5, "{case}, without gradients");
            // A loss weighting every output differently, so that each gradient entry is checked.
            let weights = Tensor::randn(0f32, 1.0, ours.dims(), &device).unwrap();
            let gradients = |y: &Tensor| y.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
            let (g1, g2) = (gradients(&ours), gradients(&candles));
            for var in [x.as_tensor(), weight.as_tensor()] {
                assert!(largest(g1.get(var).unwrap(), g2.get(var).unwrap()) < 1e-4, "{case}");
            }
        }
        // f64, a batch cut into chunks (11 images of 3 x 9 x 64 x 64 positions each), and inputs
        // that do not fit.
        let x = Tensor::randn(0f64, 1.0, (2, 1, 5, 5), &device).unwrap();
        let weight = Tensor::randn(0f64, 1.0, (2, 1, 3, 3), &device).unwrap();
        let diff = (conv2d(&x, &weight, 1, 1).unwrap() - x.conv2d(&weight, 1, 1, 1, 1).unwrap()).unwrap();
        assert!(diff.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() < 1e-12);
        let x = random(&[11, 3, 64, 64]);
        let weight = random(&[2, 3, 3, 3]);
        assert!(
            largest(
                &conv2d(&x, &weight, 1, 1).unwrap(),
                &x.conv2d(&weight, 1, 1, 1, 1).unwrap()
            ) < 1e-4
        );
        let x = random(&[1, 2, 2, 2]);
        assert!(conv2d(&x, &random(&[1, 2, 3, 3]), 1, 0).is_err());
        assert!(conv2d(&x, &random(&[1, 3, 1, 1]), 1, 0).is_err());
    }

    #[test]
    fn adaptive_pool_matches_pytorch_windows() {
        // 3x3 map to 2x2: windows rows/cols 0..2 and 1..3 (PyTorch's floor/ceil rule).
        let x = Tensor::arange(0f32, 9.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let y = adaptive_avg_pool(&x, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, [2.0, 3.0, 5.0, 6.0]);
        // 1x1 to 2x2 replicates; 4x4 to 2x2 is a 2x2 average pool.
        let one = Tensor::new(&[7f32], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 1))
            .unwrap();
        let y = adaptive_avg_pool(&one, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, [7.0; 4]);
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let y = adaptive_avg_pool(&x, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y, [2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn padded_max_pool_of_a_nonnegative_map() {
        // 4x4 map, kernel 3, stride 2, padding 1 (the ImageNet stem's pool): 2x2 output.
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let y = max_pool_nonnegative(&x, 3, 2, 1).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [5.0, 7.0, 13.0, 15.0]
        );
    }
}
