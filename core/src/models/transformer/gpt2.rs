//! The `gpt2` family: Hugging Face `GPT2LMHeadModel`, written with candle-nn as transformers
//! computes it (candle-transformers has no GPT-2): learned positions, pre-norm blocks, `Conv1D`
//! projections (weights stored `[in, out]`), output head tied to the token embedding unless the
//! checkpoint has its own `lm_head.weight`.

use std::path::Path;

use candle_core::{D, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm};

use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::causal::{Activation, Decoder, DecoderSpec, attention, field, required, run_blocks};
use crate::models::transformer::dense::Dense;
use crate::models::transformer::{check_heads, permutations};

/// A GPT-2 architecture, from an HF `config.json` (`model_type: gpt2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Spec {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Learned positions (`n_positions`).
    pub n_positions: usize,
    /// Width of the hidden states (`n_embd`).
    pub hidden_size: usize,
    /// Number of blocks (`n_layer`).
    pub num_layers: usize,
    /// Attention heads per block (`n_head`).
    pub num_heads: usize,
    /// Width of the MLP (`n_inner`, default 4 x `n_embd`).
    pub inner_size: usize,
    /// Layer norm epsilon (`layer_norm_epsilon`).
    pub layer_norm_eps: f64,
    /// MLP activation (`activation_function`, default `gelu_new`).
    pub activation: Activation,
    /// Divide attention scores by sqrt(head size) (`scale_attn_weights`, default true).
    pub scale_attn_weights: bool,
    /// Also divide them by the block's index + 1 (`scale_attn_by_inverse_layer_idx`).
    pub scale_by_inverse_layer: bool,
}

impl Gpt2Spec {
    /// Reads the architecture from a parsed HF `config.json` at `path`.
    pub fn from_config_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let hidden_size: usize = required(value, "n_embd", path)?;
        let act: String = field(value, "activation_function").unwrap_or_else(|| "gelu_new".into());
        let spec = Self {
            vocab_size: required(value, "vocab_size", path)?,
            n_positions: required(value, "n_positions", path)?,
            hidden_size,
            num_layers: required(value, "n_layer", path)?,
            num_heads: required(value, "n_head", path)?,
            inner_size: field(value, "n_inner").unwrap_or(4 * hidden_size),
            layer_norm_eps: field(value, "layer_norm_epsilon").unwrap_or(1e-5),
            activation: Activation::from_name(&act)
                .ok_or_else(|| CoreError::config(path, format!("unsupported activation_function `{act}`")))?,
            scale_attn_weights: field(value, "scale_attn_weights").unwrap_or(true),
            scale_by_inverse_layer: field(value, "scale_attn_by_inverse_layer_idx").unwrap_or(false),
        };
        check_heads(path, ("n_embd", spec.hidden_size), ("n_head", spec.num_heads))?;
        if field::<bool>(value, "add_cross_attention") == Some(true) {
            return Err(CoreError::config(
                path,
                "cross-attention GPT-2 models are not supported",
            ));
        }
        Ok(spec)
    }
}

impl DecoderSpec for Gpt2Spec {
    type Model = Gpt2;

    fn describe(&self) -> String {
        format!(
            "gpt2 {} layers x {} hidden ({} heads, {} inner, {:?}), vocab {}",
            self.num_layers, self.hidden_size, self.num_heads, self.inner_size, self.activation, self.vocab_size
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

    fn max_positions(&self) -> Option<usize> {
        Some(self.n_positions)
    }

    fn load(&self, vb: VarBuilder) -> candle_core::Result<Gpt2> {
        Gpt2::load(vb, self)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let prefix = if params.get("transformer.wte.weight").is_some() {
            "transformer."
        } else {
            ""
        };
        permutations::gpt2(params, prefix, self.num_layers, self.hidden_size, self.inner_size)
    }
}

/// A `Conv1D` of transformers (`y = x W + b`, `W` stored `[in, out]`) as a candle linear layer.
fn conv1d(inputs: usize, outputs: usize, vb: VarBuilder) -> candle_core::Result<Dense> {
    let weight = vb.get((inputs, outputs), "weight")?;
    let bias = vb.get(outputs, "bias")?;
    Ok(Dense::new(Linear::new(weight.t()?, Some(bias))))
}

/// One GPT-2 block.
struct Block {
    ln_1: LayerNorm,
    c_attn: Dense,
    c_proj: Dense,
    ln_2: LayerNorm,
    c_fc: Dense,
    mlp_proj: Dense,
    /// Attention score scale of this block.
    scale: f64,
}

/// `GPT2LMHeadModel` in eval mode.
pub struct Gpt2 {
    spec: Gpt2Spec,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Dense,
}

impl Gpt2 {
    /// Builds the model from tensors named as in the HF checkpoint (`transformer.wte`,
    /// `transformer.h.N...`, `transformer.ln_f`, optional `lm_head`; a bare `GPT2Model` without the
    /// `transformer.` prefix is read too).
    pub fn load(vb: VarBuilder, spec: &Gpt2Spec) -> candle_core::Result<Self> {
        let (h, inner) = (spec.hidden_size, spec.inner_size);
        let body = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb.clone()
        };
        let head_size = (h / spec.num_heads) as f64;
        let blocks = (0..spec.num_layers)
            .map(|n| {
                let vb = body.pp(format!("h.{n}"));
                let mut scale = if spec.scale_attn_weights {
                    1.0 / head_size.sqrt()
                } else {
                    1.0
                };
                if spec.scale_by_inverse_layer {
                    scale /= (n + 1) as f64;
                }
                Ok(Block {
                    ln_1: layer_norm(h, spec.layer_norm_eps, vb.pp("ln_1"))?,
                    c_attn: conv1d(h, 3 * h, vb.pp("attn.c_attn"))?,
                    c_proj: conv1d(h, h, vb.pp("attn.c_proj"))?,
                    ln_2: layer_norm(h, spec.layer_norm_eps, vb.pp("ln_2"))?,
                    c_fc: conv1d(h, inner, vb.pp("mlp.c_fc"))?,
                    mlp_proj: conv1d(inner, h, vb.pp("mlp.c_proj"))?,
                    scale,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let wte = embedding(spec.vocab_size, h, body.pp("wte"))?;
        let head = if vb.contains_tensor("lm_head.weight") {
            Dense::new(Linear::new(vb.get((spec.vocab_size, h), "lm_head.weight")?, None))
        } else {
            Dense::new(Linear::new(wte.embeddings().clone(), None))
        };
        Ok(Self {
            spec: spec.clone(),
            wpe: embedding(spec.n_positions, h, body.pp("wpe"))?,
            wte,
            blocks,
            ln_f: layer_norm(h, spec.layer_norm_eps, body.pp("ln_f"))?,
            head,
        })
    }

    fn attend(&self, block: &Block, x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let heads = self.spec.num_heads;
        let split = |t: Tensor| t.reshape((b, l, heads, h / heads))?.transpose(1, 2);
        let qkv = block.c_attn.forward(x)?;
        let q = split(qkv.narrow(D::Minus1, 0, h)?)?;
        let k = split(qkv.narrow(D::Minus1, h, h)?)?;
        let v = split(qkv.narrow(D::Minus1, 2 * h, h)?)?;
        block.c_proj.forward(&attention(&q, &k, &v, block.scale, bias)?)
    }
}

impl Decoder for Gpt2 {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        bias: &Tensor,
        keep: Option<usize>,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (_, l) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, l as u32, input_ids.device())?;
        let x = self
            .wte
            .forward(input_ids)?
            .broadcast_add(&self.wpe.forward(&positions)?)?;
        let block = |block: &Block, x: &Tensor| -> candle_core::Result<Tensor> {
            let x = (self.attend(block, &block.ln_1.forward(x)?, bias)? + x)?;
            let up = block
                .c_fc
                .forward_activated(&block.ln_2.forward(&x)?, self.spec.activation)?;
            block.mlp_proj.forward(&up)? + &x
        };
        run_blocks(x, &self.blocks, keep, block, |x| self.ln_f.forward(x))
    }

    fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_gpt2_config_reads() {
        // As published for openai-community/gpt2.
        let value = serde_json::json!({
            "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "summary_activation": null, "summary_first_dropout": 0.1,
            "vocab_size": 50257
        });
        let spec = Gpt2Spec::from_config_json(&value, Path::new("gpt2/config.json")).unwrap();
        assert_eq!((spec.hidden_size, spec.inner_size, spec.num_layers), (768, 3072, 12));
        assert_eq!(spec.activation, Activation::GeluTanh);
        assert!(spec.scale_attn_weights && !spec.scale_by_inverse_layer);

        let mut bad = value.clone();
        bad["n_head"] = serde_json::json!(7);
        let err = Gpt2Spec::from_config_json(&bad, Path::new("gpt2/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt2/config.json") && err.contains("n_head 7"), "{err}");
    }
}
