//! Speed of a convolutional interpolation path: the ResNet-20 (CIFAR layout, width 8) of the
//! `tests/fixtures/cnn` zoo between its two seeds, on 256 images 1x32x32 (the fixture's 64 eval
//! digits four times), the 9 interior points of an 11-point path, under `--bn interpolate` (one
//! eval pass per point) and `--bn reset` (also train-mode passes over 256 reset images in
//! batches of 128).
//!
//! `cargo bench -p lineage-core --bench cnn_path` prints images per second and the ratio against
//! the same paths in PyTorch measured in the same run (`cnn_pytorch.py`, run with
//! `$LINEAGE_PYTHON` or `python3`; skipped with a message when torch is not installed).

mod common;

/// As the `lineage` binary: an allocator that reuses the large temporary tensors' memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use common::time;
use lineage_core::EvalData;
use lineage_core::methods::interpolation::alpha_grid;
use lineage_core::models::cnn::{BnMode, BnOptions};
use lineage_core::models::registry::evaluator_on;
use lineage_core::names::Named;
use lineage_loaders::load_params;

const COPIES: usize = 4;
const ALPHAS: usize = 11;
const REPEATS: usize = 5;
const RESET_EXAMPLES: usize = 256;
const RESET_BATCH: usize = 128;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cnn")
        .join(rel)
}

fn checkpoint(run: &str) -> PathBuf {
    fixture(&format!("zoo/resnet20/{run}/step300/model.safetensors"))
}

/// The fixture's eval images repeated [`COPIES`] times.
fn images() -> EvalData {
    let eval = EvalData::load(&fixture("eval.safetensors")).unwrap();
    let copies: Vec<Tensor> = (0..COPIES).map(|_| eval.inputs.clone()).collect();
    let inputs = Tensor::cat(&copies, 0).unwrap();
    let n = inputs.dim(0).unwrap();
    let inputs = inputs.reshape((n, 1, 32, 32)).unwrap();
    let labels: Vec<u32> = (0..COPIES).flat_map(|_| eval.labels.clone()).collect();
    EvalData::from_tensors(inputs, labels, None, false).unwrap()
}

/// The same path in PyTorch, timed by `cnn_pytorch.py`: (best, median) seconds and version.
fn pytorch_baseline(mode: BnMode, threads: usize) -> Result<(f64, f64, String), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/cnn_pytorch.py");
    let python = std::env::var("LINEAGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(&script)
        .arg(checkpoint("seed0"))
        .arg(checkpoint("seed1"))
        .arg(fixture("eval.safetensors"))
        .arg(mode.name())
        .args([COPIES, ALPHAS, RESET_EXAMPLES, RESET_BATCH, threads, REPEATS].map(|v| v.to_string()))
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{python} {}: {}",
            script.display(),
            stderr.lines().last().unwrap_or("")
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok((
        v["best"].as_f64().unwrap_or(f64::NAN),
        v["median"].as_f64().unwrap_or(f64::NAN),
        v["torch"].as_str().unwrap_or("?").to_string(),
    ))
}

fn main() {
    let threads = rayon::current_num_threads();
    let data = images();
    println!(
        "lineage cnn path benchmark: {} images 1x32x32; rayon threads: {threads}",
        data.len()
    );
    let (a, b) = (
        load_params(&checkpoint("seed0")).unwrap(),
        load_params(&checkpoint("seed1")).unwrap(),
    );
    let config = fixture("zoo/resnet20/seed0/config.json");
    let alphas = alpha_grid(ALPHAS).unwrap();
    let interior = &alphas[1..ALPHAS - 1];
    for mode in [BnMode::Interpolate, BnMode::Reset] {
        let bn = BnOptions {
            mode,
            data: None,
            examples: RESET_EXAMPLES,
            batch: RESET_BATCH,
        };
        let evaluator = evaluator_on(Device::Cpu, bn)(Some(&config), &a, &data).unwrap();
        let (pa, pb) = (evaluator.prepare(&a).unwrap(), evaluator.prepare(&b).unwrap());
        println!("\n{}: {} interior alphas", evaluator.describe(), interior.len());
        let (best, median) = time(REPEATS, || {
            evaluator.evaluate_paths(&[&pa, &pb], &[(0, 1)], interior).unwrap()
        });
        let secs = best.as_secs_f64();
        println!(
            "path: best {secs:.3} s, median {:.3} s over {REPEATS} runs -> {:.0} eval images/s",
            median.as_secs_f64(),
            (interior.len() * data.len()) as f64 / secs
        );
        match pytorch_baseline(mode, threads) {
            Ok((torch_best, torch_median, version)) => println!(
                "PyTorch {version} ({threads} threads): best {torch_best:.3} s, median {torch_median:.3} s -> lineage is \
                 {:.2}x PyTorch's speed (best vs best)",
                torch_best / secs
            ),
            Err(why) => println!("PyTorch baseline unavailable ({why}); set LINEAGE_PYTHON to a python with torch"),
        }
    }
}
