//! The layers the convolutional models are built of, read from checkpoint tensors by name:
//! `Conv2d` (square kernels, padding `k / 2`), `Linear`, adaptive average pooling and max pooling
//! as PyTorch computes them.

use std::collections::HashMap;

use candle_core::{Module, Tensor};
use candle_nn::Linear;

use crate::models::cnn::batchnorm::BatchNorm;

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
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
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

/// Applies linear layers in order, with a ReLU between consecutive ones (torchvision's VGG
/// classifier without its dropouts, which are inactive in eval mode).
pub fn classifier(layers: &[Linear], x: Tensor) -> candle_core::Result<Tensor> {
    let mut x = x;
    for (i, layer) in layers.iter().enumerate() {
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
