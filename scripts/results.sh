#!/usr/bin/env bash
# Regenerates docs/RESULTS.md: FP32 vs every quantization recipe on the shipped models, plus the
# LayerNorm-bits x attention-bits sweep (MinMax vs PTF vs LIS vs both). Long: run it as a
# command, not in CI. Usage: scripts/results.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-$(nproc)}
Q=./build/qtx
[ -x $Q ] || bash scripts/build.sh -DQTX_BUILD_TESTS=OFF
W=runs/results
mkdir -p $W
OUT=docs/RESULTS.md

acc() { sed -n 's/^accuracy *\([0-9.]*\)%.*/\1/p'; }

# eval_row MODEL_DIR -> accuracy
eval_acc() { $Q eval --model "$1" --threads "$T" 2>/dev/null | acc; }

# quant_row LABEL MODEL RECIPE FP_ACC
quant_row() {
  local label=$1 model=$2 recipe=$3 fp=$4 name
  name=$(basename "$model")-$(basename "$recipe" .json)
  local log=$W/$name.log
  $Q quantize --model "$model" --recipe "$recipe" --out "$W/$name" --threads "$T" >"$log" 2>&1
  local secs bytes a
  secs=$(sed -n 's/^calibration *[0-9]* samples, \([0-9.]*\) s.*/\1/p' "$log")
  bytes=$(stat -c %s "$W/$name/model.safetensors")
  a=$(eval_acc "$W/$name")
  printf '| %s | %.2f | %+.2f | %.2f | %.1f |\n' "$label" "$a" "$(echo "$a - $fp" | bc -l)" "$(echo "$bytes / 1000000" | bc -l)" "$secs"
}

# method_row LABEL MODEL RECIPE FP TAG QUANTIZE_ARGS... -> one row of the Liu et al. table
method_row() {
  local label=$1 model=$2 recipe=$3 fp=$4 tag=$5
  shift 5
  local name=$(basename "$model")-$recipe-$tag
  local log=$W/$name.log
  $Q quantize --model "$model" --recipe "$recipe" --out "$W/$name" --threads "$T" "$@" >"$log" 2>&1
  local secs rss bytes a
  secs=$(sed -n 's/^calibration *[0-9]* samples, \([0-9.]*\) s.*/\1/p' "$log")
  rss=$(sed -n 's/^calibration .*peak RSS \([0-9]*\) MB.*/\1/p' "$log")
  bytes=$(stat -c %s "$W/$name/model.safetensors")
  a=$(eval_acc "$W/$name")
  printf '| %s | %s | %.2f | %+.2f | %.2f | %.1f | %s |\n' "$recipe" "$label" "$a" "$(echo "$a - $fp" | bc -l)" \
    "$(echo "$bytes / 1000000" | bc -l)" "$secs" "$rss"
}

# Liu et al. vs MinMax, Percentile and EasyQuant on the same quantizers (sym-* recipes), the
# ablation, and mixed precision at the size of uniform W4 and W6.
liu_section() {
  local model=$1 fp=$2
  echo
  echo "### Liu et al. (docs/CALIBRATION.md): interval search vs MinMax, Percentile, EasyQuant"
  echo
  echo "Same quantizers in every row (per-tensor signed symmetric weights and inputs; LayerNorm and Softmax"
  echo "in float); rows differ only in how the intervals were chosen. Peak RSS of the whole \\`qtx quantize\\` process."
  echo
  echo "| recipe | method | accuracy % | drop vs FP | MB | calibration s | peak RSS MB |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for r in sym-w8a8 sym-w6a6 sym-w4a8 sym-w4a4 sym-w3a4; do
    method_row "MinMax" $model $r "$fp" minmax --method observer
    method_row "Percentile" $model $r "$fp" pct --method observer --observer percentile
    method_row "EasyQuant (cosine search)" $model $r "$fp" easyquant --method easyquant
    case $r in sym-w4a4|sym-w3a4)
      method_row "Liu: Pearson only" $model $r "$fp" liu-pearson --method liu --no-ranking --no-bias-correction
      method_row "Liu: Pearson + ranking" $model $r "$fp" liu-rank --method liu --no-bias-correction
      method_row "Liu, wider range alpha = 0.3" $model $r "$fp" liu-a03 --method liu --alpha 0.3
      method_row "Liu, alpha = 0.3, 2 rounds" $model $r "$fp" liu-a03r2 --method liu --alpha 0.3 --rounds 2 ;;
    esac
    method_row "Liu: Pearson + ranking + bias correction" $model $r "$fp" liu --method liu
  done
  method_row "Liu, mixed precision at W4 size (bits 3,4,5,6,8)" $model sym-w4a4 "$fp" liu-mp4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8
  method_row "Liu, mixed precision at W4 size, weights only" $model sym-w4a4 "$fp" liu-mp4w --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-weights-only
  method_row "Liu, mixed precision at W4 size, MSA on its output feature" $model sym-w4a4 "$fp" liu-mp4o --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-msa-output
  method_row "Liu, mixed precision at W6 size (bits 4..8)" $model sym-w6a6 "$fp" liu-mp6 --method liu --avg-bits 6
  local m=$(basename $model)
  mkdir -p docs/plots/$m
  cp $W/$m-sym-w4a4-liu-mp4/mixed_precision.svg docs/plots/$m/pareto_w4.svg
  cp $W/$m-sym-w6a6-liu-mp6/mixed_precision.svg docs/plots/$m/pareto_w6.svg
  echo
  echo "Mixed precision: Pareto frontiers [at W4 size](plots/$m/pareto_w4.svg), [at W6 size](plots/$m/pareto_w6.svg);"
  echo "chosen bits per module:"
  echo
  echo '```'
  cat $W/$m-sym-w4a4-liu-mp4/mixed_precision.txt
  echo '```'
}

# A fully quantized recipe with LayerNorm-input bits, attention bits, PTF and LIS switches.
sweep_recipe() {
  local ln=$1 attn=$2 ptf=$3 lis=$4 wb=$5 ab=$6 f
  f=$W/sweep-ln$ln-attn$attn-ptf$ptf-lis$lis-w$wb-a$ab.json
  local lnspec smspec
  if [ "$ptf" = 1 ]; then lnspec="{\"scheme\":\"ptf\",\"bits\":$ln,\"ptf_k\":3}"; else lnspec="{\"bits\":$ln}"; fi
  if [ "$lis" = 1 ]; then smspec="{\"scheme\":\"log2\",\"bits\":$attn}"; else smspec="{\"bits\":$attn}"; fi
  cat >"$f" <<JSON
{"name": "sweep ln$ln attn$attn ptf$ptf lis$lis w$wb a$ab",
 "roles": {"linear_weight": {"bits": $wb}, "linear_input": {"bits": $ab}, "qk_input": {"bits": $ab},
           "av_input": {"bits": $ab}, "attn_scores": {"bits": $ab}, "act_output": {"bits": $ab},
           "residual": {"bits": $ab}, "embedding": {"bits": $wb},
           "layernorm_input": $lnspec, "softmax_output": $smspec}}
JSON
  echo "$f"
}

{
  echo "# Results"
  echo
  echo "Regenerated by \`scripts/results.sh\` on $(uname -m), $(nproc) cores, $T threads, $(date -u +%Y-%m-%d)."
  echo "Accuracy on the full test split (Fashion-MNIST 10 000 images; austen-6 test passages);"
  echo "calibration on the default sample of the training split (1000 images / 512 passages, seed 0)."
  echo "Model bytes = size of model.safetensors."
  for model in models/vit-fmnist models/bert-austen; do
    $Q stats --model $model --out docs/plots/$(basename $model) --calib 256 --threads "$T" >/dev/null
    fp=$(eval_acc $model)
    fpb=$(stat -c %s $model/model.safetensors)
    echo
    echo "## $(basename $model)"
    echo
    echo "What PTF and LIS fight here: [per-channel LayerNorm-input ranges](plots/$(basename $model)/ln_input_ranges.svg),"
    echo "[attention probabilities by log2 bin](plots/$(basename $model)/attention_log2_hist.svg),"
    echo "[table per LayerNorm](plots/$(basename $model)/activation_stats.md)."
    echo
    echo "| recipe | accuracy % | drop vs FP | MB | calibration s |"
    echo "| --- | --- | --- | --- | --- |"
    printf '| FP32 | %.2f | +0.00 | %.2f | - |\n' "$fp" "$(echo "$fpb / 1000000" | bc -l)"
    for r in minmax-w8a8 percentile-w8a8 omse-w8a8 minmax-8-8-8 minmax-8-8-4 fqvit-8-8-8 fqvit-8-8-4 ptf-8-8-4 lis-8-8-4 w6a6 w4a8; do
      quant_row "$r" $model $r "$fp"
    done
    echo
    echo "### Sweep: LayerNorm-input bits x attention bits (fully quantized, W8A8 elsewhere unless noted)"
    echo
    echo "| LN bits | attn bits | W/A | MinMax | PTF | LIS | PTF+LIS (FQ-ViT) |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for cfg in "8 8 8 8" "8 4 8 8" "6 3 8 8" "6 8 8 8" "4 8 8 8" "4 4 8 8" "4 3 8 8" "4 2 8 8" "8 2 8 8" "4 4 4 4"; do
      set -- $cfg
      row="| $1 | $2 | W$3A$4 |"
      for pl in "0 0" "1 0" "0 1" "1 1"; do
        set -- $cfg $pl
        f=$(sweep_recipe $1 $2 $5 $6 $3 $4)
        name=$(basename $model)-$(basename $f .json)
        $Q quantize --model $model --recipe $f --out $W/$name --threads $T >/dev/null 2>&1
        a=$(eval_acc $W/$name)
        row="$row $(printf '%.2f (%+.2f)' "$a" "$(echo "$a - $fp" | bc -l)") |"
      done
      echo "$row"
    done
    liu_section $model "$fp"
  done
} >$OUT.tmp
mv $OUT.tmp $OUT
echo "wrote $OUT"
