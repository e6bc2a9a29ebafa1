//! SGD with momentum, exactly PyTorch's `torch.optim.SGD(momentum=mu)` (no dampening, no Nesterov,
//! no weight decay): `buf = mu * buf + grad; param -= lr * buf`, with `buf = grad` on the first step.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// The optimiser and its state (one momentum buffer per parameter).
#[derive(Debug, Clone)]
pub struct Sgd {
    lr: f64,
    momentum: f64,
    buffers: Vec<Tensor>,
}

impl Sgd {
    /// A fresh optimiser for `vars`, momentum buffers at zero.
    pub fn new(vars: &[Var], lr: f64, momentum: f64) -> candle_core::Result<Self> {
        let buffers = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { lr, momentum, buffers })
    }

    /// An optimiser resuming from saved momentum buffers (a fork continues its parent's momentum).
    pub fn with_buffers(lr: f64, momentum: f64, buffers: Vec<Tensor>) -> Self {
        Self { lr, momentum, buffers }
    }

    /// The momentum buffers, in the order of the variables.
    pub fn buffers(&self) -> &[Tensor] {
        &self.buffers
    }

    /// One update of `vars` from `grads`; a variable without a gradient is left unchanged.
    pub fn step(&mut self, vars: &[Var], grads: &GradStore) -> candle_core::Result<()> {
        if vars.len() != self.buffers.len() {
            candle_core::bail!(
                "optimiser state for {} tensors, model has {}",
                self.buffers.len(),
                vars.len()
            );
        }
        for (var, buf) in vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            *buf = (buf.affine(self.momentum, 0.0)? + grad)?.detach();
            let updated = (var.as_tensor() - buf.affine(self.lr, 0.0)?)?;
            var.set(&updated)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_pytorch_update_rule() {
        // f(p) = p^2 / 2, grad = p. p0 = 1, lr 0.1, mu 0.9:
        // buf1 = 1, p1 = 0.9; buf2 = 0.9 + 0.9 = 1.8, p2 = 0.9 - 0.18 = 0.72.
        let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(std::slice::from_ref(&p), 0.1, 0.9).unwrap();
        for _ in 0..2 {
            let loss = (p.as_tensor().sqr().unwrap() * 0.5).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(std::slice::from_ref(&p), &grads).unwrap();
        }
        let v = p.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v - 0.72).abs() < 1e-6, "{v}");
        let b = opt.buffers()[0].to_vec1::<f32>().unwrap()[0];
        assert!((b - 1.8).abs() < 1e-6, "{b}");
    }
}
