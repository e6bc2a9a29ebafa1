//! The `external` evaluator protocol, checked against the built-in MLP evaluator with a pure-Python
//! implementation of the same MLP (`external_mlp.py`), and its errors.

mod common;

use common::{fixture, load};
use std::path::{Path, PathBuf};

use lineage_core::methods::interpolation::{alpha_grid, endpoint_barrier, segment_barrier};
use lineage_core::models::evaluator::Evaluator;
use lineage_core::models::registry::evaluator_for;
use lineage_core::{CoreError, EvalData};
use lineage_loaders::ParamSet;

/// A config.json in `dir` naming `command` as the external evaluator.
fn external_config(dir: &Path, command: &[&str]) -> PathBuf {
    let path = dir.join("config.json");
    let config = serde_json::json!({"arch": "external", "command": command});
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// (loss, error) curves of the path from `a` to `b` over `alphas`, endpoints included.
fn curves(evaluator: &dyn Evaluator, a: &ParamSet, b: &ParamSet, alphas: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let results = evaluator.evaluate_path(a, b, alphas).unwrap();
    (
        results.iter().map(|r| r.loss).collect(),
        results.iter().map(|r| r.error).collect(),
    )
}

#[test]
fn a_python_mlp_gives_the_barriers_of_the_built_in_evaluator() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/external_mlp.py");
    // A relative script path: the command runs in the folder of config.json.
    std::fs::copy(&script, tmp.path().join("eval.py")).unwrap();
    let config = external_config(tmp.path(), &["python3", "eval.py"]);
    let data = EvalData::load(&fixture("digits_eval.safetensors")).unwrap();
    let (a, b) = (load("init0_order0", 1500), load("init1_order0", 1500));
    let external = evaluator_for(Some(&config), &a, &data).unwrap();
    let description = external.describe();
    assert!(
        description.starts_with("external `python3 eval.py` [eval.py sha256 ")
            && description.ends_with("on 500 examples"),
        "{description}"
    );
    let built_in = evaluator_for(Some(&fixture("zoo_safetensors/init0_order0/config.json")), &a, &data).unwrap();

    let alphas = alpha_grid(11).unwrap();
    let (ext_loss, ext_err) = curves(external.as_ref(), &a, &b, &alphas);
    let (mlp_loss, mlp_err) = curves(built_in.as_ref(), &a, &b, &alphas);
    for (x, y) in ext_loss.iter().zip(&mlp_loss) {
        assert!((x - y).abs() < 1e-4, "loss {x} vs {y}");
    }
    for barrier in [endpoint_barrier, segment_barrier] {
        let (ext, mlp) = (barrier(&alphas, &ext_loss), barrier(&alphas, &mlp_loss));
        println!("external loss barrier {ext:.6}, built-in {mlp:.6}");
        assert!(ext > 0.1, "the fixture pair has a barrier: {ext}");
        assert!((ext - mlp).abs() < 1e-4, "{ext} vs {mlp}");
        // At most one example may flip between float32 and float64 forward passes.
        assert!((barrier(&alphas, &ext_err) - barrier(&alphas, &mlp_err)).abs() <= 2.0 / 500.0);
    }

    // The script is part of the cache key: editing it changes the description.
    std::fs::write(tmp.path().join("eval.py"), "# edited\n").unwrap();
    let edited = evaluator_for(Some(&config), &a, &data).unwrap();
    assert_ne!(edited.describe(), description);
}

fn error_of(command: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let config = external_config(tmp.path(), command);
    let data = EvalData::load(&fixture("digits_eval.safetensors")).unwrap();
    let a = load("init0_order0", 0);
    let evaluator = evaluator_for(Some(&config), &a, &data).unwrap();
    let err = evaluator.evaluate(&a).unwrap_err();
    assert!(matches!(err, CoreError::External { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn protocol_violations_are_errors_naming_the_command() {
    let err = error_of(&["sh", "-c", "echo boom >&2; exit 3"]);
    assert!(
        err.contains("`sh -c echo boom >&2; exit 3`") && err.contains("exit status: 3") && err.contains("stderr: boom"),
        "{err}"
    );
    let err = error_of(&["sh", "-c", "echo not json"]);
    assert!(err.contains("output line 1: not JSON"), "{err}");
    let err = error_of(&["sh", "-c", "echo '{\"loss\": 1.0, \"correct\": true}'"]);
    assert!(err.contains("printed 1 result lines for 500 eval examples"), "{err}");
    let err = error_of(&["/nonexistent/lineage-eval"]);
    assert!(
        err.contains("/nonexistent/lineage-eval") && err.contains("cannot run"),
        "{err}"
    );
}

#[test]
fn bad_external_configs_and_mismatching_checkpoints_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = EvalData::load(&fixture("digits_eval.safetensors")).unwrap();
    let a = load("init0_order0", 0);
    for config in [
        serde_json::json!({"arch": "external"}),
        serde_json::json!({"arch": "external", "command": []}),
        serde_json::json!({"arch": "external", "command": "python3 eval.py"}),
        serde_json::json!({"arch": "external", "command": ["python3", 1]}),
    ] {
        let path = tmp.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let err = evaluator_for(Some(&path), &a, &data)
            .err()
            .expect("invalid config")
            .to_string();
        assert!(err.contains("config.json") && err.contains("`command`"), "{err}");
    }
    let config = external_config(tmp.path(), &["true"]);
    let evaluator = evaluator_for(Some(&config), &a, &data).unwrap();
    let other = ParamSet::from_raw(
        a.iter()
            .filter(|(n, _)| *n != "fc3.bias")
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    )
    .unwrap();
    let err = evaluator.prepare(&other).unwrap_err().to_string();
    assert!(err.contains("`fc3.bias` missing"), "{err}");
    let err = evaluator.permutation_spec(&a).unwrap_err().to_string();
    assert!(err.contains("alignment is not supported"), "{err}");
}
