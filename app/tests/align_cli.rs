//! `lineage batch --align`: aligned rows next to the raw ones, cached separately, shard-safe, and
//! settable from a plan file and in the SLURM script.

mod common;

use std::path::Path;

use common::{emit_slurm, fixture, lineage, report, run_plan, table};
use polars::prelude::DataFrame;

fn aligned_flags(df: &DataFrame) -> Vec<bool> {
    let c = df.column("aligned").unwrap().bool().unwrap();
    (0..df.height()).map(|i| c.get(i).unwrap()).collect()
}

/// Endpoint loss barrier of the seed pair at `step`, raw or aligned.
fn seed_barrier(barriers: &DataFrame, step: u64, aligned: bool) -> f64 {
    let s = barriers.column("step").unwrap().u64().unwrap();
    let pair = barriers.column("pair").unwrap().str().unwrap();
    let kind = barriers.column("kind").unwrap().str().unwrap();
    let flag = barriers.column("aligned").unwrap().bool().unwrap();
    let loss = barriers.column("loss_barrier").unwrap().f64().unwrap();
    let row = (0..barriers.height())
        .find(|&i| {
            s.get(i) == Some(step)
                && pair.get(i) == Some("seeds")
                && kind.get(i) == Some("endpoint")
                && flag.get(i) == Some(aligned)
        })
        .expect("seed barrier row");
    loss.get(row).unwrap()
}

#[test]
fn align_writes_aligned_and_raw_rows_cached_separately() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("aligned");
    let output = batch_fixture(&out, &cache).arg("--align").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("after permutation alignment"), "{stdout}");
    let r = report(&out);
    assert_eq!(r["options"]["align"], true);
    // 6 checkpoint evaluations + 7 raw paths + 7 aligned paths.
    assert_eq!(r["computed"], 20);
    assert!(r["warnings"].as_array().unwrap().is_empty(), "{}", r["warnings"]);

    let interpolation = table(&out, "interpolation");
    let flags = aligned_flags(&interpolation);
    assert_eq!(flags.iter().filter(|a| !**a).count(), 7 * 11);
    assert_eq!(flags.iter().filter(|a| **a).count(), 7 * 11);
    let barriers = table(&out, "barriers");
    let flags = aligned_flags(&barriers);
    assert_eq!((flags.iter().filter(|a| !**a).count(), flags.len()), (14, 28));

    let (raw, aligned) = (
        seed_barrier(&barriers, 1500, false),
        seed_barrier(&barriers, 1500, true),
    );
    println!("step 1500 endpoint loss barrier: raw {raw:.4}, aligned {aligned:.4}");
    assert!((raw - 0.2105).abs() < 1e-3, "raw {raw}");
    assert!(aligned < 0.5 * raw, "aligned {aligned} vs raw {raw}");

    // A raw run reuses the cache and writes exactly the raw rows.
    let raw_out = tmp.path().join("raw");
    assert!(batch_fixture(&raw_out, &cache).status().unwrap().success());
    assert_eq!(report(&raw_out)["computed"], 0);
    let raw_barriers = table(&raw_out, "barriers");
    assert!(aligned_flags(&raw_barriers).iter().all(|a| !a));
    let raw_mask = !barriers.column("aligned").unwrap().bool().unwrap();
    let only_raw = barriers.filter(&raw_mask).unwrap();
    assert!(only_raw.equals(&raw_barriers));
    // Basins only use the raw barriers: identical with and without alignment.
    for name in ["clusters", "timeline", "tree_edges"] {
        assert!(table(&out, name).equals_missing(&table(&raw_out, name)), "{name}");
    }

    // Two shards merge into the single run's tables.
    let mut shards = Vec::new();
    for k in 1..=2 {
        let dir = tmp.path().join(format!("shard-{k}"));
        let status = batch_fixture(&dir, &tmp.path().join(format!("cache-{k}")))
            .args(["--align", "--shard", &format!("{k}/2")])
            .status()
            .unwrap();
        assert!(status.success());
        shards.push(dir);
    }
    let merged = tmp.path().join("merged");
    assert!(
        lineage()
            .arg("merge")
            .args(&shards)
            .arg("--out")
            .arg(&merged)
            .status()
            .unwrap()
            .success()
    );
    for name in [
        "checkpoints",
        "evals",
        "interpolation",
        "barriers",
        "clusters",
        "timeline",
    ] {
        assert!(
            table(&out, name).equals_missing(&table(&merged, name)),
            "{name} differs after merge"
        );
    }
}

#[test]
fn align_in_a_plan_and_in_the_slurm_script() {
    let tmp = tempfile::tempdir().unwrap();
    let (plan, out) = run_plan(
        tmp.path(),
        "alphas = 3\nalign = true\npairs = { seeds = true, to_final = false, forks = false }\n",
    );
    assert_eq!(report(&out)["options"]["align"], true);
    let flags = aligned_flags(&table(&out, "interpolation"));
    assert_eq!(flags.iter().filter(|a| **a).count(), 3 * 3);

    let script = emit_slurm(&plan, &out, &[], 2);
    assert!(script.contains(" --align"), "{script}");
}

/// `lineage batch` on the fixture's safetensors zoo.
fn batch_fixture(out: &Path, cache: &Path) -> std::process::Command {
    common::batch(&fixture("zoo_safetensors"), out, cache)
}
