//! `lineage batch` on zoos of Hugging Face transformers: BERT sequence classifiers (HF Trainer
//! layout, `model_type: bert`, tokenised eval data with labels in Parquet) and GPT-NeoX causal LMs
//! (Pythia's `stepN/` layout, token ids without labels). The barriers agree with PyTorch's
//! (`core/tests/fixtures/*/reference.json`), the views run on the models' representations, and bad
//! input is a clear error.

mod common;

use std::path::{Path, PathBuf};

use common::{batch, batch_with, report, table};
use lineage_core::methods::interpolation::endpoint_barrier;

fn core_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures")
        .join(rel)
}

fn bert_fixture(rel: &str) -> PathBuf {
    core_fixture(&format!("bert/{rel}"))
}

/// Runs `lineage batch ZOO --data DATA --alphas 5 EXTRA...` into `tmp/OUT_NAME` (result store
/// `tmp/cache`); returns the output folder and stderr.
fn batch_alphas5(zoo: &Path, data: &Path, tmp: &Path, out_name: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = tmp.join(out_name);
    let output = batch_with(zoo, data, &out, &tmp.join("cache"))
        .args(["--alphas", "5"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (out, stderr)
}

/// The endpoint loss barrier of the seed pair (`run_a`, `run_b`) at `at_step` in
/// `OUT/barriers.parquet`, raw or after permutation alignment.
fn seed_barrier(out: &Path, at_step: u64, a: &str, b: &str, aligned: bool) -> f64 {
    let barriers = table(out, "barriers");
    let col = |name: &str| barriers.column(name).unwrap().clone();
    let (step, run_a, run_b, pair, kind, loss, is_aligned) = (
        col("step"),
        col("run_a"),
        col("run_b"),
        col("pair"),
        col("kind"),
        col("loss_barrier"),
        col("aligned"),
    );
    let row = (0..barriers.height())
        .find(|&i| {
            step.u64().unwrap().get(i) == Some(at_step)
                && run_a.str().unwrap().get(i) == Some(a)
                && run_b.str().unwrap().get(i) == Some(b)
                && pair.str().unwrap().get(i) == Some("seeds")
                && kind.str().unwrap().get(i) == Some("endpoint")
                && is_aligned.bool().unwrap().get(i) == Some(aligned)
        })
        .unwrap_or_else(|| panic!("no seed row {a} / {b} at step {at_step} (aligned: {aligned})"));
    loss.f64().unwrap().get(row).unwrap()
}

/// The GPT-NeoX fixture zoo's seed-pair barrier at step 150 in `out` against PyTorch's path.
fn assert_neox_barrier_matches_pytorch(out: &Path) {
    let reference = reference(&core_fixture("causal_lm/reference.json"));
    let want = endpoint_barrier(
        &floats(&reference["alphas"]),
        &floats(&reference["gpt_neox"]["path"]["loss"]),
    );
    let got = seed_barrier(out, 150, "seed0", "seed1", false);
    assert!((got - want).abs() < 1e-4, "barrier {got} vs PyTorch {want}");
}

fn reference(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn bert_zoo_batch_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = batch_alphas5(
        &bert_fixture("zoo"),
        &bert_fixture("eval.parquet"),
        tmp.path(),
        "out",
        &["--align"],
    );
    let report = report(&out);
    assert!(
        report["evaluator"].as_str().unwrap().starts_with("bert 2 layers"),
        "{}",
        report["evaluator"]
    );

    // The seed-pair barrier between the two inits at the last step, against PyTorch's path.
    let reference = reference(&bert_fixture("reference.json"));
    let want = endpoint_barrier(&floats(&reference["alphas"]), &floats(&reference["path"]["loss"]));
    let got = seed_barrier(&out, 300, "init0-order0", "init1-order0", false);
    assert!((got - want).abs() < 1e-4, "barrier {got} vs PyTorch {want}");
    assert!(got > 0.2, "different inits are separated by a barrier: {got}");
    // Weight matching (residual stream, MLP units, pooler) lowers it.
    let aligned = seed_barrier(&out, 300, "init0-order0", "init1-order0", true);
    assert!(aligned < 0.5 * got, "aligned barrier {aligned} vs raw {got}");

    // 3 runs x 3 steps, each checkpoint evaluated once.
    assert_eq!(table(&out, "evals").height(), 9);
    // The views use the pooled [CLS] state: CKA rows for the seed pairs, a probe per checkpoint.
    assert!(table(&out, "similarity").height() > 0, "no similarity rows");
    assert_eq!(table(&out, "probes").height(), 9);
    assert!(out.join("figures").join("basin_tree.svg").is_file());
}

#[test]
fn pythia_style_zoo_batch_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = core_fixture("causal_lm/zoo-gpt_neox");
    let (out, stderr) = batch_alphas5(
        &zoo,
        &core_fixture("causal_lm/eval.parquet"),
        tmp.path(),
        "out",
        &["--layer", "0"],
    );
    let report = report(&out);
    let evaluator = report["evaluator"].as_str().unwrap();
    assert!(
        evaluator.starts_with("gpt_neox") && evaluator.ends_with("on 61 examples"),
        "{evaluator}"
    );

    assert_neox_barrier_matches_pytorch(&out);

    // Representations are per token, here the first block's output; probes need class labels,
    // which LM data does not have.
    assert_eq!(report["views"]["layer"], 0);
    assert!(table(&out, "similarity").height() > 0, "no similarity rows");
    assert_eq!(table(&out, "probes").height(), 0);
    assert!(
        stderr.contains("no class labels (language-model data); probes skipped"),
        "{stderr}"
    );
}

/// `--matmul bf16x3`: where the processor has AMX tiles, the barriers still agree with PyTorch
/// and nothing computed in f32 is reused from the shared result store (the evaluator's description,
/// part of every cache key, names the precision); elsewhere the products stay f32, with a warning.
#[test]
fn bf16x3_products_agree_with_pytorch_and_are_cached_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = core_fixture("causal_lm/zoo-gpt_neox");
    let data = core_fixture("causal_lm/eval.parquet");
    batch_alphas5(&zoo, &data, tmp.path(), "f32", &["--no-views"]);
    let (out, stderr) = batch_alphas5(&zoo, &data, tmp.path(), "bf16x3", &["--no-views", "--matmul", "bf16x3"]);
    let report = report(&out);
    let evaluator = report["evaluator"].as_str().unwrap();
    let passes = report["work"]["checkpoints"]["forward_passes"].as_u64().unwrap();
    if lineage_core::models::matmul::bf16x3_available() {
        assert!(evaluator.ends_with("(bf16x3 products)"), "{evaluator}");
        assert_eq!(report["matmul"], "bf16x3");
        assert!(passes > 0, "the f32 evaluations were reused");
    } else {
        eprintln!("no AMX here: checking the f32 fallback and its warning");
        assert!(stderr.contains("needs Intel AMX bf16 tiles"), "{stderr}");
        assert!(!evaluator.contains("bf16x3"), "{evaluator}");
        assert_eq!(report["matmul"], "f32");
        assert_eq!(passes, 0, "f32 results are reused when the products are f32");
    }
    assert_neox_barrier_matches_pytorch(&out);
    let output = batch_with(&zoo, &data, &tmp.path().join("bad"), &tmp.path().join("cache"))
        .args(["--matmul", "bf16"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown precision `bf16` (one of f32, bf16x3)"),
        "{stderr}"
    );

    // The plan key: the precision read from the plan (all cached by now), a wrong one named.
    let plan = |name: &str, matmul: &str| {
        let path = tmp.path().join(format!("{name}.toml"));
        let text = format!(
            "zoo = '{}'\ndata = '{}'\nout = '{name}'\ncache = 'cache'\nalphas = 5\nviews = false\nmatmul = '{matmul}'\n",
            zoo.display(),
            data.display()
        );
        std::fs::write(&path, text).unwrap();
        common::lineage().args(["batch", "--plan"]).arg(&path).output().unwrap()
    };
    let output = plan("planned", "bf16x3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let planned = common::report(&tmp.path().join("planned"));
    assert_eq!(planned["matmul"], report["matmul"]);
    assert_eq!(planned["computed"], 0, "the bf16x3 run's results are reused");
    let output = plan("misplanned", "bf16");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("matmul in the plan: unknown precision `bf16`"),
        "{stderr}"
    );
}

#[test]
fn bert_zoo_with_feature_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = batch(&bert_fixture("zoo"), &tmp.path().join("out"), &tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token ids (`input_ids`)"), "{stderr}");
}

#[test]
fn an_unknown_device_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = batch_with(
        &bert_fixture("zoo"),
        &bert_fixture("eval.parquet"),
        &tmp.path().join("out"),
        &tmp.path().join("cache"),
    )
    .args(["--device", "tpu"])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown device `tpu`"), "{stderr}");
}

#[test]
fn the_app_refuses_an_unknown_device_before_opening_a_window() {
    let output = common::lineage().args(["open", "--device", "tpu"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown device `tpu`"), "{stderr}");
}
