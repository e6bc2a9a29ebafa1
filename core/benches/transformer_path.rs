//! Speed of transformer interpolation paths against PyTorch + transformers on the same weights and
//! tokens, measured in the same run. Five cases, each the interior points of a path between two
//! random checkpoints made in the bench (no download), one forward pass over the eval set each:
//!
//! - `bert-small`, `gpt-neox-small`: 2 layers x 256 hidden (4 heads, 1024 intermediate,
//!   vocabulary 1000) on 64 sequences of 64 tokens, 9 interior alphas;
//! - `bert-base`: BERT-base (12 layers x 768 hidden, 12 heads, 3072 intermediate, vocabulary
//!   30522, 4 classes, 109.5M parameters), `pythia-160m`: Pythia-160m's GPT-NeoX (12 x 768,
//!   vocabulary 50304, rotary 0.25, parallel residual, 162.3M parameters), and `olmo2-768`: an
//!   OLMo-2 of the same sizes (SwiGLU MLP 3072 wide, untied output layer, 190.6M parameters), each on
//!   8 sequences of 128 tokens, 3 interior alphas (a 5-point grid);
//! - `bert-base-padded`: BERT-base on an eval set as a tokenizer with `padding="max_length"`
//!   writes it: 64 sequences of 16 to 128 real tokens (uniform, mean 72) right-padded to 128, with
//!   their attention mask. PyTorch runs the set as one batch cut to its longest sequence (what
//!   `DataCollatorWithPadding` does to a batch), lineage as it runs any eval set: sequences sorted by
//!   length into batches, each cut to its longest. The FLOPs counted are those of the real tokens.
//!
//! `cargo bench --workspace --bench transformer_path` prints, per case, lineage's and PyTorch's
//! seconds per path (best / median / worst of the repeats), their ratio per repeat (PyTorch's time
//! over lineage's, so above 1 means lineage is faster; each repeat times lineage, then PyTorch,
//! so both see the same load), forward passes and real (not padding) tokens per second, each side's GFLOP/s against
//! the same 1024^3 f32 matmul timed in the same run through candle and through PyTorch (where both
//! sides spend most of a path in GEMMs, their speed ratio is near the two matmuls' ratio), the peak
//! resident memory of each during a path against the checkpoint size, and the largest difference
//! between their mean losses along the path. PyTorch is timed twice per repeat, once per way of
//! blending the checkpoints: the common recipe (a blended state dict loaded with `load_state_dict`)
//! and the fastest (`torch.lerp` in place into the parameters). PyTorch runs in one
//! `transformer_pytorch.py` process (`$LINEAGE_PYTHON` or `python3`, with torch, transformers and
//! safetensors); without it the bench says why and times lineage alone.
//!
//! Environment: `LINEAGE_BENCH_CASES` (comma-separated case names, default all),
//! `LINEAGE_BENCH_SEQUENCES` (sequences of `bert-base` and `pythia-160m`, default 8),
//! `LINEAGE_BENCH_REPEATS` (timed repeats after one warm-up, default 3), `LINEAGE_BENCH_MATMUL`
//! (lineage's product precisions timed, each on the same path in every repeat: `f32`, `bf16x3`,
//! comma-separated; default both where the machine has AMX, else f32), `LINEAGE_BENCH_LOSSES` (set:
//! print both sides' mean loss at each point), `LINEAGE_BENCH_DEVICE`
//! (`cpu`, the default, or `cuda` / `cuda:N` in a build with the `cuda` feature: both lineage and
//! PyTorch then run on that GPU, and the peak memory reported is PyTorch's GPU memory, lineage's
//! being host memory only). `LINEAGE_CORE_DIR` names the `core` folder (for the PyTorch script)
//! when a prebuilt bench executable runs away from its source tree (`scripts/gpu-check.sh`).

mod common;

/// As the `lineage` binary: an allocator that reuses the large temporary tensors' memory instead
/// of returning it to the system after every operation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use common::{checkpoint, time};
use lineage_core::EvalData;
use lineage_core::methods::interpolation::alpha_grid;
use lineage_core::models::evaluator::Evaluator;
use lineage_core::models::matmul::MatmulPrecision;
use lineage_core::models::transformer::{
    Architecture, BertSpec, CausalLm, GptNeoxSpec, OlmoSpec, OlmoVersion, SequenceClassifier, TokenBatches,
    TransformerEvaluator,
};
use lineage_loaders::ParamSet;
use serde_json::{Value, json};

const CLASSES: u32 = 4;

/// One benchmark case: a model configuration and the eval set it runs on.
struct Case {
    name: &'static str,
    config: Value,
    sequences: usize,
    /// Tokens per sequence, padding included.
    length: usize,
    /// Whether the sequences have fewer real tokens than `length` (then right-padded).
    padded: bool,
    /// Points of the alpha grid, endpoints included (only the interior ones are evaluated).
    alphas: usize,
}

impl Case {
    fn family(&self) -> &str {
        self.config["model_type"].as_str().unwrap()
    }

    fn get(&self, key: &str) -> f64 {
        self.config[key].as_u64().unwrap() as f64
    }

    /// FLOPs of one forward pass over sequences of `lengths` real tokens (multiply-adds x 2):
    /// projections, attention scores and mixing, MLP, and the output head (pooler and classifier
    /// per sequence, or logits per predicted token).
    fn flop_per_pass(&self, lengths: &[usize]) -> f64 {
        let (h, i, layers) = (
            self.get("hidden_size"),
            self.get("intermediate_size"),
            self.get("num_hidden_layers"),
        );
        let sequence = |l: f64| {
            // A SwiGLU MLP (OLMo) has three matrices, the others two.
            let mlp_matrices = if self.family() == "olmo2" { 3.0 } else { 2.0 };
            let per_token_layer = 4.0 * h * h + mlp_matrices * h * i + 2.0 * l * h;
            let head = match self.family() {
                "bert" => h * h + h * f64::from(CLASSES),
                _ => (l - 1.0) * h * self.get("vocab_size"),
            };
            2.0 * (l * layers * per_token_layer + head)
        };
        lengths.iter().map(|&l| sequence(l as f64)).sum()
    }
}

fn small(name: &'static str, model_type: &str) -> Case {
    let mut config = json!({
        "vocab_size": 1000, "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 1024, "hidden_act": "gelu", "max_position_embeddings": 128,
        "layer_norm_eps": 1e-12, "model_type": model_type
    });
    if model_type == "gpt_neox" {
        extend(&mut config, gpt_neox_extras());
        config["layer_norm_eps"] = json!(1e-5);
    } else {
        extend(&mut config, bert_extras());
    }
    Case {
        name,
        config,
        sequences: 64,
        length: 64,
        padded: false,
        alphas: 11,
    }
}

fn bert_extras() -> Value {
    json!({
        "hidden_dropout_prob": 0.1, "type_vocab_size": 2, "initializer_range": 0.02, "pad_token_id": 0,
        "classifier_dropout": null, "num_labels": CLASSES
    })
}

fn gpt_neox_extras() -> Value {
    json!({
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "use_parallel_residual": true, "tie_word_embeddings": false
    })
}

fn extend(config: &mut Value, extra: Value) {
    let object = config.as_object_mut().unwrap();
    object.extend(extra.as_object().unwrap().clone());
}

/// BERT-base (`bert-base-uncased`'s sizes), Pythia-160m and an OLMo-2 of Pythia-160m's sizes (its
/// SwiGLU MLP as wide, so 17% more weights) on `sequences` sequences of 128 tokens, and BERT-base on
/// 64 padded sequences.
fn real_size(sequences: usize) -> [Case; 4] {
    let mut bert = json!({
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512,
        "layer_norm_eps": 1e-12, "model_type": "bert"
    });
    extend(&mut bert, bert_extras());
    let mut pythia = json!({
        "vocab_size": 50304, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 2048,
        "layer_norm_eps": 1e-5, "model_type": "gpt_neox"
    });
    extend(&mut pythia, gpt_neox_extras());
    let olmo2 = json!({
        "vocab_size": 50304, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "num_key_value_heads": 12, "intermediate_size": 3072, "hidden_act": "silu",
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000, "model_type": "olmo2",
        "tie_word_embeddings": false, "attention_bias": false, "pad_token_id": 1
    });
    let case = |name, config: &Value, sequences, padded| Case {
        name,
        config: config.clone(),
        sequences,
        length: 128,
        padded,
        alphas: 5,
    };
    [
        case("bert-base", &bert, sequences, false),
        case("pythia-160m", &pythia, sequences, false),
        case("olmo2-768", &olmo2, sequences, false),
        case("bert-base-padded", &bert, 64, true),
    ]
}

/// Shortest sequence of a padded case, in real tokens.
const SHORTEST_PADDED: usize = 16;

/// A case's eval set: token ids in `1..vocab` (0 = padding), the attention mask, the real length
/// of each sequence, and labels (none for a language model); deterministic.
struct Tokens {
    ids: Vec<u32>,
    mask: Vec<u32>,
    lengths: Vec<usize>,
    labels: Vec<u32>,
}

fn eval_data(case: &Case) -> Tokens {
    let vocab = case.get("vocab_size") as u32;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |m: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(m)) as u32
    };
    let lengths: Vec<usize> = (0..case.sequences)
        .map(|_| match case.padded {
            true => SHORTEST_PADDED + next((case.length - SHORTEST_PADDED + 1) as u32) as usize,
            false => case.length,
        })
        .collect();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for &length in &lengths {
        for t in 0..case.length {
            let real = t < length;
            ids.push(if real { 1 + next(vocab - 1) } else { 0 });
            mask.push(u32::from(real));
        }
    }
    let labels = match case.family() {
        "bert" => (0..case.sequences).map(|_| next(CLASSES)).collect(),
        _ => Vec::new(),
    };
    Tokens {
        ids,
        mask,
        lengths,
        labels,
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process since the last [`reset_peak_rss`] (Linux `VmHWM`), bytes.
fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Resets the kernel's peak-RSS counter of this process (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Best, median and worst.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn gb(bytes: f64) -> String {
    format!("{:.2} GB", bytes / 1e9)
}

/// The PyTorch worker process (`transformer_pytorch.py`).
struct PyTorch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyTorch {
    fn start(threads: usize) -> Result<Self, String> {
        let core =
            std::env::var_os("LINEAGE_CORE_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
        let script = core.join("benches/transformer_pytorch.py");
        let python = std::env::var("LINEAGE_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Ok(Self { child, stdin, stdout })
    }

    fn ask(&mut self, request: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{request}").map_err(|e| format!("PyTorch worker: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("PyTorch worker: {e}"))?;
        if line.is_empty() {
            return Err("the PyTorch worker exited (its error is above)".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("PyTorch worker reply `{line}`: {e}"))
    }
}

impl Drop for PyTorch {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.child.wait();
    }
}

fn save(tensors: HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn params_map(params: &ParamSet) -> HashMap<String, Tensor> {
    params.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

/// Times the path between two random checkpoints of `architecture`, interleaved with PyTorch's.
fn run_case<A: Architecture>(case: &Case, architecture: A, torch: &mut Option<PyTorch>, bench: &Bench) {
    let threads = rayon::current_num_threads();
    let repeats = env_usize("LINEAGE_BENCH_REPEATS", 3).max(1);
    let Tokens {
        ids,
        mask,
        lengths,
        labels,
    } = eval_data(case);
    let shape = (case.sequences, case.length);
    let ids_tensor = Tensor::from_vec(ids, shape, &Device::Cpu).unwrap();
    let mask_tensor = Tensor::from_vec(mask, shape, &Device::Cpu).unwrap();
    let data = EvalData::from_tensors(ids_tensor.clone(), labels.clone(), Some(mask_tensor.clone()), true).unwrap();
    let real_tokens: usize = lengths.iter().sum();
    let (a, b) = (checkpoint(&architecture), checkpoint(&architecture));
    let checkpoint_bytes: usize = a.iter().map(|(_, t)| t.elem_count() * 4).sum();
    let mut evaluator = TransformerEvaluator::new(architecture, &a, &data, &bench.device).unwrap();
    let (pa, pb) = (evaluator.prepare(&a).unwrap(), evaluator.prepare(&b).unwrap());
    let alphas = alpha_grid(case.alphas).unwrap();
    let interior = &alphas[1..case.alphas - 1];
    let passes = interior.len();
    // Tokens one pass computes, padding included: lineage's length-sorted batches, and PyTorch's one
    // batch cut to its longest sequence.
    let batched: usize = TokenBatches::new(&data, &Device::Cpu)
        .unwrap()
        .iter()
        .map(|batch| batch.rows() * batch.len)
        .sum();
    let one_batch = case.sequences * lengths.iter().copied().max().unwrap_or(0);
    println!(
        "\n{} ({}): {} sequences x {} tokens ({real_tokens} real), {passes} interior alphas, checkpoint {}\n\
         tokens computed per pass, padding included: lineage {batched} (batches sorted by length), PyTorch \
         {one_batch} (one batch)",
        case.name,
        evaluator.describe(),
        case.sequences,
        case.length,
        gb(checkpoint_bytes as f64)
    );

    // The same weights and tokens for PyTorch.
    let dir = tempfile::tempdir().unwrap();
    let setup = torch.as_mut().map(|worker| {
        save(params_map(&a), &dir.path().join("a.safetensors"));
        save(params_map(&b), &dir.path().join("b.safetensors"));
        let mut eval = HashMap::from([
            ("input_ids".to_string(), ids_tensor.to_dtype(DType::I64).unwrap()),
            ("attention_mask".to_string(), mask_tensor.to_dtype(DType::I64).unwrap()),
        ]);
        if !labels.is_empty() {
            let l = Tensor::from_vec(labels.clone(), labels.len(), &Device::Cpu).unwrap();
            eval.insert("labels".into(), l.to_dtype(DType::I64).unwrap());
        }
        save(eval, &dir.path().join("data.safetensors"));
        worker.ask(json!({
            "op": "setup", "family": case.family(), "config": case.config,
            "a": dir.path().join("a.safetensors"), "b": dir.path().join("b.safetensors"),
            "data": dir.path().join("data.safetensors"), "device": bench.device_name,
        }))
    });
    let torch_ok = match setup {
        Some(Ok(reply)) => {
            println!("PyTorch {} ({threads} threads)", reply["torch"].as_str().unwrap_or("?"));
            true
        }
        Some(Err(why)) => {
            println!("PyTorch baseline unavailable: {why}");
            false
        }
        None => false,
    };

    let mut baselines: Vec<Baseline> = if torch_ok {
        BLENDS
            .iter()
            .map(|&(blend, label)| Baseline::new(blend, label, bench.matmuls.len()))
            .collect()
    } else {
        Vec::new()
    };
    // Per precision of lineage's products: seconds per path, peak RSS, largest loss difference.
    let mut ours = vec![Vec::new(); bench.matmuls.len()];
    let mut ours_rss = vec![0.0f64; bench.matmuls.len()];
    let mut max_diff = vec![0.0f64; bench.matmuls.len()];
    // One warm-up repeat (not timed), then the timed ones.
    for repeat in 0..=repeats {
        let mut secs = Vec::new();
        let mut results = Vec::new();
        for (v, &precision) in bench.matmuls.iter().enumerate() {
            evaluator.set_matmul(precision);
            reset_peak_rss();
            let start = Instant::now();
            let path = evaluator
                .evaluate_paths(&[&pa, &pb], &[(0, 1)], interior)
                .unwrap()
                .remove(0);
            secs.push(start.elapsed().as_secs_f64());
            results.push(std::hint::black_box(path));
            ours_rss[v] = ours_rss[v].max(peak_rss().unwrap_or(f64::NAN));
            if repeat > 0 {
                ours[v].push(secs[v]);
            }
        }
        for baseline in baselines.iter_mut().filter(|b| b.ok) {
            let request = json!({"op": "path", "alphas": interior, "blend": baseline.blend});
            match torch.as_mut().unwrap().ask(request) {
                Ok(reply) => {
                    baseline.rss = baseline.rss.max(reply["peak_rss"].as_f64().unwrap_or(f64::NAN));
                    let losses = reply["losses"].as_array().unwrap();
                    for (v, path) in results.iter().enumerate() {
                        for (r, want) in path.iter().zip(losses) {
                            max_diff[v] = max_diff[v].max((r.loss - want.as_f64().unwrap()).abs());
                            if std::env::var_os("LINEAGE_BENCH_LOSSES").is_some() {
                                println!("  mean loss at a point: lineage {}, PyTorch {want}", r.loss);
                            }
                        }
                    }
                    if let (true, Some(t)) = (repeat > 0, reply["seconds"].as_f64()) {
                        baseline.seconds.push(t);
                        for (ratios, s) in baseline.ratios.iter_mut().zip(&secs) {
                            ratios.push(t / s);
                        }
                    }
                }
                Err(why) => {
                    println!("{} failed: {why}", baseline.label);
                    baseline.ok = false;
                }
            }
        }
    }
    let flop = case.flop_per_pass(&lengths) * passes as f64;
    for (v, precision) in bench.matmuls.iter().enumerate() {
        let (best, median, worst) = spread(&ours[v]);
        println!(
            "lineage, {} products: best {best:.3} s, median {median:.3} s, worst {worst:.3} s per path over {repeats} \
             repeats -> {:.2} forward passes/s, {:.0} real tokens/s, {:.1} GFLOP/s ({:.0}% of the f32 matmul); peak \
             RSS {} during a path ({:.1}x the checkpoint)",
            precision.name(),
            passes as f64 / best,
            (passes * real_tokens) as f64 / best,
            flop / best / 1e9,
            100.0 * flop / best / 1e9 / bench.mm_gflops,
            gb(ours_rss[v]),
            ours_rss[v] / checkpoint_bytes as f64
        );
    }
    for baseline in baselines.iter().filter(|b| !b.seconds.is_empty()) {
        let (tb, tm, tw) = spread(&baseline.seconds);
        let share_of_matmul = bench
            .torch_mm_gflops
            .map(|mm| format!(" ({:.0}% of its matmul)", 100.0 * flop / tb / 1e9 / mm))
            .unwrap_or_default();
        println!(
            "{}: best {tb:.3} s, median {tm:.3} s, worst {tw:.3} s -> {:.2} forward passes/s, {:.1} GFLOP/s\
             {share_of_matmul}; peak RSS {} ({:.1}x the checkpoint)",
            baseline.label,
            passes as f64 / tb,
            flop / tb / 1e9,
            gb(baseline.rss),
            baseline.rss / checkpoint_bytes as f64
        );
        for (ratios, precision) in baseline.ratios.iter().zip(&bench.matmuls) {
            let (rb, rm, rw) = spread(ratios);
            println!(
                "  lineage ({}) / that speed per repeat: worst {rb:.2}x, median {rm:.2}x, best {rw:.2}x",
                precision.name()
            );
        }
    }
    if baselines.iter().any(|b| !b.seconds.is_empty()) {
        for (diff, precision) in max_diff.iter().zip(&bench.matmuls) {
            println!(
                "mean losses along the path ({} products) differ from PyTorch's by at most {diff:.1e}",
                precision.name()
            );
        }
    }
}

/// The two ways the PyTorch worker blends the checkpoints at each point (`blend` in
/// `transformer_pytorch.py`), each timed as its own baseline: the common recipe, and the fastest.
const BLENDS: [(&str, &str); 2] = [
    ("state_dict", "PyTorch, blended state dict + load_state_dict"),
    ("in_place", "PyTorch, torch.lerp in place into the parameters"),
];

/// One PyTorch baseline's measurements in a case.
struct Baseline {
    blend: &'static str,
    label: &'static str,
    /// False once a request failed (the case goes on without it).
    ok: bool,
    seconds: Vec<f64>,
    /// PyTorch's time over lineage's, per repeat, for each precision of lineage's products.
    ratios: Vec<Vec<f64>>,
    rss: f64,
}

impl Baseline {
    fn new(blend: &'static str, label: &'static str, precisions: usize) -> Self {
        Self {
            blend,
            label,
            ok: true,
            seconds: Vec::new(),
            ratios: vec![Vec::new(); precisions],
            rss: 0.0,
        }
    }
}

/// Where the bench runs, and the matmul speed there.
struct Bench {
    device: Device,
    device_name: String,
    /// candle's f32 matmul speed in this run.
    mm_gflops: f64,
    /// PyTorch's speed on the same matmul in this run, when the worker runs.
    torch_mm_gflops: Option<f64>,
    /// The precisions of lineage's products timed, each on the same path.
    matmuls: Vec<MatmulPrecision>,
}

/// GFLOP/s of a `size`^3 matmul that took `seconds`.
fn matmul_gflops(size: usize, seconds: f64) -> f64 {
    2.0 * (size as f64).powi(3) / seconds / 1e9
}

/// Runs `case` with its family's architecture.
fn run(case: &Case, torch: &mut Option<PyTorch>, bench: &Bench) {
    let path = Path::new("bench/config.json");
    match case.family() {
        "bert" => {
            let hidden = case.get("hidden_size") as usize;
            let spec = BertSpec::from_config_json(&case.config, path, Some(&[CLASSES as usize, hidden])).unwrap();
            run_case(case, SequenceClassifier(spec), torch, bench);
        }
        "olmo2" => {
            let spec = OlmoSpec::from_config_json(&case.config, path, OlmoVersion::Two).unwrap();
            run_case(case, CausalLm(spec), torch, bench);
        }
        _ => {
            let spec = GptNeoxSpec::from_config_json(&case.config, path).unwrap();
            run_case(case, CausalLm(spec), torch, bench);
        }
    }
}

/// The precisions `LINEAGE_BENCH_MATMUL` names (`f32`, `bf16x3`, comma-separated), by default
/// f32 and, where this machine computes it, bf16x3; one it cannot compute is said and left out. On a
/// GPU only f32 (the setting is the CPU products').
fn bench_matmuls(device: &Device) -> Vec<MatmulPrecision> {
    if !device.is_cpu() {
        return vec![MatmulPrecision::F32];
    }
    let names = std::env::var("LINEAGE_BENCH_MATMUL").unwrap_or_else(|_| "f32,bf16x3".into());
    let mut chosen = Vec::new();
    for name in names.split(',').map(str::trim) {
        match MatmulPrecision::parse(name) {
            Some(precision) if precision.effective() == precision => chosen.push(precision),
            Some(precision) => println!("{}; not timed", precision.unavailable_note().unwrap_or_default()),
            None => println!("LINEAGE_BENCH_MATMUL: unknown precision `{name}` (one of f32, bf16x3)"),
        }
    }
    if chosen.is_empty() {
        chosen.push(MatmulPrecision::F32);
    }
    chosen
}

fn main() {
    // SAFETY: nothing else runs yet.
    let threads = unsafe { lineage_core::runtime::configure_process() };
    let sequences = env_usize("LINEAGE_BENCH_SEQUENCES", 8);
    let selected = std::env::var("LINEAGE_BENCH_CASES").ok();
    let [bert_base, pythia, olmo2, bert_padded] = real_size(sequences);
    let cases: Vec<Case> = [
        small("bert-small", "bert"),
        small("gpt-neox-small", "gpt_neox"),
        bert_base,
        pythia,
        olmo2,
        bert_padded,
    ]
    .into_iter()
    .filter(|c| {
        selected
            .as_deref()
            .is_none_or(|s| s.split(',').any(|n| n.trim() == c.name))
    })
    .collect();
    let device_name = std::env::var("LINEAGE_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = lineage_core::models::transformer::device(&device_name).unwrap();
    println!("lineage transformer path benchmark on {device_name}; rayon threads: {threads}");
    // Baseline: a large f32 matmul through candle on this device, in this run.
    let size = 1024;
    let x = Tensor::ones((size, size), DType::F32, &device).unwrap();
    let (mm_best, _) = time(5, || {
        let y = x.matmul(&x).unwrap();
        device.synchronize().unwrap();
        y
    });
    let mm_gflops = matmul_gflops(size, mm_best.as_secs_f64());
    println!("candle f32 matmul {size}^3: {mm_gflops:.1} GFLOP/s");

    let mut torch = match PyTorch::start(threads) {
        Ok(worker) => Some(worker),
        Err(why) => {
            println!(
                "PyTorch baseline unavailable ({why}); set LINEAGE_PYTHON to a python with torch and transformers"
            );
            None
        }
    };
    // The same matmul in PyTorch, so that a speed ratio can be read against the two GEMMs' ratio.
    let torch_mm_gflops = torch.as_mut().and_then(|worker| {
        let reply = worker.ask(json!({"op": "matmul", "size": size, "repeats": 5, "device": device_name}));
        match reply.and_then(|r| r["seconds"].as_f64().ok_or(format!("no seconds in {r}"))) {
            Ok(seconds) => {
                let gflops = matmul_gflops(size, seconds);
                println!(
                    "PyTorch f32 matmul {size}^3: {gflops:.1} GFLOP/s ({:.2}x candle's)",
                    gflops / mm_gflops
                );
                Some(gflops)
            }
            Err(why) => {
                println!("PyTorch f32 matmul unavailable: {why}");
                None
            }
        }
    });
    let bench = Bench {
        matmuls: bench_matmuls(&device),
        device,
        device_name,
        mm_gflops,
        torch_mm_gflops,
    };
    for case in &cases {
        run(case, &mut torch, &bench);
    }
}
