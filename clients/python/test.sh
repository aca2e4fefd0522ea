#!/usr/bin/env bash
# The Python client's test: a venv (target/pupa-python-venv) with maturin, numpy and pytest,
# `pip install ./clients/python` (maturin builds the Rust extension), then the pytest suite
# against the real image booted under QEMU behind `pupa-host run`.
#
# The image: $PUPA_IMAGE, else the one the workspace tests build (target/pupa-test-release),
# else target/pupa/pupa.fd, else it is built here (`pupa-image build --out target/pupa`).
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
  for f in target/pupa-test-release/pupa.fd target/pupa/pupa.fd; do
    if [ -f "$f" ]; then PUPA_IMAGE="$PWD/$f"; break; fi
  done
fi
if [ -z "${PUPA_IMAGE:-}" ]; then
  echo "python client: building the image (target/pupa)"
  cargo run --locked -q --release -p pupa-image -- build --out target/pupa
  PUPA_IMAGE="$PWD/target/pupa/pupa.fd"
fi
export PUPA_IMAGE
echo "python client: pytest against $PUPA_IMAGE"
# Run from the tests' directory so that `import pupa` is the installed package.
cd clients/python
"$ROOT/$VENV/bin/python" -m pytest -q "$@"
