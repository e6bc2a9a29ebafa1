//! The trained model: a ReLU MLP whose tensors are named and shaped like PyTorch `nn.Linear` layers
//! (`fc1.weight` `[out, in]`, `fc1.bias` `[out]`, `fc2.*`, ...), initialised like PyTorch.

use candle_core::{D, DType, Device, Tensor, Var};

use super::rng::Rng;

/// A multilayer perceptron `layers[0] -> layers[1] -> ... -> layers[n]` with ReLU between layers.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<usize>,
    /// `fc1.weight`, `fc1.bias`, `fc2.weight`, ...: alternately weight and bias.
    params: Vec<Var>,
}

impl Mlp {
    /// PyTorch's default `nn.Linear` init from a seeded stream: kaiming-uniform weights with
    /// a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same interval;
    /// drawn layer by layer, weight (row-major) then bias.
    pub fn init(layers: &[usize], init_seed: u64, device: &Device) -> candle_core::Result<Self> {
        let mut rng = Rng::new(init_seed, "init");
        let mut params = Vec::with_capacity(2 * layers.len());
        for pair in layers.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let (w, b) = pytorch_default_init(&mut rng, fan_in, fan_out * fan_in, fan_out);
            params.push(Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), device)?)?);
            params.push(Var::from_tensor(&Tensor::from_vec(b, fan_out, device)?)?);
        }
        Ok(Self {
            layers: layers.to_vec(),
            params,
        })
    }

    /// A model holding (deep copies of) the given tensors, in [`Mlp::tensors`] order.
    pub fn from_tensors(layers: &[usize], tensors: &[Tensor]) -> candle_core::Result<Self> {
        if tensors.len() != 2 * (layers.len() - 1) {
            candle_core::bail!(
                "an MLP with layers {layers:?} has {} tensors, got {}",
                2 * (layers.len() - 1),
                tensors.len()
            );
        }
        let params = tensors
            .iter()
            .map(|t| Var::from_tensor(&t.copy()?))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            layers: layers.to_vec(),
            params,
        })
    }

    /// Layer widths, input first.
    pub fn layers(&self) -> &[usize] {
        &self.layers
    }

    /// The trainable variables, weight and bias of each layer in order.
    pub fn vars(&self) -> &[Var] {
        &self.params
    }

    /// Copies of the parameters (for checkpoints and forks), in [`Mlp::vars`] order; later
    /// training steps do not change them.
    pub fn tensors(&self) -> candle_core::Result<Vec<Tensor>> {
        self.params.iter().map(|v| v.as_detached_tensor().copy()).collect()
    }

    /// PyTorch names of the parameters: `fc1.weight`, `fc1.bias`, `fc2.weight`, ...
    pub fn names(&self) -> Vec<String> {
        (1..self.layers.len())
            .flat_map(|i| [format!("fc{i}.weight"), format!("fc{i}.bias")])
            .collect()
    }

    /// Logits `[batch, classes]` for inputs `[batch, layers[0]]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let n = self.params.len() / 2;
        for (i, wb) in self.params.chunks(2).enumerate() {
            h = h.matmul(&wb[0].as_tensor().t()?)?.broadcast_add(wb[1].as_tensor())?;
            if i + 1 < n {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Mean cross-entropy of the logits for `x` against labels `y` (u32).
    pub fn loss(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        let logits = self.forward(x)?;
        candle_nn::loss::cross_entropy(&logits, y)
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.params.iter().map(|v| v.elem_count()).sum()
    }

    /// Accuracy of the model on `x`, `y` (u32 labels), as a fraction.
    pub fn accuracy(&self, x: &Tensor, y: &Tensor) -> candle_core::Result<f32> {
        let pred = self.forward(x)?.argmax(D::Minus1)?;
        let correct = pred.eq(y)?.to_dtype(DType::F32)?.mean_all()?;
        correct.to_scalar::<f32>()
    }
}

/// PyTorch's default init of a `Linear` or `Conv2d` layer with `fan_in` inputs per output:
/// `n_weights` weights then `n_biases` biases, all from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
/// (kaiming-uniform with a = sqrt(5) for the weights), drawn in that order from `rng`.
pub(super) fn pytorch_default_init(
    rng: &mut Rng,
    fan_in: usize,
    n_weights: usize,
    n_biases: usize,
) -> (Vec<f32>, Vec<f32>) {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let w = (0..n_weights).map(|_| rng.uniform(-bound, bound)).collect();
    let b = (0..n_biases).map(|_| rng.uniform(-bound, bound)).collect();
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_names_and_init_bounds() {
        let m = Mlp::init(&[64, 128, 10], 0, &Device::Cpu).unwrap();
        assert_eq!(m.names(), ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
        assert_eq!(m.vars()[0].dims(), [128, 64]);
        assert_eq!(m.vars()[3].dims(), [10]);
        assert_eq!(m.n_params(), 64 * 128 + 128 + 128 * 10 + 10);
        let w: Vec<f32> = m.vars()[0].flatten_all().unwrap().to_vec1().unwrap();
        assert!(w.iter().all(|x| x.abs() <= 0.125));
        let x = Tensor::zeros((3, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), [3, 10]);
    }

    #[test]
    fn init_depends_only_on_the_seed() {
        let a = Mlp::init(&[4, 3, 2], 5, &Device::Cpu).unwrap().tensors().unwrap();
        let b = Mlp::init(&[4, 3, 2], 5, &Device::Cpu).unwrap().tensors().unwrap();
        let c = Mlp::init(&[4, 3, 2], 6, &Device::Cpu).unwrap().tensors().unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a[0]), v(&b[0]));
        assert_ne!(v(&a[0]), v(&c[0]));
    }
}
