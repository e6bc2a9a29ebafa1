//! Weight matching on the transformer fixtures (BERT, RoBERTa, GPT-2, GPT-NeoX, OLMo, OLMo-2, two inits each): the aligned
//! model B computes exactly the function of B (the permutation spec names every tensor touching a
//! permuted axis), the matching objective rises, and the barrier between A and aligned B is lower
//! than the raw one.

mod common;

use std::path::PathBuf;

use common::{barrier11, evaluator_for, own_fixture};
use lineage_core::EvalData;
use lineage_core::methods::align::{align_to, weight_matching};
use lineage_loaders::load_params;

/// (family, checkpoint folder of A, of B, eval data).
fn cases() -> Vec<(&'static str, PathBuf, PathBuf, PathBuf)> {
    vec![
        (
            "bert",
            own_fixture("bert/zoo/init0-order0/checkpoint-300"),
            own_fixture("bert/zoo/init1-order0/checkpoint-300"),
            own_fixture("bert/eval.parquet"),
        ),
        (
            "roberta",
            own_fixture("roberta/zoo/init0/checkpoint-300"),
            own_fixture("roberta/zoo/init1/checkpoint-300"),
            own_fixture("roberta/eval.parquet"),
        ),
        (
            "gpt2",
            own_fixture("causal_lm/zoo-gpt2/seed0/step150"),
            own_fixture("causal_lm/zoo-gpt2/seed1/step150"),
            own_fixture("causal_lm/eval.parquet"),
        ),
        (
            "gpt_neox",
            own_fixture("causal_lm/zoo-gpt_neox/seed0/step150"),
            own_fixture("causal_lm/zoo-gpt_neox/seed1/step150"),
            own_fixture("causal_lm/eval.parquet"),
        ),
        (
            "olmo",
            own_fixture("causal_lm/zoo-olmo/seed0/step150"),
            own_fixture("causal_lm/zoo-olmo/seed1/step150"),
            own_fixture("causal_lm/eval.parquet"),
        ),
        (
            "olmo2",
            own_fixture("causal_lm/zoo-olmo2/seed0/step150"),
            own_fixture("causal_lm/zoo-olmo2/seed1/step150"),
            own_fixture("causal_lm/eval.parquet"),
        ),
    ]
}

#[test]
fn alignment_keeps_the_function_and_lowers_the_barrier() {
    for (family, dir_a, dir_b, data) in cases() {
        let data = EvalData::load(&data).unwrap();
        let a = load_params(&dir_a.join("model.safetensors")).unwrap();
        let b = load_params(&dir_b.join("model.safetensors")).unwrap();
        let evaluator = evaluator_for(Some(&dir_a.join("config.json")), &a, &data).unwrap();
        let spec = evaluator.permutation_spec(&a).unwrap();
        assert_eq!(spec.groups[0].name, "P_residual", "{family}");
        assert!(spec.groups.iter().any(|g| g.name == "P_layer1_mlp"), "{family}");

        let matching = weight_matching(&spec, &a, &b, 0).unwrap();
        let (first, last) = (matching.objective[0], *matching.objective.last().unwrap());
        assert!(last > first, "{family}: objective {first} -> {last}");
        let aligned = align_to(&spec, &a, &b, 0).unwrap();

        let (rb, ra) = (evaluator.evaluate(&b).unwrap(), evaluator.evaluate(&aligned).unwrap());
        for (i, (x, y)) in rb.per_example_loss.iter().zip(&ra.per_example_loss).enumerate() {
            assert!((x - y).abs() < 1e-4, "{family}: example {i} loss {x} vs aligned {y}");
        }
        assert_eq!(rb.per_example_correct, ra.per_example_correct, "{family}");

        let raw = barrier11(evaluator.as_ref(), &a, &b);
        let after = barrier11(evaluator.as_ref(), &a, &aligned);
        println!("{family}: endpoint loss barrier raw {raw:.4}, aligned {after:.4}");
        assert!(after < raw, "{family}: aligned barrier {after} vs raw {raw}");
    }
}
