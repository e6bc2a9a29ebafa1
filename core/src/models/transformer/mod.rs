//! Transformer families, run with candle on tokenised eval data (`input_ids`, optional
//! `attention_mask`; `labels` for classifiers), chosen by the `model_type` of a Hugging Face
//! `config.json` next to the checkpoints:
//!
//! - `bert` ([`bert`]): `BertForSequenceClassification`; the BERT encoder written with candle-nn
//!   (its last layer computes only the [CLS] row the head reads) plus the HF pooler and classifier
//!   head. `roberta` / `xlm-roberta` ([`roberta`]):
//!   `RobertaForSequenceClassification`; BERT's encoder with RoBERTa's position ids, plus the HF head.
//!   One example per sequence ([`classifier`]); the representation is the head's input (BERT's
//!   pooled [CLS] state).
//! - `gpt2` ([`gpt2`]), `gpt_neox` ([`gpt_neox`], Pythia) and `olmo` / `olmo2` ([`olmo`]): causal
//!   language models, written with candle-nn on lineage's kernels. One example per predicted token
//!   ([`causal`]); the representation is the final hidden state at each predicting position.
//!
//! All run through one [`TransformerEvaluator`] on a candle [`Device`]: the CPU, or an NVIDIA GPU
//! when lineage is built with the `cuda` feature ([`device`]).

pub mod bert;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) mod bf16x3;
pub mod causal;
pub mod classifier;
mod dense;
mod evaluator;
pub mod gpt2;
pub mod gpt_neox;
pub(crate) mod kernels;
pub mod olmo;
pub mod permutations;
pub mod roberta;
mod tokens;

use std::path::Path;

use candle_core::Device;
use lineage_loaders::ParamSet;

pub use bert::{BertClassifier, BertSpec};
pub use causal::CausalLm;
pub use classifier::SequenceClassifier;
pub use evaluator::{Architecture, Scores, TransformerEvaluator};
pub use gpt_neox::GptNeoxSpec;
pub use gpt2::Gpt2Spec;
pub use olmo::{OlmoSpec, OlmoVersion};
pub use roberta::RobertaSpec;
pub use tokens::{TokenBatch, TokenBatches};

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};
use crate::models::evaluator::Evaluator;

/// `model_type` values of HF configs that lineage evaluates.
pub const MODEL_TYPES: &[&str] = &["bert", "roberta", "xlm-roberta", "gpt2", "gpt_neox", "olmo", "olmo2"];

/// The evaluator of the HF `model_type` in the parsed `config.json` at `path`, on `device`, or
/// `None` when lineage does not know that model type.
pub fn evaluator_for_model_type(
    model_type: &str,
    value: &serde_json::Value,
    path: &Path,
    reference: &ParamSet,
    data: &EvalData,
    device: &Device,
) -> Result<Option<Box<dyn Evaluator>>> {
    let evaluator: Box<dyn Evaluator> = match model_type {
        "bert" => {
            let classifier = reference.get(&BertSpec::classifier_weight()).map(|t| t.dims());
            let spec = SequenceClassifier(BertSpec::from_config_json(value, path, classifier)?);
            Box::new(TransformerEvaluator::new(spec, reference, data, device)?)
        }
        "roberta" | "xlm-roberta" => {
            let classifier = reference.get(&RobertaSpec::classifier_weight()).map(|t| t.dims());
            let spec = SequenceClassifier(RobertaSpec::from_config_json(value, path, classifier)?);
            Box::new(TransformerEvaluator::new(spec, reference, data, device)?)
        }
        "gpt2" => {
            let spec = CausalLm(Gpt2Spec::from_config_json(value, path)?);
            Box::new(TransformerEvaluator::new(spec, reference, data, device)?)
        }
        "gpt_neox" => {
            let spec = CausalLm(GptNeoxSpec::from_config_json(value, path)?);
            Box::new(TransformerEvaluator::new(spec, reference, data, device)?)
        }
        "olmo" | "olmo2" => {
            let version = if model_type == "olmo" {
                OlmoVersion::One
            } else {
                OlmoVersion::Two
            };
            let spec = CausalLm(OlmoSpec::from_config_json(value, path, version)?);
            Box::new(TransformerEvaluator::new(spec, reference, data, device)?)
        }
        _ => return Ok(None),
    };
    Ok(Some(evaluator))
}

/// Checks that `heads` attention heads split `hidden` dimensions evenly; the config keys name them
/// in the error about the config at `path`.
pub fn check_heads(path: &Path, (hidden_key, hidden): (&str, usize), (heads_key, heads): (&str, usize)) -> Result<()> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(CoreError::config(
            path,
            format!("{hidden_key} {hidden} is not a multiple of {heads_key} {heads}"),
        ));
    }
    Ok(())
}

/// The device named `name`: `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs a build with the `cuda`
/// feature (`cargo build --release --features cuda`); without it, asking for a GPU is an error.
pub fn device(name: &str) -> Result<Device> {
    let gpu = match name.trim() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                CoreError::InvalidArgument(format!("unknown device `{other}` (expected cpu, cuda or cuda:N)"))
            })?,
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(CoreError::InvalidArgument(format!(
            "device `{name}`: this build of lineage has no CUDA support (rebuild with `--features cuda`)"
        )));
    }
    Device::new_cuda(gpu).map_err(|e| CoreError::InvalidArgument(format!("device `{name}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert!(device("cpu").unwrap().is_cpu());
        let err = device("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
        assert!(device("cuda:x").is_err());
        if !candle_core::utils::cuda_is_available() {
            let err = device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
