//! Every fixture layout gives the same grid and the same tensors after normalisation.

use std::path::{Path, PathBuf};

use lineage_loaders::checkpoint::load_checkpoint;
use lineage_loaders::inspect::{inspect, inspect_zoo};
use lineage_loaders::problem::ProblemKind;
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

/// Copies the fixture file `src` (relative to the fixture folder) to `dst`, creating its folders.
fn place(dst: &Path, src: &str) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(fixture(src), dst).unwrap();
}

/// The safetensors fixture checkpoint of `run` (`init0_order0` / `init1_order0`) at `step`.
fn fixture_checkpoint(run: &str, step: u64) -> String {
    format!("zoo_safetensors/{run}/step{step}/model.safetensors")
}

/// Loads `checkpoint` and the fixture file `src` and requires identical tensors.
fn assert_same_tensors(checkpoint: &lineage_loaders::Checkpoint, src: &str) {
    let loaded = load_checkpoint(checkpoint).unwrap_or_else(|e| panic!("{e}"));
    let source = lineage_loaders::load_params(&fixture(src)).unwrap();
    assert_eq!(
        max_abs_diff(&source, &loaded),
        0.0,
        "{}",
        checkpoint.display_path().display()
    );
}

/// Run name -> steps of a zoo.
fn run_steps(zoo: &Zoo) -> Vec<(String, Vec<u64>)> {
    zoo.runs.iter().map(|r| (r.name.clone(), r.steps())).collect()
}

/// A run's (step, tokens) pairs.
type StepsAndTokens = Vec<(u64, Option<u64>)>;

/// Run name -> [(step, tokens)] of a zoo.
fn steps_and_tokens(zoo: &Zoo) -> Vec<(String, StepsAndTokens)> {
    zoo.runs
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.checkpoints.iter().map(|c| (c.step, c.tokens)).collect(),
            )
        })
        .collect()
}

fn kinds(zoo: &Zoo) -> Vec<ProblemKind> {
    zoo.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn olmo_folders_give_steps_tokens_and_one_run_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("OLMo-7B");
    let (a, b) = ("init0_order0", "init1_order0");
    let layout = [
        ("step0-tokens0B/model.safetensors", fixture_checkpoint(a, 0)),
        ("step100-tokens4B/model.safetensors", fixture_checkpoint(a, 100)),
        (
            "step1500-unsharded/model.pt",
            "zoo_hf_trainer/run_i0_o0/checkpoint-1500/pytorch_model.bin".into(),
        ),
        (
            "step1500-unsharded/optim.pt",
            "zoo_hf_trainer/run_i1_o0/checkpoint-0/pytorch_model.bin".into(),
        ),
        ("stage1-step0-tokens0B/model.safetensors", fixture_checkpoint(b, 0)),
        ("stage1-step100-tokens5B/model.safetensors", fixture_checkpoint(b, 100)),
        (
            "stage2-ingredient2-step100-tokens10B/model.safetensors",
            fixture_checkpoint(b, 1500),
        ),
        ("config.json", "zoo_safetensors/init0_order0/config.json".into()),
    ];
    for (path, src) in &layout {
        place(&root.join(path), src);
    }
    // OLMo links its last checkpoint as `latest-unsharded`: the real folder is read, the alias skipped.
    #[cfg(unix)]
    std::os::unix::fs::symlink("step1500-unsharded", root.join("latest-unsharded")).unwrap();
    let zoo = discover(&root);
    assert_eq!(
        steps_and_tokens(&zoo),
        [
            (
                "OLMo-7B".into(),
                vec![(0, Some(0)), (100, Some(4_000_000_000)), (1500, None)]
            ),
            ("stage1".into(), vec![(0, Some(0)), (100, Some(5_000_000_000))]),
            ("stage2-ingredient2".into(), vec![(100, Some(10_000_000_000))]),
        ]
    );
    // Stages restart the step count: step 100 of `stage1` and of `stage2-ingredient2` are separate runs.
    let mut problems: Vec<_> = zoo.problems.iter().map(|p| (p.kind, p.path.clone())).collect();
    problems.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = vec![
        (ProblemKind::MissingSteps, root.clone()),
        (ProblemKind::MissingSteps, root.clone()),
    ];
    if cfg!(unix) {
        expected.push((ProblemKind::SymlinkLoop, root.join("latest-unsharded")));
    }
    assert_eq!(problems, expected, "{:?}", zoo.problems);
    for run in &zoo.runs {
        assert_eq!(run.config, Some(root.join("config.json")), "{}", run.name);
        assert!(run.checkpoints.iter().all(|c| c.layout == Layout::Olmo));
    }
    // In grid order: the weights of every folder but `optim.pt` and `config.json`.
    let sources = layout.iter().filter(|(path, _)| path.contains("/model."));
    let checkpoints: Vec<_> = zoo.runs.iter().flat_map(|r| &r.checkpoints).collect();
    assert_eq!(checkpoints.len(), sources.clone().count());
    for (checkpoint, (_, src)) in checkpoints.iter().zip(sources) {
        assert_same_tensors(checkpoint, src);
    }
    let unsharded = zoo.run("OLMo-7B").unwrap().at(1500).unwrap();
    assert_eq!(unsharded.files, [root.join("step1500-unsharded/model.pt")]);
    let ins = inspect_zoo(zoo);
    let tokens: Vec<Option<u64>> = ins.runs[0].steps.iter().map(|s| s.tokens).collect();
    assert_eq!(tokens, [Some(0), Some(4_000_000_000), None]);
    let json = serde_json::to_value(&ins).unwrap();
    assert_eq!(json["runs"][0]["steps"][1]["tokens"], 4_000_000_000u64);
    assert_eq!(json["runs"][0]["steps"][1]["layout"], "olmo");
    assert!(json["runs"][0]["steps"][2]["tokens"].is_null());
}

#[test]
fn multiberts_sibling_folders_group_into_seeds_with_multiplied_steps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut sources = Vec::new();
    for (seed, run) in [(0, "init0_order0"), (1, "init1_order0")] {
        for (suffix, step) in [("0k", 0), ("20k", 100), ("2M", 1500)] {
            let folder = root.join(format!("multiberts-seed_{seed}-step_{suffix}"));
            place(&folder.join("model.safetensors"), &fixture_checkpoint(run, step));
            place(
                &folder.join("config.json"),
                &format!("zoo_safetensors/{run}/config.json"),
            );
            sources.push(fixture_checkpoint(run, step));
        }
    }
    let zoo = discover(root);
    assert!(zoo.problems.is_empty(), "{:?}", zoo.problems);
    let grid = run_steps(&zoo);
    assert_eq!(
        grid,
        [
            ("multiberts-seed_0".into(), vec![0, 20_000, 2_000_000]),
            ("multiberts-seed_1".into(), vec![0, 20_000, 2_000_000]),
        ]
    );
    let checkpoints: Vec<_> = zoo.runs.iter().flat_map(|r| &r.checkpoints).collect();
    for (checkpoint, src) in checkpoints.iter().zip(&sources) {
        assert_eq!(checkpoint.layout, Layout::SiblingFolders);
        assert_eq!(checkpoint.tokens, None);
        assert_same_tensors(checkpoint, src);
    }
    assert_eq!(
        zoo.runs[1].config,
        Some(root.join("multiberts-seed_1-step_2M/config.json")),
        "the config of a checkpoint folder"
    );
}

#[test]
fn ambiguous_names_are_problems_and_named_run_folders_stay_run_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let weights = fixture_checkpoint("init0_order0", 0);
    for folder in [
        "seed1-step100-step200",
        "seed1-step_1.2345k",
        "seed1-step300",
        "seed1_step300",
        "warmup_step500/checkpoint-100",
    ] {
        place(&root.join(folder).join("model.safetensors"), &weights);
    }
    place(
        &root.join("lr_step10/epoch=0-step=20.ckpt"),
        "zoo_lightning/init0_order0/epoch=0-step=0.ckpt",
    );
    std::fs::create_dir_all(root.join("notes-step1-step2")).unwrap();
    let zoo = discover(root);
    let grid = run_steps(&zoo);
    assert_eq!(
        grid,
        [
            ("lr_step10".into(), vec![20]),
            ("seed1".into(), vec![300]),
            ("warmup_step500".into(), vec![100])
        ]
    );
    assert_eq!(
        zoo.run("warmup_step500").unwrap().checkpoints[0].layout,
        Layout::HfTrainer
    );
    let mut problems: Vec<(ProblemKind, String)> = zoo
        .problems
        .iter()
        .map(|p| (p.kind, p.path.strip_prefix(root).unwrap().display().to_string()))
        .collect();
    problems.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        problems,
        [
            (ProblemKind::MissingSteps, "".into()),
            (ProblemKind::MixedLayouts, "".into()),
            (ProblemKind::MissingSteps, "lr_step10".into()),
            (ProblemKind::AmbiguousName, "seed1-step100-step200".into()),
            (ProblemKind::AmbiguousName, "seed1-step_1.2345k".into()),
            (ProblemKind::DuplicateStep, "seed1_step300".into()),
            (ProblemKind::MissingSteps, "warmup_step500".into()),
        ]
    );
    let message = |kind, path: &str| {
        zoo.problems
            .iter()
            .find(|p| p.kind == kind && p.path.ends_with(path))
            .unwrap()
            .message
            .clone()
    };
    let two_steps = message(ProblemKind::AmbiguousName, "seed1-step100-step200");
    assert!(two_steps.contains("2 step parts (step100, step200)"), "{two_steps}");
    let fraction = message(ProblemKind::AmbiguousName, "seed1-step_1.2345k");
    assert!(fraction.contains("not a whole number of steps"), "{fraction}");
}

/// Writes a Hugging Face hub cache repository `models--ORG--NAME` under `hub`: the fixture files as blobs,
/// `refs/REVISION` holding a commit (equal file lists share one), `snapshots/COMMIT/NAME` a real symbolic
/// link to `../../blobs/BLOB`.
#[cfg(unix)]
fn hub_repo(hub: &Path, repo: &str, revisions: &[(&str, &[(&str, &str)])]) -> PathBuf {
    let dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    let mut commits: Vec<&[(&str, &str)]> = Vec::new();
    for (revision, files) in revisions {
        let index = commits.iter().position(|c| c == files).unwrap_or_else(|| {
            commits.push(files);
            commits.len() - 1
        });
        let commit = format!("{index:040x}");
        std::fs::write(dir.join("refs").join(revision), &commit).unwrap();
        let snapshot = dir.join("snapshots").join(&commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        for (name, src) in *files {
            let blob = src.replace('/', "_");
            if !dir.join("blobs").join(&blob).exists() {
                std::fs::copy(fixture(src), dir.join("blobs").join(&blob)).unwrap();
            }
            let link = snapshot.join(name);
            if !link.exists() {
                std::os::unix::fs::symlink(format!("../../blobs/{blob}"), link).unwrap();
            }
        }
    }
    dir
}

#[cfg(unix)]
#[test]
fn hub_cache_gives_one_run_per_repository_and_one_step_per_revision() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("huggingface/hub");
    std::fs::create_dir_all(hub.join(".locks")).unwrap();
    std::fs::write(hub.join("version.txt"), "1").unwrap();
    let config = "zoo_safetensors/init0_order0/config.json";
    let mut repos = Vec::new();
    for (seed, run) in [(1, "init0_order0"), (2, "init1_order0")] {
        let checkpoints = [0, 100, 1500].map(|step| fixture_checkpoint(run, step));
        let files = checkpoints
            .each_ref()
            .map(|c| [("model.safetensors", c.as_str()), ("config.json", config)]);
        repos.push(hub_repo(
            &hub,
            &format!("EleutherAI/pythia-160m-seed{seed}"),
            &[
                ("step0", &files[0]),
                ("step100", &files[1]),
                ("step1500", &files[2]),
                ("main", &files[2]),
            ],
        ));
    }
    let no_steps = hub_repo(
        &hub,
        "EleutherAI/pythia-160m-deduped",
        &[("main", &[("config.json", config)])],
    );
    // The hub folder and the folder above it.
    for root in [hub.clone(), dir.path().to_path_buf()] {
        let zoo = discover(&root);
        assert_eq!(
            run_steps(&zoo),
            [
                ("pythia-160m-seed1".into(), vec![0, 100, 1500]),
                ("pythia-160m-seed2".into(), vec![0, 100, 1500])
            ]
        );
        assert_eq!(kinds(&zoo), [ProblemKind::NoStepRevisions], "{:?}", zoo.problems);
        assert_eq!(zoo.problems[0].path, no_steps);
        assert!(
            zoo.problems[0].message.contains("(revisions: `main`)"),
            "{}",
            zoo.problems[0]
        );
        for ((run, repo), source) in zoo.runs.iter().zip(&repos).zip(["init0_order0", "init1_order0"]) {
            assert_eq!(&run.dir, repo);
            for checkpoint in &run.checkpoints {
                assert_eq!(checkpoint.layout, Layout::HfHubCache);
                assert!(checkpoint.files[0].starts_with(repo.join("snapshots")));
                assert!(checkpoint.files[0].is_symlink(), "read through the snapshot's link");
                assert_same_tensors(checkpoint, &fixture_checkpoint(source, checkpoint.step));
            }
            let config = run.config.as_ref().expect("the snapshot's config.json");
            assert!(config.starts_with(repo.join("snapshots")), "{}", config.display());
        }
    }
    // One repository folder.
    let one = discover(&repos[1]);
    assert!(one.problems.is_empty(), "{:?}", one.problems);
    assert_eq!(run_steps(&one), [("pythia-160m-seed2".into(), vec![0, 100, 1500])]);
}

#[cfg(unix)]
#[test]
fn hub_cache_problems_name_the_revision_and_nothing_outside_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let step0 = fixture_checkpoint("init0_order0", 0);
    let step100 = fixture_checkpoint("init0_order0", 100);
    let other = fixture_checkpoint("init1_order0", 1500);
    let repo = hub_repo(
        &hub,
        "org/model",
        &[
            ("step0", &[("model.safetensors", &step0)]),
            ("step100", &[("model.safetensors", &step100)]),
            // The wrong weights under a step's name: the commit of step0.
            ("step200", &[("model.safetensors", &step0)]),
            ("stage1-step5-tokens1M", &[("model.safetensors", &other)]),
            (
                "step500",
                &[("config.json", "zoo_safetensors/init0_order0/config.json")],
            ),
        ],
    );
    // step300: its link leads outside the repository; step400: its blob is missing; step600: its snapshot
    // is missing; step700: not a commit hash; step1-step2: an ambiguous name.
    let outside = dir.path().join("elsewhere.safetensors");
    std::fs::copy(fixture(&step100), &outside).unwrap();
    let mut snapshots = Vec::new();
    for (revision, commit, target) in [
        ("step300", "ab", outside.clone()),
        ("step400", "cd", PathBuf::from("../../blobs/missing")),
    ] {
        let commit = commit.repeat(20);
        std::fs::write(repo.join("refs").join(revision), &commit).unwrap();
        let snapshot = repo.join("snapshots").join(&commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::os::unix::fs::symlink(target, snapshot.join("model.safetensors")).unwrap();
        snapshots.push(snapshot);
    }
    std::fs::write(repo.join("refs/step600"), "ef".repeat(20)).unwrap();
    std::fs::write(repo.join("refs/step700"), "not a hash\n").unwrap();
    std::fs::write(repo.join("refs/step1-step2"), "12".repeat(20)).unwrap();

    let ins = lineage_loaders::inspect::inspect(&hub);
    let grid: Vec<(&str, StepsAndTokens)> = ins
        .runs
        .iter()
        .map(|r| (r.name.as_str(), r.steps.iter().map(|s| (s.step, s.tokens)).collect()))
        .collect();
    assert_eq!(
        grid,
        [
            ("model", vec![(0, None), (100, None), (200, None)]),
            ("model/stage1", vec![(5, Some(1_000_000))]),
        ]
    );
    let count = |kind: ProblemKind, needle: &str| {
        ins.problems
            .iter()
            .filter(|p| p.kind == kind && p.message.contains(needle))
            .count()
    };
    let expected = [
        (
            ProblemKind::Unreadable,
            format!("leads outside the repository folder, to {}", outside.display()),
        ),
        (
            ProblemKind::Unreadable,
            format!("{}: skipped", snapshots[1].join("model.safetensors").display()),
        ),
        (ProblemKind::Unreadable, "revision `step600` (commit efef".into()),
        (
            ProblemKind::Malformed,
            "step700: revision skipped: does not hold a commit hash".into(),
        ),
        (
            ProblemKind::AmbiguousName,
            "step1-step2: revision skipped: `step1-step2` has 2 step parts".into(),
        ),
        (ProblemKind::Empty, "revision `step300` holds no weights file".into()),
        (ProblemKind::Empty, "revision `step400` holds no weights file".into()),
        (ProblemKind::Empty, "revision `step500` holds no weights file".into()),
        (
            ProblemKind::DuplicateContent,
            format!(
                "run `model` step 200 holds the same weights as run `model` step 0 ({})",
                repo.join(format!("snapshots/{:040x}", 0)).display()
            ),
        ),
    ];
    for (kind, needle) in &expected {
        assert_eq!(count(*kind, needle), 1, "{kind:?} {needle}: {:#?}", ins.problems);
    }
    let others: Vec<_> = ins
        .problems
        .iter()
        .filter(|p| p.kind != ProblemKind::MissingSteps)
        .collect();
    assert_eq!(others.len(), expected.len(), "{others:#?}");
}

#[cfg(unix)]
#[test]
fn hub_repositories_of_two_organisations_with_one_name_are_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (org, run) in [("a", "init0_order0"), ("b", "init1_order0"), ("c", "init0_order0")] {
        let weights = fixture_checkpoint(run, 100);
        let name = if org == "c" { "other" } else { "model" };
        hub_repo(
            dir.path(),
            &format!("{org}/{name}"),
            &[("step100", &[("model.safetensors", &weights)])],
        );
    }
    let zoo = discover(dir.path());
    assert!(zoo.problems.is_empty(), "{:?}", zoo.problems);
    assert_eq!(
        run_steps(&zoo),
        [
            ("a/model".into(), vec![100]),
            ("b/model".into(), vec![100]),
            ("other".into(), vec![100])
        ]
    );
}

#[test]
fn an_hf_trainer_final_save_is_the_step_its_trainer_state_records() {
    // `trainer.save_model(output_dir)` after training: weights beside the `checkpoint-N` folders.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("seed0");
    place(
        &run.join("checkpoint-100/model.safetensors"),
        &fixture_checkpoint("init0_order0", 100),
    );
    place(
        &run.join("model.safetensors"),
        &fixture_checkpoint("init0_order0", 1500),
    );
    let state = |step: &str| std::fs::write(run.join("trainer_state.json"), step).unwrap();

    // Training ended between saves: the final save is a step of its own.
    state(r#"{"global_step": 150, "log_history": []}"#);
    let zoo = discover(dir.path());
    assert_eq!(run_steps(&zoo), [("seed0".to_string(), vec![100, 150])]);
    assert!(zoo.problems.is_empty(), "{:?}", zoo.problems);
    let last = &zoo.runs[0].checkpoints[1];
    assert_eq!(last.layout, Layout::HfTrainer);
    assert_same_tensors(last, &fixture_checkpoint("init0_order0", 1500));

    // Training ended on a save step: the checkpoint folder holds the same step, used alone, quietly.
    state(r#"{"global_step": 100}"#);
    let zoo = discover(dir.path());
    assert_eq!(run_steps(&zoo), [("seed0".to_string(), vec![100])]);
    assert!(zoo.problems.is_empty(), "{:?}", zoo.problems);

    // No step recorded: the weights are named in a problem, not silently left out.
    for state_text in [Some("{}"), Some("not json"), None] {
        match state_text {
            Some(text) => state(text),
            None => std::fs::remove_file(run.join("trainer_state.json")).unwrap(),
        }
        let zoo = discover(dir.path());
        assert_eq!(run_steps(&zoo), [("seed0".to_string(), vec![100])]);
        assert_eq!(kinds(&zoo), [ProblemKind::AmbiguousName], "{state_text:?}");
        let message = &zoo.problems[0].message;
        assert!(
            message.contains("model.safetensors") && message.contains("final save"),
            "{message}"
        );
    }
}
