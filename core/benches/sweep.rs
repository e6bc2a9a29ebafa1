//! Speed of the linear-mode-connectivity sweep: a 9-run x 9-step zoo of 64-128-128-10 ReLU MLPs
//! (random weights, fixed seed) on 500 eval examples; per step all 36 seed pairs x 11 alphas,
//! endpoints evaluated once per checkpoint and reused.
//!
//! `cargo bench -p lineage-core --bench sweep` prints forward passes per second, nominal and
//! executed GFLOP/s, and ratios against a large f32 GEMM on all cores measured in the same run and
//! against the reference PyTorch loop (93 GFLOP in ~1.4 s on 2 threads).

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::time;
use lineage_core::EvalData;
use lineage_core::methods::interpolation::{alpha_grid, endpoint_barrier, segment_barrier};
use lineage_core::models::evaluator::{Evaluator, Prepared};
use lineage_core::models::mlp::{Activation, MlpEvaluator, MlpSpec};
use lineage_loaders::ParamSet;
use rayon::prelude::*;

const RUNS: usize = 9;
const STEPS: usize = 9;
const ALPHAS: usize = 11;
const LAYERS: [usize; 4] = [64, 128, 128, 10];
const N: usize = 500;
const REPEATS: usize = 7;
/// The reference: the obvious PyTorch loop over pairs and all 11 alphas, 2 threads.
const PYTORCH_SECONDS: f64 = 1.4;
const PYTORCH_GFLOP: f64 = 93.0;

/// SplitMix64: a deterministic stream of uniform numbers.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-bound, bound).
    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| (2.0 * self.next_f32() - 1.0) * bound).collect()
    }
}

/// A random checkpoint (PyTorch's default Linear init scale), deterministic in (run, step).
fn checkpoint(run: usize, step: usize) -> ParamSet {
    let mut rng = Rng(0x5EED ^ ((run as u64) << 32) ^ step as u64);
    let mut raw = Vec::new();
    for (l, w) in LAYERS.windows(2).enumerate() {
        let (n_in, n_out) = (w[0], w[1]);
        let bound = 1.0 / (n_in as f32).sqrt();
        let weight = Tensor::from_vec(rng.uniform(n_in * n_out, bound), (n_out, n_in), &Device::Cpu).unwrap();
        let bias = Tensor::from_vec(rng.uniform(n_out, bound), n_out, &Device::Cpu).unwrap();
        raw.push((format!("fc{}.weight", l + 1), weight));
        raw.push((format!("fc{}.bias", l + 1), bias));
    }
    ParamSet::from_raw(raw).unwrap()
}

/// The fixture's 500 digits if present, else random inputs.
fn eval_data() -> (EvalData, &'static str) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/digits-mlp/digits_eval.safetensors");
    if let Ok(data) = EvalData::load(&fixture) {
        return (data, "digits_eval.safetensors");
    }
    let mut rng = Rng(7);
    let x = Tensor::from_vec(rng.uniform(N * LAYERS[0], 1.0), (N, LAYERS[0]), &Device::Cpu).unwrap();
    let labels = (0..N as u32).map(|i| i % 10).collect();
    (EvalData::from_tensors(x, labels, None, false).unwrap(), "random inputs")
}

/// The sweep: step by step, prepare the step's checkpoints, evaluate each once (the endpoints),
/// then all pairs at the interior alphas, then the barriers. Returns a checksum of the barriers.
fn sweep(evaluator: &MlpEvaluator, zoo: &[Vec<ParamSet>], alphas: &[f64]) -> f64 {
    let pairs: Vec<(usize, usize)> = (0..RUNS).flat_map(|i| (i + 1..RUNS).map(move |j| (i, j))).collect();
    let interior = &alphas[1..alphas.len() - 1];
    let mut checksum = 0.0;
    for step in zoo {
        let prepared: Vec<Prepared> = step.par_iter().map(|p| evaluator.prepare(p).unwrap()).collect();
        let endpoints: Vec<_> = prepared
            .par_iter()
            .map(|p| evaluator.evaluate_prepared(p).unwrap())
            .collect();
        let refs: Vec<&Prepared> = prepared.iter().collect();
        let paths = evaluator.evaluate_paths(&refs, &pairs, interior).unwrap();
        for (&(i, j), inner) in pairs.iter().zip(&paths) {
            let mut losses = vec![endpoints[i].loss];
            losses.extend(inner.iter().map(|r| r.loss));
            losses.push(endpoints[j].loss);
            checksum += endpoint_barrier(alphas, &losses) + segment_barrier(alphas, &losses);
        }
    }
    checksum
}

/// `dst = lhs · rhs` for square row-major matrices with gemm's own thread parallelism.
fn big_gemm(size: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32], threads: usize) {
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let s = size as isize;
    // SAFETY: three distinct size x size row-major buffers.
    unsafe {
        gemm::gemm(
            size,
            size,
            size,
            dst.as_mut_ptr(),
            1,
            s,
            false,
            lhs.as_ptr(),
            1,
            s,
            rhs.as_ptr(),
            1,
            s,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn main() {
    // SAFETY: nothing else runs yet.
    let threads = unsafe { lineage_core::runtime::configure_process() };
    let (data, source) = eval_data();
    let n = data.len();
    let spec = MlpSpec::new(LAYERS.to_vec(), Activation::Relu).unwrap();
    let evaluator = MlpEvaluator::new(spec, &data).unwrap();
    let zoo: Vec<Vec<ParamSet>> = (0..STEPS)
        .map(|s| (0..RUNS).map(|r| checkpoint(r, s)).collect())
        .collect();
    let alphas = alpha_grid(ALPHAS).unwrap();

    let n_pairs = RUNS * (RUNS - 1) / 2;
    let interior = ALPHAS - 2;
    let macs_first = LAYERS[0] * LAYERS[1];
    let macs_rest: usize = LAYERS.windows(2).skip(1).map(|w| w[0] * w[1]).sum();
    let flop_pass = 2.0 * n as f64 * (macs_first + macs_rest) as f64;
    let passes = STEPS * (RUNS + n_pairs * interior);
    let passes_naive = STEPS * n_pairs * ALPHAS;
    let nominal = passes as f64 * flop_pass;
    // Executed: first layer once per checkpoint; layers 2.. once per evaluated point, with widths
    // padded to multiples of 16 as the kernel runs them (128 -> 128, 10 -> 16).
    let pad = |w: usize| w.div_ceil(16) * 16;
    let macs_first_run = LAYERS[0] * pad(LAYERS[1]);
    let macs_rest_run: usize = LAYERS.windows(2).skip(1).map(|w| pad(w[0]) * pad(w[1])).sum();
    let useful = 2.0 * n as f64 * (STEPS * RUNS * macs_first + passes * macs_rest) as f64;
    let executed = 2.0 * n as f64 * (STEPS * RUNS * macs_first_run + passes * macs_rest_run) as f64;

    println!("lineage sweep benchmark: {RUNS} runs x {STEPS} steps, MLP {LAYERS:?} relu, {n} examples ({source})");
    println!(
        "per step: {n_pairs} pairs x {ALPHAS} alphas, endpoints once per checkpoint -> {passes} forward passes in all \
         ({passes_naive} in the naive loop); rayon threads: {threads}"
    );
    let (best, median) = time(REPEATS, || sweep(&evaluator, &zoo, &alphas));
    let checksum = sweep(&evaluator, &zoo, &alphas);
    let secs = best.as_secs_f64();
    println!(
        "sweep: best {:.3} s, median {:.3} s over {REPEATS} runs (barrier checksum {checksum:.6})",
        secs,
        median.as_secs_f64()
    );
    println!(
        "forward passes per second: {:.0} (naive-loop equivalent: {:.0})",
        passes as f64 / secs,
        passes_naive as f64 / secs
    );
    let gflops_nominal = nominal / secs / 1e9;
    let gflops_executed = executed / secs / 1e9;
    println!(
        "nominal: {:.1} GFLOP ({:.3} MFLOP per pass) -> {gflops_nominal:.1} GFLOP/s",
        nominal / 1e9,
        flop_pass / 1e6
    );
    println!(
        "executed (first layer once per checkpoint, then blended): {:.1} GFLOP useful, {:.1} GFLOP run with \
         zero padding -> {gflops_executed:.1} GFLOP/s",
        useful / 1e9,
        executed / 1e9
    );

    // Reference GEMMs on this machine, in this run.
    let size = 2048;
    let mut rng = Rng(11);
    let (lhs, rhs) = (rng.uniform(size * size, 1.0), rng.uniform(size * size, 1.0));
    let mut dst = vec![0.0f32; size * size];
    let (gemm_best, _) = time(REPEATS, || big_gemm(size, &lhs, &rhs, &mut dst, threads));
    let gemm_gflops = 2.0 * (size as f64).powi(3) / gemm_best.as_secs_f64() / 1e9;
    println!("f32 GEMM {size}x{size}x{size} on {threads} threads: {gemm_gflops:.1} GFLOP/s");
    let (small_best, _) = time(REPEATS, || {
        (0..threads).into_par_iter().for_each(|_| {
            let (h, w) = (vec![0.5f32; n * 128], vec![0.25f32; 128 * 128]);
            let mut z = vec![0.0f32; n * 128];
            for _ in 0..200 {
                // SAFETY: distinct dense buffers of the stated sizes.
                unsafe {
                    gemm::gemm(
                        n,
                        128,
                        128,
                        z.as_mut_ptr(),
                        1,
                        128,
                        false,
                        h.as_ptr(),
                        1,
                        128,
                        w.as_ptr(),
                        1,
                        128,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                std::hint::black_box(&mut z);
            }
        })
    });
    let small_gflops = threads as f64 * 200.0 * 2.0 * (n * 128 * 128) as f64 / small_best.as_secs_f64() / 1e9;
    println!("f32 GEMM {n}x128x128, one per thread on {threads} threads: {small_gflops:.1} GFLOP/s");
    println!(
        "ratio to the large GEMM: nominal {:.0}%, executed {:.0}%",
        100.0 * gflops_nominal / gemm_gflops,
        100.0 * gflops_executed / gemm_gflops
    );
    println!(
        "vs PyTorch loop ({PYTORCH_GFLOP} GFLOP in ~{PYTORCH_SECONDS} s = {:.1} GFLOP/s): {:.2}x faster ({:.3} s vs {PYTORCH_SECONDS} s for the same sweep)",
        PYTORCH_GFLOP / PYTORCH_SECONDS,
        PYTORCH_SECONDS / secs,
        secs
    );
    let target = PYTORCH_SECONDS / 2.0;
    println!(
        "targets: sweep <= {target:.2} s: {}; > 50% of GEMM (nominal): {}",
        if secs <= target { "met" } else { "NOT met" },
        if gflops_nominal > 0.5 * gemm_gflops {
            "met"
        } else {
            "NOT met"
        }
    );
}
