//! The `gpt2` and `gpt_neox` families against PyTorch: the tiny causal LMs of
//! `tests/fixtures/causal_lm` (written by `make_fixture.py` with transformers), their per-token
//! losses, next-token correctness, interpolation path and final hidden states.

mod common;

use std::path::PathBuf;

use common::{
    TORCH_TOLERANCE, assert_checkpoints_match, assert_close, assert_path_matches, bools, evaluator_for, floats,
    matmul_precisions, own_fixture, read_json, unpadded_copy, widen,
};
use lineage_core::EvalData;
use lineage_core::methods::interpolation::{blend, endpoint_barrier};
use lineage_core::models::evaluator::Evaluator;
use lineage_loaders::{ParamSet, load_params};
use serde_json::Value;

const FAMILIES: [&str; 4] = ["gpt2", "gpt_neox", "olmo", "olmo2"];

fn lm_fixture(rel: &str) -> PathBuf {
    own_fixture(&format!("causal_lm/{rel}"))
}

fn checkpoint_dir(family: &str, run: &str, step: u64) -> PathBuf {
    lm_fixture(&format!("zoo-{family}/{run}/step{step}"))
}

fn load(family: &str, run: &str, step: u64) -> ParamSet {
    load_params(&checkpoint_dir(family, run, step).join("model.safetensors")).unwrap()
}

fn reference() -> Value {
    read_json(&lm_fixture("reference.json"))
}

fn data() -> EvalData {
    EvalData::load(&lm_fixture("eval.parquet")).unwrap()
}

fn evaluator(family: &str, reference_params: &ParamSet) -> Box<dyn Evaluator> {
    let config = checkpoint_dir(family, "seed0", 0).join("config.json");
    evaluator_for(Some(&config), reference_params, &data()).unwrap()
}

#[test]
fn language_model_data_has_no_labels() {
    let d = data();
    assert!(d.is_token_ids() && !d.has_labels());
    assert_eq!(d.len(), 8);
}

#[test]
fn every_checkpoint_matches_pytorch_token_by_token() {
    let reference = reference();
    for (family, precision) in FAMILIES
        .iter()
        .flat_map(|f| matmul_precisions().into_iter().map(move |p| (*f, p)))
    {
        let mut evaluator = evaluator(family, &load(family, "seed0", 0));
        evaluator.set_matmul(precision);
        assert!(evaluator.describe().starts_with(family), "{}", evaluator.describe());
        let checkpoints = &reference[family]["checkpoints"];
        assert_eq!(checkpoints.as_object().unwrap().len(), 4);
        let predicted = checkpoints["seed0/0"]["loss"].as_array().unwrap().len();
        assert_eq!(
            evaluator.n_examples(),
            predicted,
            "{family}: one example per predicted token"
        );
        assert_checkpoints_match(evaluator.as_ref(), checkpoints, |run, step| load(family, run, step));
    }
}

#[test]
fn interpolation_paths_match_pytorch() {
    let reference = reference();
    let alphas = floats(&reference["alphas"]);
    for (family, precision) in FAMILIES
        .iter()
        .flat_map(|f| matmul_precisions().into_iter().map(move |p| (*f, p)))
    {
        let path = &reference[family]["path"];
        let (a, b) = (load(family, "seed0", 150), load(family, "seed1", 150));
        let mut evaluator = evaluator(family, &a);
        evaluator.set_matmul(precision);
        let results = assert_path_matches(evaluator.as_ref(), &a, &b, &alphas, path);
        let losses: Vec<f64> = results.iter().map(|r| r.loss).collect();
        let barrier = endpoint_barrier(&alphas, &losses);
        assert!(
            barrier > 0.5,
            "{family}: two inits are separated by a barrier, got {barrier}"
        );

        let mid = alphas.iter().position(|&x| x == 0.5).unwrap();
        assert_close(
            &format!("{family}: per-token loss at alpha 0.5"),
            &widen(&results[mid].per_example_loss),
            &floats(&path["per_token_loss_mid"]),
            TORCH_TOLERANCE,
        );
    }
}

#[test]
fn hidden_states_of_every_layer_match_pytorch() {
    let reference = reference();
    for family in FAMILIES {
        let (a, b) = (load(family, "seed0", 150), load(family, "seed1", 150));
        let evaluator = evaluator(family, &a);
        assert_eq!(evaluator.n_hidden_layers(), 2, "{family}: one representation per block");
        let mid = blend(a.iter(), |n| b.get(n), 0.5).unwrap();
        let mid = evaluator
            .prepare(&ParamSet::from_raw(mid.into_iter().collect()).unwrap())
            .unwrap();
        // Layer 0: the first block's output (HF hidden_states[1]); layer 1, the last: the final
        // hidden state after the last layer norm.
        for (layer, key) in [(0, "hidden_mid_layer0"), (1, "hidden_mid")] {
            let features = evaluator.hidden_activations(&mid, layer).unwrap();
            let want: Vec<Vec<f64>> = reference[family]["path"][key]
                .as_array()
                .unwrap()
                .iter()
                .map(floats)
                .collect();
            assert_eq!((features.rows(), features.cols()), (want.len(), 16), "{family}");
            for (i, row) in want.iter().enumerate() {
                assert_close(
                    &format!("{family}: layer {layer} state of token {i}"),
                    &widen(features.row(i)),
                    row,
                    TORCH_TOLERANCE,
                );
            }
        }
        assert!(evaluator.hidden_activations(&mid, 2).is_err());
    }
}

#[test]
fn a_wrong_tensor_shape_is_named() {
    let a = load("gpt2", "seed0", 0);
    let renamed: Vec<(String, candle_core::Tensor)> = a
        .iter()
        .map(|(n, t)| {
            let t = if n == "transformer.h.1.mlp.c_fc.weight" {
                t.t().unwrap().contiguous().unwrap()
            } else {
                t.clone()
            };
            (n.to_string(), t)
        })
        .collect();
    let bad = ParamSet::from_raw(renamed).unwrap();
    let config = checkpoint_dir("gpt2", "seed0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &bad, &data()).err().unwrap().to_string();
    assert!(err.contains("does not fit") && err.contains("c_fc"), "{err}");
}

#[test]
fn per_token_labels_score_only_the_labelled_tokens() {
    let reference = reference();
    let padded = EvalData::load(&lm_fixture("eval_answers.parquet")).unwrap();
    assert!(padded.token_labels.is_some() && !padded.has_labels());
    // The same sequences at their own lengths (no mask), as a tokenizer without padding writes
    // them: lineage pads ids and labels and makes the mask.
    let dir = tempfile::tempdir().unwrap();
    let unpadded = EvalData::load(&unpadded_copy(&lm_fixture("eval_answers.parquet"), dir.path())).unwrap();
    assert_eq!(
        unpadded.attention_mask.as_ref().unwrap().to_vec2::<u32>().unwrap(),
        padded.attention_mask.as_ref().unwrap().to_vec2::<u32>().unwrap()
    );
    for (family, data) in FAMILIES.iter().flat_map(|f| [(*f, &padded), (*f, &unpadded)]) {
        let want = &reference[family]["answers"];
        assert_eq!(want["checkpoint"], "seed0/150");
        let a = load(family, "seed0", 150);
        let config = checkpoint_dir(family, "seed0", 0).join("config.json");
        let evaluator = evaluator_for(Some(&config), &a, data).unwrap();
        let got = evaluator.evaluate(&a).unwrap();
        assert_eq!(
            evaluator.n_examples(),
            37,
            "{family}: 61 predicted tokens minus 3 prompt tokens x 8"
        );
        assert_close(
            &format!("{family}: answer-token loss"),
            &widen(&got.per_example_loss),
            &floats(&want["loss"]),
            TORCH_TOLERANCE,
        );
        assert_eq!(got.per_example_correct, bools(&want["correct"]), "{family}");
    }
}

#[test]
fn per_token_labels_are_checked() {
    let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], &candle_core::Device::Cpu).unwrap();
    let a = load("gpt_neox", "seed0", 0);
    let config = checkpoint_dir("gpt_neox", "seed0", 0).join("config.json");
    let dir = tempfile::tempdir().unwrap();
    let write = |labels: candle_core::Tensor| {
        let path = dir.path().join("eval.safetensors");
        let map =
            std::collections::HashMap::from([("input_ids".to_string(), ids.clone()), ("labels".to_string(), labels)]);
        candle_core::safetensors::save(&map, &path).unwrap();
        EvalData::load(&path)
    };
    let err = write(candle_core::Tensor::new(&[[-100i64, 2, -7]], &candle_core::Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("label -7 in example 0 is out of range"), "{err}");
    let beyond = write(candle_core::Tensor::new(&[[-100i64, 2, 99]], &candle_core::Device::Cpu).unwrap()).unwrap();
    let err = evaluator_for(Some(&config), &a, &beyond).err().unwrap().to_string();
    assert!(err.contains("label 99") && err.contains("vocabulary of 24"), "{err}");
    let none = write(candle_core::Tensor::new(&[[-100i64, -100, -100]], &candle_core::Device::Cpu).unwrap()).unwrap();
    let err = evaluator_for(Some(&config), &a, &none).err().unwrap().to_string();
    assert!(err.contains("predict no token"), "{err}");
}
