//! `lineage batch` on a zoo of Hugging Face BERT sequence classifiers (HF Trainer layout,
//! `config.json` with `model_type: bert`, tokenised eval data in Parquet): the barriers agree with
//! PyTorch's (`core/tests/fixtures/bert/reference.json`), the views run on the pooled
//! representation, and bad input is a clear error.

mod common;

use std::path::{Path, PathBuf};

use common::{lineage, report, table};
use lineage_core::interpolation::endpoint_barrier;

fn bert_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/bert")
        .join(rel)
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn bert_zoo_batch_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = lineage()
        .arg("batch")
        .arg(bert_fixture("zoo"))
        .arg("--data")
        .arg(bert_fixture("eval.parquet"))
        .args(["--alphas", "5", "--out"])
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let report = report(&out);
    assert!(
        report["evaluator"].as_str().unwrap().starts_with("bert 2 layers"),
        "{}",
        report["evaluator"]
    );

    // The seed-pair barrier between the two inits at the last step, against PyTorch's path.
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bert_fixture("reference.json")).unwrap()).unwrap();
    let want = endpoint_barrier(&floats(&reference["alphas"]), &floats(&reference["path"]["loss"]));
    let barriers = table(&out, "barriers");
    let col = |name: &str| barriers.column(name).unwrap().clone();
    let (step, run_a, run_b, pair, kind, loss) = (
        col("step"),
        col("run_a"),
        col("run_b"),
        col("pair"),
        col("kind"),
        col("loss_barrier"),
    );
    let row = (0..barriers.height())
        .find(|&i| {
            step.u64().unwrap().get(i) == Some(300)
                && run_a.str().unwrap().get(i) == Some("init0-order0")
                && run_b.str().unwrap().get(i) == Some("init1-order0")
                && pair.str().unwrap().get(i) == Some("seeds")
                && kind.str().unwrap().get(i) == Some("endpoint")
        })
        .expect("the init0-order0 / init1-order0 seed row at step 300");
    let got = loss.f64().unwrap().get(row).unwrap();
    assert!((got - want).abs() < 1e-4, "barrier {got} vs PyTorch {want}");
    assert!(got > 0.3, "different inits are separated by a barrier: {got}");

    // 3 runs x 3 steps, each checkpoint evaluated once.
    assert_eq!(table(&out, "evals").height(), 9);
    // The views use the pooled [CLS] state: CKA rows exist for the seed pairs.
    let similarity = table(&out, "similarity");
    assert!(similarity.height() > 0, "no similarity rows");
    assert!(out.join("figures").join("basin_tree.svg").is_file());
}

#[test]
fn bert_zoo_with_feature_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = lineage()
        .arg("batch")
        .arg(bert_fixture("zoo"))
        .arg("--data")
        .arg(common::fixture("digits_eval.safetensors"))
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token ids (`input_ids`)"), "{stderr}");
}

#[test]
fn an_unknown_device_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = lineage()
        .arg("batch")
        .arg(bert_fixture("zoo"))
        .arg("--data")
        .arg(bert_fixture("eval.parquet"))
        .args(["--device", "tpu", "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown device `tpu`"), "{stderr}");
}
