#!/usr/bin/env bash
# For verifiers: build the image twice from clean copies of this source tree, at different
# absolute paths with different CARGO_HOMEs, and compare the SHA-384s (and with this checkout's).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh
exec cargo test --locked -p pupa-tests --test reproducible -- --nocapture
