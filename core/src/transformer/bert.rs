//! The `bert` family: Hugging Face `BertForSequenceClassification` (candle-transformers' BERT
//! encoder, then the pooler and the classifier head of the HF model).

use std::path::Path;

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use candle_transformers::models::bert::{BertModel, Config};

use lineage_loaders::ParamSet;

use crate::align::PermutationSpec;
use crate::error::{CoreError, Result};
use crate::eval_data::EvalData;
use crate::evaluator::score_logits;
use crate::transformer::evaluator::{Architecture, Scores};
use crate::transformer::tokens::{TokenBatch, TokenBatches};
use crate::transformer::{check_heads, permutations};

/// Prefix of the encoder's tensors in a `BertForSequenceClassification` checkpoint.
const ENCODER: &str = "bert";
/// The pooler: `tanh(dense(hidden state of the first token))`.
const POOLER: &str = "bert.pooler.dense";
/// The classifier head: logits = `classifier(pooled)`.
const CLASSIFIER: &str = "classifier";

/// A BERT sequence classifier's architecture, from an HF `config.json`.
#[derive(Debug, Clone)]
pub struct BertSpec {
    /// The encoder's configuration as candle-transformers reads it.
    pub config: Config,
    /// Number of classes (rows of `classifier.weight`).
    pub n_labels: usize,
}

impl BertSpec {
    /// Reads the architecture from a parsed HF `config.json` at `path` (`model_type: "bert"`); the
    /// number of labels comes from the shape of the checkpoint's `classifier.weight`.
    pub fn from_config_json(
        value: &serde_json::Value,
        path: &Path,
        classifier_shape: Option<&[usize]>,
    ) -> Result<Self> {
        let config: Config = serde_json::from_value(value.clone())
            .map_err(|e| CoreError::config(path, format!("not a BERT config: {e}")))?;
        check_heads(
            path,
            ("hidden_size", config.hidden_size),
            ("num_attention_heads", config.num_attention_heads),
        )?;
        let n_labels = match classifier_shape {
            Some(&[labels, hidden]) if hidden == config.hidden_size && labels > 0 => labels,
            Some(shape) => {
                return Err(CoreError::config(
                    path,
                    format!(
                        "`{CLASSIFIER}.weight` has shape {shape:?}, expected [num_labels, {}]",
                        config.hidden_size
                    ),
                ));
            }
            None => {
                return Err(CoreError::config(
                    path,
                    format!(
                        "the checkpoint has no `{CLASSIFIER}.weight`: only sequence classifiers \
                         (BertForSequenceClassification) can be evaluated"
                    ),
                ));
            }
        };
        Ok(Self { config, n_labels })
    }

    /// Name of the classifier weight, whose shape gives the number of labels.
    pub fn classifier_weight() -> String {
        format!("{CLASSIFIER}.weight")
    }
}

impl Architecture for BertSpec {
    type Model = BertClassifier;

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "bert {} layers x {} hidden ({} heads, {} intermediate, {:?}), vocab {}, {} labels",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            c.hidden_act,
            c.vocab_size,
            self.n_labels
        )
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.config.max_position_embeddings)
    }

    /// One example per sequence; it needs a label below the number of classes, and segment ids
    /// below `type_vocab_size`.
    fn examples(&self, data: &EvalData, tokens: &TokenBatches) -> Result<usize> {
        if let Some(types) = &data.token_type_ids {
            let max = types
                .max_all()
                .and_then(|m| m.to_scalar::<u32>())
                .map_err(|e| CoreError::Model(format!("token_type_ids: {e}")))?;
            if max as usize >= self.config.type_vocab_size {
                return Err(CoreError::Model(format!(
                    "eval data has token type {max}, but the model has {} token types",
                    self.config.type_vocab_size
                )));
            }
        }
        if data.token_labels.is_some() {
            return Err(CoreError::Model(
                "a BERT sequence classifier needs one label per sequence, not per token".into(),
            ));
        }
        if !data.has_labels() {
            return Err(CoreError::Model(
                "a BERT classifier needs class labels: the eval data has no `labels`".into(),
            ));
        }
        if data.min_classes() > self.n_labels {
            return Err(CoreError::Model(format!(
                "eval data has label {}, but the classifier has {} classes",
                data.min_classes() - 1,
                self.n_labels
            )));
        }
        Ok(tokens.n_examples())
    }

    /// The pooled [CLS] state, the classifier's input.
    fn representation_width(&self) -> usize {
        self.config.hidden_size
    }

    /// One: candle-transformers' encoder does not expose its layers' outputs.
    fn representation_layers(&self) -> usize {
        1
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<BertClassifier> {
        BertClassifier::load(vb, self)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let c = &self.config;
        permutations::bert(params, c.num_hidden_layers, c.hidden_size, c.intermediate_size)
    }

    fn score(
        &self,
        model: &BertClassifier,
        batch: &TokenBatch,
        labels: &[u32],
        layer: Option<usize>,
        out: &mut Scores,
    ) -> candle_core::Result<()> {
        let (logits, pooled) = model.forward(&batch.input_ids, batch.token_type_ids.as_ref(), &batch.attention_mask)?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let (mut loss, mut correct) = (vec![0.0; batch.rows], vec![false; batch.rows]);
        let labels = &labels[batch.start..batch.start + batch.rows];
        score_logits(&logits, self.n_labels, self.n_labels, labels, &mut loss, &mut correct);
        out.loss.extend(loss);
        out.correct.extend(correct);
        if layer.is_some() {
            out.features.extend(pooled.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}

/// `BertForSequenceClassification` in eval mode (dropout off).
pub struct BertClassifier {
    encoder: BertModel,
    pooler: Linear,
    classifier: Linear,
}

impl BertClassifier {
    /// Builds the model from tensors named as in the HF checkpoint (`bert.embeddings...`,
    /// `bert.encoder.layer.N...`, `bert.pooler.dense...`, `classifier...`).
    pub fn load(vb: VarBuilder, spec: &BertSpec) -> candle_core::Result<Self> {
        let hidden = spec.config.hidden_size;
        Ok(Self {
            encoder: BertModel::load(vb.pp(ENCODER), &spec.config)?,
            pooler: linear(hidden, hidden, vb.pp(POOLER))?,
            classifier: linear(hidden, spec.n_labels, vb.pp(CLASSIFIER))?,
        })
    }

    /// Logits `[B, n_labels]` and pooled representations `[B, hidden]` (the classifier's input) of
    /// token ids `[B, L]` with their segment ids (0 everywhere when `None`, as in transformers) and
    /// attention mask `[B, L]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let zeros;
        let token_types = match token_type_ids {
            Some(types) => types,
            None => {
                zeros = input_ids.zeros_like()?;
                &zeros
            }
        };
        let hidden = self.encoder.forward(input_ids, token_types, Some(attention_mask))?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&first)?.tanh()?;
        let logits = self.classifier.forward(&pooled)?;
        Ok((logits, pooled))
    }
}
