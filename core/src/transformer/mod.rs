//! Transformer families, run with candle on tokenised eval data (`input_ids`, optional
//! `attention_mask`, `labels`).
//!
//! - [`bert`]: Hugging Face `BertForSequenceClassification` from its `config.json`
//!   (`"model_type": "bert"`) and checkpoint tensors; candle-transformers' BERT encoder plus the HF
//!   pooler and classifier head.
//! - [`BertEvaluator`]: per-example cross-entropy and correctness, and the pooled [CLS] state as the
//!   representation for the views.
//!
//! The models run on a candle [`Device`]: the CPU, or an NVIDIA GPU when lineage is built with the
//! `cuda` feature ([`device`]).

pub mod bert;
mod classifier;
mod tokens;

use candle_core::Device;

pub use bert::{BertClassifier, BertSpec};
pub use classifier::BertEvaluator;
pub use tokens::{TokenBatch, TokenBatches};

use crate::error::{CoreError, Result};

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
