//! Permutation alignment on the PyTorch digits-mlp fixture: two runs from different inits have an
//! endpoint loss barrier of about 0.21 at step 1500 (`reference_barriers.json`); weight matching
//! must remove most of it without changing what model B computes.

mod common;

use common::{barrier11, fixture, load};

use lineage_core::EvalData;
use lineage_core::methods::align::{align_to, weight_matching};
use lineage_core::models::registry::evaluator_for;

fn reference_raw_barrier(step: u64) -> f64 {
    let text = std::fs::read_to_string(fixture("reference_barriers.json")).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    rows.iter()
        .find(|r| r["step"] == step)
        .and_then(|r| r["loss_barrier"].as_f64())
        .unwrap()
}

#[test]
fn alignment_cuts_the_barrier_between_different_inits() {
    let data = EvalData::load(&fixture("digits_eval.safetensors")).unwrap();
    let (a, b) = (load("init0_order0", 1500), load("init1_order0", 1500));
    let config = fixture("zoo_safetensors/init0_order0/config.json");
    let evaluator = evaluator_for(Some(&config), &a, &data).unwrap();
    let spec = evaluator.permutation_spec(&a).unwrap();
    assert_eq!(spec.groups.len(), 2, "64-128-128-10 has two hidden layers");

    let matching = weight_matching(&spec, &a, &b, 0).unwrap();
    assert!(matching.converged, "{:?}", matching.objective);
    assert!(matching.objective.windows(2).all(|w| w[1] >= w[0]));
    let aligned = align_to(&spec, &a, &b, 0).unwrap();

    // The aligned B is the same function as B.
    let (rb, rb2) = (evaluator.evaluate(&b).unwrap(), evaluator.evaluate(&aligned).unwrap());
    assert!((rb.loss - rb2.loss).abs() < 1e-5, "{} vs {}", rb.loss, rb2.loss);
    assert_eq!(rb.error, rb2.error);

    let raw = barrier11(evaluator.as_ref(), &a, &b);
    let after = barrier11(evaluator.as_ref(), &a, &aligned);
    println!("step 1500 endpoint loss barrier: raw {raw:.4}, aligned {after:.4}");
    assert!((raw - reference_raw_barrier(1500)).abs() < 1e-4, "raw barrier {raw}");
    assert!(after < 0.5 * raw, "aligned barrier {after} vs raw {raw}");
}
