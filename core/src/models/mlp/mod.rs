//! The `mlp` model family: a chain of Linear layers with an activation in between, evaluated on f32
//! features.
//!
//! Speed: the first layer is linear in the parameters, so for theta(a) = (1-a)·A + a·B
//! `X·W1(a)ᵀ + b1(a) = (1-a)·(X·W1_Aᵀ + b1_A) + a·(X·W1_Bᵀ + b1_B)`. [`MlpEvaluator::prepare`]
//! computes the bracketed first-layer outputs once per checkpoint; a point on a path then blends
//! them (exact up to float rounding) and runs only the remaining layers, with their blended
//! weights, as single-threaded GEMMs. Many (pair, alpha) points run in parallel on rayon's pool,
//! each thread reusing its own scratch buffers.

mod forward;
pub(crate) mod kernels;
mod spec;

pub use spec::{Activation, LinearLayer, MlpSpec, linear_chain, natural_cmp};

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use lineage_loaders::ParamSet;
use rayon::prelude::*;

use crate::data::eval_data::EvalData;
use crate::data::features::Features;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::evaluator::{EvalResult, Evaluator, Prepared};
use forward::{Dense, MlpPoint};

/// Evaluates MLP parameter sets of one [`MlpSpec`] on one eval set.
#[derive(Debug, Clone)]
pub struct MlpEvaluator {
    /// Identifies the eval set (shared by clones), so checkpoints prepared for another one are refused.
    id: u64,
    spec: MlpSpec,
    /// `[N, D]` row-major features.
    inputs: Vec<f32>,
    labels: Vec<u32>,
    /// Rows per block of work (bounds scratch memory and keeps it in cache).
    block_rows: usize,
}

impl MlpEvaluator {
    /// An evaluator of `spec` on `data`; checks that the data has `spec.n_inputs()` f32 features and
    /// labels below `spec.n_classes()`.
    pub fn new(spec: MlpSpec, data: &EvalData) -> Result<Self> {
        if data.is_token_ids() {
            return Err(CoreError::Model(format!(
                "{} takes f32 features, but the eval data holds token ids (`input_ids`)",
                spec.describe()
            )));
        }
        if data.width() != spec.n_inputs() {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "{} per example, but the zoo's {} takes {} input features",
                    data.width(),
                    spec.describe(),
                    spec.n_inputs()
                ),
            ));
        }
        if let Some((i, &label)) = data
            .labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= spec.n_classes())
        {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "label {label} of example {i} is out of range for the zoo's {} ({} classes)",
                    spec.describe(),
                    spec.n_classes()
                ),
            ));
        }
        let inputs = data
            .inputs
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| CoreError::Model(format!("eval inputs: {e}")))?;
        let widest = spec.layers.iter().copied().max().unwrap_or(1).max(1);
        let block_rows = (BLOCK_ELEMS / widest).clamp(MIN_BLOCK_ROWS, MAX_BLOCK_ROWS);
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            id,
            spec,
            inputs,
            labels: data.labels.clone(),
            block_rows,
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Checks that `params` fits the architecture.
    pub fn check(&self, params: &ParamSet) -> Result<()> {
        self.spec.check(params).map(|_| ())
    }

    /// The prepared state of a checkpoint, or an error if it came from another evaluator.
    fn point<'a>(&self, prepared: &'a Prepared) -> Result<&'a MlpPoint> {
        let point = prepared
            .downcast_ref::<MlpPoint>()
            .ok_or_else(|| CoreError::InvalidArgument("checkpoint was prepared by a different evaluator".into()))?;
        if point.evaluator != self.id {
            return Err(CoreError::InvalidArgument(
                "checkpoint was prepared by an evaluator with another architecture or eval set".into(),
            ));
        }
        Ok(point)
    }
}

/// Target number of f32 values in one activation block (256 KiB: stays in L2 cache).
const BLOCK_ELEMS: usize = 1 << 16;
/// Bounds on rows per block.
const MIN_BLOCK_ROWS: usize = 16;
const MAX_BLOCK_ROWS: usize = 512;

impl Evaluator for MlpEvaluator {
    fn describe(&self) -> String {
        format!("{} on {} examples", self.spec.describe(), self.labels.len())
    }

    fn n_examples(&self) -> usize {
        self.labels.len()
    }

    fn permutation_spec(&self, params: &ParamSet) -> Result<PermutationSpec> {
        Ok(PermutationSpec::mlp(&self.spec.check(params)?))
    }

    fn prepare(&self, params: &ParamSet) -> Result<Prepared> {
        let chain = self.spec.check(params)?;
        let mut layers = chain
            .iter()
            .enumerate()
            .map(|(i, layer)| Dense::from_params(params, layer, i == 0))
            .collect::<Result<Vec<_>>>()?;
        let rest = layers.split_off(1);
        let first = forward::first_layer(&layers[0], &self.inputs, self.labels.len(), self.block_rows);
        Ok(Prepared::new(MlpPoint {
            evaluator: self.id,
            spec: self.spec.clone(),
            first,
            rest,
        }))
    }

    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult> {
        let point = self.point(point)?;
        let n = self.labels.len();
        let rows = self.block_rows;
        let mut loss = vec![0.0f32; n];
        let mut correct = vec![false; n];
        loss.par_chunks_mut(rows)
            .zip(correct.par_chunks_mut(rows))
            .enumerate()
            .for_each(|(i, (l, c))| {
                let range = i * rows..i * rows + l.len();
                let labels = &self.labels[range.clone()];
                forward::with_scratch(|scratch| forward::endpoint_block(point, range, labels, l, c, scratch));
            });
        Ok(EvalResult::from_examples(loss, correct))
    }

    fn n_hidden_layers(&self) -> usize {
        self.spec.layers.len().saturating_sub(2)
    }

    fn hidden_activations(&self, point: &Prepared, layer: usize) -> Result<Features> {
        let point = self.point(point)?;
        if layer >= self.n_hidden_layers() {
            return Err(CoreError::InvalidArgument(format!(
                "hidden layer {layer} does not exist: {} has {} hidden layer(s)",
                self.spec.describe(),
                self.n_hidden_layers()
            )));
        }
        let (n, width, rows) = (self.labels.len(), self.spec.layers[layer + 1], self.block_rows);
        let mut out = vec![0.0f32; n * width];
        if width > 0 {
            out.par_chunks_mut(rows * width).enumerate().for_each(|(i, block)| {
                let range = i * rows..i * rows + block.len() / width;
                forward::with_scratch(|scratch| forward::hidden_block(point, range, layer, block, scratch));
            });
        }
        Features::new(n, width, out)
    }

    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        self.evaluate_path_on(a, b, alphas, 0..self.labels.len())
    }

    fn evaluate_path_on(
        &self,
        a: &Prepared,
        b: &Prepared,
        alphas: &[f64],
        examples: Range<usize>,
    ) -> Result<Vec<EvalResult>> {
        let (a, b) = (self.point(a)?, self.point(b)?);
        if examples.end > self.labels.len() {
            return Err(CoreError::InvalidArgument(format!(
                "examples {examples:?} asked of an eval set of {}",
                self.labels.len()
            )));
        }
        Ok(alphas
            .par_iter()
            .with_max_len(1)
            .map(|&alpha| {
                let (loss, correct) = forward::with_scratch(|scratch| {
                    forward::path_point(a, b, alpha, &self.labels, examples.clone(), self.block_rows, scratch)
                });
                EvalResult::from_examples(loss, correct)
            })
            .collect())
    }

    fn evaluates_subsets(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Deterministic values in [-1, 1).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn random_params(seed: u64, widths: &[usize], bias: bool) -> ParamSet {
        let mut raw = Vec::new();
        for (l, w) in widths.windows(2).enumerate() {
            let weight = Tensor::from_vec(values(seed + 10 * l as u64, w[0] * w[1]), (w[1], w[0]), &Device::Cpu);
            raw.push((format!("layers.{l}.weight"), weight.unwrap()));
            if bias {
                let b = Tensor::from_vec(values(seed + 10 * l as u64 + 1, w[1]), w[1], &Device::Cpu);
                raw.push((format!("layers.{l}.bias"), b.unwrap()));
            }
        }
        ParamSet::from_raw(raw).unwrap()
    }

    /// theta(alpha), blended tensor by tensor as PyTorch does.
    fn blend_params(a: &ParamSet, b: &ParamSet, alpha: f64) -> ParamSet {
        let raw = a
            .iter()
            .map(|(name, ta)| {
                let tb = b.get(name).unwrap();
                let t = ((ta * (1.0 - alpha as f32) as f64).unwrap() + (tb * alpha as f32 as f64).unwrap()).unwrap();
                (name.to_string(), t)
            })
            .collect();
        ParamSet::from_raw(raw).unwrap()
    }

    /// Straightforward f64 forward pass: the output of every layer (post-activation for hidden
    /// layers, logits for the last), each `[n, width]` row-major.
    fn naive_layers(params: &ParamSet, widths: &[usize], act: Activation, x: &[f32], n: usize) -> Vec<Vec<f64>> {
        let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let layers = widths.len() - 1;
        let mut outputs = Vec::with_capacity(layers);
        for l in 0..layers {
            let (n_in, n_out) = (widths[l], widths[l + 1]);
            let w = params
                .get(&format!("layers.{l}.weight"))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let b = params
                .get(&format!("layers.{l}.bias"))
                .map(|b| b.to_vec1::<f32>().unwrap())
                .unwrap_or(vec![0.0; n_out]);
            let mut z = vec![0.0f64; n * n_out];
            for i in 0..n {
                for o in 0..n_out {
                    let mut v = f64::from(b[o]);
                    for p in 0..n_in {
                        v += h[i * n_in + p] * f64::from(w[o * n_in + p]);
                    }
                    z[i * n_out + o] = if l + 1 == layers {
                        v
                    } else {
                        match act {
                            Activation::Relu => v.max(0.0),
                            Activation::Tanh => v.tanh(),
                            Activation::Gelu => 0.5 * v * (1.0 + libm::erf(v / 2f64.sqrt())),
                        }
                    };
                }
            }
            outputs.push(z.clone());
            h = z;
        }
        outputs
    }

    /// Straightforward f64 forward pass and mean cross-entropy / error.
    fn naive(params: &ParamSet, widths: &[usize], act: Activation, x: &[f32], labels: &[u32]) -> (f64, f64) {
        let n = labels.len();
        let h = naive_layers(params, widths, act, x, n).pop().unwrap();
        let layers = widths.len() - 1;
        let c = widths[layers];
        let (mut loss, mut wrong) = (0.0, 0);
        for (i, &y) in labels.iter().enumerate() {
            let row = &h[i * c..(i + 1) * c];
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - row[y as usize];
            let best = row
                .iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            wrong += usize::from(best != y as usize);
        }
        (loss / n as f64, wrong as f64 / n as f64)
    }

    #[test]
    fn matches_a_naive_forward_pass_for_every_activation_and_depth() {
        let n = 1037; // several blocks, the last one partial
        for (widths, act, bias) in [
            (vec![7, 20, 33, 5], Activation::Gelu, true),
            (vec![7, 20, 5], Activation::Tanh, false),
            (vec![7, 5], Activation::Relu, true),
            (vec![7, 16, 16, 16, 3], Activation::Relu, true),
        ] {
            let x = values(99, n * widths[0]);
            let classes = *widths.last().unwrap() as u32;
            let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % classes).collect();
            let inputs = Tensor::from_vec(x.clone(), (n, widths[0]), &Device::Cpu).unwrap();
            let data = EvalData::from_tensors(inputs, labels.clone(), None, false).unwrap();
            let spec = MlpSpec::new(widths.clone(), act).unwrap();
            let evaluator = MlpEvaluator::new(spec, &data).unwrap();
            assert!(evaluator.block_rows < n);
            let (a, b) = (random_params(1, &widths, bias), random_params(2, &widths, bias));
            let alphas = [0.0, 0.3, 0.5, 1.0];
            let path = evaluator.evaluate_path(&a, &b, &alphas).unwrap();
            for (alpha, got) in alphas.iter().zip(&path) {
                let (loss, error) = naive(&blend_params(&a, &b, *alpha), &widths, act, &x, &labels);
                assert!(
                    (got.loss - loss).abs() < 1e-5,
                    "{widths:?} {act:?} alpha {alpha}: {} vs {loss}",
                    got.loss
                );
                assert!((got.error - error).abs() <= 1.0 / n as f64, "{widths:?} alpha {alpha}");
            }
            assert_eq!(evaluator.evaluate(&a).unwrap(), path[0]);
        }
    }

    /// Hidden activations equal a naive f64 forward pass truncated after the layer's activation.
    #[test]
    fn hidden_activations_match_a_naive_forward_pass() {
        let n = 1037;
        let widths = [7, 20, 33, 5];
        let x = values(5, n * widths[0]);
        let inputs = Tensor::from_vec(x.clone(), (n, widths[0]), &Device::Cpu).unwrap();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
        let data = EvalData::from_tensors(inputs, labels, None, false).unwrap();
        for act in [Activation::Relu, Activation::Tanh] {
            let evaluator = MlpEvaluator::new(MlpSpec::new(widths.to_vec(), act).unwrap(), &data).unwrap();
            assert_eq!(evaluator.n_hidden_layers(), 2);
            let params = random_params(3, &widths, true);
            let point = evaluator.prepare(&params).unwrap();
            let expected = naive_layers(&params, &widths, act, &x, n);
            for layer in 0..2 {
                let (n_out, h) = (widths[layer + 1], &expected[layer]);
                let got = evaluator.hidden_activations(&point, layer).unwrap();
                assert_eq!((got.rows(), got.cols()), (n, n_out));
                let worst = got
                    .as_slice()
                    .iter()
                    .zip(h)
                    .map(|(&g, &e)| (f64::from(g) - e).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-4, "{act:?} layer {layer}: off by {worst}");
            }
            let err = evaluator.hidden_activations(&point, 2).unwrap_err().to_string();
            assert!(err.contains("2 hidden layer(s)"), "{err}");
        }
        let linear = MlpEvaluator::new(MlpSpec::new(vec![7, 5], Activation::Relu).unwrap(), &data).unwrap();
        let point = linear.prepare(&random_params(1, &[7, 5], false)).unwrap();
        assert_eq!(linear.n_hidden_layers(), 0);
        assert!(linear.hidden_activations(&point, 0).is_err());
    }

    #[test]
    fn refuses_checkpoints_prepared_for_another_eval_set() {
        let widths = [7, 5];
        let labels = vec![0u32, 1, 2];
        let make = || {
            let inputs = Tensor::from_vec(values(3, 21), (3, 7), &Device::Cpu).unwrap();
            let data = EvalData::from_tensors(inputs, labels.clone(), None, false).unwrap();
            MlpEvaluator::new(MlpSpec::new(widths.to_vec(), Activation::Relu).unwrap(), &data).unwrap()
        };
        let (one, other) = (make(), make());
        let prepared = one.prepare(&random_params(1, &widths, true)).unwrap();
        assert!(one.evaluate_prepared(&prepared).is_ok());
        let err = other.evaluate_prepared(&prepared).unwrap_err().to_string();
        assert!(err.contains("another"), "{err}");
        let err = one
            .evaluate_paths(&[&prepared], &[(0, 1)], &[0.5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pair (0, 1)"), "{err}");
    }

    #[test]
    fn rejects_token_ids_and_wrong_widths() {
        let ids = Tensor::new(&[[1u32, 2], [3, 4]], &Device::Cpu).unwrap();
        let data = EvalData::from_tensors(ids, vec![0, 1], None, true).unwrap();
        let spec = MlpSpec::new(vec![2, 2], Activation::Relu).unwrap();
        assert!(
            MlpEvaluator::new(spec, &data)
                .unwrap_err()
                .to_string()
                .contains("token ids")
        );
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let data = EvalData::from_tensors(x, vec![0, 1], None, false).unwrap();
        let spec = MlpSpec::new(vec![2, 2], Activation::Relu).unwrap();
        let err = MlpEvaluator::new(spec, &data).unwrap_err().to_string();
        assert!(
            err.starts_with("eval data <memory>: 3 per example") && err.contains("takes 2 input features"),
            "{err}"
        );
        let x = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let data = EvalData::from_tensors(x, vec![0, 7], None, false).unwrap();
        let spec = MlpSpec::new(vec![2, 3], Activation::Relu).unwrap();
        let err = MlpEvaluator::new(spec, &data).unwrap_err().to_string();
        assert!(
            err.starts_with("eval data <memory>: label 7 of example 1 is out of range"),
            "{err}"
        );
    }
}
