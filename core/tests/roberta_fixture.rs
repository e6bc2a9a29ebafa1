//! The `roberta` family against PyTorch: the tiny `RobertaForSequenceClassification` zoo of
//! `tests/fixtures/roberta` (written by `make_fixture.py` with transformers; padding id 0, so
//! RoBERTa's position ids start at 1), its reference losses, correctness, path and head inputs.

mod common;

use std::path::PathBuf;

use common::{
    TORCH_TOLERANCE, assert_checkpoints_match, assert_close, assert_path_matches, evaluator_for, floats,
    matmul_precisions, own_fixture, read_json, widen,
};
use lineage_core::EvalData;
use lineage_core::methods::interpolation::blend;
use lineage_core::models::evaluator::Evaluator;
use lineage_loaders::{ParamSet, load_params};

fn checkpoint_dir(run: &str, step: u64) -> PathBuf {
    own_fixture(&format!("roberta/zoo/{run}/checkpoint-{step}"))
}

fn load(run: &str, step: u64) -> ParamSet {
    load_params(&checkpoint_dir(run, step).join("model.safetensors")).unwrap()
}

fn evaluator(reference_params: &ParamSet) -> Box<dyn Evaluator> {
    let data = EvalData::load(&own_fixture("roberta/eval.parquet")).unwrap();
    let config = checkpoint_dir("init0", 0).join("config.json");
    evaluator_for(Some(&config), reference_params, &data).unwrap()
}

#[test]
fn checkpoints_path_and_head_inputs_match_pytorch() {
    let reference = read_json(&own_fixture("roberta/reference.json"));
    assert_eq!(reference["checkpoints"].as_object().unwrap().len(), 4);
    for precision in matmul_precisions() {
        let mut evaluator = evaluator(&load("init0", 0));
        evaluator.set_matmul(precision);
        assert!(
            evaluator.describe().starts_with("roberta 2 layers x 16 hidden"),
            "{}",
            evaluator.describe()
        );
        assert_checkpoints_match(evaluator.as_ref(), &reference["checkpoints"], load);

        let path = &reference["path"];
        let alphas = floats(&reference["alphas"]);
        let (a, b) = (load("init0", 300), load("init1", 300));
        let results = assert_path_matches(evaluator.as_ref(), &a, &b, &alphas, path);
        let mid = alphas.iter().position(|&x| x == 0.5).unwrap();
        assert_close(
            "per-example loss at alpha 0.5",
            &widen(&results[mid].per_example_loss),
            &floats(&path["per_example_loss_mid"]),
            TORCH_TOLERANCE,
        );

        let blended = blend(a.iter(), |n| b.get(n), 0.5).unwrap();
        let blended = ParamSet::from_raw(blended.into_iter().collect()).unwrap();
        let features = evaluator
            .hidden_activations(&evaluator.prepare(&blended).unwrap(), 0)
            .unwrap();
        for (i, row) in path["head_input_mid"].as_array().unwrap().iter().enumerate() {
            assert_close(
                &format!("head input of example {i} ({} products)", precision.name()),
                &widen(features.row(i)),
                &floats(row),
                TORCH_TOLERANCE,
            );
        }
    }
}

#[test]
fn segment_ids_beyond_the_single_token_type_are_refused() {
    let a = load("init0", 0);
    let bert_pairs = EvalData::load(&own_fixture("bert/eval.parquet")).unwrap();
    let config = checkpoint_dir("init0", 0).join("config.json");
    let err = evaluator_for(Some(&config), &a, &bert_pairs).err().unwrap().to_string();
    assert!(err.contains("token type 1") && err.contains("1 token types"), "{err}");
}
