#!/usr/bin/env bash
# Installs, builds and runs every test (unit, golden-logits and command-line tests), then the
# libtorch-free unit tests under ASan + UBSan and a 30-second smoke run of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DQTX_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j"$(nproc)"
bash scripts/sanitize.sh
QTX_FUZZ_JOBS=2 bash scripts/fuzz.sh 30
