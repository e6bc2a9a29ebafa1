//! Seeded mutations of valid checkpoints (byte flips, truncations, insertions, header edits): the
//! header scan, the full load, the load against the zoo's schema and `inspect --scan` of a zoo
//! holding the mutant must never panic, never take long, and never allocate more than a bound,
//! whatever the file says. Each failure names the seed, the mutation and the file it came from.
//! A header declaring an enormous tensor outside the schema must cost nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lineage_loaders::checkpoint::{load_params, scan_file};
use lineage_loaders::formats::FileFormat;
use lineage_loaders::inspect::inspect_values;
use lineage_loaders::non_finite::non_finite_problem;
use lineage_loaders::problem::ProblemKind;
use lineage_loaders::{Schema, load_params_matching};

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

/// The tests of this binary measure the one heap: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Mutants per source file (`LINEAGE_MUTANTS` overrides it, for a longer hunt).
const MUTANTS: u64 = 700;

fn mutants() -> u64 {
    std::env::var("LINEAGE_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MUTANTS)
}
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
    match rng.below(7) {
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
        5 => {
            // Two numbers of a text header swapped (offsets that overlap, shapes that disagree).
            let runs = digit_runs(&m[..m.len().min(4096)]);
            if runs.len() < 2 {
                return (m, "no numbers to swap".into());
            }
            let (a, b) = (runs[rng.below(runs.len())], runs[rng.below(runs.len())]);
            let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
            if first.1 > second.0 {
                return (m, "same number".into());
            }
            let text_a = m[first.0..first.1].to_vec();
            let text_b = m[second.0..second.1].to_vec();
            m.splice(second.0..second.1, text_a);
            m.splice(first.0..first.1, text_b);
            (m, format!("numbers at {} and {} swapped", first.0, second.0))
        }
        _ => {
            let i = position(rng, m.len());
            let k = rng.below(m.len() - i);
            m.drain(i..i + k);
            (m, format!("{k} bytes removed at {i}"))
        }
    }
}

/// Byte ranges of the runs of ASCII digits in `bytes`.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    runs.extend(start.map(|s| (s, bytes.len())));
    runs
}

/// Runs `work`, checking the bounds; what was broken, if anything.
fn within_bounds(work: impl FnOnce()) -> Option<String> {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
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

/// Scans and loads `path` (fully and against `schema`), then inspects the zoo at `root` that holds
/// it, values included; what broke a bound, if anything.
fn check(path: &Path, format: FileFormat, schema: &Schema, root: &Path) -> Option<String> {
    within_bounds(|| {
        let _ = scan_file(path, format);
        let _ = load_params(path);
        if let Ok(params) = load_params_matching(path, schema) {
            let _ = non_finite_problem(&params, path);
        }
        let _ = serde_json::to_string(&inspect_values(root));
    })
}

#[test]
fn mutated_checkpoints_never_panic_hang_or_blow_up_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // (fixture, where the mutant lives in a one-run zoo)
    let sources = [
        (
            "zoo_safetensors/init0_order0/step100/model.safetensors",
            "run/step100/model.safetensors",
        ),
        (
            "zoo_fp16/init0_order0/step1500/model.safetensors",
            "run/step1500/model.safetensors",
        ),
        (
            "zoo_lightning/init0_order0/epoch=4-step=100.ckpt",
            "run/epoch=4-step=100.ckpt",
        ),
        (
            "zoo_hf_trainer/run_i0_o0/checkpoint-100/pytorch_model.bin",
            "run/checkpoint-100/pytorch_model.bin",
        ),
        ("digits_eval.npz", "run/step100/weights.npz"),
    ];
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
        let Ok(scan) = scan_file(&source_path, format) else {
            failures.push(format!("{source}: the unmutated fixture does not scan"));
            continue;
        };
        let schema = Schema::from_headers(&scan.tensors);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &bytes).unwrap();
        let clean = inspect_values(dir.path());
        assert_eq!(clean.summary.n_checkpoints, 1, "{name}: {:?}", clean.problems);
        assert!(load_params_matching(&target, &schema).is_ok(), "{name}");
        for seed in 0..mutants() {
            let mut rng = Rng(seed ^ ((bytes.len() as u64) << 20));
            let (mutant, what) = mutate(&bytes, &mut rng);
            std::fs::write(&target, &mutant).unwrap();
            total += 1;
            if let Some(problem) = check(&target, format, &schema, dir.path()) {
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

/// A safetensors file: the fixture's tensors, then an extra `F32` tensor of `extra_bytes` declared
/// after them; the file is extended sparsely to hold it when `sparse`, else it stays ~100 KB.
fn with_extra_tensor(path: &Path, extra_bytes: u64, sparse: bool) {
    let source = std::fs::read(fixture("zoo_safetensors/init0_order0/step100/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(source[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&source[8..8 + n]).unwrap();
    let data = &source[8 + n..];
    let end = data.len() as u64;
    header.insert(
        "extra.weight".into(),
        serde_json::json!({"dtype": "F32", "shape": [extra_bytes / 4], "data_offsets": [end, end + extra_bytes]}),
    );
    let text = serde_json::to_vec(&header).unwrap();
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&text);
    bytes.extend_from_slice(data);
    std::fs::write(path, &bytes).unwrap();
    if sparse {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(bytes.len() as u64 + extra_bytes).unwrap();
    }
}

#[test]
fn an_enormous_declared_tensor_outside_the_schema_costs_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let schema_source = fixture("zoo_safetensors/init0_order0/step100/model.safetensors");
    let Ok(scan) = scan_file(&schema_source, FileFormat::Safetensors) else {
        eprintln!("skipped: fixture missing at {}", schema_source.display());
        return;
    };
    let schema = Schema::from_headers(&scan.tensors);
    let dir = tempfile::tempdir().unwrap();
    for (gib, sparse) in [(1u64, true), (8, true), (8, false)] {
        let root = dir.path().join(format!("zoo{gib}{sparse}"));
        for step in [0, 100, 1500] {
            let to = root.join(format!("run/step{step}"));
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&schema_source, to.join("model.safetensors")).unwrap();
        }
        let odd = root.join("run/step100/model.safetensors");
        with_extra_tensor(&odd, gib << 30, sparse);
        let mut loaded = None;
        let broke = within_bounds(|| {
            loaded = Some(load_params_matching(&odd, &schema).map(|p| p.n_params()));
            let inspection = inspect_values(&root);
            let flagged: Vec<_> = inspection.problems.iter().map(|p| p.kind).collect();
            assert!(
                flagged.contains(&ProblemKind::ShapeMismatch) || flagged.contains(&ProblemKind::Malformed),
                "{flagged:?}"
            );
        });
        assert_eq!(broke, None, "{gib} GiB declared (sparse: {sparse})");
        match (sparse, loaded) {
            (true, Some(Ok(n))) => assert_eq!(n, 26_122),
            (false, Some(Err(e))) => assert!(e.to_string().contains("`extra.weight`"), "{e}"),
            (_, other) => panic!("{gib} GiB (sparse: {sparse}): {other:?}"),
        }
    }
}
