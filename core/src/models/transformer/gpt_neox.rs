//! The `gpt_neox` family: Hugging Face `GPTNeoXForCausalLM` (Pythia and PolyPythias), written with
//! candle-nn as transformers computes it (candle-transformers has no GPT-NeoX): fused per-head QKV,
//! rotary embeddings on the first `rotary_pct` of each head, parallel or sequential residual.

use std::path::Path;

use candle_core::{D, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};

use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::causal::{
    Activation, Decoder, DecoderSpec, attention, field, required, rope_settings, rotary_tables, run_blocks,
};
use crate::models::transformer::dense::{Dense, dense, dense_no_bias, dense_with_bias_if};
use crate::models::transformer::{check_heads, kernels, permutations};

/// A GPT-NeoX architecture, from an HF `config.json` (`model_type: gpt_neox`).
#[derive(Debug, Clone, PartialEq)]
pub struct GptNeoxSpec {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Fraction of each head's dimensions that get rotary embeddings (`rotary_pct`, or
    /// `rope_parameters.partial_rotary_factor` in transformers 5 configs).
    pub rotary_pct: f64,
    /// Rotary base (`rotary_emb_base`, or `rope_parameters.rope_theta`).
    pub rotary_base: f64,
    /// Attention and MLP read the same input (Pythia) rather than one after the other.
    pub parallel_residual: bool,
    /// Layer norm epsilon.
    pub layer_norm_eps: f64,
    /// MLP activation.
    pub activation: Activation,
    /// QKV and output projections have biases.
    pub attention_bias: bool,
}

impl GptNeoxSpec {
    /// Reads the architecture from a parsed HF `config.json` at `path`.
    pub fn from_config_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let (rope_theta, partial_rotary_factor) = rope_settings(value, path)?;
        let act: String = field(value, "hidden_act").unwrap_or_else(|| "gelu".into());
        let spec = Self {
            vocab_size: required(value, "vocab_size", path)?,
            hidden_size: required(value, "hidden_size", path)?,
            num_layers: required(value, "num_hidden_layers", path)?,
            num_heads: required(value, "num_attention_heads", path)?,
            intermediate_size: required(value, "intermediate_size", path)?,
            rotary_pct: field(value, "rotary_pct").or(partial_rotary_factor).unwrap_or(0.25),
            rotary_base: field(value, "rotary_emb_base").or(rope_theta).unwrap_or(10000.0),
            parallel_residual: field(value, "use_parallel_residual").unwrap_or(true),
            layer_norm_eps: field(value, "layer_norm_eps").unwrap_or(1e-5),
            activation: Activation::from_name(&act)
                .ok_or_else(|| CoreError::config(path, format!("unsupported hidden_act `{act}`")))?,
            attention_bias: field(value, "attention_bias").unwrap_or(true),
        };
        check_heads(
            path,
            ("hidden_size", spec.hidden_size),
            ("num_attention_heads", spec.num_heads),
        )?;
        if !(0.0..=1.0).contains(&spec.rotary_pct) {
            return Err(CoreError::config(
                path,
                format!("rotary_pct {} is not in [0, 1]", spec.rotary_pct),
            ));
        }
        Ok(spec)
    }

    fn head_size(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Rotary dimensions per head (even), as transformers: `int(head_size * rotary_pct)`.
    fn rotary_dims(&self) -> usize {
        (self.head_size() as f64 * self.rotary_pct) as usize
    }
}

impl DecoderSpec for GptNeoxSpec {
    type Model = GptNeox;

    fn describe(&self) -> String {
        format!(
            "gpt_neox {} layers x {} hidden ({} heads, {} intermediate, rotary {}, {} residual), vocab {}",
            self.num_layers,
            self.hidden_size,
            self.num_heads,
            self.intermediate_size,
            self.rotary_pct,
            if self.parallel_residual {
                "parallel"
            } else {
                "sequential"
            },
            self.vocab_size
        )
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// Rotary positions are not limited by a table.
    fn max_positions(&self) -> Option<usize> {
        None
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<GptNeox> {
        GptNeox::load(vb, self)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        permutations::gpt_neox(params, self.num_layers, self.hidden_size, self.intermediate_size)
    }
}

/// One GPT-NeoX layer.
struct Layer {
    input_norm: LayerNorm,
    post_attention_norm: LayerNorm,
    qkv: Dense,
    dense: Dense,
    up: Dense,
    down: Dense,
}

/// `GPTNeoXForCausalLM` in eval mode.
pub struct GptNeox {
    spec: GptNeoxSpec,
    embed: Embedding,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    head: Dense,
}

impl GptNeox {
    /// Builds the model from tensors named as in the HF checkpoint (`gpt_neox.embed_in`,
    /// `gpt_neox.layers.N...`, `gpt_neox.final_layer_norm`, `embed_out`).
    pub fn load(vb: VarBuilder, spec: &GptNeoxSpec) -> candle_core::Result<Self> {
        let (h, i) = (spec.hidden_size, spec.intermediate_size);
        let body = vb.pp("gpt_neox");
        let project = |inputs, outputs, vb| dense_with_bias_if(spec.attention_bias, inputs, outputs, vb);
        let layers = (0..spec.num_layers)
            .map(|n| {
                let vb = body.pp(format!("layers.{n}"));
                Ok(Layer {
                    input_norm: layer_norm(h, spec.layer_norm_eps, vb.pp("input_layernorm"))?,
                    post_attention_norm: layer_norm(h, spec.layer_norm_eps, vb.pp("post_attention_layernorm"))?,
                    qkv: project(h, 3 * h, vb.pp("attention.query_key_value"))?,
                    dense: project(h, h, vb.pp("attention.dense"))?,
                    up: dense(h, i, vb.pp("mlp.dense_h_to_4h"))?,
                    down: dense(i, h, vb.pp("mlp.dense_4h_to_h"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            spec: spec.clone(),
            embed: embedding(spec.vocab_size, h, body.pp("embed_in"))?,
            layers,
            final_norm: layer_norm(h, spec.layer_norm_eps, body.pp("final_layer_norm"))?,
            head: dense_no_bias(h, spec.vocab_size, vb.pp("embed_out"))?,
        })
    }

    fn attend(
        &self,
        layer: &Layer,
        x: &Tensor,
        bias: &Tensor,
        rotary: &(Tensor, Tensor),
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (heads, head) = (self.spec.num_heads, self.spec.head_size());
        let qkv = layer.qkv.forward(x)?;
        // On the CPU the queries and keys are rotated in place in the fresh projection.
        let in_place = kernels::supports(&qkv) && self.spec.rotary_dims() > 0;
        if in_place {
            kernels::rotate_queries_and_keys(&qkv, head, self.spec.rotary_dims(), &rotary.0, &rotary.1)?;
        }
        let qkv = qkv.reshape((b, l, heads, 3 * head))?.transpose(1, 2)?;
        let q = qkv.narrow(D::Minus1, 0, head)?;
        let k = qkv.narrow(D::Minus1, head, head)?;
        let v = qkv.narrow(D::Minus1, 2 * head, head)?;
        let (q, k) = if in_place {
            (q, k)
        } else {
            (self.rotate(&q, rotary)?, self.rotate(&k, rotary)?)
        };
        let out = attention(&q, &k, &v, 1.0 / (head as f64).sqrt(), bias)?;
        layer.dense.forward(&out)
    }

    /// Rotary embedding of the first `rotary_dims` of each head (rotate-half form).
    fn rotate(&self, x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let dims = self.spec.rotary_dims();
        if dims == 0 {
            return Ok(x.clone());
        }
        let head = x.dim(D::Minus1)?;
        let rotated = candle_nn::rotary_emb::rope(&x.narrow(D::Minus1, 0, dims)?.contiguous()?, cos, sin)?;
        if dims == head {
            return Ok(rotated);
        }
        Tensor::cat(&[rotated, x.narrow(D::Minus1, dims, head - dims)?], D::Minus1)
    }
}

impl Decoder for GptNeox {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        bias: &Tensor,
        keep: Option<usize>,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (_, l) = input_ids.dims2()?;
        let rotary = rotary_tables(self.spec.rotary_dims(), self.spec.rotary_base, l, input_ids.device())?;
        let x = self.embed.forward(input_ids)?;
        let block = |layer: &Layer, x: &Tensor| -> candle_core::Result<Tensor> {
            let attn = self.attend(layer, &layer.input_norm.forward(x)?, bias, &rotary)?;
            let mlp = |input: &Tensor| -> candle_core::Result<Tensor> {
                let up = layer
                    .up
                    .forward_activated(&layer.post_attention_norm.forward(input)?, self.spec.activation)?;
                layer.down.forward(&up)
            };
            if self.spec.parallel_residual {
                (mlp(x)? + attn)? + x
            } else {
                let after = (attn + x)?;
                mlp(&after)? + after
            }
        };
        run_blocks(x, &self.layers, keep, block, |x| self.final_norm.forward(x))
    }

    fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pythia_and_transformers_5_configs_read_alike() {
        let path = Path::new("pythia-70m/config.json");
        // As published for EleutherAI/pythia-70m (transformers 4).
        let pythia = serde_json::json!({
            "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
            "hidden_act": "gelu", "hidden_size": 512, "initializer_range": 0.02,
            "intermediate_size": 2048, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
            "model_type": "gpt_neox", "num_attention_heads": 8, "num_hidden_layers": 6,
            "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": false,
            "torch_dtype": "float16", "use_cache": true, "use_parallel_residual": true,
            "vocab_size": 50304
        });
        let spec = GptNeoxSpec::from_config_json(&pythia, path).unwrap();
        assert_eq!((spec.hidden_size, spec.num_layers, spec.num_heads), (512, 6, 8));
        assert_eq!((spec.rotary_dims(), spec.rotary_base), (16, 10000.0));
        assert!(spec.parallel_residual && spec.attention_bias);

        let mut v5 = pythia.clone();
        let object = v5.as_object_mut().unwrap();
        object.remove("rotary_pct");
        object.remove("rotary_emb_base");
        object.insert(
            "rope_parameters".into(),
            serde_json::json!({"partial_rotary_factor": 0.25, "rope_theta": 10000, "rope_type": "default"}),
        );
        assert_eq!(GptNeoxSpec::from_config_json(&v5, path).unwrap(), spec);

        v5["rope_parameters"] = serde_json::json!({"rope_type": "yarn"});
        let err = GptNeoxSpec::from_config_json(&v5, path).unwrap_err().to_string();
        assert!(err.contains("pythia-70m/config.json") && err.contains("yarn"), "{err}");
    }
}
