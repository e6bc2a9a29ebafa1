//! Speed of Git Re-Basin weight matching at BERT-base scale: two randomly initialised
//! `BertForSequenceClassification` checkpoints (12 layers, hidden 768, intermediate 3072,
//! vocabulary 30522, 110M parameters; nothing downloaded) aligned with the BERT permutation spec
//! (residual stream, 12 MLP groups, pooler units).
//!
//! `cargo bench -p lineage-core --bench weight_matching` prints the seconds per pair (each
//! repetition of the same search, seed 0, then best, median and worst), the sweeps taken, and, measured in the same run, how
//! long an f32 GEMM through candle on all cores takes for the nominal FLOPs of the call's cost
//! matrices (every group solved in every sweep; the ratio of the two is what to compare between
//! machines), and the time of the assignment
//! solver alone at n = 768 and 3072. `LINEAGE_BENCH_REPEATS` sets the number of repetitions
//! (default 3).

mod common;

/// As the `lineage` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use common::{checkpoint, time};
use lineage_core::methods::align::assignment::max_assignment;
use lineage_core::methods::align::{DEFAULT_SEED, PermutationSpec, weight_matching};
use lineage_core::models::transformer::{Architecture, BertSpec, SequenceClassifier};
use lineage_loaders::ParamSet;

const CLASSES: usize = 2;
const HIDDEN: usize = 768;

fn bert_base_config() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": 30522, "hidden_size": HIDDEN, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "classifier_dropout": null, "num_labels": CLASSES,
        "model_type": "bert"
    })
}

/// FLOPs of the cost matrices of one sweep: for every group of size `n` and every tensor axis it
/// acts on, an `n x numel/n` by `numel/n x n` product (2 FLOPs per multiply-add).
fn flop_per_sweep(spec: &PermutationSpec, params: &ParamSet) -> f64 {
    spec.groups
        .iter()
        .flat_map(|g| g.axes.iter().map(move |a| (g.size, a)))
        .map(|(n, a)| 2.0 * n as f64 * params.get(&a.tensor).unwrap().elem_count() as f64)
        .sum()
}

/// f32 GEMM speed through candle on all cores (best of 3 after a warm-up), in FLOP/s.
fn gemm_flops() -> f64 {
    let n = 3072;
    let x = Tensor::ones((n, n), DType::F32, &Device::Cpu).unwrap();
    let (best, _) = time(3, || x.matmul(&x).unwrap());
    2.0 * (n as f64).powi(3) / best.as_secs_f64()
}

/// Seconds the assignment solver takes on the `n x n` similarity matrix of two random layers of
/// `n` units with 256 inputs each, cold start (best of 2 after a warm-up).
fn assignment_seconds(n: usize) -> f64 {
    let x = Tensor::randn(0f32, 1.0, (n, 256), &Device::Cpu).unwrap();
    let y = Tensor::randn(0f32, 1.0, (n, 256), &Device::Cpu).unwrap();
    let similarity = x.matmul(&y.t().unwrap()).unwrap().flatten_all().unwrap();
    let cost: Vec<f64> = similarity
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let (best, _) = time(2, || max_assignment(&cost, n, None).unwrap());
    best.as_secs_f64()
}

fn main() {
    // SAFETY: nothing else runs yet.
    unsafe { lineage_core::runtime::configure_process() };
    let repeats: usize = std::env::var("LINEAGE_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let threads = rayon::current_num_threads();
    println!("lineage weight-matching benchmark: BERT-base pair; rayon threads: {threads}");
    for n in [768, 3072] {
        println!("assignment solver, n = {n}: {:.3} s", assignment_seconds(n));
    }
    let config = bert_base_config();
    let bert = BertSpec::from_config_json(&config, Path::new("bench/config.json"), Some(&[CLASSES, HIDDEN])).unwrap();
    let architecture = SequenceClassifier(bert);
    let (a, b) = (checkpoint(&architecture), checkpoint(&architecture));
    let spec = architecture.permutation_spec(&a);
    let params: usize = a.iter().map(|(_, t)| t.elem_count()).sum();
    println!(
        "{:.1}M parameters, {} permutation groups",
        params as f64 / 1e6,
        spec.groups.len()
    );

    let mut seconds = Vec::new();
    let mut sweeps = Vec::new();
    for r in 0..repeats.max(1) {
        let start = Instant::now();
        let matching = weight_matching(&spec, &a, &b, DEFAULT_SEED).unwrap();
        seconds.push(start.elapsed().as_secs_f64());
        sweeps.push(matching.objective.len() - 1);
        println!(
            "run {r}: {:.2} s, {} sweeps, objective {:.4e} -> {:.4e}",
            seconds[r],
            sweeps[r],
            matching.objective[0],
            matching.objective.last().unwrap()
        );
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let (best, median, worst) = (sorted[0], sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    println!("seconds per pair: best {best:.2}, median {median:.2}, worst {worst:.2} over {repeats} runs");

    let flop = flop_per_sweep(&spec, &a);
    let rate = gemm_flops();
    let runs = seconds.len() as f64;
    let mean_sweeps = sweeps.iter().sum::<usize>() as f64 / runs;
    let gemm_seconds = flop * mean_sweeps / rate;
    println!(
        "cost matrices: {:.0} GFLOP per sweep x {mean_sweeps:.1} sweeps (nominal: every group every sweep; \
         skipped groups do less); candle f32 GEMM 3072^3 at {:.1} GFLOP/s does them in {gemm_seconds:.2} s \
         -> weight matching takes {:.1}x that (median)",
        flop / 1e9,
        rate / 1e9,
        median / gemm_seconds
    );
}
