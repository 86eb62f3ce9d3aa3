#!/usr/bin/env bash
# Regenerates fuzz/corpus/fuzz_artifact/: tiny models trained for one short epoch and quantized by
# `qtx quantize` (an integer-only ViT, a hybrid ViT, an integer BERT), each packed as the fuzz target
# reads it: config.json, separator line, recipe.json, separator line, model.safetensors.
#   fuzz/make_artifact_seeds.sh [path/to/qtx]      (default build/qtx)
set -euo pipefail
cd "$(dirname "$0")/.."
QTX=${1:-build/qtx}
OUT=fuzz/corpus/fuzz_artifact
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
SMALL=(--hidden 16 --layers 1 --heads 2 --intermediate 32 --epochs 1 --limit 64 --batch 32 --threads 1)
"$QTX" train --task vit-fmnist --out "$T/vit" --patch 14 --distill-cnn 0 "${SMALL[@]}" >/dev/null
"$QTX" quantize --model "$T/vit" --recipe fqvit-8-8-4 --calib 8 --out "$T/vit-int" --threads 1 >/dev/null
"$QTX" quantize --model "$T/vit" --recipe sym-w4a8 --calib 8 --out "$T/vit-hybrid" --threads 1 >/dev/null
"$QTX" train --task bert-mlm --out "$T/mlm" --vocab-size 60 "${SMALL[@]}" >/dev/null
"$QTX" train --task bert-austen6 --init "$T/mlm" --out "$T/bert" --epochs 1 --limit 64 --batch 32 --threads 1 >/dev/null
"$QTX" quantize --model "$T/bert" --recipe fqvit-8-8-8 --calib 8 --out "$T/bert-int" --threads 1 >/dev/null
mkdir -p "$OUT"
for m in vit-int vit-hybrid bert-int; do
  { cat "$T/$m/config.json"; printf '\n--qtx-fuzz-next-file--\n'; cat "$T/$m/recipe.json"
    printf '\n--qtx-fuzz-next-file--\n'; cat "$T/$m/model.safetensors"; } >"$OUT/$m.seed"
done
ls -l "$OUT"
