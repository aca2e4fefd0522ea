#!/usr/bin/env bash
# Runs the payment contract's sandbox tests. Needs Node >= 18 and, on the first run, the
# npm registry (npm ci installs the pinned versions from package-lock.json).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node scripts/build.js
node --test tests/
