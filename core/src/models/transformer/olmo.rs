//! The `olmo` and `olmo2` families: Hugging Face `OlmoForCausalLM` (OLMo-1 in its `-hf` form) and
//! `Olmo2ForCausalLM` (OLMo-2), written with candle-nn as transformers computes them
//! (`models/olmo/modeling_olmo.py`, `models/olmo2/modeling_olmo2.py`): LLaMA-style blocks with
//! separate query, key, value and output projections, grouped-query attention, rotary embeddings
//! on whole heads and a SwiGLU MLP (`down(act(gate(x)) * up(x))`).
//!
//! - OLMo-1 normalises before attention and before the MLP with a layer norm that has no weight
//!   and no bias (`OlmoLayerNorm`, eps 1e-5 whatever the config says), and may clip the queries,
//!   keys and values to `[-clip_qkv, clip_qkv]`.
//! - OLMo-2 normalises after: `x + norm(attention(x))`, then `h + norm(mlp(h))`, with RMS norms
//!   (`rms_norm_eps`), and RMS-normalises the whole query and key projections before the heads
//!   are split (`q_norm`, `k_norm`).

use std::path::Path;

use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding};

use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::transformer::causal::{
    Decoder, DecoderSpec, attention, field, required, rope_settings, rotary_tables, run_blocks,
};
use crate::models::transformer::dense::{Dense, dense_no_bias, dense_with_bias_if};
use crate::models::transformer::{check_heads, kernels, permutations};

/// Which OLMo generation (the config's `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OlmoVersion {
    /// `olmo`: parameter-free layer norms before attention and the MLP.
    One,
    /// `olmo2`: RMS norms after attention and the MLP, and on queries and keys.
    Two,
}

/// An OLMo architecture, from an HF `config.json` (`model_type: olmo` or `olmo2`).
#[derive(Debug, Clone, PartialEq)]
pub struct OlmoSpec {
    /// OLMo-1 or OLMo-2.
    pub version: OlmoVersion,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Key and value heads per layer (fewer than `num_heads`: grouped-query attention).
    pub num_kv_heads: usize,
    /// Dimensions of each head (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Rotary base (`rope_theta`, or `rope_parameters.rope_theta`).
    pub rope_theta: f64,
    /// Epsilon of OLMo-2's RMS norms (`rms_norm_eps`); OLMo-1's layer norms use 1e-5.
    pub norm_eps: f64,
    /// Queries, keys and values clipped to `[-c, c]` (`clip_qkv`).
    pub clip_qkv: Option<f64>,
    /// The attention projections have biases (`attention_bias`).
    pub attention_bias: bool,
    /// The output layer is the token embedding (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
}

/// The epsilon of OLMo-1's `OlmoLayerNorm`, fixed in transformers' code.
const OLMO1_LAYER_NORM_EPS: f64 = 1e-5;

impl OlmoSpec {
    /// Reads the architecture of `version` from a parsed HF `config.json` at `path`.
    pub fn from_config_json(value: &serde_json::Value, path: &Path, version: OlmoVersion) -> Result<Self> {
        let (rope_theta, partial_rotary_factor) = rope_settings(value, path)?;
        if partial_rotary_factor.is_some_and(|f| f != 1.0) {
            return Err(CoreError::config(
                path,
                "a partial rotary factor is not supported (OLMo rotates whole heads)",
            ));
        }
        let act: String = field(value, "hidden_act").unwrap_or_else(|| "silu".into());
        if act != "silu" {
            return Err(CoreError::config(
                path,
                format!("unsupported hidden_act `{act}` (OLMo's MLP is SwiGLU: silu)"),
            ));
        }
        let hidden_size: usize = required(value, "hidden_size", path)?;
        let num_heads: usize = required(value, "num_attention_heads", path)?;
        check_heads(path, ("hidden_size", hidden_size), ("num_attention_heads", num_heads))?;
        let num_kv_heads = field(value, "num_key_value_heads").unwrap_or(num_heads);
        if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(CoreError::config(
                path,
                format!("num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"),
            ));
        }
        let head_dim = field(value, "head_dim").unwrap_or(hidden_size / num_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(CoreError::config(
                path,
                format!("head_dim {head_dim} is not a positive even number"),
            ));
        }
        Ok(Self {
            version,
            vocab_size: required(value, "vocab_size", path)?,
            hidden_size,
            num_layers: required(value, "num_hidden_layers", path)?,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: required(value, "intermediate_size", path)?,
            rope_theta: field(value, "rope_theta").or(rope_theta).unwrap_or(10000.0),
            norm_eps: match version {
                OlmoVersion::One => OLMO1_LAYER_NORM_EPS,
                OlmoVersion::Two => field(value, "rms_norm_eps").unwrap_or(1e-5),
            },
            clip_qkv: field(value, "clip_qkv"),
            attention_bias: field(value, "attention_bias").unwrap_or(false),
            tie_word_embeddings: field(value, "tie_word_embeddings").unwrap_or(false),
        })
    }

    fn name(&self) -> &'static str {
        match self.version {
            OlmoVersion::One => "olmo",
            OlmoVersion::Two => "olmo2",
        }
    }
}

impl DecoderSpec for OlmoSpec {
    type Model = Olmo;

    fn describe(&self) -> String {
        let kv = if self.num_kv_heads == self.num_heads {
            String::new()
        } else {
            format!(" ({} key-value)", self.num_kv_heads)
        };
        format!(
            "{} {} layers x {} hidden ({} heads{kv}, {} intermediate, SwiGLU), vocab {}",
            self.name(),
            self.num_layers,
            self.hidden_size,
            self.num_heads,
            self.intermediate_size,
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

    fn load(&self, vb: VarBuilder) -> candle_core::Result<Olmo> {
        Olmo::load(vb, self)
    }

    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec {
        let prefix = if params.get("model.embed_tokens.weight").is_some() {
            "model."
        } else {
            ""
        };
        permutations::olmo(
            params,
            prefix,
            self.num_layers,
            self.hidden_size,
            self.intermediate_size,
        )
    }
}

/// Where a layer normalises.
enum Norms {
    /// OLMo-1: before attention and before the MLP, parameter-free (weight 1, bias 0: the same
    /// values as none); one norm that every layer and the final norm share.
    Before(LayerNorm),
    /// OLMo-2: after attention and after the MLP, and on the query and key projections.
    After {
        attention: LayerNorm,
        feed_forward: LayerNorm,
        queries: LayerNorm,
        keys: LayerNorm,
    },
}

/// One OLMo layer.
struct Layer {
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    gate: Dense,
    up: Dense,
    down: Dense,
    norms: Norms,
}

/// `OlmoForCausalLM` or `Olmo2ForCausalLM` in eval mode.
pub struct Olmo {
    spec: OlmoSpec,
    embed: Embedding,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    head: Dense,
}

impl Olmo {
    /// Builds the model from tensors named as in the HF checkpoint (`model.embed_tokens`,
    /// `model.layers.N.self_attn.{q,k,v,o}_proj`, `model.layers.N.mlp.{gate,up,down}_proj`,
    /// OLMo-2's norms, `lm_head` unless tied to the embedding; without the `model.` prefix too).
    pub fn load(vb: VarBuilder, spec: &OlmoSpec) -> candle_core::Result<Self> {
        let (h, i) = (spec.hidden_size, spec.intermediate_size);
        let (q_width, kv_width) = (spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim);
        let device = vb.device();
        let plain_norm = match spec.version {
            OlmoVersion::One => Some(LayerNorm::new(
                Tensor::ones(h, DType::F32, device)?,
                Tensor::zeros(h, DType::F32, device)?,
                OLMO1_LAYER_NORM_EPS,
            )),
            OlmoVersion::Two => None,
        };
        // With tied embeddings every name starts with `model.`, which the loaders strip.
        let body = if vb.contains_tensor("embed_tokens.weight") {
            vb.clone()
        } else {
            vb.pp("model")
        };
        let project = |inputs, outputs, vb| dense_with_bias_if(spec.attention_bias, inputs, outputs, vb);
        let rms = |size: usize, vb: VarBuilder| -> candle_core::Result<LayerNorm> {
            // Initialised to ones when the weights are made, not read (as `candle_nn::rms_norm`).
            let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
            Ok(LayerNorm::rms_norm(weight, spec.norm_eps))
        };
        let layers = (0..spec.num_layers)
            .map(|n| {
                let vb = body.pp(format!("layers.{n}"));
                let attn = vb.pp("self_attn");
                let norms = match &plain_norm {
                    Some(plain) => Norms::Before(plain.clone()),
                    None => Norms::After {
                        attention: rms(h, vb.pp("post_attention_layernorm"))?,
                        feed_forward: rms(h, vb.pp("post_feedforward_layernorm"))?,
                        queries: rms(q_width, attn.pp("q_norm"))?,
                        keys: rms(kv_width, attn.pp("k_norm"))?,
                    },
                };
                Ok(Layer {
                    q: project(h, q_width, attn.pp("q_proj"))?,
                    k: project(h, kv_width, attn.pp("k_proj"))?,
                    v: project(h, kv_width, attn.pp("v_proj"))?,
                    o: project(q_width, h, attn.pp("o_proj"))?,
                    gate: dense_no_bias(h, i, vb.pp("mlp.gate_proj"))?,
                    up: dense_no_bias(h, i, vb.pp("mlp.up_proj"))?,
                    down: dense_no_bias(i, h, vb.pp("mlp.down_proj"))?,
                    norms,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let embed = embedding(spec.vocab_size, h, body.pp("embed_tokens"))?;
        let head = if spec.tie_word_embeddings {
            Dense::new(Linear::new(embed.embeddings().clone(), None))
        } else {
            dense_no_bias(h, spec.vocab_size, vb.pp("lm_head"))?
        };
        let final_norm = match plain_norm {
            Some(plain) => plain,
            None => rms(h, body.pp("norm"))?,
        };
        Ok(Self {
            spec: spec.clone(),
            embed,
            layers,
            final_norm,
            head,
        })
    }

    /// `x` `[B, L, heads * head_dim]` as `[B, heads, L, head_dim]`, rotated (`rotary`: cos, sin).
    fn heads(&self, x: &Tensor, heads: usize, rotary: Option<&(Tensor, Tensor)>) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let x = x.reshape((b, l, heads, self.spec.head_dim))?.transpose(1, 2)?;
        match rotary {
            Some((cos, sin)) => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin),
            None => Ok(x),
        }
    }

    fn attend(
        &self,
        layer: &Layer,
        x: &Tensor,
        bias: &Tensor,
        rotary: &(Tensor, Tensor),
    ) -> candle_core::Result<Tensor> {
        let clip = |t: Tensor| match self.spec.clip_qkv {
            Some(c) => t.clamp(-c, c),
            None => Ok(t),
        };
        let (mut q, mut k) = (clip(layer.q.forward(x)?)?, clip(layer.k.forward(x)?)?);
        let v = clip(layer.v.forward(x)?)?;
        if let Norms::After { queries, keys, .. } = &layer.norms {
            q = queries.forward(&q)?;
            k = keys.forward(&k)?;
        }
        let (heads, kv_heads) = (self.spec.num_heads, self.spec.num_kv_heads);
        let q = self.heads(&q, heads, Some(rotary))?;
        let (mut k, mut v) = (self.heads(&k, kv_heads, Some(rotary))?, self.heads(&v, kv_heads, None)?);
        if kv_heads != heads {
            // transformers' `repeat_kv`: query head h reads key-value head h / (heads / kv_heads).
            k = candle_transformers::utils::repeat_kv(k, heads / kv_heads)?;
            v = candle_transformers::utils::repeat_kv(v.contiguous()?, heads / kv_heads)?;
        }
        let out = attention(&q, &k, &v, 1.0 / (self.spec.head_dim as f64).sqrt(), bias)?;
        layer.o.forward(&out)
    }

    /// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`; on the CPU the gated state is written over
    /// the gate's fresh product (`kernels::swiglu_in_place`).
    fn mlp(&self, layer: &Layer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (gate, up) = (layer.gate.forward(x)?, layer.up.forward(x)?);
        let gated = if kernels::supports(&gate) && gate.is_contiguous() && up.is_contiguous() {
            kernels::swiglu_in_place(&gate, &up)?;
            gate
        } else {
            (gate.silu()? * up)?
        };
        layer.down.forward(&gated)
    }
}

impl Decoder for Olmo {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        bias: &Tensor,
        keep: Option<usize>,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (_, l) = input_ids.dims2()?;
        let rotary = rotary_tables(self.spec.head_dim, self.spec.rope_theta, l, input_ids.device())?;
        let x = self.embed.forward(input_ids)?;
        let block = |layer: &Layer, x: &Tensor| -> candle_core::Result<Tensor> {
            match &layer.norms {
                Norms::Before(plain) => {
                    let h = (x + self.attend(layer, &plain.forward(x)?, bias, &rotary)?)?;
                    let mlp = self.mlp(layer, &plain.forward(&h)?)?;
                    mlp + h
                }
                Norms::After {
                    attention,
                    feed_forward,
                    ..
                } => {
                    let h = (x + attention.forward(&self.attend(layer, x, bias, &rotary)?)?)?;
                    let mlp = feed_forward.forward(&self.mlp(layer, &h)?)?;
                    mlp + h
                }
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
    fn olmo_configs_read_as_published() {
        let path = Path::new("OLMo-1B-hf/config.json");
        // As published for allenai/OLMo-1B-hf (transformers 4).
        let olmo = serde_json::json!({
            "architectures": ["OlmoForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
            "clip_qkv": null, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
            "max_position_embeddings": 2048, "model_type": "olmo", "num_attention_heads": 16,
            "num_hidden_layers": 16, "num_key_value_heads": 16, "rope_scaling": null,
            "rope_theta": 10000.0, "tie_word_embeddings": true, "vocab_size": 50304
        });
        let spec = OlmoSpec::from_config_json(&olmo, path, OlmoVersion::One).unwrap();
        assert_eq!(
            (spec.hidden_size, spec.num_layers, spec.num_heads, spec.head_dim),
            (2048, 16, 16, 128)
        );
        assert!(spec.tie_word_embeddings && spec.clip_qkv.is_none());
        assert_eq!((spec.rope_theta, spec.norm_eps), (10000.0, 1e-5));
        assert!(spec.describe().starts_with("olmo 16 layers"), "{}", spec.describe());

        // OLMo-2 in transformers 5's form: rope settings under `rope_parameters`, grouped queries.
        let mut olmo2 = olmo.clone();
        let object = olmo2.as_object_mut().unwrap();
        object.remove("rope_theta");
        object.insert("model_type".into(), "olmo2".into());
        object.insert("num_key_value_heads".into(), 4.into());
        object.insert("rms_norm_eps".into(), 1e-6.into());
        object.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_theta": 500000, "rope_type": "default"}),
        );
        let spec = OlmoSpec::from_config_json(&olmo2, path, OlmoVersion::Two).unwrap();
        assert_eq!((spec.num_kv_heads, spec.rope_theta, spec.norm_eps), (4, 500000.0, 1e-6));
        assert!(
            spec.describe()
                .starts_with("olmo2 16 layers x 2048 hidden (16 heads (4 key-value)")
        );

        olmo2["num_key_value_heads"] = 5.into();
        let err = OlmoSpec::from_config_json(&olmo2, path, OlmoVersion::Two)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OLMo-1B-hf/config.json") && err.contains("num_key_value_heads 5"),
            "{err}"
        );
        olmo2["num_key_value_heads"] = 4.into();
        olmo2["hidden_act"] = "gelu".into();
        let err = OlmoSpec::from_config_json(&olmo2, path, OlmoVersion::Two)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_act `gelu`"), "{err}");
        olmo2["hidden_act"] = "silu".into();
        olmo2["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000});
        let err = OlmoSpec::from_config_json(&olmo2, path, OlmoVersion::Two)
            .unwrap_err()
            .to_string();
        assert!(err.contains("llama3"), "{err}");
    }
}
