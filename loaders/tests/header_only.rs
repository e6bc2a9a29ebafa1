//! Inspecting reads headers only: the tensor data of large checkpoints is never touched.
//! (Its own test binary, so no other test's page faults are counted.)

use std::io::Write;

use lineage_loaders::inspect::inspect;

/// Minor + major page faults of this process so far.
fn page_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage struct into the pointer we give it.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    usage.ru_minflt + usage.ru_majflt
}

/// A safetensors file holding one f32 tensor of `n` elements, its data a sparse hole of zeros.
fn write_sparse_checkpoint(path: &std::path::Path, n: usize) {
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + n as u64 * 4).unwrap();
}

#[test]
fn inspect_touches_headers_not_tensor_data() {
    const RUNS: usize = 4;
    const STEPS: usize = 5;
    const ELEMS: usize = 16 << 20; // 64 MiB of data per checkpoint, 1.25 GiB in all
    let dir = tempfile::tempdir().unwrap();
    for run in 0..RUNS {
        for step in 0..STEPS {
            let folder = dir.path().join(format!("seed{run}/step{}", step * 10));
            std::fs::create_dir_all(&folder).unwrap();
            write_sparse_checkpoint(&folder.join("model.safetensors"), ELEMS);
        }
    }
    // Warm up allocator and lazy statics so they are not counted.
    let _ = inspect(dir.path());
    let before = page_faults();
    let ins = inspect(dir.path());
    let faults = page_faults() - before;
    assert_eq!(ins.summary.n_checkpoints, RUNS * STEPS);
    assert_eq!(ins.summary.n_params, Some(ELEMS));
    // Touching the data would fault in at least 64 MiB / 64 KiB (fault-around) = 1024 times per file.
    let per_file = faults as f64 / (RUNS * STEPS) as f64;
    assert!(
        per_file < 64.0,
        "{faults} page faults for {} files: tensor data was read",
        RUNS * STEPS
    );
}
