//! Seeded mutations of valid checkpoints (byte flips, truncations, insertions, header edits): the
//! header scan and the full load must never panic, never take long, and never allocate more than a
//! bound, whatever the file says. Each failure names the seed, the mutation and the file it came from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lineage_loaders::checkpoint::{load_params, scan_file};
use lineage_loaders::formats::FileFormat;

/// Counts live heap bytes and their peak (this test binary only).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Mutants per source file.
const MUTANTS: u64 = 700;
/// Most extra heap one scan + load may use (the sources are ~100-130 KB).
const HEAP_BOUND: usize = 64 << 20;
/// Longest one scan + load may take (debug build).
const TIME_BOUND: Duration = Duration::from_secs(2);

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/digits-mlp")
        .join(rel)
}

/// SplitMix64: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `bytes`, described.
fn mutate(bytes: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut m = bytes.to_vec();
    // Most structure (headers, zip directories) sits near the ends: aim half the edits there.
    let position = |rng: &mut Rng, len: usize| match rng.below(3) {
        0 => rng.below(len.min(256)),
        1 => len.saturating_sub(1 + rng.below(len.min(256))),
        _ => rng.below(len),
    };
    match rng.below(6) {
        0 => {
            let k = 1 + rng.below(8);
            for _ in 0..k {
                let i = position(rng, m.len());
                m[i] ^= 1 << rng.below(8);
            }
            (m, format!("{k} bit flips"))
        }
        1 => {
            let n = rng.below(m.len());
            m.truncate(n);
            (m, format!("truncated to {n} bytes"))
        }
        2 => {
            let i = position(rng, m.len());
            let k = 1 + rng.below(64);
            let junk: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
            m.splice(i..i, junk);
            (m, format!("{k} bytes inserted at {i}"))
        }
        3 => {
            // Huge little-endian integers where lengths and offsets live.
            let i = position(rng, m.len().saturating_sub(8));
            let v = [u64::MAX, u32::MAX as u64, 1 << 40, 1 << 33][rng.below(4)];
            m[i..i + 8].copy_from_slice(&v.to_le_bytes());
            (m, format!("u64 {v} written at {i}"))
        }
        4 => {
            // Digits in a text header (safetensors JSON, npy headers) made enormous.
            let digits: Vec<usize> = (0..m.len().min(4096)).filter(|&i| m[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                return (m, "no digits to edit".into());
            }
            let i = digits[rng.below(digits.len())];
            m.splice(i..i, b"99999999999".iter().copied());
            (m, format!("digits inflated at {i}"))
        }
        _ => {
            let i = position(rng, m.len());
            let k = rng.below(m.len() - i);
            m.drain(i..i + k);
            (m, format!("{k} bytes removed at {i}"))
        }
    }
}

/// Scans and loads `path`, checking the bounds; the error text if one was broken.
fn check(path: &Path, format: FileFormat) -> Option<String> {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| {
        let _ = scan_file(path, format);
        let _ = load_params(path);
    });
    let elapsed = started.elapsed();
    let extra = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    if outcome.is_err() {
        return Some("panicked".into());
    }
    if elapsed > TIME_BOUND {
        return Some(format!("took {elapsed:?}"));
    }
    if extra > HEAP_BOUND {
        return Some(format!("allocated {} MiB", extra >> 20));
    }
    None
}

#[test]
fn mutated_checkpoints_never_panic_hang_or_blow_up_memory() {
    let sources = [
        (
            "zoo_safetensors/init0_order0/step100/model.safetensors",
            "model.safetensors",
        ),
        ("zoo_fp16/init0_order0/step1500/model.safetensors", "model.safetensors"),
        ("zoo_lightning/init0_order0/epoch=4-step=100.ckpt", "lightning.ckpt"),
        (
            "zoo_hf_trainer/run_i0_o0/checkpoint-100/pytorch_model.bin",
            "pytorch_model.bin",
        ),
        ("digits_eval.npz", "weights.npz"),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::panic::set_hook(Box::new(|_| {})); // panics are counted below, not printed per mutant
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut total = 0;
    for (source, name) in sources {
        let source_path = fixture(source);
        let Ok(bytes) = std::fs::read(&source_path) else {
            eprintln!("skipped {source}: fixture missing at {}", source_path.display());
            continue;
        };
        let format = FileFormat::from_path(Path::new(name)).unwrap();
        let target = dir.path().join(name);
        for seed in 0..MUTANTS {
            let mut rng = Rng(seed ^ ((bytes.len() as u64) << 20));
            let (mutant, what) = mutate(&bytes, &mut rng);
            std::fs::write(&target, &mutant).unwrap();
            total += 1;
            if let Some(problem) = check(&target, format) {
                failures.push(format!("{source} seed {seed} ({what}): {problem}"));
            }
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{total} mutants checked in {:?}", started.elapsed());
    assert!(total >= 3000, "only {total} mutants: fixtures missing?");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
