//! The built-in trainer writes real, deterministic zoos that lineage's discovery reads, and its
//! families zoo has the known basin structure: same init => linearly connected, different inits =>
//! a clear loss barrier.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use lineage_core::progress::{NoProgress, Progress};
use lineage_core::train::{Recipe, Schedule, TrainConfig, TrainError, ZooSummary, train_zoo};

/// A small families zoo: 2 inits x 2 orders, 500 steps (the demo's settings otherwise).
fn small_config() -> TrainConfig {
    TrainConfig {
        total_steps: 500,
        checkpoints: Schedule::LogSpaced(6),
        ..TrainConfig::default()
    }
}

fn families(out: &Path) -> ZooSummary {
    train_zoo(
        &Recipe::Families { inits: 2, orders: 2 },
        &small_config(),
        out,
        &NoProgress,
    )
    .unwrap()
}

/// Every file under `dir`, relative path -> bytes.
fn files(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn checkpoint(zoo: &Path, run: &str, step: u64) -> HashMap<String, Tensor> {
    load(&zoo.join(run).join(format!("step{step}")).join("model.safetensors"))
}

/// Mean cross-entropy of the ReLU MLP `fc1..fcN` on the eval set, in plain candle ops.
fn eval_loss(params: &HashMap<String, Tensor>, x: &Tensor, y: &Tensor) -> f32 {
    let n = params.len() / 2;
    let mut h = x.clone();
    for i in 1..=n {
        let w = &params[&format!("fc{i}.weight")];
        let b = &params[&format!("fc{i}.bias")];
        h = h.matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap();
        if i < n {
            h = h.relu().unwrap();
        }
    }
    let y = y.to_dtype(DType::U32).unwrap();
    candle_nn::loss::cross_entropy(&h, &y)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Loss barrier at the midpoint: f(theta(0.5)) - (f(A) + f(B)) / 2, from alpha = 0, 0.5, 1.
fn midpoint_barrier(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, x: &Tensor, y: &Tensor) -> f32 {
    let mid: HashMap<String, Tensor> = a
        .iter()
        .map(|(k, t)| (k.clone(), ((t + &b[k]).unwrap() * 0.5).unwrap()))
        .collect();
    let (fa, fm, fb) = (eval_loss(a, x, y), eval_loss(&mid, x, y), eval_loss(b, x, y));
    fm - (fa + fb) / 2.0
}

#[test]
fn families_zoo_is_deterministic_discoverable_and_has_the_known_basins() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    let summary = families(&zoo);
    let steps = small_config().save_steps();
    assert_eq!(steps, [0, 3, 11, 39, 140, 500]);
    assert_eq!(summary.runs.len(), 4);
    assert_eq!((summary.n_train, summary.n_eval, summary.n_params), (1297, 500, 26_122));
    for run in &summary.runs {
        assert_eq!(run.steps, steps);
        assert!(
            run.final_eval_accuracy > 0.85,
            "{}: accuracy {}",
            run.name,
            run.final_eval_accuracy
        );
    }

    // Determinism: the same seeds give bitwise identical files; another seed does not.
    let again = tmp.path().join("again");
    families(&again);
    let (first, second) = (files(&zoo), files(&again));
    assert_eq!(first.len(), 4 * (steps.len() + 2) + 1);
    assert!(first == second, "two trainings with the same seeds differ");
    let other = tmp.path().join("other");
    let config = TrainConfig {
        seed: 7,
        ..small_config()
    };
    train_zoo(&Recipe::Families { inits: 1, orders: 1 }, &config, &other, &NoProgress).unwrap();
    let key = PathBuf::from("init0_order0/step500/model.safetensors");
    assert_ne!(files(&other)[&key], first[&key]);

    // Discovery reads the grid as folder-per-step, with configs and logs, and no problem.
    let found = lineage_loaders::discover(&zoo);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let names: Vec<&str> = found.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["init0_order0", "init0_order1", "init1_order0", "init1_order1"]);
    for run in &found.runs {
        assert_eq!(run.steps(), steps);
        assert_eq!(
            run.config.as_deref(),
            Some(zoo.join(&run.name).join("config.json").as_path())
        );
        assert_eq!(run.logs, [zoo.join(&run.name).join("metrics.jsonl")]);
        assert!(run.parent.is_none());
    }
    let config: serde_json::Value = serde_json::from_slice(&first[&PathBuf::from("init1_order0/config.json")]).unwrap();
    assert_eq!(config["arch"], "mlp");
    assert_eq!(config["layers"], serde_json::json!([64, 128, 128, 10]));
    assert_eq!(config["task"], "digits");
    assert_eq!(
        (config["init_seed"].as_u64(), config["data_seed"].as_u64()),
        (Some(1), Some(1000))
    );
    let log = String::from_utf8(first[&PathBuf::from("init0_order0/metrics.jsonl")].clone()).unwrap();
    assert_eq!(log.lines().count(), 50);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 500);
    assert!(last["loss"].as_f64().unwrap() < 0.2);

    // Known truth: same init => connected, different inits => a clear barrier (final step).
    let eval = load(&summary.eval_data);
    let (x, y) = (&eval["inputs"], &eval["labels"]);
    assert_eq!((x.dims(), y.dtype()), (&[500, 64][..], DType::I64));
    assert_eq!(summary.ood_data, None, "the digits have no out-of-distribution set");
    assert!(!zoo.join("eval_ood.safetensors").exists());
    let run = |name: &str| checkpoint(&zoo, name, 500);
    let same = [("init0_order0", "init0_order1"), ("init1_order0", "init1_order1")];
    let diff = [
        ("init0_order0", "init1_order0"),
        ("init0_order0", "init1_order1"),
        ("init0_order1", "init1_order1"),
    ];
    let same: Vec<f32> = same
        .iter()
        .map(|(a, b)| midpoint_barrier(&run(a), &run(b), x, y))
        .collect();
    let diff: Vec<f32> = diff
        .iter()
        .map(|(a, b)| midpoint_barrier(&run(a), &run(b), x, y))
        .collect();
    eprintln!("midpoint loss barriers at step 500: same init {same:?}, different inits {diff:?}");
    assert!(
        same.iter().all(|&b| b < 0.01),
        "same-init runs are not connected: {same:?}"
    );
    assert!(
        diff.iter().all(|&b| b > 0.1),
        "different-init runs are connected: {diff:?}"
    );
}

/// (run, parent (run, step), steps) as discovered.
type RunRow<'a> = (&'a str, Option<(&'a str, u64)>, Vec<u64>);

#[test]
fn forks_zoo_has_a_manifest_naming_the_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("forks");
    let config = TrainConfig {
        total_steps: 200,
        checkpoints: Schedule::LogSpaced(5),
        ..TrainConfig::default()
    };
    let recipe = Recipe::Forks {
        fork_steps: vec![50, 0],
        children_per_fork: 2,
    };
    let summary = train_zoo(&recipe, &config, &zoo, &NoProgress).unwrap();
    assert_eq!(summary.manifest.as_deref(), Some(zoo.join("lineage.toml").as_path()));

    let found = lineage_loaders::discover(&zoo);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let runs: Vec<RunRow> = found
        .runs
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.parent.as_ref().map(|p| (p.run.as_str(), p.step)),
                r.steps(),
            )
        })
        .collect();
    let save = config.save_steps();
    assert_eq!(save, [0, 1, 6, 34, 200]);
    let after = |k: u64| -> Vec<u64> {
        let mut s: Vec<u64> = save.iter().copied().filter(|&s| s > k).collect();
        s.insert(0, k);
        s
    };
    assert_eq!(
        runs,
        [
            ("fork_k0_order1", Some(("parent", 0)), after(0)),
            ("fork_k0_order2", Some(("parent", 0)), after(0)),
            ("fork_k50_order1", Some(("parent", 50)), after(50)),
            ("fork_k50_order2", Some(("parent", 50)), after(50)),
            ("parent", None, vec![0, 1, 6, 34, 50, 200]),
        ]
    );
    for run in &found.runs {
        assert_eq!(
            run.config.as_deref(),
            Some(zoo.join(&run.name).join("config.json").as_path())
        );
        assert_eq!(run.logs.len(), 1);
    }
    // A child starts from the parent's exact weights, then follows its own data order.
    let bytes =
        |run: &str, step: u64| std::fs::read(zoo.join(run).join(format!("step{step}/model.safetensors"))).unwrap();
    assert_eq!(bytes("fork_k50_order1", 50), bytes("parent", 50));
    assert_ne!(bytes("fork_k50_order1", 200), bytes("parent", 200));
    assert_ne!(bytes("fork_k50_order1", 200), bytes("fork_k50_order2", 200));
    let child: serde_json::Value =
        serde_json::from_slice(&std::fs::read(zoo.join("fork_k50_order2/config.json")).unwrap()).unwrap();
    assert_eq!(child["forked_from"], serde_json::json!({ "run": "parent", "step": 50 }));
    assert_eq!(child["data_seed"], 1002);
}

/// Counts the work and cancels after `cancel_after` units.
struct Counting {
    total: AtomicU64,
    done: AtomicU64,
    cancel_after: u64,
}

impl Progress for Counting {
    fn start(&self, _: &str, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn is_cancelled(&self) -> bool {
        self.done.load(Ordering::Relaxed) >= self.cancel_after
    }
}

#[test]
fn progress_counts_steps_and_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        total_steps: 30,
        ..TrainConfig::default()
    };
    let recipe = Recipe::Forks {
        fork_steps: vec![10],
        children_per_fork: 2,
    };
    let progress = Counting {
        total: AtomicU64::new(0),
        done: AtomicU64::new(0),
        cancel_after: u64::MAX,
    };
    train_zoo(&recipe, &config, &tmp.path().join("a"), &progress).unwrap();
    assert_eq!(progress.total.load(Ordering::Relaxed), 30 + 2 * 20);
    assert_eq!(progress.done.load(Ordering::Relaxed), 70);

    let cancel = Counting {
        total: AtomicU64::new(0),
        done: AtomicU64::new(0),
        cancel_after: 5,
    };
    let err = train_zoo(
        &Recipe::Families { inits: 1, orders: 1 },
        &config,
        &tmp.path().join("b"),
        &cancel,
    );
    assert!(matches!(err, Err(TrainError::Cancelled)), "{err:?}");

    // A used folder is refused rather than mixed with stale runs.
    let err = train_zoo(&recipe, &config, &tmp.path().join("a"), &NoProgress).unwrap_err();
    assert!(matches!(err, TrainError::NotEmpty(_)), "{err}");
}

#[test]
fn modular_addition_zoo_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        task: lineage_core::train::Task::ModularAddition {
            modulus: 23,
            train_fraction: 0.5,
            split_seed: 0,
        },
        total_steps: 50,
        ..TrainConfig::default()
    };
    let summary = train_zoo(
        &Recipe::Families { inits: 1, orders: 2 },
        &config,
        &tmp.path().join("m"),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((summary.n_train, summary.n_eval), (265, 264));
    let params = checkpoint(&summary.root, "init0_order1", 50);
    assert_eq!(params["fc1.weight"].dims(), [128, 46]);
    assert_eq!(params["fc3.weight"].dims(), [23, 128]);
    let eval = load(&summary.eval_data);
    assert_eq!(eval["inputs"].dims(), [264, 46]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary.root.join("init0_order1/config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "modular_addition");
    assert_eq!(config["modulus"], 23);
}

#[test]
fn shortcut_zoo_writes_both_eval_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        task: lineage_core::train::Task::Shortcut(lineage_core::train::ShortcutSpec {
            bits: 8,
            parity_bits: 2,
            spurious: 0.1,
            train_examples: 256,
            eval_examples: 100,
            sample_seed: 0,
        }),
        total_steps: 20,
        ..TrainConfig::default()
    };
    let summary = train_zoo(
        &Recipe::Families { inits: 1, orders: 1 },
        &config,
        &tmp.path().join("s"),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((summary.n_train, summary.n_eval), (256, 100));
    let id = load(&summary.eval_data);
    let ood = load(
        &summary
            .ood_data
            .expect("the shortcut task has an out-of-distribution set"),
    );
    assert_eq!(id["inputs"].dims(), [100, 9]);
    assert_eq!(ood["inputs"].dims(), [100, 9]);
    // Same rule, the shortcut input flipped: its sign matches the label in one set and not the other.
    let agreement = |set: &HashMap<String, Tensor>| {
        let x: Vec<Vec<f32>> = set["inputs"].to_vec2().unwrap();
        let y: Vec<i64> = set["labels"].to_vec1().unwrap();
        x.iter().zip(&y).filter(|(x, y)| (x[8] > 0.0) == (**y == 1)).count()
    };
    assert_eq!((agreement(&id), agreement(&ood)), (100, 0));
    let params = checkpoint(&summary.root, "init0_order0", 20);
    assert_eq!(params["fc1.weight"].dims(), [128, 9]);
    assert_eq!(params["fc3.weight"].dims(), [2, 128]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary.root.join("init0_order0/config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "shortcut");
    assert_eq!(config["parity_bits"], 2);
}

/// A CNN zoo (forked, so the BatchNorm statistics travel with a fork): its checkpoints are read by
/// lineage's `cnn` family, whose loss on the eval set with the stored statistics is the trainer's
/// own, and a child starts from its parent's statistics.
#[test]
fn cnn_zoo_is_read_by_the_cnn_family() {
    use lineage_core::EvalData;
    use lineage_core::models::cnn::vgg::Layer;
    use lineage_core::models::cnn::{BnMode, BnOptions};
    use lineage_core::models::registry::evaluator_on;
    use lineage_core::train::ConvLayers;

    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("cnn");
    let config = TrainConfig {
        hidden: vec![16],
        conv: Some(ConvLayers {
            input_shape: [1, 8, 8],
            layers: vec![Layer::Conv(4), Layer::Pool, Layer::Conv(8), Layer::Pool],
            batch_norm: true,
        }),
        total_steps: 60,
        checkpoints: Schedule::Steps(vec![30]),
        ..TrainConfig::default()
    };
    let recipe = Recipe::Forks {
        fork_steps: vec![30],
        children_per_fork: 1,
    };
    let summary = train_zoo(&recipe, &config, &zoo, &NoProgress).unwrap();
    assert_eq!(summary.model, "CNN");
    // conv 4x1x3x3 + 4, BN 4 x 4, conv 8x4x3x3 + 8, BN 8 x 4, linear 16x32 + 16, 10x16 + 10.
    assert_eq!(summary.n_params, 40 + 16 + 296 + 32 + 528 + 170);
    let parent = checkpoint(&zoo, "parent", 60);
    for name in [
        "features.0.weight",
        "features.1.running_var",
        "features.5.running_mean",
        "classifier.2.bias",
    ] {
        assert!(parent.contains_key(name), "{name} missing: {:?}", parent.keys());
    }
    let bytes =
        |run: &str, step: u64| std::fs::read(zoo.join(run).join(format!("step{step}/model.safetensors"))).unwrap();
    assert_eq!(bytes("fork_k30_order1", 30), bytes("parent", 30));

    let data = EvalData::load(&summary.eval_data).unwrap();
    let stored = BnOptions {
        mode: BnMode::Interpolate,
        ..BnOptions::default()
    };
    let params = lineage_loaders::load_params(&zoo.join("parent/step60/model.safetensors")).unwrap();
    let evaluator =
        evaluator_on(Device::Cpu, stored, Default::default())(Some(&zoo.join("parent/config.json")), &params, &data)
            .unwrap();
    assert!(evaluator.describe().contains("1x8x8"), "{}", evaluator.describe());
    let result = evaluator.evaluate(&params).unwrap();
    let run = summary.runs.iter().find(|r| r.name == "parent").unwrap();
    assert!(
        (result.loss - f64::from(run.final_eval_loss)).abs() < 1e-4,
        "lineage {} vs the trainer {}",
        result.loss,
        run.final_eval_loss
    );
    assert!((1.0 - result.error - f64::from(run.final_eval_accuracy)).abs() < 1e-6);
    assert!(
        run.final_eval_accuracy > 0.5,
        "trained: accuracy {}",
        run.final_eval_accuracy
    );

    // A CNN needs images of the task's size.
    let err = train_zoo(
        &Recipe::Families { inits: 1, orders: 1 },
        &TrainConfig {
            task: lineage_core::train::Task::ModularAddition {
                modulus: 13,
                train_fraction: 0.5,
                split_seed: 0,
            },
            ..config
        },
        &tmp.path().join("bad"),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("input_shape [1, 8, 8] holds 64 values"),
        "{err}"
    );
}
