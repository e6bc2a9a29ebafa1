//! `lineage demo --no-gui` end to end: trains the known-truth zoo (3 inits x 3 data orders), analyses it,
//! and finds the init families as basins; `lineage export` writes the cluster timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use lineage_core::output::schema::read_parquet;

/// `lineage demo --no-gui <args> --out <out>` with its own cache; asserts that it succeeds.
fn demo(args: &[&str], out: &Path, cache: &Path) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(["demo", "--no-gui"])
        .args(args)
        .arg("--out")
        .arg(out)
        .env("LINEAGE_CACHE", cache)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Asserts that `<results>/<table>.parquet` exists for every table named.
fn assert_tables_written(results: &Path, tables: &[&str]) {
    for table in tables {
        assert!(
            results.join(format!("{table}.parquet")).is_file(),
            "{table}.parquet missing"
        );
    }
}

/// step -> basin -> members, from clusters.parquet.
fn basins_by_step(results: &Path) -> BTreeMap<u64, BTreeMap<u32, BTreeSet<String>>> {
    let df = read_parquet(&results.join("clusters.parquet")).unwrap();
    let (step, run, basin) = (
        df.column("step").unwrap().u64().unwrap(),
        df.column("run").unwrap().str().unwrap(),
        df.column("basin").unwrap().u32().unwrap(),
    );
    let mut out: BTreeMap<u64, BTreeMap<u32, BTreeSet<String>>> = BTreeMap::new();
    for i in 0..df.height() {
        out.entry(step.get(i).unwrap())
            .or_default()
            .entry(basin.get(i).unwrap())
            .or_default()
            .insert(run.get(i).unwrap().to_string());
    }
    out
}

#[test]
fn demo_finds_the_init_families_and_a_rerun_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let cache = tmp.path().join("cache");
    let first = demo(&[], &out, &cache);
    let results = out.join("results-families");
    assert_tables_written(
        &results,
        &[
            "checkpoints",
            "evals",
            "interpolation",
            "barriers",
            "clusters",
            "timeline",
            "tree_edges",
        ],
    );
    // The figures for the paper: basin tree, heatmaps and curves at first / middle / last step.
    let figures = results.join("figures");
    for stem in ["basin_tree", "barrier_vs_step", "training_curves"] {
        for ext in ["svg", "png"] {
            let file = figures.join(format!("{stem}.{ext}"));
            assert!(
                std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
                "{} missing or empty",
                file.display()
            );
        }
    }
    let per_step = |prefix: &str| {
        std::fs::read_dir(&figures)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".svg"))
            .count()
    };
    assert_eq!(per_step("barrier_heatmap_step"), 3);
    assert_eq!(per_step("interpolation_step"), 3);
    let tree_svg = std::fs::read_to_string(figures.join("basin_tree.svg")).unwrap();
    assert!(tree_svg.contains("init0_order0"), "the basin tree names the runs");
    let basins = basins_by_step(&results);
    let (first_step, early) = basins.first_key_value().unwrap();
    assert_eq!(*first_step, 0);
    assert_eq!(early.len(), 1, "at step 0 all runs share one basin: {early:?}");
    let (_, last) = basins.last_key_value().unwrap();
    let families: BTreeSet<BTreeSet<String>> = last.values().cloned().collect();
    let expected: BTreeSet<BTreeSet<String>> = (0..3)
        .map(|i| (0..3).map(|o| format!("init{i}_order{o}")).collect())
        .collect();
    assert_eq!(families, expected, "the final basins must be the init families");

    // Stable ids: once the families have split, each run keeps its basin id to the end.
    let steps: Vec<&u64> = basins.keys().collect();
    let tail = &steps[steps.len() - 3..];
    for run in expected.iter().flatten() {
        let ids: BTreeSet<u32> = tail
            .iter()
            .map(|s| *basins[*s].iter().find(|(_, m)| m.contains(run)).unwrap().0)
            .collect();
        assert_eq!(ids.len(), 1, "{run} changes basin id over the last steps");
    }
    // The tree shows how the families arise: split events, and edges carrying all 9 runs each step.
    let timeline = read_parquet(&results.join("timeline.parquet")).unwrap();
    let event = timeline.column("event").unwrap().str().unwrap();
    let events: Vec<&str> = (0..timeline.height()).filter_map(|i| event.get(i)).collect();
    assert!(events.contains(&"split"), "{events:?}");
    let edges = read_parquet(&results.join("tree_edges.parquet")).unwrap();
    let n_runs = edges.column("n_runs").unwrap().u64().unwrap();
    let carried: u64 = (0..edges.height()).filter_map(|i| n_runs.get(i)).sum();
    assert_eq!(carried, 9 * (basins.len() as u64 - 1));

    let summary = String::from_utf8_lossy(&first.stdout);
    assert!(summary.contains("basins"), "{summary}");

    // Second run: no retraining, no forward pass.
    demo(&[], &out, &cache);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["computed"], 0);
    assert_eq!(report["views"]["computed"], 0, "views come from the cache too");
    assert_eq!(report["views"]["layer"], 1);
    assert_eq!(report["views"]["rows"]["trajectories"], 81, "9 runs x 9 steps");
    assert_eq!(report["basins"]["basins_by_step"]["0"], 1);

    // Export the cluster timeline.
    let exported = tmp.path().join("timeline.parquet");
    let status = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .arg("export")
        .arg(&results)
        .arg("--to")
        .arg(&exported)
        .status()
        .unwrap();
    assert!(status.success());
    let df = read_parquet(&exported).unwrap();
    assert_eq!(df.height(), 9 * basins.len());
    let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["step", "run", "basin", "basin_size", "event", "parent_basin"]);
}

#[test]
fn demo_on_modular_addition_writes_its_own_zoo_and_results() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args([
            "demo",
            "--no-gui",
            "--recipe",
            "forks",
            "--task",
            "modular-addition",
            "--modulus",
            "13",
            "--out",
        ])
        .arg(&out)
        .env("LINEAGE_CACHE", tmp.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("modular addition mod 13"), "{stderr}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("zoo-forks-mod13/parent/config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "modular_addition");
    assert_eq!(config["modulus"], 13);
    // 13^2 pairs, half held out: the eval set of every checkpoint.
    let evals = read_parquet(&out.join("results-forks-mod13/evals.parquet")).unwrap();
    assert!(evals.height() > 0);
    let barriers = read_parquet(&out.join("results-forks-mod13/barriers.parquet")).unwrap();
    let pair = barriers.column("pair").unwrap().str().unwrap();
    assert!(
        (0..barriers.height()).any(|i| pair.get(i) == Some("fork")),
        "fork pairs are analysed"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(["demo", "--no-gui", "--task", "sorting", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown task `sorting`"));
}

/// Mean error of each basin at the last step on eval set `set`, from generalization.parquet.
fn last_step_errors(results: &Path, set: &str) -> BTreeMap<u32, f64> {
    let df = read_parquet(&results.join("generalization.parquet")).unwrap();
    let (step, sets, basin, error) = (
        df.column("step").unwrap().u64().unwrap(),
        df.column("set").unwrap().str().unwrap(),
        df.column("basin").unwrap().u32().unwrap(),
        df.column("mean_error").unwrap().f64().unwrap(),
    );
    let last = (0..df.height()).filter_map(|i| step.get(i)).max().unwrap();
    (0..df.height())
        .filter(|&i| step.get(i) == Some(last) && sets.get(i) == Some(set))
        .map(|i| (basin.get(i).unwrap(), error.get(i).unwrap()))
        .collect()
}

#[test]
fn shortcut_demo_finds_basins_that_differ_out_of_distribution_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let output = demo(&["--task", "shortcut"], &out, &tmp.path().join("cache"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("parity with a shortcut input"), "{stderr}");
    let zoo = out.join("zoo-families-shortcut");
    for file in ["eval.safetensors", "eval_ood.safetensors"] {
        assert!(zoo.join(file).is_file(), "{file} missing");
    }
    let results = out.join("results-families-shortcut");
    let id = last_step_errors(&results, "id");
    let ood = last_step_errors(&results, "ood");
    assert!(id.len() >= 2, "the init families split into basins: {id:?}");
    assert_eq!(
        id.keys().collect::<Vec<_>>(),
        ood.keys().collect::<Vec<_>>(),
        "every basin is scored on both sets"
    );
    // In distribution every basin is (nearly) perfect; out of distribution, where the shortcut
    // points to the wrong label, some basins follow the rule and others the shortcut.
    assert!(id.values().all(|&e| e < 0.02), "in-distribution errors {id:?}");
    let (lo, hi) = ood.values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &e| {
        (lo.min(e), hi.max(e))
    });
    assert!(hi - lo > 0.3, "out-of-distribution errors {ood:?}");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("generalization at step 1000"), "{summary}");
    assert!(
        summary.contains(" ood "),
        "the per-basin table lists the ood set: {summary}"
    );
}

/// `lineage demo --model cnn`: lineage's trainer writes a zoo of BatchNorm CNNs in torchvision's
/// VGG layout (on the digits as 1x8x8 images), which the `cnn` family reads and analyses with
/// recomputed BatchNorm statistics (`--bn reset`, the default), finding basins among the seeds.
#[test]
fn cnn_demo_trains_batchnorm_cnns_and_finds_basins() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let output = demo(&["--model", "cnn"], &out, &tmp.path().join("cache"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("-parameter CNN on the UCI digits"), "{stderr}");
    let zoo = out.join("zoo-families-cnn");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(zoo.join("init0_order0/config.json")).unwrap()).unwrap();
    assert_eq!(config["arch"], "cnn");
    assert_eq!(config["input_shape"], serde_json::json!([1, 8, 8]));
    assert_eq!(config["batch_norm"], true);
    let results = out.join("results-families-cnn");
    assert_tables_written(
        &results,
        &[
            "evals",
            "interpolation",
            "barriers",
            "clusters",
            "timeline",
            "tree_edges",
            "similarity",
            "probes",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("report.json")).unwrap()).unwrap();
    // The representation views read the classifier's hidden layer (layer 1; 0 is the pooled maps).
    assert_eq!(report["views"]["layer"], 1, "{}", report["views"]);
    assert_eq!(report["views"]["rows"]["probes"], 81, "9 runs x 9 steps");
    let evaluator = report["evaluator"].as_str().unwrap();
    assert!(
        evaluator.contains("on 500 images 1x8x8") && evaluator.contains("batchnorm reset"),
        "{evaluator}"
    );
    // The CNNs learn the digits.
    let evals = read_parquet(&results.join("evals.parquet")).unwrap();
    let (step, error) = (
        evals.column("step").unwrap().u64().unwrap(),
        evals.column("error").unwrap().f64().unwrap(),
    );
    let last = (0..evals.height()).filter_map(|i| step.get(i)).max().unwrap();
    let final_errors: Vec<f64> = (0..evals.height())
        .filter(|&i| step.get(i) == Some(last))
        .map(|i| error.get(i).unwrap())
        .collect();
    assert_eq!(final_errors.len(), 9);
    assert!(
        final_errors.iter().all(|&e| e < 0.1),
        "final eval errors {final_errors:?}"
    );
    // One basin at initialisation; the runs then split into several.
    let basins = basins_by_step(&results);
    let (first_step, early) = basins.first_key_value().unwrap();
    assert_eq!((*first_step, early.len()), (0, 1), "{early:?}");
    let (_, final_basins) = basins.last_key_value().unwrap();
    assert!(
        final_basins.len() >= 2,
        "the runs end in several basins: {final_basins:?}"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(["demo", "--no-gui", "--model", "cnn", "--task", "shortcut", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--model cnn trains on images"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
