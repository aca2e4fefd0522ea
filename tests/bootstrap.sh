#!/usr/bin/env bash
# Install what pupa's commands need on a fresh Debian/Ubuntu machine, idempotently:
# QEMU (the guest boots as VM firmware under qemu-system-x86_64), Python venv support (for
# sev-snp-measure and the CUDA compile gates), and the Rust toolchain pinned in
# rust-toolchain.toml (rustup installs it on first use; done here explicitly).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

need_apt=()
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
  echo "bootstrap: rustup is required (https://rustup.rs); install it first" >&2
  exit 1
fi
# rust-toolchain.toml pins the channel and its components; this installs them if missing.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src
# The static pupa-worker of the Linux payload (tests/tests/linux_worker.rs): the pinned nightly
# ships no x86_64-unknown-linux-musl standard library, so a stable toolchain builds it.
rustup target list --toolchain 1.95.0 --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-musl$' \
  || rustup toolchain install 1.95.0 --profile minimal --target x86_64-unknown-linux-musl
echo "bootstrap: ok ($(qemu-system-x86_64 --version | head -1); $(rustc -V))"
