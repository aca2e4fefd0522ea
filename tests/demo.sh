#!/usr/bin/env bash
# The main job: build the measured image, boot it, and show what it says.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh
cargo build --release --locked -q -p pupa-image -p pupa-host -p pupa-measurements
target/release/pupa-image build --out target/pupa
exec target/release/pupa-host demo --image target/pupa/pupa.fd --manifest target/pupa/manifest.json
