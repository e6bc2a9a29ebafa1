//! The registry of model families: builds the [`Evaluator`] of a zoo from a run's `config.json` or,
//! without one, from the tensors of a reference checkpoint. Adding a family edits this file and the
//! family's own module, never the trait's.

use std::path::Path;

use candle_core::Device;
use lineage_loaders::ParamSet;

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};
use crate::models::cnn::{BnOptions, CnnEvaluator, CnnSpec, input_shape, is_cnn_arch};
use crate::models::evaluator::Evaluator;
use crate::models::external::ExternalEvaluator;
use crate::models::matmul::MatmulPrecision;
use crate::models::mlp::{MlpEvaluator, MlpSpec};
use crate::models::transformer::{MODEL_TYPES, evaluator_for_model_type};

/// Builds an evaluator for a zoo from a run's `config.json` (if any), a reference param set and the
/// eval data.
pub type EvaluatorFactory<'a> = dyn Fn(Option<&Path>, &ParamSet, &EvalData) -> Result<Box<dyn Evaluator>> + Sync + 'a;

/// Builds the evaluator for a zoo on the CPU with the default BatchNorm handling: see [`evaluator_on`].
pub fn evaluator_for(config: Option<&Path>, reference: &ParamSet, data: &EvalData) -> Result<Box<dyn Evaluator>> {
    build_evaluator(config, reference, data, &Device::Cpu, &BnOptions::default())
}

/// An evaluator factory ([`EvaluatorFactory`]) whose candle-based families (the
/// transformers and the convolutional networks) run on `device`, BatchNorm statistics of
/// interpolated models being handled as `bn` says. The evaluator is chosen by the model family
/// named in `config` (a run's `config.json`): `{"arch": "mlp", ...}`, a convolutional `arch`
/// (`resnet*`, `vgg*`, `cnn`; see [`crate::models::cnn`]), `{"arch": "external", "command": [...]}`
/// (see [`crate::models::external`]), or an HF config whose `model_type` is one of
/// [`crate::models::transformer::MODEL_TYPES`] (see [`crate::models::transformer`]); without a config, or without
/// `arch` / `model_type`, a ResNet or VGG is recognised by its tensor names, else an MLP is inferred
/// from the tensors of `reference`. The factory checks that `reference` fits the model and the eval data.
/// The transformers' CPU products are computed as `matmul` says ([`Evaluator::set_matmul`]).
pub fn evaluator_on(
    device: Device,
    bn: BnOptions,
    matmul: MatmulPrecision,
) -> impl Fn(Option<&Path>, &ParamSet, &EvalData) -> Result<Box<dyn Evaluator>> + Sync {
    move |config, reference, data| {
        let mut evaluator = build_evaluator(config, reference, data, &device, &bn)?;
        evaluator.set_matmul(matmul);
        Ok(evaluator)
    }
}

/// The convolutional evaluator of `spec` (`value` / `path`: the parsed `config.json`, if any).
fn cnn_evaluator(
    spec: CnnSpec,
    config: Option<(&serde_json::Value, &Path)>,
    reference: &ParamSet,
    data: &EvalData,
    device: &Device,
    bn: &BnOptions,
) -> Result<Box<dyn Evaluator>> {
    let shape = match config {
        Some((value, path)) => input_shape(value, path)?,
        None => None,
    };
    let reset = bn.data.as_deref().map(EvalData::load).transpose()?;
    let evaluator = CnnEvaluator::new(spec, reference, data, shape, bn, reset.as_ref(), device)?;
    Ok(Box::new(evaluator))
}

/// Whether `params` are named as the OLMo repository saves its models (`model.pt` in
/// `stepN-unsharded/`), not as transformers does.
fn is_native_olmo(params: &ParamSet) -> bool {
    params.names().any(|n| n.ends_with("blocks.0.att_proj.weight"))
}

fn build_evaluator(
    config: Option<&Path>,
    reference: &ParamSet,
    data: &EvalData,
    device: &Device,
    bn: &BnOptions,
) -> Result<Box<dyn Evaluator>> {
    // The MLP named by the config; `None`: the family is to be recognised from the tensors.
    let named = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| CoreError::config(path, format!("invalid JSON: {e}")))?;
            match value.get("arch").and_then(|a| a.as_str()) {
                Some("mlp") => Some(MlpSpec::from_config_json(&value, path)?),
                Some(arch) if is_cnn_arch(arch) => {
                    let spec = CnnSpec::from_config_json(&value, path, reference)?;
                    return cnn_evaluator(spec, Some((&value, path)), reference, data, device, bn);
                }
                Some("external") => {
                    return Ok(Box::new(ExternalEvaluator::from_config_json(
                        &value, path, reference, data,
                    )?));
                }
                Some(other) => {
                    return Err(CoreError::config(
                        path,
                        format!("unsupported arch `{other}` (supported: mlp, resnet*, vgg*, cnn, external)"),
                    ));
                }
                None => match value.get("model_type").and_then(|m| m.as_str()) {
                    Some(model_type) => {
                        return evaluator_for_model_type(model_type, &value, path, reference, data, device)?
                            .ok_or_else(|| {
                                CoreError::config(
                                    path,
                                    format!(
                                        "unsupported model_type `{model_type}` (supported: {}; or arch mlp, external)",
                                        MODEL_TYPES.join(", ")
                                    ),
                                )
                            });
                    }
                    None => None,
                },
            }
        }
        None => None,
    };
    let spec = match named {
        Some(spec) => spec,
        None => match CnnSpec::infer(reference) {
            Some(cnn) => return cnn_evaluator(cnn?, None, reference, data, device, bn),
            None if is_native_olmo(reference) => {
                return Err(CoreError::Model(
                    "an OLMo checkpoint in the OLMo repository's own format (`transformer.blocks.N.att_proj`): \
                     lineage reads OLMo in the Hugging Face format (`config.json` with model_type `olmo` or \
                     `olmo2`); convert it with transformers' `convert_olmo_weights_to_hf.py`"
                        .into(),
                ));
            }
            None => MlpSpec::infer(reference)?,
        },
    };
    let evaluator = MlpEvaluator::new(spec, data)?;
    evaluator.check(reference)?;
    Ok(Box::new(evaluator))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Tensor};

    use super::*;

    /// A checkpoint of the OLMo repository's own format gets an error saying how to convert it,
    /// not an MLP inference failure.
    #[test]
    fn native_olmo_checkpoints_are_named() {
        let zeros = |shape: (usize, usize)| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let params = ParamSet::from_raw(vec![
            ("model.transformer.wte.weight".into(), zeros((24, 16))),
            ("model.transformer.blocks.0.att_proj.weight".into(), zeros((48, 16))),
        ])
        .unwrap();
        let ids = Tensor::zeros((2, 4), DType::U32, &Device::Cpu).unwrap();
        let data = EvalData::from_tensors(ids, Vec::new(), None, true).unwrap();
        let err = evaluator_for(None, &params, &data).err().unwrap().to_string();
        assert!(err.contains("convert_olmo_weights_to_hf.py"), "{err}");
    }
}
