#!/usr/bin/env bash
# Installs, builds and runs every test (unit, golden-logits and command-line tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DQTX_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j"$(nproc)"
