#!/usr/bin/env bash
# NVIDIA's own GPU verifier as an oracle for pupa (measurements/tests/verify_gpu_oracle.rs).
#
#   run.sh --setup          create (or reuse) the venv and install the pinned verifier; print its path
#   run.sh ORACLE-ARGS...   set up, then run oracle.py once (one JSON line on stdout)
#
# The venv lives in target/gpu-oracle-venv (override: PUPA_GPU_ORACLE_VENV). The first setup
# needs PyPI; later runs are offline. Needs python3 with venv/ensurepip (tests/bootstrap.sh
# installs python3-venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
venv="${PUPA_GPU_ORACLE_VENV:-$root/target/gpu-oracle-venv}"
# Pinned: the version measurements/testdata/gpu/SOURCE names (NVIDIA's last 2.x release).
pkg="nv-local-gpu-verifier==2.7.3"
# Its dependencies, pinned too (constraints.txt); a change of either reinstalls the venv.
constraints="$here/constraints.txt"
stamp="$venv/.pupa-oracle-$pkg-$(sha256sum "$constraints" | cut -c1-16)"

setup() {
  if [ -f "$stamp" ] && [ -x "$venv/bin/python" ]; then return 0; fi
  command -v python3 >/dev/null || { echo "gpu oracle: python3 not found; run tests/bootstrap.sh" >&2; exit 3; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    echo "gpu oracle: python3 has no venv/ensurepip; run tests/bootstrap.sh (apt-get install python3-venv)" >&2; exit 3; }
  mkdir -p "$(dirname "$venv")"
  # A concurrent test process may be installing too: one installs, the other waits.
  exec 9>"$venv.lock"
  flock 9
  if [ ! -f "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || { echo "gpu oracle: python3 -m venv failed; run tests/bootstrap.sh" >&2; exit 3; }
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" "$pkg" >&2 ||
      { echo "gpu oracle: pip install $pkg failed (PyPI reachable?)" >&2; exit 3; }
    (cd "$venv" && "$venv/bin/python" -W ignore -c "import verifier.cc_admin") >/dev/null 2>&1 ||
      { echo "gpu oracle: $pkg installed but does not import" >&2; exit 3; }
    touch "$stamp"
  fi
  flock -u 9
}

setup
if [ "${1:-}" = "--setup" ]; then echo "$venv"; exit 0; fi
exec "$venv/bin/python" "$here/oracle.py" "$@"
