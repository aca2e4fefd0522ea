#!/usr/bin/env bash
# Every test of the project: clippy (host and firmware), the Rust workspace (unit tests, host-process runtime tests, the
# real image booted under QEMU, reproducibility, the sev-snp-measure oracle), the Python client
# against the image under QEMU, the TON contract in
# a real TVM, and the CUDA compile gates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh

# One clean build, never rebuilt incrementally: incremental caches would only cost disk here.
export CARGO_INCREMENTAL=0
disk() { echo "-- disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free, target/ $(du -sh target 2>/dev/null | cut -f1)"; }
disk

echo "== clippy -D warnings (host crates, all targets; the firmware for its bare-metal target)"
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p pupa-guest --bin pupa-guest --features firmware \
  --target guest/x86_64-pupa.json -Zjson-target-spec \
  -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem -- -D warnings

disk
echo "== cargo test (workspace)"
cargo test --locked --workspace --no-fail-fast

disk
echo "== Python client (pip install ./clients/python, pytest against the image under QEMU)"
bash clients/python/test.sh

if [ -x contracts/test.sh ]; then
  echo "== contracts (TON sandbox)"
  bash contracts/test.sh
fi

if [ -x kernels/cuda/check.sh ]; then
  echo "== CUDA compile gates (sm_90a; no GPU here)"
  bash kernels/cuda/check.sh
fi
disk
echo "all.sh: all test suites passed"
