#!/usr/bin/env bash
# The main job on a fresh machine: install, build, then evaluate the shipped reference models
# (FP32) and print their accuracy, speed and memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DQTX_BUILD_TESTS=OFF
echo "== vit-fmnist: Fashion-MNIST test split =="
./build/qtx eval --model models/vit-fmnist --data fmnist
echo "== bert-austen: austen-6 test split (+ masked-token accuracy) =="
./build/qtx eval --model models/bert-austen --data austen6 --mlm
