//! The `bert` family: Hugging Face `BertForSequenceClassification` (candle-transformers' BERT
//! encoder, then the pooler and the classifier head of the HF model).

use std::path::Path;

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use candle_transformers::models::bert::{BertModel, Config};
use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::classifier::{Encoder, EncoderSizes, EncoderSpec, check_and_count_labels};
use crate::models::transformer::permutations::{self, EncoderNames};

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
    /// The sizes (number of classes from `classifier.weight`).
    pub sizes: EncoderSizes,
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
        let labels = check_and_count_labels(
            path,
            (config.hidden_size, config.num_attention_heads),
            &Self::classifier_weight(),
            classifier_shape,
            "BertForSequenceClassification",
        )?;
        let sizes = EncoderSizes {
            family: "bert",
            layers: config.num_hidden_layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            intermediate: config.intermediate_size,
            activation: format!("{:?}", config.hidden_act),
            vocab: config.vocab_size,
            token_types: config.type_vocab_size,
            max_positions: config.max_position_embeddings,
            labels,
        };
        Ok(Self { config, sizes })
    }

    /// Name of the classifier weight, whose shape gives the number of labels.
    pub fn classifier_weight() -> String {
        format!("{CLASSIFIER}.weight")
    }
}

impl EncoderSpec for BertSpec {
    type Model = BertClassifier;

    fn sizes(&self) -> &EncoderSizes {
        &self.sizes
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<BertClassifier> {
        BertClassifier::load(vb, self)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let names = EncoderNames {
            prefix: "bert.",
            head_dense: POOLER,
            head_out: CLASSIFIER,
        };
        permutations::encoder_classifier(params, &names, &self.sizes)
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
            classifier: linear(hidden, spec.sizes.labels, vb.pp(CLASSIFIER))?,
        })
    }
}

impl Encoder for BertClassifier {
    /// Logits and the pooled [CLS] state (the classifier's input).
    fn forward(
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
