//! Causal language models: what GPT-2 and GPT-NeoX share. Every predicted token is one example:
//! position t of a sequence predicts token t+1 wherever `attention_mask[t+1] = 1` (Hugging Face's
//! `labels = input_ids` with padding ignored), so the mean loss is the usual per-token eval loss and
//! the error rate is 1 - next-token accuracy.

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use lineage_loaders::ParamSet;

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};
use crate::methods::align::PermutationSpec;
use crate::models::scoring::{score_logits, score_logits_on_device};
use crate::models::transformer::evaluator::{Architecture, Scores};
use crate::models::transformer::kernels;
use crate::models::transformer::tokens::{TokenBatch, TokenBatches};

/// Logit values computed and scored at once on the CPU (bounds memory for large vocabularies).
const LOGITS_PER_CHUNK: usize = 1 << 24;
/// The same on a GPU (512 MB of logits): fewer, larger output-layer products, each followed by a
/// wait for its scores to reach the host.
const DEVICE_LOGITS_PER_CHUNK: usize = 1 << 27;

/// A decoder-only architecture read from an HF `config.json`.
pub trait DecoderSpec: std::fmt::Debug + Send + Sync + 'static {
    /// The model built on one parameter set.
    type Model: Decoder;
    /// One line (family and sizes), part of result cache keys.
    fn describe(&self) -> String;
    /// Token ids must be below this.
    fn vocab_size(&self) -> usize;
    /// Width of the hidden states.
    fn hidden_size(&self) -> usize;
    /// Number of blocks.
    fn num_layers(&self) -> usize;
    /// Longest sequence the model takes, if limited (learned position embeddings).
    fn max_positions(&self) -> Option<usize>;
    /// Builds the model from tensors named as in the HF checkpoint.
    fn load(&self, vb: VarBuilder) -> candle_core::Result<Self::Model>;
    /// The permutation symmetries searched by weight matching.
    fn permutation_spec(&self, params: &ParamSet) -> PermutationSpec;
}

/// A decoder-only model.
pub trait Decoder: Send + Sync + 'static {
    /// The final hidden states `[B, L, H]` (after the last layer norm) of token ids `[B, L]`, with
    /// `bias` `[B, 1, L, L]` added to the attention scores ([`attention_bias`]); and, when `keep` is
    /// given, the hidden states at that layer (see [`CausalLm`]'s representation layers).
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        bias: &Tensor,
        keep: Option<usize>,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)>;
    /// Next-token logits `[T, V]` of hidden states `[T, H]`.
    fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor>;
}

/// A causal language model evaluated token by token (see the module doc). Its representation at
/// layer `l` is the residual stream after block `l`, and at the last layer the final hidden state
/// after the last layer norm: Hugging Face's `hidden_states[l + 1]`.
#[derive(Debug, Clone)]
pub struct CausalLm<S>(pub S);

/// The additive attention bias `[B, 1, L, L]` of a batch: 0 where query i may attend key j (j <= i
/// and key j is not padding), `f32::MIN` elsewhere, as Hugging Face's eager attention.
pub fn attention_bias(batch: &TokenBatch, device: &Device) -> candle_core::Result<Tensor> {
    let (b, l) = (batch.rows(), batch.len);
    let mut bias = vec![f32::MIN; b * l * l];
    for s in 0..b {
        let mask = &batch.mask[s * l..(s + 1) * l];
        for i in 0..l {
            let row = &mut bias[(s * l + i) * l..(s * l + i + 1) * l];
            for (j, value) in row.iter_mut().enumerate().take(i + 1) {
                if mask[j] != 0 {
                    *value = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(bias, (b, 1, l, l), device)
}

/// Positions `s * L + t` that predict a token, with the token predicted: `ids[s, t + 1]` where
/// `attention_mask[s, t + 1] = 1`, or, with per-token labels, `labels[s, t + 1]` where it is not -100.
fn predictions(batch: &TokenBatch) -> (Vec<u32>, Vec<u32>) {
    let l = batch.len;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for s in 0..batch.rows() {
        for t in 0..l.saturating_sub(1) {
            let next = s * l + t + 1;
            let target = match &batch.labels {
                Some(labels) => u32::try_from(labels[next]).ok(),
                None => (batch.mask[next] != 0).then_some(batch.ids[next]),
            };
            if let Some(target) = target {
                rows.push((s * l + t) as u32);
                targets.push(target);
            }
        }
    }
    (rows, targets)
}

impl<S: DecoderSpec> Architecture for CausalLm<S> {
    type Model = S::Model;

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    fn max_positions(&self) -> Option<usize> {
        self.0.max_positions()
    }

    /// One example per predicted token (per-sequence class labels, if any, are not used); per-token
    /// labels must be token ids of the vocabulary.
    fn examples(&self, data: &EvalData, tokens: &TokenBatches) -> Result<Vec<u32>> {
        let mut sequence_of = Vec::new();
        for batch in tokens.iter() {
            let (rows, targets) = predictions(batch);
            if let Some(&bad) = targets.iter().find(|&&t| t as usize >= self.0.vocab_size()) {
                return Err(CoreError::data(
                    &data.source,
                    format!(
                        "label {bad} is beyond the model's vocabulary of {}",
                        self.0.vocab_size()
                    ),
                ));
            }
            sequence_of.extend(rows.iter().map(|&row| batch.sequences[row as usize / batch.len]));
        }
        if sequence_of.is_empty() {
            return Err(CoreError::data(
                &data.source,
                "the sequences predict no token (no sequence has 2 attended tokens, or every label is -100)",
            ));
        }
        Ok(sequence_of)
    }

    /// The hidden state at each predicting position.
    fn representation_width(&self) -> usize {
        self.0.hidden_size()
    }

    fn representation_layers(&self) -> usize {
        self.0.num_layers()
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
        _labels: &[u32],
        layer: Option<usize>,
        out: &mut Scores,
    ) -> candle_core::Result<()> {
        let device = batch.input_ids.device();
        let bias = attention_bias(batch, device)?;
        let (hidden, kept) = model.hidden_states(&batch.input_ids, &bias, layer)?;
        let (rows, targets) = predictions(batch);
        if rows.is_empty() {
            return Ok(());
        }
        let index = Tensor::from_slice(&rows, rows.len(), device)?;
        let at_predictions = |states: &Tensor| {
            states
                .reshape((batch.rows() * batch.len, self.0.hidden_size()))?
                .index_select(&index, 0)
        };
        let selected = at_predictions(&hidden)?;
        let vocab = self.0.vocab_size();
        let budget = if device.is_cpu() {
            LOGITS_PER_CHUNK
        } else {
            DEVICE_LOGITS_PER_CHUNK
        };
        // Chunks of equal size: a small last chunk would read the whole output weight for a few rows.
        let chunks = rows.len().div_ceil((budget / vocab).max(1));
        let per_chunk = rows.len().div_ceil(chunks);
        for start in (0..rows.len()).step_by(per_chunk) {
            let n = per_chunk.min(rows.len() - start);
            let logits = model.logits(&selected.i(start..start + n)?)?;
            let targets = &targets[start..start + n];
            let (loss, correct) = if device.is_cpu() {
                let width = logits.dim(D::Minus1)?;
                let logits = logits.flatten_all()?.to_vec1::<f32>()?;
                let (mut loss, mut correct) = (vec![0.0; n], vec![false; n]);
                score_logits(&logits, width, width, targets, &mut loss, &mut correct);
                (loss, correct)
            } else {
                // On a GPU the logits stay there: only a loss and a flag per token come back.
                score_logits_on_device(&logits, targets)?
            };
            out.loss.extend(loss);
            out.correct.extend(correct);
        }
        if let Some(kept) = kept {
            out.features
                .extend(at_predictions(&kept)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}

/// Runs `blocks` on the embedded tokens `x`, then `final_norm`; returns the final states and, when
/// `keep` is given, the states at that representation layer: the output of block `keep`, or the
/// final states for the last block (as Hugging Face's `hidden_states[keep + 1]`).
pub fn run_blocks<B>(
    mut x: Tensor,
    blocks: &[B],
    keep: Option<usize>,
    block: impl Fn(&B, &Tensor) -> candle_core::Result<Tensor>,
    final_norm: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let last = blocks.len().saturating_sub(1);
    let mut kept = None;
    for (l, b) in blocks.iter().enumerate() {
        x = block(b, &x)?;
        if keep == Some(l) && l < last {
            kept = Some(x.clone());
        }
    }
    let out = final_norm(&x)?;
    if keep == Some(last) {
        kept = Some(out.clone());
    }
    Ok((out, kept))
}

/// Hidden activation functions of HF configs (`hidden_act` / `activation_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The activation named `name` in an HF config.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    /// Applies the activation with candle's operations (on the CPU,
    /// [`crate::models::transformer::dense::Dense::forward_activated`] applies it in place to the
    /// product instead).
    pub fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

/// Scaled dot-product attention over heads: `softmax(q kᵀ · scale + bias) v` for `q`
/// `[B, heads, Lq, head]`, `k`, `v` `[B, heads, Lk, head]` and `bias` `[B, 1, Lq or 1, Lk]`;
/// returns `[B, Lq, heads * head]`. On the CPU, one fused kernel (`kernels::attention`).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, bias: &Tensor) -> candle_core::Result<Tensor> {
    if kernels::supports(q) {
        return kernels::attention(q, k, v, scale, bias);
    }
    let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(bias)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.matmul(&v.contiguous()?)?;
    let (b, heads, l, head) = out.dims4()?;
    out.transpose(1, 2)?.reshape((b, l, heads * head))
}

/// The default rotary embedding's settings in the HF config `value` at `path`: `rope_theta` and
/// `partial_rotary_factor` from `rope_parameters` (transformers 5) or `rope_scaling`, when given
/// there (families add their own top-level keys); a rope type other than `default` is an error.
pub fn rope_settings(value: &serde_json::Value, path: &std::path::Path) -> Result<(Option<f64>, Option<f64>)> {
    let rope = value.get("rope_parameters").or_else(|| value.get("rope_scaling"));
    if let Some(kind) = rope.and_then(|r| field::<String>(r, "rope_type").or_else(|| field(r, "type")))
        && kind != "default"
    {
        return Err(CoreError::config(
            path,
            format!("rope type `{kind}` is not supported (only default)"),
        ));
    }
    let rope_field = |key: &str| rope.and_then(|r| field::<f64>(r, key));
    Ok((rope_field("rope_theta"), rope_field("partial_rotary_factor")))
}

/// cos and sin `[len, dims / 2]` of positions `0..len` for a rotary embedding of `dims` dimensions
/// with base `base`, in f32 as transformers computes them (`inv_freq = 1 / base^(2i / dims)`).
pub fn rotary_tables(dims: usize, base: f64, len: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let base = base as f32;
    let inv_freq: Vec<f32> = (0..dims)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dims as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, dims / 2), device)?;
    let positions = Tensor::arange(0u32, len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((len, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Reads an optional field of an HF config.
pub fn field<T: serde::de::DeserializeOwned>(value: &serde_json::Value, key: &str) -> Option<T> {
    value
        .get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Reads a required field of an HF config at `path`.
pub fn required<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    key: &str,
    path: &std::path::Path,
) -> Result<T> {
    field(value, key).ok_or_else(|| CoreError::config(path, format!("missing or invalid `{key}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: Vec<u32>, mask: Vec<u32>, rows: usize) -> TokenBatch {
        let len = ids.len() / rows;
        TokenBatch {
            sequences: (0..rows as u32).collect(),
            len,
            input_ids: Tensor::from_slice(&ids, (rows, len), &Device::Cpu).unwrap(),
            attention_mask: Tensor::from_slice(&mask, (rows, len), &Device::Cpu).unwrap(),
            token_type_ids: None,
            labels: None,
            ids,
            mask,
        }
    }

    #[test]
    fn bias_is_causal_and_masks_padding_keys() {
        let b = batch(vec![5, 6, 7, 8, 9, 0], vec![1, 1, 1, 1, 1, 0], 2);
        let bias = attention_bias(&b, &Device::Cpu).unwrap();
        assert_eq!(bias.dims(), &[2, 1, 3, 3]);
        let bias: Vec<f32> = bias.flatten_all().unwrap().to_vec1().unwrap();
        let m = f32::MIN;
        assert_eq!(&bias[..9], &[0.0, m, m, 0.0, 0.0, m, 0.0, 0.0, 0.0]);
        // Second sequence: its third token is padding, so no query attends key 2.
        assert_eq!(&bias[9..], &[0.0, m, m, 0.0, 0.0, m, 0.0, 0.0, m]);
    }

    #[test]
    fn every_attended_next_token_is_predicted() {
        let b = batch(vec![5, 6, 7, 8, 9, 0], vec![1, 1, 1, 1, 1, 0], 2);
        let (rows, targets) = predictions(&b);
        assert_eq!(rows, vec![0, 1, 3]);
        assert_eq!(targets, vec![6, 7, 9]);
    }

    #[test]
    fn per_token_labels_choose_the_scored_tokens() {
        let mut b = batch(vec![5, 6, 7, 8, 9, 0], vec![1, 1, 1, 1, 1, 0], 2);
        // HF convention: labels[t] is the target of position t - 1; -100 is not scored.
        b.labels = Some(vec![-100, -100, 7, -100, 3, -100]);
        let (rows, targets) = predictions(&b);
        assert_eq!(rows, vec![1, 3]);
        assert_eq!(targets, vec![7, 3]);
    }

    #[test]
    fn activations_by_hf_name() {
        assert_eq!(Activation::from_name("gelu"), Some(Activation::Gelu));
        assert_eq!(Activation::from_name("gelu_new"), Some(Activation::GeluTanh));
        assert_eq!(Activation::from_name("swish"), None);
    }
}
