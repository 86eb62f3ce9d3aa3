#!/usr/bin/env bash
# The main job on a fresh machine: install, build, evaluate the shipped reference models (FP32),
# then quantize the default model (vit-fmnist) with FQ-ViT 8/8/4 on its calibration sample and
# show FP32 next to the quantized model (fake-quant) with sizes; finally run the quantized model in
# the integer-only runtime (accuracy, agreement with fake-quant, speed next to libtorch FP32).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DQTX_BUILD_TESTS=OFF
Q=./build/qtx
echo "== bert-austen (FP32): austen-6 test split + masked-token accuracy =="
$Q eval --model models/bert-austen --data austen6 --mlm
echo "== vit-fmnist (FP32): Fashion-MNIST test split =="
$Q eval --model models/vit-fmnist --data fmnist | tee runs-fp.txt
echo "== quantizing vit-fmnist with FQ-ViT 8/8/4 (PTF LayerNorm inputs, Log-Int-Softmax) =="
$Q quantize --model models/vit-fmnist --recipe fqvit-8-8-4 --out runs/vit-fmnist-fqvit-8-8-4
echo "== vit-fmnist FQ-ViT 8/8/4 (fake-quant): Fashion-MNIST test split =="
$Q eval --model runs/vit-fmnist-fqvit-8-8-4 --data fmnist | tee runs-q.txt
fp=$(sed -n 's/^accuracy *\([0-9.]*\)%.*/\1/p' runs-fp.txt)
q=$(sed -n 's/^accuracy *\([0-9.]*\)%.*/\1/p' runs-q.txt)
rm -f runs-fp.txt runs-q.txt
mb() { stat -c %s "$1" | awk '{printf "%.2f", $1 / 1e6}'; }
printf '\nvit-fmnist   FP32 %s%% (%s MB)   ->   FQ-ViT 8/8/4 %s%% (%s MB)\n' "$fp" \
  "$(mb models/vit-fmnist/model.safetensors)" "$q" "$(mb runs/vit-fmnist-fqvit-8-8-4/model.safetensors)"
echo "== vit-fmnist FQ-ViT 8/8/4 in the integer-only runtime (oneDNN int8 GEMMs, no libtorch) =="
$Q eval --model runs/vit-fmnist-fqvit-8-8-4 --data fmnist --engine int
$Q parity --model runs/vit-fmnist-fqvit-8-8-4 --data fmnist
echo "== speed: integer runtime vs libtorch FP32, same inputs and threads (median of 10) =="
$Q bench --model runs/vit-fmnist-fqvit-8-8-4 --float-model models/vit-fmnist
