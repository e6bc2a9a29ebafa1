//! Correctness against PyTorch: interpolation curves and endpoint barriers of the digits-mlp fixture
//! (`reference_interp.json`, `reference_barriers.json`, computed in float32 by PyTorch), for every
//! checkpoint layout of the fixture (safetensors, fp16 safetensors, HF Trainer pickle, Lightning).

mod common;

use common::fixture;

use std::collections::BTreeMap;
use std::path::PathBuf;

use lineage_core::methods::interpolation::{alpha_grid, endpoint_barrier, segment_barrier};
use lineage_core::models::evaluator::{EvalResult, Evaluator};
use lineage_core::models::registry::evaluator_for;
use lineage_core::{EvalData, MlpEvaluator, MlpSpec};
use lineage_loaders::{ParamSet, load_params};
use serde::Deserialize;

const N_EXAMPLES: f64 = 500.0;

#[derive(Debug, Deserialize)]
struct InterpRow {
    step: u64,
    run_a: String,
    run_b: String,
    alpha: f64,
    loss: f64,
    error: f64,
}

#[derive(Debug, Deserialize)]
struct BarrierRow {
    step: u64,
    run_a: String,
    run_b: String,
    loss_barrier: f64,
    error_barrier: f64,
}

fn read_json<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Reference curves keyed by (step, run_a, run_b): alphas and (loss, error).
type Curves = BTreeMap<(u64, String, String), Vec<(f64, f64, f64)>>;

fn reference_curves() -> Curves {
    let rows: Vec<InterpRow> = read_json("reference_interp.json");
    let mut curves: Curves = BTreeMap::new();
    for r in rows {
        curves
            .entry((r.step, r.run_a, r.run_b))
            .or_default()
            .push((r.alpha, r.loss, r.error));
    }
    for curve in curves.values_mut() {
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    curves
}

fn data() -> EvalData {
    EvalData::load(&fixture("digits_eval.safetensors")).unwrap()
}

/// Where the fixture's checkpoint for (run, step) lives in each layout.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Safetensors,
    Fp16,
    HfTrainer,
    Lightning,
}

fn checkpoint_path(layout: Layout, run: &str, step: u64) -> PathBuf {
    match layout {
        Layout::Safetensors => fixture(&format!("zoo_safetensors/{run}/step{step}/model.safetensors")),
        Layout::Fp16 => fixture(&format!("zoo_fp16/{run}/step{step}/model.safetensors")),
        Layout::HfTrainer => {
            let run = run.replace("init", "run_i").replace("_order", "_o");
            fixture(&format!("zoo_hf_trainer/{run}/checkpoint-{step}/pytorch_model.bin"))
        }
        Layout::Lightning => {
            let dir = fixture(&format!("zoo_lightning/{run}"));
            let suffix = format!("-step={step}.ckpt");
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_str().unwrap().ends_with(&suffix))
                .unwrap_or_else(|| panic!("no {suffix} in {}", dir.display()))
        }
    }
}

fn load(layout: Layout, run: &str, step: u64) -> ParamSet {
    let path = checkpoint_path(layout, run, step);
    load_params(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Evaluates one reference curve the way the batch engine does: endpoints once per checkpoint
/// (prepared), interior alphas as a path.
fn curve(evaluator: &dyn Evaluator, a: &ParamSet, b: &ParamSet, alphas: &[f64]) -> Vec<EvalResult> {
    let (pa, pb) = (evaluator.prepare(a).unwrap(), evaluator.prepare(b).unwrap());
    let n = alphas.len();
    assert_eq!((alphas[0], alphas[n - 1]), (0.0, 1.0));
    let mut out = vec![evaluator.evaluate_prepared(&pa).unwrap()];
    out.extend(
        evaluator
            .evaluate_paths(&[&pa, &pb], &[(0, 1)], &alphas[1..n - 1])
            .unwrap()
            .remove(0),
    );
    out.push(evaluator.evaluate_prepared(&pb).unwrap());
    out
}

/// Compares every reference point of `layout` (restricted to `steps`) within `loss_tol` and at most
/// `max_flips` examples of error-rate difference; returns (max loss diff, max error diff).
fn check_layout(layout: Layout, steps: &[u64], loss_tol: f64, max_flips: f64) -> (f64, f64) {
    let data = data();
    let mut worst = (0.0f64, 0.0f64);
    let barriers: Vec<BarrierRow> = read_json("reference_barriers.json");
    let config = fixture("zoo_safetensors/init0_order0/config.json");
    let mut checked = 0;
    for ((step, run_a, run_b), reference) in reference_curves() {
        if !steps.contains(&step) {
            continue;
        }
        let (a, b) = (load(layout, &run_a, step), load(layout, &run_b, step));
        let evaluator = evaluator_for(Some(&config), &a, &data).unwrap();
        let alphas: Vec<f64> = reference.iter().map(|r| r.0).collect();
        let ours = curve(evaluator.as_ref(), &a, &b, &alphas);
        for (&(alpha, loss, error), got) in reference.iter().zip(&ours) {
            let (dl, de) = ((got.loss - loss).abs(), (got.error - error).abs());
            assert!(
                dl <= loss_tol,
                "{layout:?} step {step} alpha {alpha}: loss {} vs PyTorch {loss} (diff {dl:.2e})",
                got.loss
            );
            assert!(
                de <= max_flips / N_EXAMPLES + 1e-12,
                "{layout:?} step {step} alpha {alpha}: error {} vs PyTorch {error}",
                got.error
            );
            worst = (worst.0.max(dl), worst.1.max(de));
            checked += 1;
        }
        let losses: Vec<f64> = ours.iter().map(|r| r.loss).collect();
        let errors: Vec<f64> = ours.iter().map(|r| r.error).collect();
        let want = barriers
            .iter()
            .find(|r| (r.step, &r.run_a, &r.run_b) == (step, &run_a, &run_b))
            .unwrap();
        let (lb, eb) = (endpoint_barrier(&alphas, &losses), endpoint_barrier(&alphas, &errors));
        assert!(
            (lb - want.loss_barrier).abs() <= loss_tol,
            "{layout:?} step {step}: loss barrier {lb} vs PyTorch {}",
            want.loss_barrier
        );
        assert!(
            (eb - want.error_barrier).abs() <= 2.0 * max_flips / N_EXAMPLES + 1e-12,
            "{layout:?} step {step}: error barrier {eb} vs PyTorch {}",
            want.error_barrier
        );
        assert!(segment_barrier(&alphas, &losses) >= lb);
        eprintln!(
            "{layout:?} step {step}: loss barrier {lb:.6} (PyTorch {:.6}), error barrier {eb:.4} (PyTorch {:.4})",
            want.loss_barrier, want.error_barrier
        );
    }
    assert_eq!(checked, 11 * steps.len(), "reference points checked");
    eprintln!(
        "{layout:?}: max |loss diff| {:.2e}, max |error diff| {:.4}",
        worst.0, worst.1
    );
    worst
}

#[test]
fn safetensors_zoo_matches_pytorch() {
    let (_, error_diff) = check_layout(Layout::Safetensors, &[0, 100, 1500], 1e-4, 1.0);
    assert!(error_diff <= 1.0 / N_EXAMPLES + 1e-12);
}

#[test]
fn fp16_zoo_matches_pytorch_within_half_precision() {
    check_layout(Layout::Fp16, &[1500], 2e-3, 2.0);
}

#[test]
fn hf_trainer_pickles_match_pytorch() {
    check_layout(Layout::HfTrainer, &[0, 100, 1500], 1e-4, 1.0);
}

#[test]
fn lightning_checkpoints_match_pytorch() {
    check_layout(Layout::Lightning, &[0, 100, 1500], 1e-4, 1.0);
}

#[test]
fn all_layouts_hold_the_same_parameters() {
    for step in [0, 100, 1500] {
        let st = load(Layout::Safetensors, "init1_order0", step);
        for layout in [Layout::HfTrainer, Layout::Lightning] {
            let other = load(layout, "init1_order0", step);
            assert_eq!(st.shapes(), other.shapes(), "{layout:?} step {step}");
            for (name, t) in st.iter() {
                let (x, y) = (
                    t.flatten_all().unwrap(),
                    other.get(name).unwrap().flatten_all().unwrap(),
                );
                assert_eq!(
                    x.to_vec1::<f32>().unwrap(),
                    y.to_vec1::<f32>().unwrap(),
                    "{layout:?} {name}"
                );
            }
        }
    }
}

#[test]
fn path_endpoints_equal_prepared_endpoints_and_inference_equals_config() {
    let data = data();
    let a = load(Layout::Safetensors, "init0_order0", 1500);
    let b = load(Layout::Safetensors, "init1_order0", 1500);
    let inferred = MlpSpec::infer(&a).unwrap();
    let from_config = MlpSpec::from_config(&fixture("zoo_safetensors/init0_order0/config.json")).unwrap();
    assert_eq!(inferred, from_config);
    let evaluator = MlpEvaluator::new(inferred, &data).unwrap();
    let alphas = alpha_grid(11).unwrap();
    let path = evaluator.evaluate_path(&a, &b, &alphas).unwrap();
    let (ea, eb) = (evaluator.evaluate(&a).unwrap(), evaluator.evaluate(&b).unwrap());
    assert_eq!(path[0], ea);
    assert_eq!(path[10], eb);
    assert_eq!(path[0].per_example_loss.len(), 500);
    // Many pairs at once give the same numbers as one path at a time.
    let prepared: Vec<_> = [&a, &b].iter().map(|p| evaluator.prepare(p).unwrap()).collect();
    let refs: Vec<_> = prepared.iter().collect();
    let many = evaluator.evaluate_paths(&refs, &[(0, 1), (1, 0)], &alphas).unwrap();
    assert_eq!(many[0], path);
    let mut reversed = many[1].clone();
    reversed.reverse();
    for (x, y) in reversed.iter().zip(&path) {
        assert!((x.loss - y.loss).abs() < 1e-5);
    }
}

#[test]
fn mismatching_data_and_params_are_clear_errors() {
    let data = data();
    let a = load(Layout::Safetensors, "init0_order0", 0);
    let wrong = MlpSpec::new(vec![64, 32, 10], lineage_core::models::mlp::Activation::Relu).unwrap();
    let evaluator = MlpEvaluator::new(wrong, &data).unwrap();
    let err = evaluator.evaluate(&a).unwrap_err().to_string();
    assert!(
        err.contains("widths [64, 32, 10]") && err.contains("fc1.weight"),
        "{err}"
    );
    let narrow = MlpSpec::new(vec![64, 5], lineage_core::models::mlp::Activation::Relu).unwrap();
    let err = MlpEvaluator::new(narrow, &data).unwrap_err().to_string();
    assert!(err.contains("out of range") && err.contains("5 classes"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"model_type": "t5"}"#).unwrap();
    let err = evaluator_for(Some(&config), &a, &data).err().unwrap().to_string();
    assert!(
        err.contains("config.json")
            && err.contains("unsupported model_type `t5` (supported: bert, roberta, xlm-roberta, gpt2, gpt_neox"),
        "{err}"
    );
    std::fs::write(&config, r#"{"model_type": "bert"}"#).unwrap();
    let err = evaluator_for(Some(&config), &a, &data).err().unwrap().to_string();
    assert!(
        err.contains("config.json") && err.contains("not a BERT config: missing field `vocab_size`"),
        "{err}"
    );
}
