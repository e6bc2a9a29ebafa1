//! Helpers shared by the command-line tests: the PyTorch fixture, the `lineage` binary, a batch
//! command and its outputs.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use lineage_core::output::schema::read_parquet;
use polars::prelude::DataFrame;

/// A file of the PyTorch fixture (`../shared/fixtures/digits-mlp`).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/digits-mlp")
        .join(rel)
}

/// The `lineage` binary under test.
pub fn lineage() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lineage"))
}

/// `lineage batch ZOO --data <fixture eval data> --out OUT --cache CACHE`.
pub fn batch(zoo: &Path, out: &Path, cache: &Path) -> Command {
    batch_with(zoo, &fixture("digits_eval.safetensors"), out, cache)
}

/// `lineage batch ZOO --data DATA --out OUT --cache CACHE`.
pub fn batch_with(zoo: &Path, data: &Path, out: &Path, cache: &Path) -> Command {
    let mut cmd = lineage();
    cmd.arg("batch")
        .arg(zoo)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache);
    cmd
}

/// `OUT/report.json`.
pub fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// `OUT/<name>.parquet`.
pub fn table(out: &Path, name: &str) -> DataFrame {
    read_parquet(&out.join(format!("{name}.parquet"))).unwrap()
}

/// Writes `DIR/plan.toml` for the fixture's safetensors zoo (`out = 'results'`, `cache = 'cache'`) with
/// the extra TOML lines `options`, runs `lineage batch --plan` on it and returns the plan's path and
/// its output folder.
pub fn run_plan(dir: &Path, options: &str) -> (PathBuf, PathBuf) {
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "zoo = '{}'\ndata = '{}'\nout = 'results'\ncache = 'cache'\n{options}",
            fixture("zoo_safetensors").display(),
            fixture("digits_eval.safetensors").display()
        ),
    )
    .unwrap();
    let status = lineage().args(["batch", "--plan"]).arg(&plan).status().unwrap();
    assert!(status.success(), "lineage batch --plan failed");
    (plan, dir.join("results"))
}

/// Runs `lineage batch --plan PLAN EXTRA... --emit-slurm N` and returns `OUT/slurm.sbatch`.
pub fn emit_slurm(plan: &Path, out: &Path, extra: &[&str], n: usize) -> String {
    let output = lineage()
        .args(["batch", "--plan"])
        .arg(plan)
        .args(extra)
        .args(["--emit-slurm", &n.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read_to_string(out.join("slurm.sbatch")).unwrap()
}
