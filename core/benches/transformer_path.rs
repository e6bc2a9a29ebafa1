//! Speed of transformer interpolation paths: a BERT classifier and a GPT-NeoX language model (each
//! 2 layers x 256 hidden, 4 heads, 1024 intermediate, vocabulary 1000) on 64 sequences of 64
//! tokens, the 9 interior points of an 11-point path, each one forward pass over the eval set.
//!
//! `cargo bench -p lineage-core --bench transformer_path` prints forward passes and tokens per
//! second, GFLOP/s, and ratios against two baselines measured in the same run: a large f32 matmul
//! through candle on all cores, and the same paths in PyTorch + transformers
//! (`transformer_pytorch.py`, run with `$LINEAGE_PYTHON` or `python3`; skipped with a message when
//! torch is not installed).

mod common;

/// As the `lineage` binary: an allocator that reuses the large temporary tensors' memory instead
/// of returning it to the system after every operation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use common::{checkpoint, time};
use lineage_core::EvalData;
use lineage_core::methods::interpolation::alpha_grid;
use lineage_core::models::evaluator::Evaluator;
use lineage_core::models::transformer::{
    Architecture, BertSpec, CausalLm, GptNeoxSpec, SequenceClassifier, TransformerEvaluator,
};

const SEQUENCES: usize = 64;
const LENGTH: usize = 64;
const ALPHAS: usize = 11;
const REPEATS: usize = 5;

const VOCAB: u32 = 1000;
const CLASSES: u32 = 4;

fn bert_config() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": VOCAB, "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 1024, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "classifier_dropout": null, "num_labels": CLASSES,
        "model_type": "bert"
    })
}

fn gpt_neox_config() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": VOCAB, "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 1024, "hidden_act": "gelu", "max_position_embeddings": 128,
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "use_parallel_residual": true,
        "layer_norm_eps": 1e-5, "tie_word_embeddings": false, "model_type": "gpt_neox"
    })
}

/// Deterministic token ids in `1..vocab` and labels (none for a language model).
fn eval_data(vocab: u32, classes: Option<u32>) -> EvalData {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |m: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(m)) as u32
    };
    let ids: Vec<u32> = (0..SEQUENCES * LENGTH).map(|_| 1 + next(vocab - 1)).collect();
    let ids = Tensor::from_vec(ids, (SEQUENCES, LENGTH), &Device::Cpu).unwrap();
    let labels = classes.map_or_else(Vec::new, |c| (0..SEQUENCES).map(|_| next(c)).collect());
    EvalData::from_tensors(ids, labels, None, true).unwrap()
}

/// FLOPs of one forward pass (multiply-adds x 2): projections, attention scores and mixing, MLP,
/// and the output head (pooler and classifier per sequence, or logits per predicted token).
fn flop_per_pass(c: &serde_json::Value) -> f64 {
    let get = |k: &str| c[k].as_u64().unwrap() as f64;
    let (h, i, layers) = (get("hidden_size"), get("intermediate_size"), get("num_hidden_layers"));
    let tokens = (SEQUENCES * LENGTH) as f64;
    let per_token_layer = 4.0 * h * h + 2.0 * h * i + 2.0 * LENGTH as f64 * h;
    let head = match c["model_type"].as_str() {
        Some("bert") => SEQUENCES as f64 * (h * h + h * f64::from(CLASSES)),
        _ => (SEQUENCES * (LENGTH - 1)) as f64 * h * get("vocab_size"),
    };
    2.0 * (tokens * layers * per_token_layer + head)
}

/// The same path in PyTorch, timed by `transformer_pytorch.py`: (best, median) seconds and version.
fn pytorch_baseline(family: &str, config: &serde_json::Value, threads: usize) -> Result<(f64, f64, String), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/transformer_pytorch.py");
    let python = std::env::var("LINEAGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(&script)
        .arg(family)
        .arg(config.to_string())
        .args([SEQUENCES, LENGTH, ALPHAS, threads, REPEATS].map(|v| v.to_string()))
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

/// Times the path between two random checkpoints of `architecture` and compares it with the
/// baselines.
fn run_case<A: Architecture>(
    family: &str,
    architecture: A,
    config: &serde_json::Value,
    data: &EvalData,
    mm_gflops: f64,
) {
    let threads = rayon::current_num_threads();
    let (a, b) = (checkpoint(&architecture), checkpoint(&architecture));
    let evaluator = TransformerEvaluator::new(architecture, &a, data, &Device::Cpu).unwrap();
    let (pa, pb) = (evaluator.prepare(&a).unwrap(), evaluator.prepare(&b).unwrap());
    let alphas = alpha_grid(ALPHAS).unwrap();
    let interior = &alphas[1..ALPHAS - 1];
    let passes = interior.len();
    println!("\n{}: {passes} interior alphas", evaluator.describe());
    let (best, median) = time(REPEATS, || {
        evaluator.evaluate_paths(&[&pa, &pb], &[(0, 1)], interior).unwrap()
    });
    let secs = best.as_secs_f64();
    let flop = flop_per_pass(config) * passes as f64;
    let gflops = flop / secs / 1e9;
    println!(
        "path: best {secs:.3} s, median {:.3} s over {REPEATS} runs -> {:.1} forward passes/s, {:.0} tokens/s, \
         {:.2} GFLOP -> {gflops:.1} GFLOP/s ({:.0}% of the matmul)",
        median.as_secs_f64(),
        passes as f64 / secs,
        (passes * SEQUENCES * LENGTH) as f64 / secs,
        flop / 1e9,
        100.0 * gflops / mm_gflops
    );
    match pytorch_baseline(family, config, threads) {
        Ok((torch_best, torch_median, version)) => println!(
            "PyTorch {version} ({threads} threads): best {torch_best:.3} s, median {torch_median:.3} s -> lineage is \
             {:.2}x PyTorch's speed (best vs best)",
            torch_best / secs
        ),
        Err(why) => println!("PyTorch baseline unavailable ({why}); set LINEAGE_PYTHON to a python with torch"),
    }
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("lineage transformer path benchmark: {SEQUENCES} sequences x {LENGTH} tokens; rayon threads: {threads}");
    // Baseline 1: a large f32 matmul through candle on this machine, in this run.
    let size = 1024;
    let x = Tensor::ones((size, size), DType::F32, &Device::Cpu).unwrap();
    let (mm_best, _) = time(REPEATS, || x.matmul(&x).unwrap());
    let mm_gflops = 2.0 * (size as f64).powi(3) / mm_best.as_secs_f64() / 1e9;
    println!("candle f32 matmul {size}^3: {mm_gflops:.1} GFLOP/s");

    let config = bert_config();
    let spec =
        BertSpec::from_config_json(&config, Path::new("bench/config.json"), Some(&[CLASSES as usize, 256])).unwrap();
    run_case(
        "bert",
        SequenceClassifier(spec),
        &config,
        &eval_data(VOCAB, Some(CLASSES)),
        mm_gflops,
    );

    let config = gpt_neox_config();
    let spec = GptNeoxSpec::from_config_json(&config, Path::new("bench/config.json")).unwrap();
    run_case("gpt_neox", CausalLm(spec), &config, &eval_data(VOCAB, None), mm_gflops);
}
