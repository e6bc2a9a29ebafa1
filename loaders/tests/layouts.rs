//! Every fixture layout gives the same grid and the same tensors after normalisation.

use std::path::{Path, PathBuf};

use lineage_loaders::checkpoint::load_checkpoint;
use lineage_loaders::inspect::inspect;
use lineage_loaders::zoo::Layout;
use lineage_loaders::{ParamSet, Zoo, discover};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/digits-mlp")
        .join(rel)
}

/// Run index -> (step, params) for every checkpoint of a zoo.
fn grid(zoo: &Zoo) -> Vec<Vec<(u64, ParamSet)>> {
    zoo.runs
        .iter()
        .map(|run| {
            run.checkpoints
                .iter()
                .map(|c| (c.step, load_checkpoint(c).unwrap_or_else(|e| panic!("{e}"))))
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &ParamSet, b: &ParamSet) -> f32 {
    a.check_compatible(b).unwrap();
    a.iter()
        .map(|(name, t)| {
            let u = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let v = b.get(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            u.iter().zip(&v).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

#[test]
fn all_full_layouts_give_the_same_grid_and_tensors() {
    let reference_zoo = discover(&fixture("zoo_safetensors"));
    assert!(reference_zoo.problems.is_empty(), "{:?}", reference_zoo.problems);
    let names: Vec<&str> = reference_zoo.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["init0_order0", "init1_order0"]);
    let reference = grid(&reference_zoo);
    for (layout_dir, layout, run_names) in [
        ("zoo_hf_trainer", Layout::HfTrainer, ["run_i0_o0", "run_i1_o0"]),
        ("zoo_lightning", Layout::FilePerStep, ["init0_order0", "init1_order0"]),
    ] {
        let zoo = discover(&fixture(layout_dir));
        assert!(zoo.problems.is_empty(), "{layout_dir}: {:?}", zoo.problems);
        let names: Vec<&str> = zoo.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, run_names, "{layout_dir}");
        assert!(
            zoo.runs
                .iter()
                .all(|r| r.checkpoints.iter().all(|c| c.layout == layout))
        );
        let other = grid(&zoo);
        for (ref_run, run) in reference.iter().zip(&other) {
            let steps: Vec<u64> = run.iter().map(|(s, _)| *s).collect();
            assert_eq!(steps, [0, 100, 1500], "{layout_dir}");
            for ((_, a), (_, b)) in ref_run.iter().zip(run) {
                assert_eq!(b.n_params(), 26_122);
                assert_eq!(max_abs_diff(a, b), 0.0, "{layout_dir}: tensors must be identical");
            }
        }
    }
}

#[test]
fn fp16_layout_matches_within_half_precision() {
    let zoo = discover(&fixture("zoo_fp16"));
    assert!(zoo.problems.is_empty(), "{:?}", zoo.problems);
    let reference = discover(&fixture("zoo_safetensors"));
    for (run, ref_run) in zoo.runs.iter().zip(&reference.runs) {
        assert_eq!(run.name, ref_run.name);
        assert_eq!(run.steps(), [1500]);
        let half = load_checkpoint(&run.checkpoints[0]).unwrap();
        let full = load_checkpoint(ref_run.at(1500).unwrap()).unwrap();
        let diff = max_abs_diff(&full, &half);
        assert!(diff > 0.0 && diff < 2e-3, "fp16 rounding error {diff}");
    }
}

#[test]
fn inspect_reports_the_fixture_grid_and_logs() {
    for dir in ["zoo_safetensors", "zoo_hf_trainer", "zoo_lightning"] {
        let ins = inspect(&fixture(dir));
        assert!(ins.problems.is_empty(), "{dir}: {:?}", ins.problems);
        assert_eq!(ins.summary.n_runs, 2);
        assert_eq!(ins.summary.n_checkpoints, 6);
        assert_eq!(ins.summary.steps, [0, 100, 1500]);
        assert_eq!(ins.summary.n_params, Some(26_122));
        for run in &ins.runs {
            assert!(run.steps.iter().all(|s| s.n_params == 26_122 && s.dtype == "f32"));
        }
        let expect_logs = dir != "zoo_lightning";
        assert_eq!(ins.summary.runs_with_logs == 2, expect_logs, "{dir}");
    }
    let ins = inspect(&fixture("zoo_fp16"));
    assert!(ins.runs.iter().all(|r| r.steps.iter().all(|s| s.dtype == "f16")));
}

#[test]
fn inspect_json_has_the_documented_fields() {
    let ins = inspect(&fixture("zoo_safetensors"));
    let json = serde_json::to_value(&ins).unwrap();
    let step = &json["runs"][0]["steps"][0];
    for field in ["step", "path", "format", "dtype", "n_params"] {
        assert!(!step[field].is_null(), "missing {field}");
    }
    assert_eq!(json["runs"][0]["name"], "init0_order0");
    assert!(json["problems"].as_array().unwrap().is_empty());
}
