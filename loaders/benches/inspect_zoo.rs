//! Benchmark: inspecting a zoo of 1,000 checkpoints reads headers only.
//!
//! `cargo bench -p lineage-loaders --bench inspect_zoo`. Builds 20 runs x 50 steps of 4 MiB checkpoints
//! (4 GiB on disk, written as sparse files), then times discovery, the header-only inspection (and within
//! it the content fingerprints' sampled reads), and, as the baseline measured in the same run, fully
//! loading a sample of the same checkpoints.

use std::io::Write;
use std::time::Instant;

use lineage_loaders::checkpoint::{load_checkpoint, scan_checkpoint};
use lineage_loaders::fingerprint::Fingerprint;
use lineage_loaders::{discover, inspect::inspect};

const RUNS: usize = 20;
const STEPS: usize = 50;
const ELEMS: usize = 1 << 20;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    for run in 0..RUNS {
        for step in 0..STEPS {
            let folder = dir.path().join(format!("seed{run}/step{}", step * 100));
            std::fs::create_dir_all(&folder).expect("mkdir");
            let header = format!(
                r#"{{"w":{{"dtype":"F32","shape":[{ELEMS}],"data_offsets":[0,{}]}}}}"#,
                ELEMS * 4
            );
            let mut file = std::fs::File::create(folder.join("model.safetensors")).expect("create");
            file.write_all(&(header.len() as u64).to_le_bytes()).expect("write");
            file.write_all(header.as_bytes()).expect("write");
            file.set_len(8 + header.len() as u64 + ELEMS as u64 * 4)
                .expect("set_len");
        }
    }
    let n = RUNS * STEPS;

    let t = Instant::now();
    let zoo = discover(dir.path());
    let discover_s = t.elapsed().as_secs_f64();
    assert_eq!(zoo.n_checkpoints(), n);

    let t = Instant::now();
    let ins = inspect(dir.path());
    let inspect_s = t.elapsed().as_secs_f64();
    assert_eq!(ins.summary.n_checkpoints, n);

    let scans: Vec<_> = zoo
        .runs
        .iter()
        .flat_map(|r| r.checkpoints.iter())
        .map(|c| (c, scan_checkpoint(c).expect("scan")))
        .collect();
    let t = Instant::now();
    for (checkpoint, scan) in &scans {
        Fingerprint::of(checkpoint, scan).expect("fingerprint");
    }
    let fingerprint_s = t.elapsed().as_secs_f64();

    let sample: Vec<_> = zoo
        .runs
        .iter()
        .flat_map(|r| r.checkpoints.iter())
        .step_by(n / 20)
        .collect();
    let t = Instant::now();
    for c in &sample {
        load_checkpoint(c).expect("load");
    }
    let load_per_ckpt = t.elapsed().as_secs_f64() / sample.len() as f64;

    let bytes = n as f64 * ELEMS as f64 * 4.0;
    println!(
        "inspect_zoo: {n} checkpoints, {:.1} GiB of tensor data",
        bytes / (1u64 << 30) as f64
    );
    println!(
        "  discover only           {:>9.3} ms  ({:.1} us/checkpoint)",
        discover_s * 1e3,
        discover_s * 1e6 / n as f64
    );
    println!(
        "  inspect (header only)   {:>9.3} ms  ({:.1} us/checkpoint)",
        inspect_s * 1e3,
        inspect_s * 1e6 / n as f64
    );
    println!(
        "  of which fingerprints   {:>9.3} ms  ({:.1} us/checkpoint)",
        fingerprint_s * 1e3,
        fingerprint_s * 1e6 / n as f64
    );
    println!(
        "  baseline: full load     {:>9.3} ms per checkpoint (sample of {})",
        load_per_ckpt * 1e3,
        sample.len()
    );
    println!(
        "  inspect is {:.0}x faster per checkpoint than reading the tensors; a full read of the zoo would take ~{:.1} s",
        load_per_ckpt / (inspect_s / n as f64),
        load_per_ckpt * n as f64
    );
}
