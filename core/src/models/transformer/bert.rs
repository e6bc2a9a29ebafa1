//! The `bert` family: Hugging Face `BertForSequenceClassification`, the BERT encoder written with
//! candle-nn and lineage's CPU kernels as transformers computes it (candle-transformers' `BertModel`
//! returns every token's final state, and this head reads only the first), then the pooler and the
//! classifier head. The `roberta` family runs the same encoder ([`BertEncoder`]) with its own
//! position ids.

use std::path::Path;

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{Config, HiddenAct};
use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::causal::{Activation, attention};
use crate::models::transformer::classifier::{Encoder, EncoderSizes, EncoderSpec, check_and_count_labels};
use crate::models::transformer::dense::{Dense, dense};
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

/// One encoder layer (`bert.encoder.layer.N`).
struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    out_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, sizes: &EncoderSizes, eps: f64) -> candle_core::Result<Self> {
        let (h, i) = (sizes.hidden, sizes.intermediate);
        Ok(Self {
            query: dense(h, h, vb.pp("attention.self.query"))?,
            key: dense(h, h, vb.pp("attention.self.key"))?,
            value: dense(h, h, vb.pp("attention.self.value"))?,
            attention_out: dense(h, h, vb.pp("attention.output.dense"))?,
            attention_norm: layer_norm(h, eps, vb.pp("attention.output.LayerNorm"))?,
            up: dense(h, i, vb.pp("intermediate.dense"))?,
            down: dense(i, h, vb.pp("output.dense"))?,
            out_norm: layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
        })
    }
}

/// What a [`BertEncoder`] is built with beyond its [`EncoderSizes`] (from a BERT or a RoBERTa
/// config).
pub(crate) struct EncoderExtras {
    /// `layer_norm_eps`.
    pub layer_norm_eps: f64,
    /// `max_position_embeddings`: rows of the position table.
    pub position_rows: usize,
    /// `hidden_act`.
    pub activation: Activation,
}

impl EncoderExtras {
    /// Those of a BERT config.
    fn of_bert(config: &Config) -> Self {
        Self {
            layer_norm_eps: config.layer_norm_eps,
            position_rows: config.max_position_embeddings,
            activation: match config.hidden_act {
                HiddenAct::Gelu => Activation::Gelu,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
        }
    }
}

/// The BERT encoder (`bert.embeddings`, `bert.encoder`; RoBERTa's `roberta.*` has the same
/// layout) in eval mode.
pub(crate) struct BertEncoder {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    activation: Activation,
}

impl BertEncoder {
    /// The encoder from `vb`'s `embeddings.*` and `encoder.layer.N.*` tensors.
    pub(crate) fn load(vb: VarBuilder, sizes: &EncoderSizes, extras: &EncoderExtras) -> candle_core::Result<Self> {
        let (h, eps) = (sizes.hidden, extras.layer_norm_eps);
        let embeddings = vb.pp("embeddings");
        let layers = (0..sizes.layers)
            .map(|n| Layer::load(vb.pp(format!("encoder.layer.{n}")), sizes, eps))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            words: embedding(sizes.vocab, h, embeddings.pp("word_embeddings"))?,
            positions: embedding(extras.position_rows, h, embeddings.pp("position_embeddings"))?,
            token_types: embedding(sizes.token_types, h, embeddings.pp("token_type_embeddings"))?,
            embedding_norm: layer_norm(h, eps, embeddings.pp("LayerNorm"))?,
            layers,
            heads: sizes.heads,
            activation: extras.activation,
        })
    }

    /// `[B, L, H]` states split into heads, `[B, heads, L, H / heads]`.
    fn split_heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        x.reshape((b, l, self.heads, h / self.heads))?.transpose(1, 2)
    }

    /// The final state of the first token of each sequence, `[B, H]`, of token ids `[B, L]` with
    /// their segment ids, attention mask (1 = attend) and position ids (`[L]` for every sequence
    /// or `[B, L]`). The last layer computes only that token's row (its keys and values still
    /// come from every token): the other rows feed nothing the classifier reads.
    pub(crate) fn first_token_state(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        position_ids: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        let embedded = (self.words.forward(input_ids)? + self.token_types.forward(token_type_ids)?)?
            .broadcast_add(&self.positions.forward(position_ids)?)?;
        let mut x = self.embedding_norm.forward(&embedded)?;
        // Masked keys get f32::MIN added to their scores, as transformers' eager attention.
        let mask = attention_mask.to_dtype(DType::F32)?.reshape((b, 1, 1, l))?;
        let bias = ((1.0 - mask)? * f64::from(f32::MIN))?;
        let last = self.layers.len().saturating_sub(1);
        for (n, layer) in self.layers.iter().enumerate() {
            let queries = if n == last { x.narrow(1, 0, 1)? } else { x.clone() };
            let head = x.dim(2)? / self.heads;
            let q = self.split_heads(&layer.query.forward(&queries)?)?;
            let k = self.split_heads(&layer.key.forward(&x)?)?;
            let v = self.split_heads(&layer.value.forward(&x)?)?;
            let mixed = attention(&q, &k, &v, 1.0 / (head as f64).sqrt(), &bias)?;
            let attended = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&mixed)? + &queries)?)?;
            let up = layer.up.forward_activated(&attended, self.activation)?;
            x = layer.out_norm.forward(&(layer.down.forward(&up)? + &attended)?)?;
        }
        x.narrow(1, 0, 1)?.squeeze(1)
    }
}

/// `BertForSequenceClassification` in eval mode (dropout off).
pub struct BertClassifier {
    encoder: BertEncoder,
    pooler: Dense,
    classifier: Dense,
}

impl BertClassifier {
    /// Builds the model from tensors named as in the HF checkpoint (`bert.embeddings...`,
    /// `bert.encoder.layer.N...`, `bert.pooler.dense...`, `classifier...`).
    pub fn load(vb: VarBuilder, spec: &BertSpec) -> candle_core::Result<Self> {
        let hidden = spec.config.hidden_size;
        Ok(Self {
            encoder: BertEncoder::load(vb.pp(ENCODER), &spec.sizes, &EncoderExtras::of_bert(&spec.config))?,
            pooler: dense(hidden, hidden, vb.pp(POOLER))?,
            classifier: dense(hidden, spec.sizes.labels, vb.pp(CLASSIFIER))?,
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
        // Absolute positions 0..L, as transformers' BERT.
        let positions = Tensor::arange(0u32, input_ids.dim(1)? as u32, input_ids.device())?;
        let first = self
            .encoder
            .first_token_state(input_ids, token_types, attention_mask, &positions)?;
        let pooled = self.pooler.forward(&first)?.tanh()?;
        let logits = self.classifier.forward(&pooled)?;
        Ok((logits, pooled))
    }
}
