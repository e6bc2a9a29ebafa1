#!/usr/bin/env bash
# GPU check for lineage's `cuda` feature, in one command on a machine with an NVIDIA GPU:
#
#   1. builds the transformer and CNN fixture tests, the transformer_path bench and the `lineage` binary
#      with `--features cuda` (when cargo exists), or takes prebuilt executables (`--bin-dir DIR`,
#      made by `--package`);
#   2. runs the transformer and CNN fixture tests on the GPU (LINEAGE_TEST_DEVICE=cuda): lineage must
#      agree with PyTorch's fixture values within 1e-4 there too;
#   3. runs `lineage batch` on the BERT, GPT-NeoX and ResNet-20 fixture zoos with `--device cuda`
#      and `--device cpu` and compares their tables (scripts/compare_tables.py: every loss, barrier
#      and similarity within 1e-4, the same basins);
#   4. times the BERT-base and Pythia-160m paths of the bench on the GPU against PyTorch +
#      transformers on the same GPU, in the same run (LINEAGE_BENCH_DEVICE=cuda).
#
# Usage:
#   scripts/gpu-check.sh                  build with cargo (needs nvcc), then test and bench
#   scripts/gpu-check.sh --bin-dir DIR    no Rust toolchain: use the executables and files in DIR
#   scripts/gpu-check.sh --package DIR    on a build machine with cargo and nvcc (no GPU needed):
#                                         build, and put the stripped executables, the fixtures
#                                         and the PyTorch script in DIR for `--bin-dir DIR`
#
# Environment: CUDA_COMPUTE_CAP (e.g. 90 for an H100/H200; read from nvidia-smi when unset, and
# required with --package on a machine without a GPU), CUDA_HOME (the toolkit to build with),
# LINEAGE_PYTHON (a python with torch, transformers, safetensors and pandas; default python3),
# LINEAGE_BENCH_CASES (default bert-base,pythia-160m,olmo2-768), LINEAGE_BENCH_SEQUENCES (default 16; several,
# space-separated, run the bench once each), LINEAGE_BENCH_REPEATS (default 3),
# LINEAGE_TEST_DEVICE / LINEAGE_BENCH_DEVICE (default cuda).
#
# Exit status: 0 when every step passed, 1 when one failed, 77 when the check was skipped (no
# usable GPU; the reason is printed). It never reports success for a step it did not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS=(bert_fixture causal_lm_fixture roberta_fixture transformer_align cnn_fixture)
BENCH=transformer_path
APP=lineage
PYTHON="${LINEAGE_PYTHON:-python3}"
DEVICE="${LINEAGE_TEST_DEVICE:-cuda}"

mode=build
dir=""
case "${1:-}" in
  --bin-dir) mode=prebuilt; dir="${2:?--bin-dir needs a folder}" ;;
  --package) mode=package; dir="${2:?--package needs a folder}" ;;
  "") ;;
  *) sed -n '2,29p' "$0"; exit 2 ;;
esac

say() { printf '\n== %s\n' "$*"; }
skip() { printf '\nSKIPPED: %s\n' "$*"; exit 77; }

# The compute capability as nvcc wants it (9.0 -> 90), from nvidia-smi.
compute_cap() {
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .'
}

if [[ "$mode" != package ]]; then
  command -v nvidia-smi >/dev/null || skip "no NVIDIA driver on this machine (nvidia-smi not found)"
  nvidia-smi -L >/dev/null 2>&1 || skip "nvidia-smi finds no GPU: $(nvidia-smi -L 2>&1 | head -n1)"
  say "GPU"
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv
fi
if [[ -z "${CUDA_COMPUTE_CAP:-}" ]]; then
  CUDA_COMPUTE_CAP="$(compute_cap || true)"
  [[ -n "$CUDA_COMPUTE_CAP" ]] || { echo "set CUDA_COMPUTE_CAP (e.g. 90): no GPU to read it from" >&2; exit 2; }
fi
export CUDA_COMPUTE_CAP

# Builds with cargo and prints "name path" for each test executable, the bench and the binary. All
# three use the bench profile (optimised, as `--release`), so that they share one build of the
# dependencies.
build() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust or pass --bin-dir DIR" >&2; exit 2; }
  command -v nvcc >/dev/null || { echo "nvcc not found: the cuda feature compiles candle's kernels with it" >&2; exit 2; }
  echo "building with --features cuda for compute capability $CUDA_COMPUTE_CAP" >&2
  local args=()
  for t in "${TESTS[@]}"; do args+=(--test "$t"); done
  (cd "$ROOT" && {
    cargo test --workspace --profile bench --features cuda --no-run --message-format=json "${args[@]}"
    cargo bench --workspace --features cuda --bench "$BENCH" --no-run --message-format=json
    cargo build --profile bench -p lineage --features cuda --message-format=json
  }) | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] in (["test"], ["bench"], ["bin"]):
        print(m["target"]["name"], m["executable"])
'
}

# Puts on LD_LIBRARY_PATH the folder of each shared library `exe` needs that the loader does not
# find (the CUDA libraries of a toolkit or of PyTorch's wheels: cuBLAS, cuRAND, NVRTC, the runtime).
find_libraries() {
  local exe="$1" lib found roots site=()
  roots=(/usr/local/cuda/lib64 /usr/local/cuda/targets /usr/local/nvidia /usr/lib64 /usr/lib/x86_64-linux-gnu)
  if [[ -n "${CUDA_HOME:-}" ]]; then roots+=("$CUDA_HOME"); fi
  read -r -a site < <("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) || true
  roots+=("${site[@]}")
  for lib in $(ldd "$exe" | awk '/not found/ {print $1}'); do
    found="$(find "${roots[@]}" -name "$lib" -print -quit 2>/dev/null | head -n1)"
    if [[ -n "$found" ]]; then
      echo "$lib: $(dirname "$found")"
      export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    else
      echo "$lib: not found (install the CUDA toolkit's libraries or PyTorch's CUDA wheels)" >&2
    fi
  done
}

declare -A exe
core_dir="$ROOT/core"
case "$mode" in
  build|package)
    while read -r name path; do exe[$name]="$path"; done < <(build)
    ;;
  prebuilt)
    for name in "${TESTS[@]}" "$BENCH" "$APP"; do exe[$name]="$dir/$name"; done
    core_dir="$dir/core"
    ;;
esac
for name in "${TESTS[@]}" "$BENCH" "$APP"; do
  [[ -x "${exe[$name]:-}" ]] || { echo "missing executable for $name (${exe[$name]:-not built})" >&2; exit 1; }
done

if [[ "$mode" == package ]]; then
  mkdir -p "$dir/core/benches" "$dir/core/tests"
  for name in "${TESTS[@]}" "$BENCH" "$APP"; do
    cp "${exe[$name]}" "$dir/$name"
    strip "$dir/$name" 2>/dev/null || true
  done
  cp -r "$ROOT/core/tests/fixtures" "$dir/core/tests/"
  cp "$ROOT/core/benches/transformer_pytorch.py" "$dir/core/benches/"
  cp "$0" "$dir/gpu-check.sh"
  cp "$ROOT/scripts/compare_tables.py" "$dir/compare_tables.py"
  echo "packaged for compute capability $CUDA_COMPUTE_CAP in $dir: run $dir/gpu-check.sh --bin-dir $dir on the GPU machine"
  exit 0
fi

export LINEAGE_CORE_DIR="$core_dir"
failed=()
compare_script="$ROOT/scripts/compare_tables.py"
[[ "$mode" == prebuilt ]] && compare_script="$dir/compare_tables.py"

say "CUDA libraries"
find_libraries "${exe[$APP]}"

say "transformer and CNN fixture tests on $DEVICE (LINEAGE_TEST_DEVICE=$DEVICE)"
for name in "${TESTS[@]}"; do
  echo "-- $name"
  if ! LINEAGE_TEST_DEVICE="$DEVICE" "${exe[$name]}" --test-threads=1; then
    failed+=("$name")
  fi
done

say "lineage batch on the fixture zoos: --device $DEVICE against --device cpu"
work="$(mktemp -d)"
fixtures="$core_dir/tests/fixtures"
zoos=(
  "bert $fixtures/bert/zoo $fixtures/bert/eval.parquet"
  "gpt_neox $fixtures/causal_lm/zoo-gpt_neox $fixtures/causal_lm/eval.parquet"
  "resnet20 $fixtures/cnn/zoo/resnet20 $fixtures/cnn/eval.safetensors"
)
for entry in "${zoos[@]}"; do
  read -r name zoo data <<<"$entry"
  echo "-- $name"
  ok=1
  for on in cpu "$DEVICE"; do
    start=$(date +%s%N)
    if ! "${exe[$APP]}" batch "$zoo" --data "$data" --alphas 5 --device "$on" --out "$work/$name-$on" \
      --cache "$work/cache-$on" >"$work/$name-$on.log" 2>&1; then
      echo "lineage batch --device $on failed:"; tail -n 20 "$work/$name-$on.log"; ok=0
    else
      echo "$name on $on: $(( ($(date +%s%N) - start) / 1000000 )) ms"
    fi
  done
  if ((ok)) && "$PYTHON" "$compare_script" "$work/$name-cpu" "$work/$name-$DEVICE"; then :; else failed+=("batch-$name"); fi
done

say "PyTorch"
if "$PYTHON" -c 'import torch, transformers, safetensors; assert torch.cuda.is_available(), "torch sees no GPU"; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())'; then
  torch_ok=1
else
  echo "no usable PyTorch on the GPU: the bench below times lineage alone" >&2
  torch_ok=0
  failed+=("pytorch")
fi

for sequences in ${LINEAGE_BENCH_SEQUENCES:-16}; do
  say "BERT-base, Pythia-160m and OLMo-2 paths on $DEVICE against PyTorch, $sequences sequences (LINEAGE_BENCH_DEVICE=${LINEAGE_BENCH_DEVICE:-$DEVICE})"
  if ! LINEAGE_BENCH_DEVICE="${LINEAGE_BENCH_DEVICE:-$DEVICE}" LINEAGE_BENCH_CASES="${LINEAGE_BENCH_CASES:-bert-base,pythia-160m,olmo2-768}" \
    LINEAGE_BENCH_SEQUENCES="$sequences" LINEAGE_PYTHON="$PYTHON" "${exe[$BENCH]}" --bench; then
    failed+=("$BENCH-$sequences")
  fi
done

say "summary"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all fixture tests passed on $DEVICE; bench timings above (PyTorch baseline: $([[ $torch_ok == 1 ]] && echo yes || echo no))"
