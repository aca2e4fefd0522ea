#!/usr/bin/env bash
# Every test of the project: the Rust workspace (unit tests, host-process runtime tests, the
# real image booted under QEMU, reproducibility, the sev-snp-measure oracle), the TON contract in
# a real TVM, and the CUDA compile gates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh

echo "== cargo test (workspace)"
cargo test --locked --workspace --no-fail-fast

if [ -x contracts/test.sh ]; then
  echo "== contracts (TON sandbox)"
  bash contracts/test.sh
fi

if [ -x kernels/cuda/check.sh ]; then
  echo "== CUDA compile gates (sm_90a; no GPU here)"
  bash kernels/cuda/check.sh
fi
echo "all.sh: all test suites passed"
