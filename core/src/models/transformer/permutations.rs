//! Permutation symmetries of the transformer families, for Git Re-Basin weight matching
//! ([`crate::methods::align`]).
//!
//! Two kinds of permutation leave a transformer's function unchanged and are searched:
//! - the **residual stream**: one permutation of the hidden features shared by every layer. It
//!   reorders the embedding columns, the layer-norm weights and biases, the input axis of every
//!   projection that reads the stream and the output axis (and bias) of every projection that writes
//!   it. Layer norm commutes with it (mean and variance do not depend on feature order).
//! - the **MLP units** of each layer: the output rows (and bias) of the up-projection and the input
//!   axis of the down-projection, as for an MLP.
//!
//! For the encoder classifiers the units of the head's dense layer are a third kind (BERT's pooler,
//! RoBERTa's `classifier.dense`: rows and bias, and the output layer's columns).
//! Attention heads and the dimensions inside a head are kept as they are (they only permute in
//! blocks, and rotary embeddings tie query and key dimensions in pairs).

use lineage_loaders::ParamSet;

use crate::methods::align::{PermutationGroup, PermutationSpec, TensorAxis};
use crate::models::transformer::classifier::EncoderSizes;

/// Builds one permutation group: `axes` are `(tensor, axis)`; tensors absent from `params` (optional
/// biases, an untied output head) are left out.
fn group(name: String, size: usize, axes: &[(String, usize)], params: &ParamSet) -> PermutationGroup {
    PermutationGroup {
        name,
        size,
        axes: axes
            .iter()
            .filter(|(tensor, _)| params.get(tensor).is_some())
            .map(|(tensor, axis)| TensorAxis {
                tensor: tensor.clone(),
                axis: *axis,
            })
            .collect(),
        carried: Vec::new(),
    }
}

/// `(name, axis)` for `name` = `prefix` + each suffix.
fn named(prefix: &str, suffixes: &[(&str, usize)]) -> Vec<(String, usize)> {
    suffixes
        .iter()
        .map(|(s, axis)| (format!("{prefix}{s}"), *axis))
        .collect()
}

/// Tensor names of an encoder classifier (BERT, RoBERTa).
#[derive(Debug, Clone, Copy)]
pub struct EncoderNames<'a> {
    /// Prefix of the encoder's tensors, e.g. `bert.` or `roberta.`.
    pub prefix: &'a str,
    /// The head's dense layer reading the first token's state (BERT's `bert.pooler.dense`,
    /// RoBERTa's `classifier.dense`).
    pub head_dense: &'a str,
    /// The head's output layer (`classifier`, `classifier.out_proj`).
    pub head_out: &'a str,
}

/// The spec of a BERT-style sequence classifier of `sizes`: residual stream, MLP units, and the
/// units of the head's dense layer.
pub fn encoder_classifier(params: &ParamSet, names: &EncoderNames, sizes: &EncoderSizes) -> PermutationSpec {
    let (layers, hidden, intermediate) = (sizes.layers, sizes.hidden, sizes.intermediate);
    let mut residual = named(
        &format!("{}embeddings.", names.prefix),
        &[
            ("word_embeddings.weight", 1),
            ("position_embeddings.weight", 1),
            ("token_type_embeddings.weight", 1),
            ("LayerNorm.weight", 0),
            ("LayerNorm.bias", 0),
        ],
    );
    let mut groups = Vec::new();
    for l in 0..layers {
        let p = format!("{}encoder.layer.{l}.", names.prefix);
        residual.extend(named(
            &p,
            &[
                ("attention.self.query.weight", 1),
                ("attention.self.key.weight", 1),
                ("attention.self.value.weight", 1),
                ("attention.output.dense.weight", 0),
                ("attention.output.dense.bias", 0),
                ("attention.output.LayerNorm.weight", 0),
                ("attention.output.LayerNorm.bias", 0),
                ("intermediate.dense.weight", 1),
                ("output.dense.weight", 0),
                ("output.dense.bias", 0),
                ("output.LayerNorm.weight", 0),
                ("output.LayerNorm.bias", 0),
            ],
        ));
        let mlp = named(
            &p,
            &[
                ("intermediate.dense.weight", 0),
                ("intermediate.dense.bias", 0),
                ("output.dense.weight", 1),
            ],
        );
        groups.push(group(format!("P_layer{l}_mlp"), intermediate, &mlp, params));
    }
    residual.push((format!("{}.weight", names.head_dense), 1));
    let head = [
        (format!("{}.weight", names.head_dense), 0),
        (format!("{}.bias", names.head_dense), 0),
        (format!("{}.weight", names.head_out), 1),
    ];
    groups.insert(0, group("P_residual".into(), hidden, &residual, params));
    groups.push(group("P_head".into(), hidden, &head, params));
    PermutationSpec { groups }
}

/// The spec of a `GPT2LMHeadModel` (or bare `GPT2Model` when `prefix` is empty; otherwise
/// `prefix` is `transformer.`). `Conv1D` weights are stored `[in, out]`.
pub fn gpt2(params: &ParamSet, prefix: &str, layers: usize, hidden: usize, inner: usize) -> PermutationSpec {
    let mut residual = named(prefix, &[("wte.weight", 1), ("wpe.weight", 1)]);
    let mut groups = Vec::new();
    for l in 0..layers {
        let p = format!("{prefix}h.{l}.");
        residual.extend(named(
            &p,
            &[
                ("ln_1.weight", 0),
                ("ln_1.bias", 0),
                ("attn.c_attn.weight", 0),
                ("attn.c_proj.weight", 1),
                ("attn.c_proj.bias", 0),
                ("ln_2.weight", 0),
                ("ln_2.bias", 0),
                ("mlp.c_fc.weight", 0),
                ("mlp.c_proj.weight", 1),
                ("mlp.c_proj.bias", 0),
            ],
        ));
        let mlp = named(
            &p,
            &[("mlp.c_fc.weight", 1), ("mlp.c_fc.bias", 0), ("mlp.c_proj.weight", 0)],
        );
        groups.push(group(format!("P_layer{l}_mlp"), inner, &mlp, params));
    }
    residual.extend(named(prefix, &[("ln_f.weight", 0), ("ln_f.bias", 0)]));
    residual.push(("lm_head.weight".into(), 1));
    groups.insert(0, group("P_residual".into(), hidden, &residual, params));
    PermutationSpec { groups }
}

/// The spec of a `GPTNeoXForCausalLM`.
pub fn gpt_neox(params: &ParamSet, layers: usize, hidden: usize, intermediate: usize) -> PermutationSpec {
    let mut residual = named("gpt_neox.", &[("embed_in.weight", 1)]);
    let mut groups = Vec::new();
    for l in 0..layers {
        let p = format!("gpt_neox.layers.{l}.");
        residual.extend(named(
            &p,
            &[
                ("input_layernorm.weight", 0),
                ("input_layernorm.bias", 0),
                ("post_attention_layernorm.weight", 0),
                ("post_attention_layernorm.bias", 0),
                ("attention.query_key_value.weight", 1),
                ("attention.dense.weight", 0),
                ("attention.dense.bias", 0),
                ("mlp.dense_h_to_4h.weight", 1),
                ("mlp.dense_4h_to_h.weight", 0),
                ("mlp.dense_4h_to_h.bias", 0),
            ],
        ));
        let mlp = named(
            &p,
            &[
                ("mlp.dense_h_to_4h.weight", 0),
                ("mlp.dense_h_to_4h.bias", 0),
                ("mlp.dense_4h_to_h.weight", 1),
            ],
        );
        groups.push(group(format!("P_layer{l}_mlp"), intermediate, &mlp, params));
    }
    residual.extend(named(
        "gpt_neox.",
        &[("final_layer_norm.weight", 0), ("final_layer_norm.bias", 0)],
    ));
    residual.push(("embed_out.weight".into(), 1));
    groups.insert(0, group("P_residual".into(), hidden, &residual, params));
    PermutationSpec { groups }
}

/// The spec of an `OlmoForCausalLM` or `Olmo2ForCausalLM` whose body's tensors start with `prefix`
/// (`model.`, or nothing when the loaders stripped it); tensors OLMo-1 lacks (its norms) and a tied
/// output layer are left out. The SwiGLU MLP's units permute the gate's and the up projection's
/// rows together.
pub fn olmo(params: &ParamSet, prefix: &str, layers: usize, hidden: usize, intermediate: usize) -> PermutationSpec {
    let mut residual = named(prefix, &[("embed_tokens.weight", 1)]);
    let mut groups = Vec::new();
    for l in 0..layers {
        let p = format!("{prefix}layers.{l}.");
        residual.extend(named(
            &p,
            &[
                ("self_attn.q_proj.weight", 1),
                ("self_attn.k_proj.weight", 1),
                ("self_attn.v_proj.weight", 1),
                ("self_attn.o_proj.weight", 0),
                ("self_attn.o_proj.bias", 0),
                ("post_attention_layernorm.weight", 0),
                ("mlp.gate_proj.weight", 1),
                ("mlp.up_proj.weight", 1),
                ("mlp.down_proj.weight", 0),
                ("post_feedforward_layernorm.weight", 0),
            ],
        ));
        let mlp = named(
            &p,
            &[
                ("mlp.gate_proj.weight", 0),
                ("mlp.up_proj.weight", 0),
                ("mlp.down_proj.weight", 1),
            ],
        );
        groups.push(group(format!("P_layer{l}_mlp"), intermediate, &mlp, params));
    }
    residual.extend(named(prefix, &[("norm.weight", 0)]));
    residual.push(("lm_head.weight".into(), 1));
    groups.insert(0, group("P_residual".into(), hidden, &residual, params));
    PermutationSpec { groups }
}
