#!/usr/bin/env bash
# CUDA compile gates for pupa's Hopper kernels (no GPU needed).
#
# Creates (once) a venv with the pinned CUDA 13.2 PyPI wheels (requirements.txt), compiles every
# kernel for sm_90a with `nvcc -cubin -Xptxas -v`, disassembles it with `cuobjdump -sass`, prints a
# table (kernel, registers, shared memory, spills, HGMMA count) and exits non-zero if any kernel
# spills, exceeds its register budget, has no HGMMA (tensor-core kernels), or ptxas reports
# C7511/C7515 (wgmma serialised). Both build paths are gated: nvcc (build time) and NVRTC (the
# launcher's run-time path, PTX assembled by ptxas as the driver would). Also checks that
# wgmma_gen.cuh matches gen_wgmma.py.
#
# Environment: PUPA_CUDA_VENV (default ${CARGO_TARGET_DIR:-<repo>/target}/cuda-venv),
#              PUPA_CUDA_OUT   (default ${CARGO_TARGET_DIR:-<repo>/target}/cuda-gates).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="${PUPA_CUDA_VENV:-$target/cuda-venv}"
out="${PUPA_CUDA_OUT:-$target/cuda-gates}"
stamp="$venv/.pupa-requirements"

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "check.sh: installing pinned CUDA wheels into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export PATH="$cuda/bin:$PATH"
mkdir -p "$out"
# The launcher's run-time compiler; `cargo test -p pupa-kernels --features cuda --test cuda_gpu`
# finds it with LD_LIBRARY_PATH="$cuda/lib" on a machine without a system CUDA.
echo "check.sh: CUDA 13.2 libraries (libnvrtc) in $cuda/lib" >&2
exec "$venv/bin/python" "$here/gates.py" --src "$here" --out "$out" --nvrtc "$cuda/lib/libnvrtc.so.13"
