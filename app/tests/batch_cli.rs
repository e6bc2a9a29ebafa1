//! `lineage batch` end to end: tables, cache reuse, and resumption after SIGKILL.

use std::collections::{HashMap, HashSet};
mod common;

use std::path::Path;
use std::time::Duration;

use candle_core::{Device, Tensor};
use common::{batch, batch_with, emit_slurm, fixture, lineage, report, run_plan};
use lineage_core::output::schema::read_parquet;

/// The sweep's tables of `a` and `b` are equal.
fn assert_same_tables(a: &Path, b: &Path) {
    assert_same(a, b, &["checkpoints", "evals", "interpolation", "barriers"]);
}

/// The `tables` of `a` and `b` are equal (nulls equal to nulls).
fn assert_same(a: &Path, b: &Path, tables: &[&str]) {
    for table in tables {
        let x = read_parquet(&a.join(format!("{table}.parquet"))).unwrap();
        let y = read_parquet(&b.join(format!("{table}.parquet"))).unwrap();
        assert!(x.height() > 0, "{table} is empty");
        assert!(x.equals_missing(&y), "{table} differs:\n{x}\n{y}");
    }
}

#[test]
fn fixture_batch_matches_pytorch_and_a_second_run_is_all_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out1 = tmp.path().join("out1");
    let status = batch(&fixture("zoo_safetensors"), &out1, &cache).status().unwrap();
    assert!(status.success());
    let first = report(&out1);
    // 2 runs: 3 seed pairs + 4 checkpoint-vs-final pairs, plus 6 checkpoint evaluations.
    assert_eq!(first["computed"], 13);
    let barriers = read_parquet(&out1.join("barriers.parquet")).unwrap();
    assert_eq!(barriers.height(), 14);
    let reference: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("reference_barriers.json")).unwrap()).unwrap();
    let step = barriers.column("step").unwrap().u64().unwrap();
    let pair = barriers.column("pair").unwrap().str().unwrap();
    let kind = barriers.column("kind").unwrap().str().unwrap();
    let loss = barriers.column("loss_barrier").unwrap().f64().unwrap();
    for r in &reference {
        let row = (0..barriers.height())
            .find(|&i| {
                step.get(i) == r["step"].as_u64() && pair.get(i) == Some("seeds") && kind.get(i) == Some("endpoint")
            })
            .expect("seed barrier row");
        let want = r["loss_barrier"].as_f64().unwrap();
        assert!(
            (loss.get(row).unwrap() - want).abs() < 1e-4,
            "step {}: {:?} vs {want}",
            r["step"],
            loss.get(row)
        );
    }
    let out2 = tmp.path().join("out2");
    assert!(
        batch(&fixture("zoo_safetensors"), &out2, &cache)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        report(&out2)["computed"],
        0,
        "the second identical run must do no forward pass"
    );
    assert_same_tables(&out1, &out2);
}

/// Deterministic pseudo-random weights (no global RNG state).
fn weights(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A zoo of `runs` x `steps` random 64-128-128-10 MLPs in the folder-per-step layout.
fn random_zoo(dir: &Path, runs: usize, steps: &[u64]) {
    random_zoo_of(dir, runs, steps, &[64, 128, 128, 10]);
}

/// A zoo of `runs` x `steps` random MLPs with these `layers` widths (input 64 for the digits).
fn random_zoo_of(dir: &Path, runs: usize, steps: &[u64], layers: &[usize]) {
    for run in 0..runs {
        for (s, step) in steps.iter().enumerate() {
            let mut tensors = HashMap::new();
            for (l, pair) in layers.windows(2).enumerate() {
                let (fan_in, fan_out) = (pair[0], pair[1]);
                let seed = (run * 1000 + s * 10 + l) as u64;
                let scale = 1.0 / (fan_in as f32).sqrt();
                let w =
                    Tensor::from_vec(weights(seed, fan_in * fan_out, scale), (fan_out, fan_in), &Device::Cpu).unwrap();
                let b = Tensor::from_vec(weights(seed + 7, fan_out, scale), fan_out, &Device::Cpu).unwrap();
                tensors.insert(format!("fc{}.weight", l + 1), w);
                tensors.insert(format!("fc{}.bias", l + 1), b);
            }
            let folder = dir.join(format!("seed{run}/step{step}"));
            std::fs::create_dir_all(&folder).unwrap();
            candle_core::safetensors::save(&tensors, folder.join("model.safetensors")).unwrap();
        }
    }
}

#[test]
fn a_batch_killed_at_any_moment_resumes_to_identical_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 10, &[0, 10, 100, 1000, 3000, 10000]);

    let clean = tmp.path().join("clean");
    assert!(
        batch(&zoo, &clean, &tmp.path().join("cache-clean"))
            .status()
            .unwrap()
            .success()
    );
    let total = report(&clean)["computed"].as_u64().unwrap();
    assert_eq!(total, 60 + 45 * 6 + 10 * 5);

    let cache = tmp.path().join("cache-killed");
    let resumed = tmp.path().join("resumed");
    // Kill the run every 120 ms (SIGKILL) and restart it, until one attempt finishes on its own.
    let mut kills = 0;
    for _ in 0..200 {
        let mut child = batch(&zoo, &resumed, &cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    eprintln!("{kills} kills before the batch finished");
    assert!(
        kills >= 2,
        "only {kills} kill(s) landed before the batch finished; make the zoo larger"
    );
    assert!(batch(&zoo, &resumed, &cache).status().unwrap().success());
    let last = report(&resumed);
    assert!(
        last["computed"].as_u64().unwrap() < total,
        "finished work was recomputed: {last}"
    );
    assert_same_tables(&clean, &resumed);

    // No unit stored twice, however often the run was killed.
    for store in ["evals.jsonl", "paths.jsonl"] {
        let text = std::fs::read_to_string(cache.join(store)).unwrap();
        let keys: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let unique: HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{store} has duplicate units");
    }
    let interp = read_parquet(&resumed.join("interpolation.parquet")).unwrap();
    assert_eq!(interp.height() as u64, (45 * 6 + 10 * 5) * 11);
}

/// Rewrites the safetensors file `path` with `edit` applied to its tensors.
fn edit_checkpoint(path: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let mut tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, path).unwrap();
}

/// Adds to the safetensors file at `path` a declared f32 tensor `name` of `bytes` bytes, after the
/// real data; the file is extended sparsely, so the declaration is honest about the file's size but
/// costs no disk.
fn declare_extra_tensor(path: &Path, name: &str, bytes: u64) {
    let file = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&file[8..8 + header_len]).unwrap();
    let data = &file[8 + header_len..];
    let end = data.len() as u64;
    header.insert(
        name.into(),
        serde_json::json!({"dtype": "F32", "shape": [bytes / 4], "data_offsets": [end, end + bytes]}),
    );
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    let total = out.len() as u64 + bytes;
    std::fs::write(path, out).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(total)
        .unwrap();
}

/// Runs `cmd` (stdout discarded) to the end; its exit status, stderr and peak resident memory in bytes.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which std cannot see"
)]
fn run_measured(mut cmd: std::process::Command) -> (bool, String, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills; the child is ours and not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (exited_ok, stderr, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn broken_and_diverged_checkpoints_never_stop_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 5, &[0, 10, 100]);
    // A run whose folder name is not UTF-8: skipped with a warning naming it (lossily).
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"seed4-\xff");
        std::fs::rename(zoo.join("seed4"), zoo.join(odd)).unwrap();
    }
    let file = |run: usize, step: u64| zoo.join(format!("seed{run}/step{step}/model.safetensors"));
    // The zoo's first checkpoint has a renamed tensor.
    edit_checkpoint(&file(0, 0), |t| {
        let w = t.remove("fc2.weight").unwrap();
        t.insert("fc2.geight".into(), w);
    });
    // A file cut short by a full disk.
    let bytes = std::fs::read(file(1, 10)).unwrap();
    std::fs::write(file(1, 10), &bytes[..bytes.len() / 2]).unwrap();
    // One NaN; and finite weights so large that the forward pass overflows.
    edit_checkpoint(&file(2, 100), |t| {
        let w = t["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut w = w;
        w[5] = f32::NAN;
        t.insert(
            "fc1.weight".into(),
            Tensor::from_vec(w, (128, 64), &Device::Cpu).unwrap(),
        );
    });
    edit_checkpoint(&file(3, 100), |t| {
        for v in t.values_mut() {
            *v = v.affine(3e37, 0.0).unwrap();
        }
    });

    // A header declaring an extra 1 GiB tensor that the (sparse) file really spans: never read.
    const HUGE: u64 = 1 << 30;
    declare_extra_tensor(&file(1, 100), "huge.weight", HUGE);

    let out = tmp.path().join("out");
    let (success, stderr, peak) = run_measured(batch(&zoo, &out, &tmp.path().join("cache")));
    assert!(success, "{stderr}");
    assert!(
        peak < HUGE / 2,
        "peak memory {} MiB: the declared tensor was read",
        peak >> 20
    );
    // Each bad checkpoint is named (by its folder) in exactly one warning.
    let bad = [
        (0, 0, "fc2.geight"),
        (1, 10, "truncated"),
        (2, 100, "diverged"),
        (3, 100, "diverged"),
    ];
    for (run, step, problem) in bad {
        let name = format!("seed{run}/step{step}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(&name)).collect();
        assert_eq!(lines.len(), 1, "one warning for {name}:\n{stderr}");
        assert!(lines[0].contains(problem), "{}", lines[0]);
    }
    let warnings = report(&out)["warnings"].to_string();
    for name in [
        "seed0/step0",
        "seed1/step10",
        "seed2/step100",
        "seed3/step100",
        "seed4-\u{FFFD}",
    ] {
        assert!(warnings.contains(name), "report.json names {name}: {warnings}");
    }
    let odd: Vec<&str> = stderr.lines().filter(|l| l.contains("seed4-\u{FFFD}")).collect();
    assert!(
        odd.len() == 1 && odd[0].contains("not valid UTF-8"),
        "one warning for the non-UTF-8 run:\n{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.contains("seed1/step100")),
        "the checkpoint declaring an extra tensor loads quietly:\n{stderr}"
    );
    assert!(
        !stderr.contains("trajectory"),
        "the refused checkpoint does not spoil its run's trajectory:\n{stderr}"
    );

    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::{ClusterRow, EvalRow};
    let evals: Vec<EvalRow> = read_table(&out).unwrap();
    let diverged: Vec<(String, u64)> = evals
        .iter()
        .filter(|e| e.diverged)
        .map(|e| (e.run.clone(), e.step))
        .collect();
    assert_eq!(diverged, [("seed2".to_string(), 100), ("seed3".to_string(), 100)]);
    assert!(evals.iter().filter(|e| !e.diverged).all(|e| e.loss.is_finite()));
    assert_eq!(evals.len(), 12 - 2, "every readable checkpoint evaluated");
    assert!(
        evals.iter().any(|e| e.run == "seed1" && e.step == 100),
        "the checkpoint declaring an extra tensor is evaluated on the schema's tensors"
    );
    let clusters: Vec<ClusterRow> = read_table(&out).unwrap();
    let outside: Vec<(u64, &str)> = clusters
        .iter()
        .filter(|c| c.basin.is_none())
        .map(|c| (c.step, c.run.as_str()))
        .collect();
    assert_eq!(outside, [(100, "seed2"), (100, "seed3")]);
    assert!(clusters.iter().all(|c| c.diverged == c.basin.is_none()));
    assert_eq!(
        clusters.iter().filter(|c| c.step == 100 && c.basin.is_some()).count(),
        2,
        "the two sound runs are clustered at step 100"
    );
}

#[test]
fn an_output_folder_in_use_or_unwritable_fails_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let held = lineage_core::output::lock::OutputLock::claim(&out).unwrap();
    let output = batch(&fixture("zoo_safetensors"), &out, &cache).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("another lineage run is writing here")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(!cache.exists(), "no work was done");
    drop(held);

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "in the way").unwrap();
    let output = batch(&fixture("zoo_safetensors"), &file, &cache).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("a-file"), "{stderr}");
    assert!(!cache.exists(), "no work was done");

    assert!(
        batch(&fixture("zoo_safetensors"), &out, &cache)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn bad_data_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.safetensors");
    let output = batch_with(
        &fixture("zoo_safetensors"),
        &missing,
        &tmp.path().join("out"),
        &tmp.path().join("cache"),
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope.safetensors"), "{stderr}");
    assert_eq!(
        stderr.matches("os error").count(),
        1,
        "the OS error said once: {stderr}"
    );
}

const TABLES: [&str; 9] = [
    "checkpoints",
    "evals",
    "interpolation",
    "barriers",
    "clusters",
    "timeline",
    "tree_edges",
    "generalization",
    "generalization_tests",
];

/// The views' tables (computed on the whole zoo).
const VIEW_TABLES: [&str; 7] = [
    "similarity",
    "probes",
    "trajectories",
    "weight_norms",
    "code_length",
    "training_map",
    "training_map_transitions",
];

#[test]
fn three_shards_merge_into_the_tables_of_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 4, &[0, 10, 100]);
    let single = tmp.path().join("single");
    assert!(
        batch(&zoo, &single, &tmp.path().join("cache-single"))
            .status()
            .unwrap()
            .success()
    );
    let mut shard_dirs = Vec::new();
    for k in 1..=3 {
        let dir = tmp.path().join(format!("shard-{k}"));
        // Each shard has its own cache, as on separate machines.
        let status = batch(&zoo, &dir, &tmp.path().join(format!("cache-{k}")))
            .args(["--shard", &format!("{k}/3")])
            .status()
            .unwrap();
        assert!(status.success());
        shard_dirs.push(dir);
    }
    let shard_rows: usize = shard_dirs
        .iter()
        .map(|d| read_parquet(&d.join("barriers.parquet")).unwrap().height())
        .sum();
    let single_rows = read_parquet(&single.join("barriers.parquet")).unwrap().height();
    assert_eq!(shard_rows, single_rows, "shards must split the pairs without overlap");
    let merged = tmp.path().join("merged");
    let status = lineage()
        .arg("merge")
        .args(&shard_dirs)
        .arg("--out")
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success());
    for table in TABLES.iter().chain(&VIEW_TABLES) {
        let x = read_parquet(&single.join(format!("{table}.parquet"))).unwrap();
        let y = read_parquet(&merged.join(format!("{table}.parquet"))).unwrap();
        assert!(x.equals_missing(&y), "{table} differs after merge");
    }
    // The shards compute no views; the merge computes those of the whole zoo.
    assert!(!shard_dirs[0].join("similarity.parquet").exists());
    assert!(report(&merged)["views"]["rows"]["similarity"].as_u64().unwrap() > 0);
}

#[test]
fn a_plan_file_holds_every_option_and_slurm_script_is_emitted() {
    let tmp = tempfile::tempdir().unwrap();
    let (plan, out) = run_plan(
        tmp.path(),
        "alphas = 5\ncluster = 'average-linkage'\neps = 0.05\nbarrier = 'endpoint'\ndevice = 'cpu'\n",
    );
    let r = report(&out);
    assert_eq!(r["options"]["alphas"], 5);
    assert_eq!(r["basins"]["options"]["method"]["method"], "average-linkage");
    assert_eq!(r["basins"]["options"]["barrier"], "endpoint");
    assert_eq!(
        read_parquet(&out.join("interpolation.parquet")).unwrap().height(),
        7 * 5
    );

    let script = emit_slurm(&plan, &out, &[], 4);
    assert!(script.contains("#SBATCH --array=1-4"), "{script}");
    assert!(script.contains("--shard \"$SLURM_ARRAY_TASK_ID\"/4"), "{script}");
    assert!(script.contains("merge "), "{script}");
    assert!(script.contains("--alphas 5"), "{script}");
    assert!(!script.contains("--device"), "cpu is the default: {script}");
    assert!(!script.contains("--no-views"), "the merge computes the views: {script}");

    // A GPU job array can be written from a machine without a GPU: the device passes through.
    let script = emit_slurm(&plan, &out, &["--device", "cuda:1"], 4);
    assert_eq!(
        script.matches("--device cuda:1").count(),
        2,
        "shards and merge (views) run on the device: {script}"
    );
}

/// The `evals` table of `out` as (run, step, loss).
fn eval_losses(out: &Path) -> Vec<(String, u64, f64)> {
    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::EvalRow;
    let rows: Vec<EvalRow> = read_table(out).unwrap();
    rows.into_iter().map(|r| (r.run, r.step, r.loss)).collect()
}

#[test]
fn runs_and_steps_are_selected_without_copying_and_cached_paths_are_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 3, &[0, 10, 100, 1000]);
    let cache = tmp.path().join("cache");
    let part = tmp.path().join("part");
    let output = batch(&zoo, &part, &cache)
        .args(["--runs", "seed0", "--runs", "seed1", "--steps", "0,100:1k"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let kept: HashSet<(String, u64)> = eval_losses(&part).into_iter().map(|(r, s, _)| (r, s)).collect();
    let want: HashSet<(String, u64)> = ["seed0", "seed1"]
        .iter()
        .flat_map(|r| [0, 100, 1000].map(|s| (r.to_string(), s)))
        .collect();
    assert_eq!(kept, want);
    // 6 evaluations, 1 seed pair x 3 steps, 2 runs x 2 checkpoint-vs-final pairs.
    assert_eq!(report(&part)["computed"], 6 + 3 + 4);
    assert_eq!(
        report(&part)["options"]["selection"]["runs"],
        serde_json::json!(["seed0", "seed1"])
    );

    // The whole zoo computes only what the selection did not.
    let all = tmp.path().join("all");
    assert!(batch(&zoo, &all, &cache).status().unwrap().success());
    assert_eq!(report(&all)["computed"], (12 + 3 * 4 + 3 * 3) - (6 + 3 + 4));

    // The plan's [select] table: every 2nd step (and the last) of one run, all cached by now; a
    // run pattern matching nothing is a warning, not an error.
    let plan = tmp.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "zoo = '{}'\ndata = '{}'\nout = 'planned'\ncache = 'cache'\n[select]\nruns = ['seed2', 'typo*']\nevery = 2\n",
            zoo.display(),
            fixture("digits_eval.safetensors").display()
        ),
    )
    .unwrap();
    let output = lineage().args(["batch", "--plan"]).arg(&plan).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no run matches --runs `typo*`"), "{stderr}");
    let planned = tmp.path().join("planned");
    let steps: Vec<(String, u64)> = eval_losses(&planned).into_iter().map(|(r, s, _)| (r, s)).collect();
    assert_eq!(steps, [0, 100, 1000].map(|s| ("seed2".to_string(), s)));
    assert_eq!(report(&planned)["computed"], 0);
    let script = emit_slurm(&plan, &planned, &["--steps", "10:"], 2);
    assert!(
        script.contains("--runs 'seed2' --runs 'typo*' --steps '10:' --every '2'"),
        "shards get the selection: {script}"
    );

    // A bad pattern fails before any work, naming it.
    let output = batch(&zoo, &tmp.path().join("bad"), &cache)
        .args(["--steps", "10:x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("10:x"));
}

#[test]
fn max_examples_evaluates_the_first_examples_and_has_its_own_cache_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let zoo = fixture("zoo_safetensors");
    assert!(
        batch(&zoo, &tmp.path().join("full"), &cache)
            .status()
            .unwrap()
            .success()
    );
    let first = tmp.path().join("first50");
    let output = batch(&zoo, &first, &cache)
        .args(["--max-examples", "50", "--no-views"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report(&first)["computed"], 13, "not the full data's results");

    // The same as a data file holding those 50 examples.
    let data = candle_core::safetensors::load(fixture("digits_eval.safetensors"), &Device::Cpu).unwrap();
    let cut: HashMap<String, Tensor> = data
        .into_iter()
        .map(|(name, t)| (name, t.narrow(0, 0, 50).unwrap()))
        .collect();
    // Under the same file name, so that the rows' `set` (the file's stem) agrees too.
    std::fs::create_dir(tmp.path().join("cut")).unwrap();
    let small = tmp.path().join("cut/digits_eval.safetensors");
    candle_core::safetensors::save(&cut, &small).unwrap();
    let by_file = tmp.path().join("by_file");
    let status = batch_with(&zoo, &small, &by_file, &tmp.path().join("cache2"))
        .arg("--no-views")
        .status()
        .unwrap();
    assert!(status.success());
    assert_same(&first, &by_file, &["evals", "interpolation", "barriers"]);
    assert_ne!(eval_losses(&first), eval_losses(&tmp.path().join("full")));
}

#[test]
fn tensors_left_out_are_never_read_and_do_not_split_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    random_zoo(&clean, 3, &[0, 10]);
    // The same zoo, each checkpoint also holding an optimizer-like buffer of its own shape.
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 3, &[0, 10]);
    for run in 0..3 {
        for step in [0, 10] {
            edit_checkpoint(&zoo.join(format!("seed{run}/step{step}/model.safetensors")), |t| {
                let n = 1 + run + step as usize;
                t.insert(
                    "aux.state".into(),
                    Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap(),
                );
            });
        }
    }
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let output = batch(&zoo, &out, &cache)
        .args(["--exclude", r"^aux\.", "--no-views"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("aux"), "{stderr}");
    let reference = tmp.path().join("reference");
    let status = batch(&clean, &reference, &tmp.path().join("cache-clean"))
        .arg("--no-views")
        .status()
        .unwrap();
    assert!(status.success());
    assert_same(&out, &reference, &["evals", "interpolation", "barriers"]);

    // Without the filter every checkpoint but the first has another `aux.state` (named and skipped),
    // and no model can be made of the first: nothing to analyse, and the error says why.
    let output = batch(&zoo, &tmp.path().join("unfiltered"), &cache)
        .arg("--no-views")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no readable checkpoint"), "{stderr}");
    assert!(
        stderr.contains("seed0/step0: no model can be built from it"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("`aux.state` has shape")).count(),
        5,
        "{stderr}"
    );

    // inspect applies the same filter to its schema check.
    let mismatches = |extra: &[&str]| {
        let output = lineage()
            .arg("inspect")
            .arg(&zoo)
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "shape_mismatch")
            .count()
    };
    assert_eq!(mismatches(&[]), 5);
    assert_eq!(mismatches(&["--exclude", r"^aux\."]), 0);
    assert_eq!(mismatches(&["--include", r"^fc", "--runs", "seed1"]), 0);
}

/// Copies the fixture checkpoint of `run` at `step` to `dst` (creating folders), with its run's
/// `config.json` next to it when `config` is true.
fn place_fixture(dst: &Path, run: &str, step: u64, config: bool) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(
        fixture(&format!("zoo_safetensors/{run}/step{step}/model.safetensors")),
        dst,
    )
    .unwrap();
    if config {
        std::fs::copy(
            fixture(&format!("zoo_safetensors/{run}/config.json")),
            dst.with_file_name("config.json"),
        )
        .unwrap();
    }
}

/// The barrier values of `out`, keyed by everything but run names and paths, sorted: equal for two
/// layouts of one zoo whatever they call its runs.
fn barrier_values(out: &Path) -> Vec<(u64, String, String, bool, u64, u64)> {
    use lineage_core::Named;
    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::BarrierRow;
    let rows: Vec<BarrierRow> = read_table(out).unwrap();
    let mut values: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                r.step,
                r.pair.name().to_string(),
                r.kind.name().to_string(),
                r.aligned,
                r.loss_barrier.to_bits(),
                r.error_barrier.to_bits(),
            )
        })
        .collect();
    values.sort();
    values
}

const FIXTURE_RUNS: [&str; 2] = ["init0_order0", "init1_order0"];
const FIXTURE_STEPS: [u64; 3] = [0, 100, 1500];

#[cfg(unix)]
#[test]
fn suite_layouts_give_the_barriers_of_the_plain_zoo() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    assert!(
        batch(&fixture("zoo_safetensors"), &plain, &tmp.path().join("cache-plain"))
            .arg("--no-views")
            .status()
            .unwrap()
            .success()
    );
    let want = barrier_values(&plain);
    assert!(!want.is_empty());

    // OLMo: one folder per checkpoint, `stepN-tokensMB`, one suite folder per seed.
    let olmo = tmp.path().join("olmo");
    for (seed, run) in FIXTURE_RUNS.iter().enumerate() {
        for (i, step) in FIXTURE_STEPS.iter().enumerate() {
            let folder = olmo.join(format!("OLMo-seed{seed}/step{step}-tokens{}B", 2 * i));
            place_fixture(&folder.join("model.safetensors"), run, *step, false);
        }
        std::fs::copy(
            fixture(&format!("zoo_safetensors/{run}/config.json")),
            olmo.join(format!("OLMo-seed{seed}/config.json")),
        )
        .unwrap();
    }
    // MultiBERTs: sibling folders `NAME-seed_S-step_Nk`, one per (seed, step).
    let multiberts = tmp.path().join("multiberts");
    for (seed, run) in FIXTURE_RUNS.iter().enumerate() {
        for step in FIXTURE_STEPS {
            let folder = multiberts.join(format!("multiberts-seed_{seed}-step_{step}"));
            place_fixture(&folder.join("model.safetensors"), run, step, true);
        }
    }
    // The Hugging Face hub cache: refs/stepN -> snapshots/COMMIT/ -> ../../blobs/.
    let hub = tmp.path().join("hub");
    for (seed, run) in FIXTURE_RUNS.iter().enumerate() {
        let repo = hub.join(format!("models--EleutherAI--pythia-mini-seed{seed}"));
        for (i, step) in FIXTURE_STEPS.iter().enumerate() {
            let commit = format!("{:040x}", i + 1);
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join(format!("refs/step{step}")), &commit).unwrap();
            let blob = repo.join(format!("blobs/weights{step}"));
            place_fixture(&blob, run, *step, false);
            let config = repo.join("blobs/config");
            std::fs::copy(fixture(&format!("zoo_safetensors/{run}/config.json")), &config).unwrap();
            let snapshot = repo.join("snapshots").join(&commit);
            std::fs::create_dir_all(&snapshot).unwrap();
            std::os::unix::fs::symlink(format!("../../blobs/weights{step}"), snapshot.join("model.safetensors"))
                .unwrap();
            std::os::unix::fs::symlink("../../blobs/config", snapshot.join("config.json")).unwrap();
        }
    }

    for (name, zoo) in [("olmo", &olmo), ("multiberts", &multiberts), ("hub", &hub)] {
        let out = tmp.path().join(format!("out-{name}"));
        let output = batch(zoo, &out, &tmp.path().join(format!("cache-{name}")))
            .arg("--no-views")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(barrier_values(&out), want, "{name}");
        assert_eq!(report(&out)["runs"].as_array().unwrap().len(), 2, "{name}");
    }
    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::CheckpointRow;
    let rows: Vec<CheckpointRow> = read_table(&tmp.path().join("out-olmo")).unwrap();
    let tokens: Vec<Option<u64>> = rows.iter().map(|r| r.tokens).collect();
    assert_eq!(tokens, [0, 2, 4, 0, 2, 4].map(|b| Some(b * 1_000_000_000)));
    let rows: Vec<CheckpointRow> = read_table(&plain).unwrap();
    assert!(rows.iter().all(|r| r.tokens.is_none()), "unknown tokens are null");
}

#[test]
fn the_same_weights_under_two_names_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    random_zoo(&zoo, 2, &[0, 10, 100]);
    // A suite serving the final weights under an earlier step's name.
    std::fs::copy(
        zoo.join("seed1/step100/model.safetensors"),
        zoo.join("seed1/step10/model.safetensors"),
    )
    .unwrap();
    // Two runs from one initialisation share their step-0 weights by design: not reported.
    std::fs::copy(
        zoo.join("seed0/step0/model.safetensors"),
        zoo.join("seed1/step0/model.safetensors"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let output = batch(&zoo, &out, &tmp.path().join("cache"))
        .arg("--no-views")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warning: Vec<&str> = stderr.lines().filter(|l| l.contains("duplicate_content")).collect();
    assert_eq!(warning.len(), 1, "{stderr}");
    assert!(
        warning[0].contains("seed1/step10") && warning[0].contains("seed1/step100"),
        "{}",
        warning[0]
    );
    let groups = &report(&out)["duplicate_content"];
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    let steps: Vec<u64> = groups[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [10, 100]);
}

#[test]
fn two_eval_sets_are_evaluated_apart_and_basins_are_compared_on_each() {
    use lineage_core::output::schema::read_table;
    use lineage_core::output::tables::{BarrierRow, ClusterRow, EvalRow, GeneralizationRow};
    let tmp = tempfile::tempdir().unwrap();
    let data = fixture("digits_eval.safetensors");
    let out = tmp.path().join("out");
    let output = lineage()
        .arg("batch")
        .arg(fixture("zoo_safetensors"))
        .arg("--data")
        .arg(format!("id={}", data.display()))
        .arg("--data")
        .arg(format!("ood={}", data.display()))
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("--no-views")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("generalization at step 1500"), "{stdout}");

    // The same file twice: identical rows per set, equal to PyTorch's endpoint losses.
    let evals: Vec<EvalRow> = read_table(&out).unwrap();
    let on = |set: &str| -> Vec<(String, u64, f64, f64)> {
        let rows = evals.iter().filter(|e| e.set == set);
        rows.map(|e| (e.run.clone(), e.step, e.loss, e.error)).collect()
    };
    assert_eq!(on("id").len(), 6);
    assert_eq!(on("id"), on("ood"));
    let reference: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("reference_interp.json")).unwrap()).unwrap();
    for r in reference.iter().filter(|r| r["alpha"] == 0.0) {
        let (run, step) = (r["run_a"].as_str().unwrap(), r["step"].as_u64().unwrap());
        for set in ["id", "ood"] {
            let e = evals
                .iter()
                .find(|e| e.set == set && e.run == run && e.step == step)
                .unwrap();
            assert!(
                (e.loss - r["loss"].as_f64().unwrap()).abs() < 1e-4,
                "{set} {run}@{step}"
            );
        }
    }
    // Paths only on the basins' set.
    let barriers: Vec<BarrierRow> = read_table(&out).unwrap();
    assert!(!barriers.is_empty() && barriers.iter().all(|b| b.set == "id"));

    // Each basin's mean error, recomputed from the clusters and evals tables.
    let clusters: Vec<ClusterRow> = read_table(&out).unwrap();
    let rows: Vec<GeneralizationRow> = read_table(&out).unwrap();
    assert_eq!(
        rows.len(),
        2 * clusters.iter().map(|c| (c.step, c.basin)).collect::<HashSet<_>>().len()
    );
    for row in &rows {
        let errors: Vec<f64> = clusters
            .iter()
            .filter(|c| c.step == row.step && c.basin == Some(row.basin))
            .map(|c| {
                evals
                    .iter()
                    .find(|e| e.set == row.set && e.run == c.run && e.step == c.step)
                    .unwrap()
                    .error
            })
            .collect();
        assert_eq!(row.n_runs as usize, errors.len());
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        assert!((row.mean_error - mean).abs() < 1e-12, "{row:?}");
    }
    assert_eq!(report(&out)["eval_sets"].as_array().unwrap().len(), 2);

    // Paths on every set, basins on the second: barriers per set, identical for identical data, and
    // shared through the content-keyed cache (the same data twice is the same units).
    let out_all = tmp.path().join("all");
    let output = lineage()
        .arg("batch")
        .arg(fixture("zoo_safetensors"))
        .args(["--data", &format!("id={}", data.display())])
        .args(["--data", &format!("ood={}", data.display())])
        .args(["--basins-on", "ood", "--paths-on", "all", "--no-views"])
        .arg("--out")
        .arg(&out_all)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let barriers: Vec<BarrierRow> = read_table(&out_all).unwrap();
    let of = |set: &str| -> Vec<(u64, String, String, u64, bool, u64)> {
        let rows = barriers.iter().filter(|b| b.set == set);
        rows.map(|b| {
            (
                b.step,
                b.run_a.clone(),
                b.run_b.clone(),
                b.step_b,
                b.aligned,
                b.loss_barrier.to_bits(),
            )
        })
        .collect()
    };
    assert_eq!(of("ood"), of("id"));
    assert_eq!(barriers.first().unwrap().set, "ood", "the basins' set comes first");
    let r = report(&out_all);
    assert_eq!(r["computed"], 0, "identical data: every unit comes from the cache");
    assert_eq!(r["options"]["data_name"], "ood");

    // A name given twice, or a --basins-on naming no set, is an error before any work.
    let output = batch_with(
        &fixture("zoo_safetensors"),
        &data,
        &tmp.path().join("bad"),
        &tmp.path().join("cache"),
    )
    .args(["--basins-on", "hans"])
    .output()
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--basins-on hans"));
}

#[test]
fn peak_memory_does_not_grow_with_the_number_of_runs() {
    // Wide MLPs: 64-2048-2048-10, 4.3M parameters (17 MB) each, one step, seed pairs only.
    let layers = [64, 2048, 2048, 10];
    let tmp = tempfile::tempdir().unwrap();
    let peak = |runs: usize, in_flight: &str| {
        let zoo = tmp.path().join(format!("zoo{runs}"));
        if !zoo.exists() {
            random_zoo_of(&zoo, runs, &[0], &layers);
        }
        let out = tmp.path().join(format!("out{runs}-{in_flight}"));
        let mut cmd = batch(&zoo, &out, &tmp.path().join(format!("cache{runs}-{in_flight}")));
        cmd.args([
            "--alphas",
            "3",
            "--no-views",
            "--no-to-final",
            "--models-in-flight",
            in_flight,
        ]);
        let (success, stderr, peak) = run_measured(cmd);
        assert!(success, "{stderr}");
        (peak, out)
    };
    let (two, _) = peak(2, "2");
    let (eight, blocked) = peak(8, "2");
    let model = 4_300_000 * 4;
    eprintln!("peak: 2 runs {} MiB, 8 runs {} MiB", two >> 20, eight >> 20);
    assert!(
        eight < two + 3 * model / 2,
        "8 runs peak at {} MiB, 2 runs at {} MiB",
        eight >> 20,
        two >> 20
    );
    // Blocks change what is in memory, never the results: all 28 pairs, as with every run loaded.
    let (eight_at_once, all_at_once) = peak(8, "8");
    eprintln!("8 runs all in memory: {} MiB", eight_at_once >> 20);
    assert!(
        eight_at_once > eight + 2 * model,
        "the bound is what keeps the peak down"
    );
    assert_same(&blocked, &all_at_once, &["evals", "interpolation", "barriers"]);
    assert_eq!(report(&blocked)["rows"]["barriers"], 28 * 2);
}

/// A run whose `config.json` describes another model with the same tensor shapes (an activation)
/// is left out with one warning naming its config, not evaluated as the reference run's model;
/// runs whose configs differ only in training settings (seeds) are kept.
#[test]
fn a_run_configured_as_another_model_is_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let zoo = tmp.path().join("zoo");
    for run in FIXTURE_RUNS {
        for step in FIXTURE_STEPS {
            place_fixture(
                &zoo.join(format!("{run}/step{step}/model.safetensors")),
                run,
                step,
                false,
            );
        }
        std::fs::copy(
            fixture(&format!("zoo_safetensors/{run}/config.json")),
            zoo.join(format!("{run}/config.json")),
        )
        .unwrap();
    }
    let other = FIXTURE_RUNS[1];
    let config = zoo.join(format!("{other}/config.json"));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\"relu\""));
    std::fs::write(&config, text.replace("\"relu\"", "\"tanh\"")).unwrap();

    let out = tmp.path().join("out");
    let result = batch(&zoo, &out, &tmp.path().join("cache"))
        .arg("--no-views")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(other)).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("another model") && warnings[0].contains("tanh"),
        "{}",
        warnings[0]
    );
    let runs: HashSet<String> = eval_losses(&out).into_iter().map(|(run, _, _)| run).collect();
    assert_eq!(runs, HashSet::from([FIXTURE_RUNS[0].to_string()]));
}
