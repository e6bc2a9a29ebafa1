#!/usr/bin/env bash
# A CUDA toolkit for building `--features cuda` on a machine without one (and without a GPU), made
# of NVIDIA's wheels from PyPI: nvcc, the runtime, the headers, and the libraries candle links
# (cuBLAS, cuBLASLt, cuRAND, NVRTC). The driver library (libcuda) comes with a GPU's driver, so a
# link-time stand-in is made from the names cudarc declares; the executables load the real one on
# the GPU machine (scripts/gpu-check.sh finds the libraries there).
#
# Usage: scripts/pip-cuda-toolkit.sh DIR [CUDA_VERSION]   (default 13.0: pick the driver's version
#        or older, `nvidia-smi` prints it; the GPU machine must run a driver at least that new)
# Then:  source DIR/env.sh && CUDA_COMPUTE_CAP=90 scripts/gpu-check.sh --package PKG
set -euo pipefail

dir="$(mkdir -p "${1:?usage: $0 DIR [CUDA_VERSION]}" && cd "$1" && pwd)"
version="${2:-13.0}"
major="${version%%.*}"
python="${PYTHON:-python3}"

"$python" -m pip install --quiet --no-deps --target "$dir/wheels" \
  "nvidia-cuda-nvcc==$version.*" "nvidia-cuda-runtime==$version.*" "nvidia-cuda-cccl==$version.*" \
  "nvidia-cuda-crt==$version.*" "nvidia-nvvm==$version.*" "nvidia-cuda-nvrtc==$version.*" \
  "nvidia-cublas==$major.*" "nvidia-curand"
home="$dir/wheels/nvidia/cu$major"
[[ -x "$home/bin/nvcc" ]] || { echo "no nvcc in $home: the wheels' layout differs from CUDA 13's" >&2; exit 1; }

# The linker wants unversioned names; the wheels ship libX.so.N.
lib="$home/lib"
for so in "$lib"/lib{cudart,cublas,cublasLt,curand,nvrtc}.so.*; do
  [[ -e "$so" ]] && ln -sf "$(basename "$so")" "$lib/$(basename "$so" | sed -E 's/\.so\..*/.so/')"
done
ln -sfn lib "$home/lib64"

# libcuda.so for the linker only: every driver function cudarc's bindings name, as empty symbols,
# with the real library's soname (libcuda.so.1), so the executables load the driver's at run time.
cudarc="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys 2>/dev/null | sort -V | tail -n1)"
[[ -n "$cudarc" ]] || { echo "cudarc's sources not found: run \`cargo fetch\` first" >&2; exit 1; }
mkdir -p "$lib/stubs"
grep -ohE '^\s+fn cu[A-Za-z0-9_]+\(' "$cudarc"/*.rs | sed -E 's/\s+fn (cu[A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u \
  >"$lib/stubs/libcuda.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$lib/stubs/libcuda.c"
ln -sf stubs/libcuda.so "$lib/libcuda.so"

cat >"$dir/env.sh" <<EOF
export CUDA_HOME="$home" PATH="$home/bin:\$PATH"
EOF
"$home/bin/nvcc" --version | tail -n1
echo "toolkit in $home; now: source $dir/env.sh"
