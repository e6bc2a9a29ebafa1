//! The `bert` family against PyTorch: the tiny `BertForSequenceClassification` zoo of
//! `tests/fixtures/bert` (written by `make_fixture.py` with transformers), its reference losses,
//! correctness, interpolation path and pooled representations.

mod common;

use std::path::PathBuf;

use common::{
    TORCH_TOLERANCE, assert_checkpoints_match, assert_close, assert_path_matches, evaluator_for, floats,
    matmul_precisions, own_fixture, read_json, unpadded_copy, widen,
};
use lineage_core::methods::interpolation::endpoint_barrier;
use lineage_core::models::evaluator::Evaluator;
use lineage_core::{CoreError, EvalData};
use lineage_loaders::{ParamSet, load_params};
use serde_json::Value;

fn bert_fixture(rel: &str) -> PathBuf {
    own_fixture(&format!("bert/{rel}"))
}

fn checkpoint_dir(run: &str, step: u64) -> PathBuf {
    bert_fixture(&format!("zoo/{run}/checkpoint-{step}"))
}

fn load(run: &str, step: u64) -> ParamSet {
    load_params(&checkpoint_dir(run, step).join("model.safetensors")).unwrap()
}

fn reference() -> Value {
    read_json(&bert_fixture("reference.json"))
}

/// Sentence pairs: segment ids 1 on the second sentence, as PyTorch was given them.
fn data() -> EvalData {
    let data = EvalData::load(&bert_fixture("eval.parquet")).unwrap();
    assert!(data.token_type_ids.is_some(), "the fixture has token_type_ids");
    data
}

fn evaluator(reference_params: &ParamSet) -> Box<dyn Evaluator> {
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    evaluator_for(Some(&config), reference_params, &data()).unwrap()
}

#[test]
fn every_checkpoint_matches_pytorch() {
    let reference = reference();
    assert_eq!(reference["checkpoints"].as_object().unwrap().len(), 9);
    for precision in matmul_precisions() {
        let mut evaluator = evaluator(&load("init0-order0", 0));
        evaluator.set_matmul(precision);
        assert!(
            evaluator.describe().starts_with("bert 2 layers x 16 hidden"),
            "{}",
            evaluator.describe()
        );
        assert_checkpoints_match(evaluator.as_ref(), &reference["checkpoints"], load);
    }
}

#[test]
fn an_unpadded_eval_set_matches_pytorch_as_the_padded_one() {
    // Sequences of their own lengths, as a tokenizer without padding writes them: lineage pads
    // them and makes the attention mask.
    let dir = tempfile::tempdir().unwrap();
    let unpadded = EvalData::load(&unpadded_copy(&bert_fixture("eval.parquet"), dir.path())).unwrap();
    // The mask made from the rows' lengths is the fixture's own.
    let mask = |d: &EvalData| d.attention_mask.as_ref().unwrap().to_vec2::<u32>().unwrap();
    assert_eq!(mask(&unpadded), mask(&data()));
    assert!(
        mask(&unpadded).iter().any(|row| row.contains(&0)),
        "rows of different lengths"
    );
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let evaluator = evaluator_for(Some(&config), &load("init0-order0", 0), &unpadded).unwrap();
    assert_checkpoints_match(evaluator.as_ref(), &reference()["checkpoints"], load);
}

#[test]
fn interpolation_path_matches_pytorch() {
    let reference = reference();
    let path = &reference["path"];
    let alphas = floats(&reference["alphas"]);
    let (a, b) = (load("init0-order0", 300), load("init1-order0", 300));
    assert_eq!(path["a"], "init0-order0/300");
    assert_eq!(path["b"], "init1-order0/300");
    let mut losses_by_precision = Vec::new();
    for precision in matmul_precisions() {
        let mut evaluator = evaluator(&a);
        evaluator.set_matmul(precision);
        let results = assert_path_matches(evaluator.as_ref(), &a, &b, &alphas, path);
        let losses: Vec<f64> = results.iter().map(|r| r.loss).collect();
        losses_by_precision.push(losses.clone());
        // Models from different inits: a clear barrier, as PyTorch finds.
        let barrier = endpoint_barrier(&alphas, &losses);
        assert!((barrier - endpoint_barrier(&alphas, &floats(&path["loss"]))).abs() < TORCH_TOLERANCE);
        assert!(barrier > 0.2, "barrier {barrier}");

        let mid = alphas.iter().position(|&x| x == 0.5).unwrap();
        assert_close(
            &format!("per-example loss at alpha 0.5 ({} products)", precision.name()),
            &widen(&results[mid].per_example_loss),
            &floats(&path["per_example_loss_mid"]),
            TORCH_TOLERANCE,
        );
    }
    // The bf16x3 products did run: their rounding differs from f32's (within the tolerance above).
    if let [f32_losses, bf16x3_losses] = &losses_by_precision[..] {
        assert_ne!(
            f32_losses, bf16x3_losses,
            "bf16x3 gave f32's bits: its products did not run"
        );
    }
}

#[test]
fn pooled_representation_matches_pytorch() {
    let reference = reference();
    let (a, b) = (load("init0-order0", 300), load("init1-order0", 300));
    let evaluator = evaluator(&a);
    assert_eq!(evaluator.n_hidden_layers(), 1);
    // The midpoint blended as PyTorch does, through the shared blend.
    let mid = lineage_core::methods::interpolation::blend(a.iter(), |n| b.get(n), 0.5).unwrap();
    let mid = ParamSet::from_raw(mid.into_iter().collect()).unwrap();
    let features = evaluator
        .hidden_activations(&evaluator.prepare(&mid).unwrap(), 0)
        .unwrap();
    let want: Vec<Vec<f64>> = reference["path"]["pooled_mid"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    assert_eq!((features.rows(), features.cols()), (want.len(), 16));
    for (i, row) in want.iter().enumerate() {
        assert_close(
            &format!("pooled state of example {i}"),
            &widen(features.row(i)),
            row,
            TORCH_TOLERANCE,
        );
    }
    assert!(
        evaluator
            .hidden_activations(&evaluator.prepare(&a).unwrap(), 1)
            .is_err()
    );
}

#[test]
fn token_ids_beyond_the_vocabulary_are_refused() {
    let a = load("init0-order0", 0);
    let ids = candle_core::Tensor::from_vec(vec![1u32, 40, 2, 0], (1, 4), &candle_core::Device::Cpu).unwrap();
    let data = EvalData::from_tensors(ids, vec![0], None, true).unwrap();
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &a, &data).err().unwrap().to_string();
    assert!(err.contains("token id 40") && err.contains("vocabulary of 32"), "{err}");
}

#[test]
fn segment_ids_matter_and_out_of_range_ones_are_refused() {
    let a = load("init0-order0", 300);
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let with_types = evaluator_for(Some(&config), &a, &data()).unwrap().evaluate(&a).unwrap();
    let mut without = data();
    let types = without.token_type_ids.take().unwrap();
    let zero_types = evaluator_for(Some(&config), &a, &without)
        .unwrap()
        .evaluate(&a)
        .unwrap();
    assert!(
        (with_types.loss - zero_types.loss).abs() > 1e-3,
        "segment ids change the outputs: {} vs {}",
        with_types.loss,
        zero_types.loss
    );
    let twos = (types.ones_like().unwrap() * 2.0).unwrap();
    let bad = without.with_token_type_ids(twos).unwrap();
    let err = evaluator_for(Some(&config), &a, &bad).err().unwrap().to_string();
    assert!(err.contains("token type 2") && err.contains("2 token types"), "{err}");
}

#[test]
fn per_token_labels_are_refused_for_a_classifier() {
    let a = load("init0-order0", 0);
    let lm_data = EvalData::load(&own_fixture("causal_lm/eval_answers.parquet")).unwrap();
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &a, &lm_data).err().unwrap().to_string();
    assert!(err.contains("one label per sequence, not per token"), "{err}");
}

#[test]
fn a_checkpoint_without_classifier_head_is_explained() {
    let a = load("init0-order0", 0);
    let headless: Vec<(String, candle_core::Tensor)> = a
        .iter()
        .filter(|(n, _)| !n.starts_with("classifier"))
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let headless = ParamSet::from_raw(headless).unwrap();
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &headless, &data()).err().unwrap();
    assert!(matches!(err, CoreError::Config { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("config.json") && text.contains("classifier.weight"),
        "{text}"
    );
}

#[test]
fn a_missing_encoder_tensor_is_named() {
    let a = load("init0-order0", 0);
    let missing = "bert.encoder.layer.1.output.dense.weight";
    let partial: Vec<(String, candle_core::Tensor)> = a
        .iter()
        .filter(|(n, _)| *n != missing)
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let partial = ParamSet::from_raw(partial).unwrap();
    let config = checkpoint_dir("init0-order0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &partial, &data())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("does not fit") && err.contains("layer.1.output.dense.weight"),
        "{err}"
    );
}
