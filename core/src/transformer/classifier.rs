//! Evaluation of BERT sequence classifiers: loss, correctness and pooled representations.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lineage_loaders::ParamSet;
use lineage_loaders::params::describe_shape_difference;

use crate::error::{CoreError, Result};
use crate::eval_data::EvalData;
use crate::evaluator::{EvalResult, Evaluator, Prepared, score_logits};
use crate::features::Features;
use crate::interpolation::blend;
use crate::transformer::bert::{BertClassifier, BertSpec};
use crate::transformer::tokens::TokenBatches;

/// Evaluates `BertForSequenceClassification` checkpoints on tokenised eval data, one interpolated
/// model per forward pass (the examples of the eval set are batched; pairs and alphas run in
/// parallel).
pub struct BertEvaluator {
    /// Identifies this evaluator, so checkpoints prepared by another one are refused.
    id: u64,
    spec: BertSpec,
    device: Device,
    tokens: TokenBatches,
    labels: Vec<u32>,
    /// Names and shapes every parameter set must have (those of the reference checkpoint).
    shapes: BTreeMap<String, Vec<usize>>,
    description: String,
}

/// A checkpoint prepared by a [`BertEvaluator`]: its tensors on the device and the model on them.
struct BertPoint {
    evaluator: u64,
    tensors: HashMap<String, Tensor>,
    model: BertClassifier,
}

/// What one forward pass over the eval set gives.
struct Outputs {
    result: EvalResult,
    pooled: Features,
}

impl BertEvaluator {
    /// An evaluator for `spec` on `data` (token ids), running on `device`; checks that `reference`
    /// builds the model and that the data fits it (token ids below the vocabulary size, sequences
    /// within the position embeddings, labels below the number of classes).
    pub fn new(spec: BertSpec, reference: &ParamSet, data: &EvalData, device: &Device) -> Result<Self> {
        let tokens = TokenBatches::new(data, device)?;
        let c = &spec.config;
        let max_id = TokenBatches::max_id(data)?;
        if max_id as usize >= c.vocab_size {
            return Err(CoreError::Model(format!(
                "eval data has token id {max_id}, beyond the model's vocabulary of {}",
                c.vocab_size
            )));
        }
        if tokens.max_len() > c.max_position_embeddings {
            return Err(CoreError::Model(format!(
                "eval sequences have up to {} tokens, more than the model's {} positions",
                tokens.max_len(),
                c.max_position_embeddings
            )));
        }
        if data.min_classes() > spec.n_labels {
            return Err(CoreError::Model(format!(
                "eval data has label {}, but the classifier has {} classes",
                data.min_classes() - 1,
                spec.n_labels
            )));
        }
        let mut description = format!("{} on {} examples", spec.describe(), data.len());
        if !device.is_cpu() {
            description.push_str(&format!(" ({device:?})"));
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let evaluator = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            spec,
            device: device.clone(),
            tokens,
            labels: data.labels.clone(),
            shapes: reference.shapes(),
            description,
        };
        evaluator.build(evaluator.on_device(reference.iter())?)?;
        Ok(evaluator)
    }

    /// Copies named tensors to the device.
    fn on_device<'a>(&self, tensors: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Result<HashMap<String, Tensor>> {
        tensors
            .map(|(name, t)| {
                let t = t
                    .to_device(&self.device)
                    .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
                Ok((name.to_string(), t))
            })
            .collect()
    }

    /// The model on `tensors`; a missing or misshapen tensor is an error naming it.
    fn build(&self, tensors: HashMap<String, Tensor>) -> Result<BertClassifier> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &self.device);
        BertClassifier::load(vb, &self.spec)
            .map_err(|e| CoreError::Model(format!("{}: the checkpoint does not fit: {e}", self.spec.describe())))
    }

    fn point<'a>(&self, prepared: &'a Prepared) -> Result<&'a BertPoint> {
        prepared
            .downcast_ref::<BertPoint>()
            .filter(|p| p.evaluator == self.id)
            .ok_or_else(|| CoreError::InvalidArgument("checkpoint was prepared by a different evaluator".into()))
    }

    /// Runs `model` over the eval set.
    fn run(&self, model: &BertClassifier) -> Result<Outputs> {
        let what = |e: candle_core::Error| CoreError::Model(format!("bert forward pass: {e}"));
        let n = self.tokens.n_examples();
        let (classes, hidden) = (self.spec.n_labels, self.spec.config.hidden_size);
        let mut loss = vec![0.0f32; n];
        let mut correct = vec![false; n];
        let mut pooled = Vec::with_capacity(n * hidden);
        for batch in self.tokens.iter() {
            let (logits, features) = model.forward(&batch.input_ids, &batch.attention_mask).map_err(what)?;
            let logits = logits.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(what)?;
            let rows = logits.len() / classes;
            let range = batch.start..batch.start + rows;
            score_logits(
                &logits,
                classes,
                classes,
                &self.labels[range.clone()],
                &mut loss[range.clone()],
                &mut correct[range],
            );
            pooled.extend(features.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(what)?);
        }
        Ok(Outputs {
            result: EvalResult::from_examples(loss, correct),
            pooled: Features::new(n, hidden, pooled)?,
        })
    }
}

impl Evaluator for BertEvaluator {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn n_examples(&self) -> usize {
        self.tokens.n_examples()
    }

    fn prepare(&self, params: &ParamSet) -> Result<Prepared> {
        if let Some(diff) = describe_shape_difference(&self.shapes, &params.shapes()) {
            return Err(CoreError::Model(format!(
                "{}: the parameter set differs from the first checkpoint: {diff}",
                self.spec.describe()
            )));
        }
        let tensors = self.on_device(params.iter())?;
        let model = self.build(tensors.clone())?;
        Ok(Prepared::new(BertPoint {
            evaluator: self.id,
            tensors,
            model,
        }))
    }

    fn evaluate_prepared(&self, point: &Prepared) -> Result<EvalResult> {
        Ok(self.run(&self.point(point)?.model)?.result)
    }

    fn evaluate_path_prepared(&self, a: &Prepared, b: &Prepared, alphas: &[f64]) -> Result<Vec<EvalResult>> {
        let (a, b) = (&self.point(a)?.tensors, &self.point(b)?.tensors);
        alphas
            .iter()
            .map(|&alpha| {
                let blended = blend(a.iter().map(|(n, t)| (n.as_str(), t)), |name| b.get(name), alpha)?;
                Ok(self.run(&self.build(blended)?)?.result)
            })
            .collect()
    }

    /// One representation: the pooled first-token state, the classifier's input.
    fn n_hidden_layers(&self) -> usize {
        1
    }

    fn hidden_activations(&self, point: &Prepared, layer: usize) -> Result<Features> {
        if layer != 0 {
            return Err(CoreError::InvalidArgument(format!(
                "bert exposes one representation (layer 0, the pooled [CLS] state), not layer {layer}"
            )));
        }
        Ok(self.run(&self.point(point)?.model)?.pooled)
    }
}
