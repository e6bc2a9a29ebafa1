//! Speed of a convolutional interpolation path: the ResNet-20 (CIFAR layout) of the
//! `tests/fixtures/cnn` zoo between the final checkpoints of its two seeds, on its eval digits
//! repeated four times (256 images), the 9 interior points of an 11-point path, under
//! `--bn interpolate` (one eval pass per point) and `--bn reset` (also train-mode passes over 256
//! reset images in batches of 128).
//!
//! `cargo bench -p lineage-core --bench cnn_path` prints images per second and the ratio against
//! the same paths in PyTorch measured in the same run (`cnn_pytorch.py`, run with
//! `$LINEAGE_PYTHON` or `python3`; skipped with a message when torch is not installed), each as
//! best / median / worst of 5 repeats.

mod common;

/// As the `lineage` binary: an allocator that reuses the large temporary tensors' memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use common::time_spread;
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

/// The reference the fixture script wrote.
fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap()
}

/// The final checkpoint of `run` (the ResNet's path end, as `reference.json` names it).
fn checkpoint(run: &str) -> PathBuf {
    let end = reference()["paths"]["resnet20"]["a"].as_str().unwrap().to_string();
    let step = end.rsplit('/').next().unwrap();
    fixture(&format!("zoo/resnet20/{run}/step{step}/model.safetensors"))
}

/// The ResNet's eval file.
fn eval_file() -> PathBuf {
    fixture(reference()["eval"]["resnet20"].as_str().unwrap())
}

/// The ResNet's eval images repeated [`COPIES`] times.
fn images() -> EvalData {
    let eval = EvalData::load(&eval_file()).unwrap();
    let copies: Vec<Tensor> = (0..COPIES).map(|_| eval.inputs.clone()).collect();
    let inputs = Tensor::cat(&copies, 0).unwrap();
    let shape: Vec<usize> = [inputs.dim(0).unwrap()]
        .into_iter()
        .chain(eval.example_shape.iter().copied())
        .collect();
    let inputs = inputs.reshape(shape.as_slice()).unwrap();
    let labels: Vec<u32> = (0..COPIES).flat_map(|_| eval.labels.clone()).collect();
    EvalData::from_tensors(inputs, labels, None, false).unwrap()
}

/// Seconds of the best, median and worst repeat.
type Spread = (f64, f64, f64);

/// The same path in PyTorch, timed by `cnn_pytorch.py`: seconds and version.
fn pytorch_baseline(mode: BnMode, threads: usize) -> Result<(Spread, String), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/cnn_pytorch.py");
    let python = std::env::var("LINEAGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(&script)
        .arg(checkpoint("seed0"))
        .arg(checkpoint("seed1"))
        .arg(eval_file())
        .arg(fixture("zoo/resnet20/seed0/config.json"))
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
    let secs = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    Ok((
        (secs("best"), secs("median"), secs("worst")),
        v["torch"].as_str().unwrap_or("?").to_string(),
    ))
}

fn main() {
    // SAFETY: nothing else runs yet.
    let threads = unsafe { lineage_core::runtime::configure_process() };
    let data = images();
    let shape: Vec<String> = data.example_shape.iter().map(usize::to_string).collect();
    println!(
        "lineage cnn path benchmark: {} images {}; rayon threads: {threads}",
        data.len(),
        shape.join("x")
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
        let evaluator = evaluator_on(Device::Cpu, bn, Default::default())(Some(&config), &a, &data).unwrap();
        let (pa, pb) = (evaluator.prepare(&a).unwrap(), evaluator.prepare(&b).unwrap());
        println!("\n{}: {} interior alphas", evaluator.describe(), interior.len());
        let (best, median, worst) = time_spread(REPEATS, || {
            evaluator.evaluate_paths(&[&pa, &pb], &[(0, 1)], interior).unwrap()
        });
        let ours = (best.as_secs_f64(), median.as_secs_f64(), worst.as_secs_f64());
        println!(
            "lineage: best {:.3} s, median {:.3} s, worst {:.3} s over {REPEATS} runs -> {:.0} eval images/s (best)",
            ours.0,
            ours.1,
            ours.2,
            (interior.len() * data.len()) as f64 / ours.0
        );
        match pytorch_baseline(mode, threads) {
            Ok((torch, version)) => println!(
                "PyTorch {version} ({threads} threads): best {:.3} s, median {:.3} s, worst {:.3} s -> lineage is \
                 {:.2}x PyTorch's speed best vs best, {:.2}x median vs median, {:.2}x worst vs worst",
                torch.0,
                torch.1,
                torch.2,
                torch.0 / ours.0,
                torch.1 / ours.1,
                torch.2 / ours.2
            ),
            Err(why) => println!("PyTorch baseline unavailable ({why}); set LINEAGE_PYTHON to a python with torch"),
        }
    }
}
