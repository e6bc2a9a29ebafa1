//! Linear layers applied to every token as one matrix product.
//!
//! candle-nn's [`Linear`] multiplies a `[B, L, in]` input batch by batch (the weight broadcast over
//! `B`): on a GPU that is a batched GEMM of `B` thin products. [`Dense`] folds the leading
//! dimensions into rows first, `[B * L, in] x [in, out]`, the one large product transformers'
//! `nn.Linear` runs (`torch.nn.functional.linear` flattens the same way), then restores the shape.
//! Inputs are made contiguous first, as the CUDA matrix product needs. On the CPU the product is
//! [`kernels::linear`] (one `gemm` product, the bias added in it, an MLP's activation applied in
//! place to it).

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::models::transformer::causal::Activation;
use crate::models::transformer::kernels::{self, Then};

/// A linear layer (`y = x Wᵀ + b`, `W` stored `[out, in]`) over the last dimension of any input.
#[derive(Clone, Debug)]
pub struct Dense(Linear);

impl Dense {
    /// Wraps a candle-nn linear layer.
    pub fn new(linear: Linear) -> Self {
        Self(linear)
    }

    /// `activation(x Wᵀ + b)`: on the CPU the activation runs in place on the product (one buffer
    /// for an MLP's widest state instead of two), elsewhere as a separate operation.
    pub fn forward_activated(&self, x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
        self.apply(x, Then::Activate(activation))
    }

    /// The layer, then `then`.
    fn apply(&self, x: &Tensor, then: Then) -> candle_core::Result<Tensor> {
        let finish = |y: Tensor| match then {
            Then::Nothing => Ok(y),
            Then::Activate(activation) => activation.apply(&y),
        };
        let Some((&inputs, leading)) = x.dims().split_last() else {
            return finish(self.0.forward(x)?);
        };
        // Contiguous rows: CUDA's matrix product refuses a strided view (a first-token slice, say).
        let rows = x.contiguous()?.reshape((leading.iter().product::<usize>(), inputs))?;
        let y = if kernels::supports(&rows) {
            kernels::linear(&rows, self.0.weight(), self.0.bias(), then)?
        } else {
            finish(self.0.forward(&rows)?)?
        };
        let mut shape = leading.to_vec();
        shape.push(y.dim(1)?);
        y.reshape(shape)
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, Then::Nothing)
    }
}

/// `inputs -> outputs` with a bias, from `vb`'s `weight` and `bias` (as [`candle_nn::linear`]).
pub fn dense(inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    candle_nn::linear(inputs, outputs, vb).map(Dense)
}

/// `inputs -> outputs`, with a bias when `bias` says so (as [`candle_nn::linear_b`]).
pub fn dense_with_bias_if(bias: bool, inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    candle_nn::linear_b(inputs, outputs, bias, vb).map(Dense)
}

/// `inputs -> outputs` without a bias (as [`candle_nn::linear_no_bias`]).
pub fn dense_no_bias(inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    candle_nn::linear_no_bias(inputs, outputs, vb).map(Dense)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    use crate::models::transformer::kernels::largest_difference;

    #[test]
    fn every_token_gets_the_linear_map() {
        let device = Device::Cpu;
        let weight = Tensor::arange(0f32, 12.0, &device).unwrap().reshape((3, 4)).unwrap();
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &device).unwrap();
        let layer = Dense::new(Linear::new(weight.clone(), Some(bias.clone())));
        let x = (Tensor::arange(0f32, 24.0, &device).unwrap().reshape((2, 3, 4)).unwrap() * 0.1).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_eq!(y.dims(), [2, 3, 3]);
        for (b, t) in [(0, 0), (0, 2), (1, 1)] {
            let token = x.i((b, t)).unwrap().unsqueeze(1).unwrap();
            let expected = (weight.matmul(&token).unwrap().squeeze(1).unwrap() + &bias).unwrap();
            let diff = largest_difference(&y.i((b, t)).unwrap(), &expected);
            assert!(diff < 1e-5, "token ({b}, {t}) differs by {diff}");
        }
        // Without a bias, the product alone.
        let plain = Dense::new(Linear::new(weight.clone(), None)).forward(&x).unwrap();
        assert!(largest_difference(&plain.broadcast_add(&bias).unwrap(), &y) < 1e-5);
        // A non-contiguous input (a transposed view) is read correctly too.
        let yt = layer.forward(&x.transpose(0, 1).unwrap()).unwrap();
        assert!(largest_difference(&yt, &y.transpose(0, 1).unwrap()) < 1e-5);
    }
}
