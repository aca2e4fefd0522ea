#!/usr/bin/env bash
# CUDA compile gates for pupa's Hopper kernels (no GPU needed).
#
# Creates (once) a venv with the pinned CUDA 13.2 PyPI wheels (requirements.txt), compiles every
# kernel for sm_90a with `nvcc -cubin -Xptxas -v`, disassembles it with `cuobjdump -sass`, prints a
# table (kernel, registers, shared memory, spills, HGMMA count) and exits non-zero if any kernel
# spills, exceeds its register budget, has no HGMMA (tensor-core kernels), or ptxas reports
# C7511/C7515 (wgmma serialised). Both build paths are gated: nvcc (build time) and NVRTC (the
# launcher's run-time path, PTX assembled by ptxas as the driver would), and so are the cubins
# for NVIDIA's R535 driver (CUDA 12.9 NVRTC and ptxas from requirements-cu12.txt, in a second
# venv; `CudaKernels::with_cubins` loads them). Also checks that wgmma_gen.cuh matches
# gen_wgmma.py.
#
# Environment: PUPA_CUDA_VENV (default ${CARGO_TARGET_DIR:-<repo>/target}/cuda-venv; the CUDA 12
#              one is PUPA_CUDA_VENV-cu12),
#              PUPA_CUDA_OUT   (default ${CARGO_TARGET_DIR:-<repo>/target}/cuda-gates).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="${PUPA_CUDA_VENV:-$target/cuda-venv}"
out="${PUPA_CUDA_OUT:-$target/cuda-gates}"

# install_venv VENV REQUIREMENTS: the pinned wheels, once per requirements file.
install_venv() {
  if [ ! -x "$1/bin/python" ] || ! cmp -s "$2" "$1/.pupa-requirements"; then
    echo "check.sh: installing pinned CUDA wheels ($(basename "$2")) into $1" >&2
    python3 -m venv "$1"
    "$1/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2"
    cp "$2" "$1/.pupa-requirements"
  fi
}
install_venv "$venv" "$here/requirements.txt"
install_venv "$venv-cu12" "$here/requirements-cu12.txt"
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export PATH="$cuda/bin:$PATH"
mkdir -p "$out"
# The launcher's run-time compiler; `cargo test -p pupa-kernels --features cuda --test cuda_gpu`
# finds it with LD_LIBRARY_PATH="$cuda/lib" on a machine without a system CUDA.
echo "check.sh: CUDA 13.2 libraries (libnvrtc) in $cuda/lib" >&2
cu12="$("$venv-cu12/bin/python" -c 'import nvidia, os; print(list(nvidia.__path__)[0])')"
exec "$venv/bin/python" "$here/gates.py" --src "$here" --out "$out" --nvrtc "$cuda/lib/libnvrtc.so.13" \
  --cu12-nvrtc "$cu12/cuda_nvrtc/lib/libnvrtc.so.12" --cu12-ptxas "$cu12/cuda_nvcc/bin/ptxas"
