#!/usr/bin/env bash
# The Python client's test: a venv (target/pupa-python-venv) with maturin, numpy and pytest,
# `pip install ./clients/python` (maturin builds the Rust extension), then the pytest suite
# against the real image booted under QEMU behind `pupa-host run`.
#
# The image: $PUPA_IMAGE, else built here from the current sources into the directory the
# workspace tests use (`pupa-image build --out target/pupa-test-release`; a no-op when current).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

VENV=target/pupa-python-venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "python client: creating $VENV"
  python3 -m venv "$VENV"
fi
# maturin (and the cargo it runs) must be on PATH for pip's build step.
export PATH="$PWD/$VENV/bin:$PATH"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.7,<2" "numpy>=1.21" "pytest>=7"

echo "python client: pip install ./clients/python"
# --no-build-isolation: build with the maturin above instead of fetching another copy.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./clients/python

cargo build --locked -q -p pupa-host --bin pupa-host
export PUPA_HOST_BIN="$PWD/target/debug/pupa-host"
if [ -z "${PUPA_IMAGE:-}" ]; then
  # Always from the current sources, into the directories the workspace tests use (an up-to-date
  # image is a no-op rebuild; a stale one is never used).
  echo "python client: building the image (target/pupa-test-release)"
  cargo run --locked -q --release -p pupa-image -- build --out target/pupa-test-release \
    --target-dir target/pupa-test-fw-release
  PUPA_IMAGE="$PWD/target/pupa-test-release/pupa.fd"
fi
export PUPA_IMAGE
echo "python client: pytest against $PUPA_IMAGE"
# Run from the tests' directory so that `import pupa` is the installed package.
cd clients/python
"$ROOT/$VENV/bin/python" -m pytest -q "$@"
