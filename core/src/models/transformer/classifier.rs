//! Sequence classifiers built on a transformer encoder (BERT, RoBERTa): one example per sequence,
//! scored by its class label; the representation is the classification head's input.

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use lineage_loaders::ParamSet;

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::scoring::score_logits;
use crate::models::transformer::check_heads;
use crate::models::transformer::evaluator::{Architecture, Scores};
use crate::models::transformer::tokens::{TokenBatch, TokenBatches};

/// The sizes of an encoder classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSizes {
    /// Family name (`bert`, `roberta`).
    pub family: &'static str,
    /// Number of layers.
    pub layers: usize,
    /// Width of the hidden states (and of the head's input).
    pub hidden: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Width of the MLPs.
    pub intermediate: usize,
    /// Hidden activation, as named in the config.
    pub activation: String,
    /// Token ids must be below this.
    pub vocab: usize,
    /// Segment ids must be below this.
    pub token_types: usize,
    /// Longest sequence the position embeddings allow.
    pub max_positions: usize,
    /// Number of classes.
    pub labels: usize,
}

impl EncoderSizes {
    /// One line (family and sizes), part of result cache keys.
    pub fn describe(&self) -> String {
        format!(
            "{} {} layers x {} hidden ({} heads, {} intermediate, {}), vocab {}, {} labels",
            self.family,
            self.layers,
            self.hidden,
            self.heads,
            self.intermediate,
            self.activation,
            self.vocab,
            self.labels
        )
    }
}

/// An encoder classifier's architecture read from an HF `config.json`.
pub trait EncoderSpec: std::fmt::Debug + Send + Sync + 'static {
    /// The model built on one parameter set.
    type Model: Encoder;
    /// The sizes.
    fn sizes(&self) -> &EncoderSizes;
    /// Builds the model from tensors named as in the HF checkpoint.
    fn load(&self, vb: VarBuilder) -> candle_core::Result<Self::Model>;
    /// The permutation symmetries searched by weight matching.
    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec;
}

/// An encoder classifier.
pub trait Encoder: Send + Sync + 'static {
    /// Logits `[B, n_labels]` and the head's input `[B, hidden]` of token ids `[B, L]` with their
    /// segment ids (0 everywhere when `None`, as in transformers) and attention mask `[B, L]`.
    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)>;
}

/// A sequence classifier evaluated sequence by sequence.
#[derive(Debug, Clone)]
pub struct SequenceClassifier<S>(pub S);

/// Checks the head count of the config at `path` and reads the number of classes from the shape
/// of the classifier's output weight `name` (`[labels, hidden]`); `model` names the HF class in the
/// error.
pub fn check_and_count_labels(
    path: &Path,
    (hidden, heads): (usize, usize),
    name: &str,
    shape: Option<&[usize]>,
    model: &str,
) -> Result<usize> {
    check_heads(path, ("hidden_size", hidden), ("num_attention_heads", heads))?;
    match shape {
        Some(&[labels, h]) if h == hidden && labels > 0 => Ok(labels),
        Some(shape) => Err(CoreError::config(
            path,
            format!("`{name}` has shape {shape:?}, expected [num_labels, {hidden}]"),
        )),
        None => Err(CoreError::config(
            path,
            format!("the checkpoint has no `{name}`: only sequence classifiers ({model}) can be evaluated"),
        )),
    }
}

/// The largest value of an integer tensor (for range checks).
fn max_u32(t: &Tensor, what: &str) -> Result<u32> {
    t.max_all()
        .and_then(|m| m.to_scalar::<u32>())
        .map_err(|e| CoreError::Model(format!("{what}: {e}")))
}

impl<S: EncoderSpec> Architecture for SequenceClassifier<S> {
    type Model = S::Model;

    fn describe(&self) -> String {
        self.0.sizes().describe()
    }

    fn vocab_size(&self) -> usize {
        self.0.sizes().vocab
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.0.sizes().max_positions)
    }

    /// One example per sequence; it needs a label below the number of classes, and segment ids
    /// below the number of token types.
    fn examples(&self, data: &EvalData, tokens: &TokenBatches) -> Result<Vec<u32>> {
        let sizes = self.0.sizes();
        if let Some(types) = &data.token_type_ids {
            let max = max_u32(types, "token_type_ids")?;
            if max as usize >= sizes.token_types {
                return Err(CoreError::data(
                    &data.source,
                    format!("token type {max}, but the model has {} token types", sizes.token_types),
                ));
            }
        }
        if data.token_labels.is_some() {
            return Err(CoreError::data(
                &data.source,
                "a sequence classifier needs one label per sequence, not per token",
            ));
        }
        if !data.has_labels() {
            return Err(CoreError::data(
                &data.source,
                "a sequence classifier needs class labels: there is no `labels` (or `label`) column",
            ));
        }
        if data.min_classes() > sizes.labels {
            return Err(CoreError::data(
                &data.source,
                format!(
                    "label {}, but the classifier has {} classes",
                    data.min_classes() - 1,
                    sizes.labels
                ),
            ));
        }
        Ok(tokens
            .iter()
            .flat_map(|batch| batch.sequences.iter().copied())
            .collect())
    }

    /// The head's input (BERT's pooled [CLS] state).
    fn representation_width(&self) -> usize {
        self.0.sizes().hidden
    }

    /// One: candle-transformers' encoders do not expose their layers' outputs.
    fn representation_layers(&self) -> usize {
        1
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<S::Model> {
        self.0.load(vb)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        self.0.permutation_spec(params)
    }

    fn score(
        &self,
        model: &S::Model,
        batch: &TokenBatch,
        labels: &[u32],
        layer: Option<usize>,
        out: &mut Scores,
    ) -> candle_core::Result<()> {
        let (logits, head_input) =
            model.forward(&batch.input_ids, batch.token_type_ids.as_ref(), &batch.attention_mask)?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let (mut loss, mut correct) = (vec![0.0; batch.rows()], vec![false; batch.rows()]);
        let labels: Vec<u32> = batch.sequences.iter().map(|&s| labels[s as usize]).collect();
        let classes = self.0.sizes().labels;
        score_logits(&logits, classes, classes, &labels, &mut loss, &mut correct);
        out.loss.extend(loss);
        out.correct.extend(correct);
        if layer.is_some() {
            out.features.extend(head_input.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}
