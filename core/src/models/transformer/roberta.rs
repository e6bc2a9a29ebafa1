//! The `roberta` family: Hugging Face `RobertaForSequenceClassification` and
//! `XLMRobertaForSequenceClassification`: BERT's encoder ([`BertEncoder`]: the same tensors and
//! computation, lineage's CPU kernels, the last layer on the first token only) with RoBERTa's
//! position ids counted from the padding token (transformers'
//! `create_position_ids_from_input_ids`), then the HF classification head: dense, tanh, output
//! projection on the first token. The config is read with candle-transformers' XLM-RoBERTa
//! `Config`.

use std::path::Path;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::xlm_roberta::Config;
use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::bert::{BertEncoder, EncoderExtras};
use crate::models::transformer::causal::{Activation, field};
use crate::models::transformer::classifier::{Encoder, EncoderSizes, EncoderSpec, check_and_count_labels};
use crate::models::transformer::dense::{Dense, dense};
use crate::models::transformer::permutations::{self, EncoderNames};

/// Prefix of the encoder's tensors.
const ENCODER: &str = "roberta";
/// The head's dense layer on the first token's state.
const HEAD_DENSE: &str = "classifier.dense";
/// The head's output projection.
const HEAD_OUT: &str = "classifier.out_proj";

/// A RoBERTa sequence classifier's architecture, from an HF `config.json`.
#[derive(Debug, Clone)]
pub struct RobertaSpec {
    /// The encoder's configuration as candle-transformers reads it.
    pub config: Config,
    /// The sizes (number of classes from `classifier.out_proj.weight`).
    pub sizes: EncoderSizes,
    /// The MLP activation (`hidden_act`).
    pub activation: Activation,
}

impl RobertaSpec {
    /// Reads the architecture from a parsed HF `config.json` at `path` (`model_type: "roberta"` or
    /// `"xlm-roberta"`); the number of labels comes from the shape of the checkpoint's
    /// `classifier.out_proj.weight`.
    pub fn from_config_json(
        value: &serde_json::Value,
        path: &Path,
        classifier_shape: Option<&[usize]>,
    ) -> Result<Self> {
        // transformers' RobertaConfig defaults to `gelu`.
        let act: String = field(value, "hidden_act").unwrap_or_else(|| "gelu".into());
        let activation = Activation::from_name(&act)
            .ok_or_else(|| CoreError::config(path, format!("unsupported hidden_act `{act}`")))?;
        let mut value = value.clone();
        // transformers writes no `position_embedding_type` when it is the default.
        if value.get("position_embedding_type").is_none_or(|v| v.is_null()) {
            value["position_embedding_type"] = "absolute".into();
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| CoreError::config(path, format!("not a RoBERTa config: {e}")))?;
        if config.position_embedding_type != "absolute" {
            return Err(CoreError::config(
                path,
                format!(
                    "position_embedding_type `{}` is not supported (only absolute)",
                    config.position_embedding_type
                ),
            ));
        }
        let labels = check_and_count_labels(
            path,
            (config.hidden_size, config.num_attention_heads),
            &Self::classifier_weight(),
            classifier_shape,
            "RobertaForSequenceClassification",
        )?;
        let sizes = EncoderSizes {
            family: "roberta",
            layers: config.num_hidden_layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            intermediate: config.intermediate_size,
            activation: format!("{:?}", config.hidden_act),
            vocab: config.vocab_size,
            token_types: config.type_vocab_size,
            // Positions start after the padding id.
            max_positions: config
                .max_position_embeddings
                .saturating_sub(config.pad_token_id as usize + 1),
            labels,
        };
        Ok(Self {
            config,
            sizes,
            activation,
        })
    }

    /// Name of the output weight, whose shape gives the number of labels.
    pub fn classifier_weight() -> String {
        format!("{HEAD_OUT}.weight")
    }
}

impl EncoderSpec for RobertaSpec {
    type Model = RobertaClassifier;

    fn sizes(&self) -> &EncoderSizes {
        &self.sizes
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<RobertaClassifier> {
        let h = self.sizes.hidden;
        let extras = EncoderExtras {
            layer_norm_eps: self.config.layer_norm_eps,
            position_rows: self.config.max_position_embeddings,
            activation: self.activation,
        };
        Ok(RobertaClassifier {
            encoder: BertEncoder::load(vb.pp(ENCODER), &self.sizes, &extras)?,
            padding_id: self.config.pad_token_id,
            dense: dense(h, h, vb.pp(HEAD_DENSE))?,
            out_proj: dense(h, self.sizes.labels, vb.pp(HEAD_OUT))?,
        })
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let names = EncoderNames {
            prefix: "roberta.",
            head_dense: HEAD_DENSE,
            head_out: HEAD_OUT,
        };
        permutations::encoder_classifier(params, &names, &self.sizes)
    }
}

/// `RobertaForSequenceClassification` in eval mode.
pub struct RobertaClassifier {
    encoder: BertEncoder,
    /// `pad_token_id`: positions count from the token after it.
    padding_id: u32,
    dense: Dense,
    out_proj: Dense,
}

impl Encoder for RobertaClassifier {
    /// Logits and `tanh(dense(first token's state))`, the output projection's input.
    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let zeros = input_ids.zeros_like()?;
        let types = token_type_ids.unwrap_or(&zeros);
        let first = self
            .encoder
            .first_token_state(input_ids, types, attention_mask, &self.position_ids(input_ids)?)?;
        let head_input = self.dense.forward(&first)?.tanh()?;
        let logits = self.out_proj.forward(&head_input)?;
        Ok((logits, head_input))
    }
}

impl RobertaClassifier {
    /// transformers' `create_position_ids_from_input_ids`: each token that is not the padding id
    /// gets `padding_id` + its rank among such tokens of its sequence (1, 2, ...), a padding token
    /// gets `padding_id`.
    fn position_ids(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let counted = input_ids.ne(self.padding_id)?.to_dtype(DType::F32)?;
        // Ranks up to the sequence length are exact in f32.
        ((counted.cumsum(1)? * &counted)? + f64::from(self.padding_id))?.to_dtype(DType::U32)
    }
}
