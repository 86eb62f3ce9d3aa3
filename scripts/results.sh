#!/usr/bin/env bash
# Regenerates docs/RESULTS.md: FP32 vs every quantization recipe on the shipped models, the
# LayerNorm-bits x attention-bits sweep (MinMax vs PTF vs LIS vs both) and Liu et al.'s tables.
# Long (hours): run it as a command, not in CI.
#
#   scripts/results.sh [THREADS] [MODEL_NAME...]
#
# Every row is cached in docs/results-rows/ (committed, so that a table filled over several
# sittings survives between machines), keyed by the model's bytes, the row's arguments and the
# source of everything that decides a row's numbers (formats, models, quant, calib, data, eval,
# tasks; rows without an interval search leave out the search's own files, so editing Liu et
# al.'s method recomputes only the search rows). A rerun recomputes only rows whose key changed;
# any change to the model or to that code invalidates the affected rows (stale row files can be deleted: `git rm` what a rerun
# did not read — see RESULTS_PRUNE below). Quantized folders and logs go to runs/results/. Naming
# models (e.g. `bert-austen`) computes only their rows and writes runs/results/partial-NAME.md;
# without names every model runs and docs/RESULTS.md is written.
#
# RESULTS_JOBS=N computes up to N missing rows at once (each with THREADS threads), then writes
# the table from the cache: on 2 cores, `RESULTS_JOBS=2 scripts/results.sh 1` halves the wall time
# of a cold run. Rows computed side by side report longer calibration seconds than alone.
# RESULTS_FIRST="PATTERN..." (extended regexes on the row names, separated by spaces) computes the
# rows matching the first pattern first, then those matching the second, and so on, e.g. `-sym-`
# for the Liu et al. rows; the table is written only when every row exists either way.
# RESULTS_PARTIAL=1 computes nothing: it writes the table from the rows cached so far, every
# missing one marked "not computed" and counted at the top (a table filled over several sittings).
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenBLAS picks its kernels for the CPU unless OPENBLAS_CORETYPE names a set. The interval-search
# rows depend on them: GEMMs summed in another order move near-tied candidates, and the choice of
# every later layer with them (vit-fmnist sym-w4a4 Liu: 88.99 % with the kernels OpenBLAS picks on
# AMD Zen 4 and Zen 5, 88.75 % with OPENBLAS_CORETYPE=Haswell on Zen 5). The cached rows were
# computed with OpenBLAS's own pick, so a pinned set is dropped here.
unset OPENBLAS_CORETYPE
T=${1:-$(nproc)}
shift || true
[ -x build/qtx ] || bash scripts/build.sh -DQTX_BUILD_TESTS=OFF
W=runs/results
ROWS=docs/results-rows
mkdir -p $W $ROWS
# A private copy, so rebuilding qtx while this runs cannot pull the binary from under it.
Q=$W/qtx.$$
cp build/qtx $Q
trap 'rm -f $Q $W/missing.$$' EXIT
if [ $# -gt 0 ]; then MODELS=(); for m in "$@"; do MODELS+=(models/$m); done; OUT=$W/partial-$(IFS=-; echo "$*").md
else MODELS=(models/vit-fmnist models/bert-austen); OUT=docs/RESULTS.md; fi
for m in "${MODELS[@]}"; do [ -f $m/config.json ] || { echo "results.sh: no model at $m" >&2; exit 2; }; done

# What decides a row's numbers: the tracked source of these folders plus any uncommitted edit,
# less the front ends of the integer runtime (they never touch a row).
SRC=(src/formats src/models src/quant src/calib src/data src/eval src/tasks
     ':!src/tasks/runtime_task.*' ':!src/tasks/predict_task.*' ':!src/tasks/blas_baseline.*')
code_of() { { git ls-files -s "$@"; git diff HEAD -- "$@"; } | sha1sum | cut -c1-12; }
CODE=$(code_of "${SRC[@]}")
# Rows that search no intervals (--method observer, FP32) never run the interval search, the
# similarity measures, mixed precision or its knapsack (src/calib/method.cpp calls them only for
# liu / easyquant): their key leaves those files out.
OBS_CODE=$(code_of "${SRC[@]}" ':!src/calib/interval_search.*' ':!src/calib/similarity.*' \
                   ':!src/calib/mixed_precision.*' ':!src/calib/knapsack.*')
# For a code state listed in scripts/results-code-aliases (recorded when both hashes described
# the same quantization code, e.g. when a file was left out of a key), rows under the old hash
# are found and renamed instead of recomputed.
alias_of() { sed -n "s/^$1 \([0-9a-f]*\)$/\1/p" scripts/results-code-aliases 2>/dev/null || true; }
ALIAS=$(alias_of $CODE)
OBS_ALIAS=$(alias_of $OBS_CODE)
declare -A MODEL_HASH
model_hash() { [ -n "${MODEL_HASH[$1]:-}" ] || MODEL_HASH[$1]=$(cat $1/*.json $1/model.safetensors | sha1sum | cut -c1-12); echo "${MODEL_HASH[$1]}"; }

# A row's key: its name, the model's bytes, the code, the threads, its arguments and the content
# of any file among them (a recipe JSON), so a recipe edited in place is recomputed.
row_key() {
  local code=$1 name=$2 model=$3 files="" a; shift 3
  for a in "$@"; do [ ! -f "$a" ] || files="$files $(sha1sum <"$a" | cut -c1-12)"; done
  echo "$name $(model_hash $model) $code $T $*$files" | sha1sum | cut -c1-16
}
# row_file FILE_NAME KEY_NAME MODEL ARGS... -> the cache file of that row (an aliased one renamed to it)
row_file() {
  local file=$1; shift
  local code=$OBS_CODE alias=$OBS_ALIAS a
  for a in "$@"; do case $a in liu|easyquant) code=$CODE alias=$ALIAS ;; esac; done
  local f="$ROWS/$file.$(row_key $code "$@").row"
  if [ ! -s "$f" ] && [ -n "$alias" ]; then
    local old="$ROWS/$file.$(row_key $alias "$@").row" x
    if [ -s "$old" ]; then
      mv "$old" "$f"
      # and what is kept beside it (mixed-precision tables and plots, per-sample predictions)
      for x in "${old%.row}".*; do [ -e "$x" ] && mv "$x" "${f%.row}${x#"${old%.row}"}"; done
    fi
  fi
  echo "$f"
}

acc() { sed -n 's/^accuracy *\([0-9.]*\)%.*/\1/p'; }
# "accuracy  89.02% (8902/10000)" -> "89.02 10000": the accuracy and the test split's size
acc_total() { sed -n 's/^accuracy *\([0-9.]*\)% *([0-9]*\/\([0-9]*\)).*/\1 \2/p'; }

# eval_acc MODEL_DIR -> accuracy (not cached: callers cache the row it goes into)
eval_acc() { $Q eval --model "$1" --threads "$T" 2>/dev/null | acc; }

# fp_acc MODEL -> FP32 accuracy, cached like a row
fp_acc() {
  local model=$1 f a
  f=$(row_file fp-$(basename $model) fp $model)
  [ -z "${USED:-}" ] || echo "$f" >>"$USED"
  # The row holds "accuracy test-size"; one with the accuracy alone (older) is recomputed.
  if ! { [ -s $f ] && [ "$(wc -w <$f)" -ge 2 ]; }; then
    a=$($Q eval --model "$model" --threads "$T" 2>/dev/null | acc_total)
    [ -n "$a" ] || { echo "results.sh: qtx eval gave no accuracy for $model" >&2; exit 1; }
    echo "$a" >$f
  fi
  cut -d' ' -f1 $f
}
# test_size MODEL -> samples in its test split (read from the FP row's evaluation)
test_size() { fp_acc $1 >/dev/null; cut -d' ' -f2 "$(row_file fp-$(basename $1) fp $1)"; }

# compute_row FILE NAME MODEL QUANTIZE_ARGS...: quantizes, evaluates, writes the row to FILE.
compute_row() {
  local f=$1 name=$2 model=$3; shift 3
  echo "[results] $name ..." >&2
  local log=$W/$name.log
  $Q quantize --model "$model" --out "$W/$name" --threads "$T" "$@" >"$log" 2>&1 ||
    { echo "results.sh: qtx quantize failed for $name (see $log)" >&2; return 1; }
  local secs rss bytes a
  secs=$(sed -n 's/^calibration *[0-9]* samples, \([0-9.]*\) s.*/\1/p' "$log")
  rss=$(sed -n 's/^calibration .*peak RSS \([0-9]*\) MB.*/\1/p' "$log")
  bytes=$(stat -c %s "$W/$name/model.safetensors")
  a=$(eval_acc "$W/$name")
  [ -n "$a" ] || { echo "results.sh: qtx eval gave no accuracy for $name" >&2; return 1; }
  # Mixed-precision rows keep their bit table and Pareto plot next to the row (the docs show them).
  for x in txt svg; do [ ! -f "$W/$name/mixed_precision.$x" ] || cp "$W/$name/mixed_precision.$x" "${f%.row}.mixed_precision.$x"; done
  basename "$f" >"$W/$name/row.key"  # whose artifact this is (pred_of checks it)
  echo "$a ${secs:--} ${rss:--} $bytes" >"$f.tmp" && mv "$f.tmp" "$f"
}

PARTIAL=${RESULTS_PARTIAL:-}
MISSING=$W/missing.$$
: >"$MISSING"
# While LISTING is set, a missing row is appended to $LISTING (one job per line) and answered
# with a placeholder; the pass that follows the jobs reads every row from the cache.
LISTING=
# quantize_cached NAME MODEL QUANTIZE_ARGS... -> "accuracy seconds rss bytes" (cached)
quantize_cached() {
  local name=$1 model=$2; shift 2
  local f; f=$(row_file $name $name $model "$@")
  [ -z "${USED:-}" ] || echo "$f" >>"$USED"
  if [ ! -s $f ]; then
    if [ -n "$LISTING" ]; then echo "$f $name $model $*" >>"$LISTING"; echo "0 - - 0"; return; fi
    if [ -n "$PARTIAL" ]; then echo "$name" >>"$MISSING"; echo "nc - - 0"; return; fi
    compute_row "$f" "$name" "$model" "$@" || exit 1
  fi
  cat $f
}

# quant_row LABEL MODEL RECIPE FP_ACC
quant_row() {
  local label=$1 model=$2 recipe=$3 fp=$4 r a secs rss bytes
  r=$(quantize_cached "$(basename "$model")-$(basename "$recipe" .json)" $model --recipe "$recipe")
  read -r a secs rss bytes <<<"$r"
  [ "$a" != nc ] || { echo "| $label | not computed | | | |"; return; }
  printf '| %s | %.2f | %+.2f | %.2f | %s |\n' "$label" "$a" "$(echo "$a - $fp" | bc -l)" "$(echo "$bytes / 1000000" | bc -l)" "$secs"
}

# method_row LABEL MODEL RECIPE FP TAG QUANTIZE_ARGS... -> one row of the Liu et al. table
method_row() {
  local label=$1 model=$2 recipe=$3 fp=$4 tag=$5 r a secs rss bytes
  shift 5
  r=$(quantize_cached "$(basename "$model")-$recipe-$tag" $model --recipe "$recipe" "$@")
  read -r a secs rss bytes <<<"$r"
  [ "$a" != nc ] || { echo "| $recipe | $label | not computed | | | | |"; return; }
  printf '| %s | %s | %.2f | %+.2f | %.2f | %s | %s |\n' "$recipe" "$label" "$a" "$(echo "$a - $fp" | bc -l)" \
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
  echo "in float); rows differ only in how the intervals were chosen. Peak RSS of the whole \`qtx quantize\` process."
  echo "Mixed precision is sized by nominal bits (Σ weights × bits / 8 over the linear layers, the"
  echo "paper's model size): its budget is that of uniform W4 (or W6). MB is the file, which stores 5–8-bit codes one"
  echo "per byte and ≤ 4-bit codes two per byte (docs/FORMAT.md), so W6 and mixed-precision files are larger than"
  echo "their nominal size."
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
    # Each candidate interval scored with its own bias correction (docs/CALIBRATION.md), where
    # vit-fmnist has its targets.
    # And 3 rounds (methods.md: also try R = 3), where vit-fmnist has its targets.
    case $r-$(basename $model) in sym-w4a4-vit-fmnist|sym-w3a4-vit-fmnist)
      method_row "Liu, bias correction inside the search (--correct-in-search)" $model $r "$fp" liu-cis --method liu --correct-in-search
      method_row "Liu, 3 rounds (methods.md: also try R = 3)" $model $r "$fp" liu-r3 --method liu --rounds 3 ;;
    esac
    # One more setting behind vit-fmnist's W4A4 target (BERT has none; it costs 2–4 rows).
    if [ $r = sym-w4a4 ] && [ "$(basename $model)" = vit-fmnist ]; then
      method_row "Liu, candidates scored on all calibration tokens" $model $r "$fp" liu-all --method liu --search-tokens 0
      # The same comparison on two other calibration samples (--seed): is the shortfall noise?
      for s in 1 2; do
        method_row "MinMax, calibration seed $s" $model $r "$fp" minmax-s$s --method observer --seed $s
        method_row "Liu: Pearson + ranking + bias correction, calibration seed $s" $model $r "$fp" liu-s$s --method liu --seed $s
        method_row "Liu, bias correction inside the search, calibration seed $s" $model $r "$fp" liu-cis-s$s --method liu --correct-in-search --seed $s
        method_row "Liu, 3 rounds, calibration seed $s" $model $r "$fp" liu-r3-s$s --method liu --rounds 3 --seed $s
        method_row "Liu, mixed precision at W4 size on the model's output, calibration seed $s" $model $r "$fp" liu-mp4m-s$s --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-model-output --seed $s
      done
    fi
  done
  method_row "Liu, mixed precision at W4 size (bits 3,4,5,6,8)" $model sym-w4a4 "$fp" liu-mp4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8
  method_row "Liu, mixed precision at W4 size, weights only" $model sym-w4a4 "$fp" liu-mp4w --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-weights-only
  method_row "Liu, mixed precision at W4 size, MSA on its output feature" $model sym-w4a4 "$fp" liu-mp4o --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-msa-output
  method_row "Liu, mixed precision at W4 size, weights only, MSA on its output feature" $model sym-w4a4 "$fp" liu-mp4wo --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-weights-only --mp-msa-output
  method_row "Liu, mixed precision at W4 size, every module on the model's output" $model sym-w4a4 "$fp" liu-mp4m --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-model-output
  method_row "Liu, mixed precision at W6 size (bits 4..8)" $model sym-w6a6 "$fp" liu-mp6 --method liu --avg-bits 6
  method_row "Liu, mixed precision at W6 size, every module on the model's output" $model sym-w6a6 "$fp" liu-mp6m --method liu --avg-bits 6 --mp-model-output
  [ "$(basename $model)" != vit-fmnist ] || probe_section $model "$fp"
  local m=$(basename $model) mp4 mp6
  [ -z "$LISTING" ] || return 0
  mp4=$(row_file $m-sym-w4a4-liu-mp4 $m-sym-w4a4-liu-mp4 $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8)
  mp6=$(row_file $m-sym-w6a6-liu-mp6 $m-sym-w6a6-liu-mp6 $model --recipe sym-w6a6 --method liu --avg-bits 6)
  if [ ! -s "$mp4" ] || [ ! -s "$mp6" ]; then echo; echo "Mixed precision: Pareto frontiers and chosen bits not computed yet."; return 0; fi
  mkdir -p docs/plots/$m
  cp "${mp4%.row}.mixed_precision.svg" docs/plots/$m/pareto_w4.svg
  cp "${mp6%.row}.mixed_precision.svg" docs/plots/$m/pareto_w6.svg
  echo
  echo "Mixed precision: Pareto frontiers [at W4 size](plots/$m/pareto_w4.svg), [at W6 size](plots/$m/pareto_w6.svg);"
  echo "chosen bits per module:"
  echo
  echo '```'
  cat "${mp4%.row}.mixed_precision.txt"
  echo '```'
  # The same budget with every module measured on the model's output (--mp-model-output).
  local mp4m
  mp4m=$(row_file $m-sym-w4a4-liu-mp4m $m-sym-w4a4-liu-mp4m $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-model-output)
  [ -s "$mp4m" ] || return 0
  echo
  echo "The same budget with every module measured on the model's output (\`--mp-model-output\`, not the paper's Ω; docs/CALIBRATION.md):"
  echo
  echo '```'
  cat "${mp4m%.row}.mixed_precision.txt"
  echo '```'
}

# probe_recipe MODEL TAG ROLE_BITS OVERRIDES -> sym-w4a4 as a JSON file, ROLE_BITS ("role bits"
# pairs) raising whole roles and OVERRIDES (JSON objects) single sites.
probe_recipe() {
  local model=$1 tag=$2 raise=$3 over=$4 f roles="" r bits
  mkdir -p $W/recipes-$(basename $model)
  f=$W/recipes-$(basename $model)/sym-w4a4-probe-$tag.json
  for r in linear_weight linear_input qk_input softmax_output av_input; do
    bits=4
    case " $raise " in *" $r 8 "*) bits=8 ;; esac
    roles="$roles${roles:+, }\"$r\": {\"bits\": $bits, \"symmetric\": true, \"granularity\": \"tensor\"}"
  done
  cat >"$f.$$" <<JSON
{"name": "sym-w4a4 probe $tag", "roles": {$roles}, "overrides": [$over]}
JSON
  if cmp -s "$f.$$" "$f"; then rm -f "$f.$$"; else mv "$f.$$" "$f"; fi
  echo "$f"
}

# Which quantizers cost sym-w4a4 its accuracy: MinMax with one group of them at 8 bits.
probe_section() {
  local model=$1 fp=$2 m base layers over i a f tag label raise
  m=$(basename $model)
  layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' $model/config.json)
  base=$(acc_of $m-sym-w4a4-minmax $model --recipe sym-w4a4 --method observer)
  echo
  echo "Where W4A4 loses its accuracy: MinMax \`sym-w4a4\` with one group of quantizers raised to 8 bits"
  echo "(recipe JSON files written by the script; the rest at 4 bits). Gain = points won back over plain sym-w4a4 ($base)."
  echo
  echo "| at 8 bits | accuracy % | drop vs FP | gain |"
  echo "| --- | --- | --- | --- |"
  for tag in weights inputs fc2-input fc1-input qkv-input out-input qk probs v edges; do
    raise="" over=""
    case $tag in
      weights) raise="linear_weight 8"; label="every linear weight" ;;
      inputs) raise="linear_input 8"; label="every linear layer's input" ;;
      fc2-input) label="fc2's input (the GELU output)"
        for ((i = 0; i < layers; ++i)); do over="$over${over:+, }{\"pattern\": \"layer.$i.output.dense\", \"role\": \"linear_input\", \"bits\": 8}"; done ;;
      fc1-input) label="fc1's input"; over='{"pattern": "intermediate.dense", "role": "linear_input", "bits": 8}' ;;
      qkv-input) label="the query, key and value inputs"
        for i in query key value; do over="$over${over:+, }{\"pattern\": \"attention.attention.$i\", \"role\": \"linear_input\", \"bits\": 8}"; done ;;
      out-input) label="the attention output projection's input"; over='{"pattern": "attention.output.dense", "role": "linear_input", "bits": 8}' ;;
      qk) raise="qk_input 8"; label="both operands of Q·Kᵀ" ;;
      probs) raise="softmax_output 8"; label="the attention probabilities" ;;
      v) raise="av_input 8"; label="V" ;;
      edges) label="the patch projection's and the classifier's inputs"
        over='{"pattern": "patch_embeddings.projection", "role": "linear_input", "bits": 8}, {"pattern": "classifier", "role": "linear_input", "bits": 8}' ;;
    esac
    f=$(probe_recipe $model $tag "$raise" "$over")
    a=$(acc_of $m-sym-w4a4-probe-$tag $model --recipe $f)
    if [ "$a" = nc ]; then echo "| $label | not computed | | |"; continue; fi
    printf '| %s | %.2f | %+.2f | %+.2f |\n' "$label" $a "$(echo "$a - $fp" | bc -l)" "$(echo "$a - $base" | bc -l)"
  done
}

# A fully quantized recipe with LayerNorm-input bits, attention bits, PTF and LIS switches.
# As in FQ-ViT's code (vit_quant.py: qact1 after the position add, qact2 / qact4 after the two
# residual adds, all in the LayerNorm calibration mode), each residual sum is quantized once,
# by the LayerNorm-input quantizer: the residual role takes the LayerNorm-input spec (bits and
# scheme), so "LayerNorm-input bits" are the residual stream's bits. BERT is post-norm: its
# LayerNorm outputs (the residual stream there, and the next layer's linear input) stay uniform
# at the activation bits, as FQ-ViT quantizes a LayerNorm's output (qact1 / qact3).
sweep_recipe() {
  local model=$1 ln=$2 attn=$3 ptf=$4 lis=$5 wb=$6 ab=$7 f over=""
  mkdir -p $W/recipes-$(basename $model)
  f=$W/recipes-$(basename $model)/sweep-ln$ln-attn$attn-ptf$ptf-lis$lis-w$wb-a$ab.json
  local lnspec smspec
  if [ "$ptf" = 1 ]; then lnspec="{\"scheme\":\"ptf\",\"bits\":$ln,\"ptf_k\":3}"; else lnspec="{\"bits\":$ln}"; fi
  if [ "$lis" = 1 ]; then smspec="{\"scheme\":\"log2\",\"bits\":$attn}"; else smspec="{\"bits\":$attn}"; fi
  grep -q '"model_type": *"bert"' $model/config.json &&
    over=", \"overrides\": [{\"pattern\": \"LayerNorm\", \"role\": \"residual\", \"scheme\": \"uniform\", \"bits\": $ab}]"
  # Written beside and moved in only when it changed: a job may be reading the old one.
  cat >"$f.$$" <<JSON
{"name": "sweep ln$ln attn$attn ptf$ptf lis$lis w$wb a$ab",
 "roles": {"linear_weight": {"bits": $wb}, "linear_input": {"bits": $ab}, "qk_input": {"bits": $ab},
           "av_input": {"bits": $ab}, "attn_scores": {"bits": $ab}, "act_output": {"bits": $ab},
           "residual": $lnspec, "embedding": {"bits": $wb},
           "layernorm_input": $lnspec, "softmax_output": $smspec}$over}
JSON
  if cmp -s "$f.$$" "$f"; then rm -f "$f.$$"; else mv "$f.$$" "$f"; fi
  echo "$f"
}

# acc_of NAME MODEL QUANTIZE_ARGS... -> the accuracy of that (cached) row
acc_of() { local r; r=$(quantize_cached "$@"); echo "${r%% *}"; }
# pred_of NAME MODEL QUANTIZE_ARGS... -> a file with that row's per-sample outcome on the test
# split (one line of 0/1, 1 = correct, in data order), cached beside the row; NAME "fp" is the
# float model. The row's artifact is evaluated again with --predictions; it is recomputed first
# if it is missing or not the row's (its row.key, or for older artifacts its test accuracy).
# Empty (no interval) while listing jobs or writing a partial table.
# HELDOUT=1 in the environment: the same on the training split less the default calibration
# sample (`qtx eval --split train --exclude-calib N`, N = qtx quantize's default 1000 images /
# 512 passages), cached as .heldoutN.pred.
pred_of() {
  local name=$1 model=$2; shift 2
  local f p a n dir=$W/$name ev=() log
  if [ "$name" = fp ]; then f=$(row_file fp-$(basename $model) fp $model); dir=$model
  else f=$(row_file $name $name $model "$@"); fi
  p=${f%.row}.pred
  if [ -n "${HELDOUT:-}" ]; then
    # qtx quantize's default sample (seed 0), which every compared row uses (checked below
    # against the artifact's calibration.json where it has one).
    n=$(grep -q '"model_type": *"bert"' $model/config.json && echo 512 || echo 1000)
    p=${f%.row}.heldout$n.pred
    ev=(--split train --exclude-calib $n)
  fi
  [ -z "${USED:-}" ] || echo "$p" >>"$USED"
  if [ ! -s "$p" ]; then
    if [ -n "$LISTING" ] || [ -n "$PARTIAL" ] || [ ! -s "$f" ]; then echo ""; return; fi
    a=$(cut -d' ' -f1 $f)
    log=$W/$name.pred.log
    if [ "$name" != fp ]; then
      # The artifact must be the row's: written for this row key (compute_row records it), or,
      # from before keys were recorded, the row's accuracy on the test split.
      if [ ! -f "$dir/model.safetensors" ] ||
         { [ -f "$dir/row.key" ] && [ "$(cat "$dir/row.key")" != "$(basename "$f")" ]; } ||
         { [ ! -f "$dir/row.key" ] && [ "$($Q eval --model $dir --threads $T 2>/dev/null | acc)" != "$a" ]; }; then
        echo "[results] $name: artifact missing or not this row's, recomputing it for its predictions" >&2
        compute_row "$f" "$name" "$model" "$@" || exit 1
        [ "$(cut -d' ' -f1 $f)" = "$a" ] ||
          { echo "results.sh: $name recomputed to $(cut -d' ' -f1 $f) %, the table printed $a %: rerun the script" >&2; exit 1; }
      fi
      if [ -n "${HELDOUT:-}" ] && [ -f "$dir/calibration.json" ] &&
         ! { grep -qE "^  \"samples\": $n,\$" "$dir/calibration.json" && grep -qE '^  "seed": 0,$' "$dir/calibration.json"; }; then
        echo "results.sh: $dir/calibration.json records another sample than the $n of seed 0 the held-out lines leave out" >&2; exit 1
      fi
      echo "[results] $name: per-sample predictions${HELDOUT:+ on the training images outside the calibration sample} ..." >&2
    fi
    $Q eval --model $dir --threads $T "${ev[@]}" --predictions $p.tmp >"$log" 2>&1 ||
      { echo "results.sh: qtx eval failed for $name (see $log)" >&2; exit 1; }
    # Written beside and moved in, so an interrupted run leaves no short file in the cache.
    awk '{ printf "%d", $1 == $2 } END { print "" }' $p.tmp >$p.part && mv $p.part $p && rm -f $p.tmp
  fi
  # A test-split file must score what its row printed (it follows the row's key, which does not
  # cover src/cli/main.cpp's --predictions code: this catches a file that code would now write otherwise).
  if [ -z "${HELDOUT:-}" ] && [ -s "$f" ]; then
    a=$(cut -d' ' -f1 $f)
    [ "$(awk '{ n = length($0); c = gsub(/1/, "1"); printf "%.2f", 100 * c / n }' $p)" = "$a" ] ||
      { echo "results.sh: $p does not score its row's $a %: delete it to recompute" >&2; exit 1; }
  fi
  echo "$p"
}
# paired_ci MODE A B [C] -> the 95 % interval (2.5th–97.5th percentile) of 1000 paired bootstrap
# resamples of the test samples (awk's rand, seed 1), from pred_of files: MODE share = % of
# A−B (FP − baseline) that C wins back (resamples where A does not beat B are left out; fewer
# than 100 left gives no interval); MODE diff = accuracy of A − accuracy of B, in points.
# Empty if a file is missing or the files differ in length. Resampling the evaluated images is
# their uncertainty alone; the calibration sample's own (the seed rows) comes on top.
paired_ci() {
  local mode=$1; shift
  for x in "$@"; do [ -n "$x" ] && [ -s "$x" ] || return 0; done
  cat "$@" | awk -v mode=$mode '
    { s[NR] = $0 }
    END {
      n = length(s[1])
      for (k = 2; k <= NR; ++k) if (length(s[k]) != n) exit  # not the same samples: no interval
      split(s[1], a, ""); split(s[2], b, ""); if (mode == "share") split(s[3], c, "")
      srand(1)
      for (r = 0; r < 1000; ++r) {
        A = B = C = 0
        for (i = 0; i < n; ++i) { j = 1 + int(rand() * n); A += a[j]; B += b[j]; if (mode == "share") C += c[j] }
        if (mode == "diff") print 100 * (A - B) / n
        else if (A > B) print 100 * (C - B) / (A - B)
      }
    }' | sort -g | awk -v mode=$mode '{ v[NR] = $1 }
      END { if (NR < 100) exit; f = mode == "diff" ? "%+.2f to %+.2f" : "%.0f–%.0f %%"
            printf f, v[int(NR * 0.025) + 1], v[int(NR * 0.975)] }'
}
# sweep_acc MODEL LN ATTN PTF LIS WA -> accuracy of one sweep cell
sweep_acc() {
  local model=$1 f; f=$(sweep_recipe $model $2 $3 $4 $5 $6 $6)
  acc_of "$(basename $model)-$(basename $f .json)" $model --recipe $f
}
is() { [ "$(echo "$1" | bc -l)" = 1 ] && echo 1 || echo 0; }
# recovered FP MINMAX METHOD -> % of MinMax's drop the method wins back ("-" if MinMax lost nothing)
recovered() {
  if [ "$(is "$1 - $2 <= 0")" = 1 ]; then echo "-"; else printf '%.0f' "$(echo "100 * ($3 - $2) / ($1 - $2)" | bc -l)"; fi
}
# pending LABEL FIGURES...: true (and prints the target as pending) when a figure is not computed
pending() { local l=$1; shift; case " $* " in *" nc "*) printf '| %s | rows not computed yet | pending |\n' "$l"; return 0 ;; esac; return 1; }
target_line() { printf '| %s | %s | %s |\n' "$1" "$3" "$([ "$2" = 1 ] && echo met || echo '**not met**')"; }
# recovery_line LABEL FP MINMAX METHOD: the method must win back at least half of MinMax's drop
# [FP_PRED MINMAX_PRED METHOD_PRED]: pred_of files, for the share's 95 % bootstrap interval.
recovery_line() {
  pending "$1" $3 $4 && return 0
  local r ci=""; r=$(recovered $2 $3 $4)
  [ $# -lt 7 ] || ci=$(paired_ci share "$5" "$6" "$7")
  target_line "$1" "$([ "$r" = - ] && echo 1 || is "$r >= 50")" \
    "$(printf 'MinMax %.2f (drop %.2f), method %.2f: %s %% of the drop recovered' $3 "$(echo "$2 - $3" | bc -l)" $4 "$r")${ci:+ (95 % interval $ci)}"
}

# pred_acc FILE -> accuracy % of a pred_of file (its share of 1s)
pred_acc() { awk '{ n = length($0); printf "%.4f", 100 * gsub(/1/, "") / n }' "$1"; }
# heldout_line LABEL FP_PRED MINMAX_PRED METHOD_PRED: the recovered share on a pred_of set, with
# its interval, as a line of the targets table that is no target.
heldout_line() {
  local f b c
  f=$(pred_acc "$2") b=$(pred_acc "$3") c=$(pred_acc "$4")
  printf '| %s | %s images: FP %.2f, MinMax %.2f, Liu %.2f: %s %% of the drop recovered (95 %% interval %s) | no target |\n' "$1" \
    "$(awk '{ print length($0) }' "$2")" $f $b $c "$(recovered $f $b $c)" "$(paired_ci share "$2" "$3" "$4" | grep . || echo n/a)"
}
# heldout_diff_line LABEL A_LABEL A_PRED B_LABEL B_PRED: accuracy of A − B on a pred_of set, with its interval
heldout_diff_line() {
  local a b
  a=$(pred_acc "$3") b=$(pred_acc "$5")
  printf '| %s | %s images: %s %.2f, %s %.2f: difference %+.2f points (95 %% interval %s points) | no target |\n' "$1" \
    "$(awk '{ print length($0) }' "$3")" "$2" $a "$4" $b "$(echo "$a - $b" | bc -l)" "$(paired_ci diff "$3" "$5" | grep . || echo n/a)"
}

# The acceptance targets of the issues on vit-fmnist, computed from the cached rows.
targets_section() {
  local model=$1 fp=$2 m a b c d
  m=$(basename $model)
  [ -z "$LISTING" ] && [ "$m" = vit-fmnist ] || return 0
  echo
  echo "### Targets on $m, checked from the rows above"
  echo
  echo "Where a line gives a 95 % interval, it is that of 1000 paired bootstrap resamples of the test images"
  echo "(every model of the line scored on the same resampled images; \`qtx eval --predictions\` keeps each row's"
  echo "per-image outcomes beside it in docs/results-rows). It measures how much the figure owes to which images"
  echo "happen to be in the test split; the calibration sample's own share of the noise (the seed lines) comes on top."
  echo "Lines marked \"no target\" score the same models on the 59000 training images outside the calibration sample"
  echo "(\`qtx eval --split train --exclude-calib 1000\`; the FP model was trained on them, no quantizer was fitted to"
  echo "them): six times the test split, so their intervals are narrower. docs/CALIBRATION.md discusses what they show."
  echo
  echo "| target | figures | |"
  echo "| --- | --- | --- |"
  for r in "fqvit-8-8-8 0.5" "fqvit-8-8-4 1.0"; do
    set -- $r
    a=$(acc_of $m-$1 $model --recipe $1)
    pending "$1 within $2 points of FP" $a && continue
    target_line "$1 within $2 points of FP" "$(is "$fp - $a <= $2")" "$(printf '%.2f vs FP %.2f (drop %.2f)' $a $fp "$(echo "$fp - $a" | bc -l)")"
  done
  recovery_line "Sweep, LN 4-bit / attention 3-bit (W8A8 elsewhere): FQ-ViT wins back half of MinMax's drop" $fp \
    "$(sweep_acc $model 4 3 0 0 8)" "$(sweep_acc $model 4 3 1 1 8)"
  recovery_line "Sweep, W4A4 fully quantized (LN 4-bit, attention 4-bit): FQ-ViT wins back half of MinMax's drop" $fp \
    "$(sweep_acc $model 4 4 0 0 4)" "$(sweep_acc $model 4 4 1 1 4)"
  for r in "sym-w8a8 0.3" "sym-w6a6 0.5"; do
    set -- $r
    a=$(acc_of $m-$1-liu $model --recipe $1 --method liu)
    pending "Liu et al. $1 within $2 points of FP" $a && continue
    target_line "Liu et al. $1 within $2 points of FP" "$(is "$fp - $a <= $2")" "$(printf '%.2f vs FP %.2f (drop %.2f)' $a $fp "$(echo "$fp - $a" | bc -l)")"
  done
  # Per-sample outcomes of the rows below, for the bootstrap intervals (paired_ci).
  local pf pa pb pc pd ci
  pf=$(pred_of fp $model)
  # Liu et al. as the default runs it, with the bias correction inside the search, and with 3 rounds.
  local variants=("liu|Liu et al.|" "liu-cis|Liu et al. with --correct-in-search|--correct-in-search"
                  "liu-r3|Liu et al. with --rounds 3|--rounds 3") v tag who flag
  for r in sym-w4a4 sym-w3a4; do
    for v in "${variants[@]}"; do
      IFS='|' read -r tag who flag <<<"$v"
      a=$(acc_of $m-$r-minmax $model --recipe $r --method observer)
      b=$(acc_of $m-$r-pct $model --recipe $r --method observer --observer percentile)
      c=$(acc_of $m-$r-$tag $model --recipe $r --method liu $flag)
      pa=$(pred_of $m-$r-minmax $model --recipe $r --method observer)
      pb=$(pred_of $m-$r-pct $model --recipe $r --method observer --observer percentile)
      pc=$(pred_of $m-$r-$tag $model --recipe $r --method liu $flag)
      recovery_line "$who $r wins back half of MinMax's drop" $fp $a $c "$pf" "$pa" "$pc"
      pending "$who $r beats Percentile" $b $c && continue
      ci=$(paired_ci diff "$pc" "$pb")
      target_line "$who $r beats Percentile" "$(is "$c > $b")" "$(printf 'Liu %.2f, Percentile %.2f' $c $b)${ci:+ (difference 95 % interval $ci points)}"
    done
  done
  for v in "${variants[@]}"; do
    IFS='|' read -r tag who flag <<<"$v"
    for s in 1 2; do
      a=$(acc_of $m-sym-w4a4-minmax-s$s $model --recipe sym-w4a4 --method observer --seed $s)
      c=$(acc_of $m-sym-w4a4-$tag-s$s $model --recipe sym-w4a4 --method liu $flag --seed $s)
      pa=$(pred_of $m-sym-w4a4-minmax-s$s $model --recipe sym-w4a4 --method observer --seed $s)
      pc=$(pred_of $m-sym-w4a4-$tag-s$s $model --recipe sym-w4a4 --method liu $flag --seed $s)
      recovery_line "$who sym-w4a4 wins back half of MinMax's drop, both calibrated on seed $s (the rows above use seed 0)" $fp $a $c "$pf" "$pa" "$pc"
    done
  done
  # Context for the W4A4, W3A4 and mixed-precision lines, not targets: the same models on the
  # training images outside the calibration sample, six times the test split (the FP model was
  # trained on them, so its accuracy there is higher).
  local mp_variants=("mp4 paper's" "mp4w weights-only" "mp4o MSA-on-output" "mp4wo weights-only,MSA-on-output" "mp4m model-output")
  mp_flags() { case $1 in mp4w) echo --mp-weights-only ;; mp4o) echo --mp-msa-output ;; mp4wo) echo --mp-weights-only --mp-msa-output ;;
                          mp4m) echo --mp-model-output ;; esac; }
  pf=$(HELDOUT=1 pred_of fp $model)
  for r in sym-w4a4 sym-w3a4; do
    for v in "${variants[@]}"; do
      IFS='|' read -r tag who flag <<<"$v"
      pa=$(HELDOUT=1 pred_of $m-$r-minmax $model --recipe $r --method observer)
      pc=$(HELDOUT=1 pred_of $m-$r-$tag $model --recipe $r --method liu $flag)
      pb=$(HELDOUT=1 pred_of $m-$r-pct $model --recipe $r --method observer --observer percentile)
      [ -z "$pf" ] || [ -z "$pa" ] || [ -z "$pc" ] ||
        heldout_line "Context: $r, $who, on the training images outside the calibration sample" "$pf" "$pa" "$pc"
      [ -z "$pb" ] || [ -z "$pc" ] ||
        heldout_diff_line "Context: $r $who vs Percentile, on those images" Liu "$pc" Percentile "$pb"
    done
    # Each other setting side by side with the default search, on the test split and on the
    # held-out images.
    local set sa sb where
    for v in "${variants[@]:1}"; do
      IFS='|' read -r tag who flag <<<"$v"
      for set in "" 1; do
        sa=$(HELDOUT=$set pred_of $m-$r-$tag $model --recipe $r --method liu $flag)
        sb=$(HELDOUT=$set pred_of $m-$r-liu $model --recipe $r --method liu)
        where="test split"
        [ -z "$set" ] || where="training images outside the calibration sample"
        [ -z "$sa" ] || [ -z "$sb" ] ||
          heldout_diff_line "Context: $r, $flag vs the default search, on the $where" "${flag#--}" "$sa" default "$sb"
      done
    done
  done
  pc=$(HELDOUT=1 pred_of $m-sym-w4a4-liu $model --recipe sym-w4a4 --method liu)
  for v in "${mp_variants[@]}"; do
    set -- $v
    pd=$(HELDOUT=1 pred_of $m-sym-w4a4-liu-$1 $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 $(mp_flags $1))
    [ -z "$pd" ] || [ -z "$pc" ] ||
      heldout_diff_line "Context: mixed precision at W4 size (${2//,/, } Ω) vs uniform Liu W4A4, on those images" mixed "$pd" uniform "$pc"
  done
  c=$(acc_of $m-sym-w4a4-liu $model --recipe sym-w4a4 --method liu)
  pc=$(pred_of $m-sym-w4a4-liu $model --recipe sym-w4a4 --method liu)
  for v in "${mp_variants[@]}"; do
    set -- $v
    local extra=($(mp_flags $1))
    d=$(acc_of $m-sym-w4a4-liu-$1 $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 "${extra[@]}")
    pending "Liu et al. mixed precision at W4 size (${2//,/, } Ω) beats uniform W4A4" $d $c && continue
    pd=$(pred_of $m-sym-w4a4-liu-$1 $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 "${extra[@]}")
    ci=$(paired_ci diff "$pd" "$pc")
    target_line "Liu et al. mixed precision at W4 size (${2//,/, } Ω) beats uniform W4A4" "$(is "$d > $c")" \
      "$(printf 'mixed %.2f, uniform Liu W4A4 %.2f' $d $c)${ci:+ (difference 95 % interval $ci points)}"
  done
  # The mix on the logits against uniform W4A4 on the two other calibration samples.
  for s in 1 2; do
    c=$(acc_of $m-sym-w4a4-liu-s$s $model --recipe sym-w4a4 --method liu --seed $s)
    d=$(acc_of $m-sym-w4a4-liu-mp4m-s$s $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-model-output --seed $s)
    pending "Liu et al. mixed precision at W4 size (model-output Ω) beats uniform W4A4, both calibrated on seed $s" $d $c && continue
    pc=$(pred_of $m-sym-w4a4-liu-s$s $model --recipe sym-w4a4 --method liu --seed $s)
    pd=$(pred_of $m-sym-w4a4-liu-mp4m-s$s $model --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 3,4,5,6,8 --mp-model-output --seed $s)
    ci=$(paired_ci diff "$pd" "$pc")
    target_line "Liu et al. mixed precision at W4 size (model-output Ω) beats uniform W4A4, both calibrated on seed $s" "$(is "$d > $c")" \
      "$(printf 'mixed %.2f, uniform Liu W4A4 %.2f' $d $c)${ci:+ (difference 95 % interval $ci points)}"
  done
}

# The whole document, from the cache (computing missing rows one at a time).
write_results() {
  echo "# Results"
  echo
  echo "Regenerated by \`scripts/results.sh\` on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $T thread$([ "$T" = 1 ] || echo s),"
  echo "$(date -u +%Y-%m-%d), quantization code $CODE ($OBS_CODE without the interval search). Rows are cached between runs (see the script); each row's"
  echo "calibration seconds and peak RSS were measured by the run that computed it, and may include time"
  echo "when the machine was shared with other jobs: read them as upper bounds. OpenBLAS runs the kernels it picks"
  echo "for the CPU (\`OPENBLAS_CORETYPE\` unset): the interval-search rows depend on them (docs/CALIBRATION.md)."
  local sizes="" errs="" m n p
  for m in "${MODELS[@]}"; do
    n=$(test_size $m) p=$(fp_acc $m)
    sizes="$sizes${sizes:+; }$(basename $m): $n test samples, one = $(awk -v n=$n 'BEGIN { printf "%.2g", 100 / n }') point"
    errs="$errs${errs:+, }$(awk -v n=$n -v p=$p 'BEGIN { printf "%.2f", 100 * sqrt(p / 100 * (1 - p / 100) / n) }') point on $(basename $m)"
  done
  echo "Accuracy on the full test split ($sizes);"
  echo "calibration on the default sample of the training split (1000 images / 512 passages, seed 0)."
  echo "Read small differences with care: the binomial standard error of the FP accuracy is $errs."
  echo "Variants of one model disagree on fewer samples than that implies, but differences of a few tenths"
  echo "(ViT) or under ~0.5 point (BERT) are noise-level."
  echo "Model bytes = size of model.safetensors."
  for model in "${MODELS[@]}"; do
    [ -n "$LISTING" ] || $Q stats --model $model --out docs/plots/$(basename $model) --calib 256 --threads "$T" >/dev/null
    fp=$(fp_acc $model)
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
    for r in minmax-w8a8 percentile-w8a8 percentile-ema-w8a8 ema-w8a8 omse-w8a8 minmax-8-8-8 minmax-8-8-4 fqvit-8-8-8 fqvit-8-8-4 ptf-8-8-4 lis-8-8-4 w6a6 w4a8; do
      quant_row "$r" $model $r "$fp"
    done
    echo
    echo "### Sweep: LayerNorm-input bits x attention bits, fully quantized"
    echo
    echo "Every other site at W8A8 (upper block) or W4A4 (lower block); plain MinMax calibration everywhere."
    echo "As in FQ-ViT's code, each residual sum is quantized once, by the LayerNorm-input quantizer: the"
    echo "LayerNorm-input bits and scheme (PTF or uniform layer-wise) are the residual stream's (the built-in"
    echo "\`fqvit-*\` recipes above instead quantize the stream uniformly at 8 bits and then the LayerNorm input"
    echo "with PTF, the form the integer runtime executes; their LN 8 cells here are FQ-ViT as its code does it)."
    echo "Cells: accuracy % (drop vs FP)."
    echo
    echo "| LN bits | attn bits | W/A | MinMax | PTF | LIS | PTF+LIS (FQ-ViT) |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for wa in 8 4; do
      for ln in 8 6 4; do
        for attn in 8 4 3 2; do
          row="| $ln | $attn | W${wa}A${wa} |"
          for pl in "0 0" "1 0" "0 1" "1 1"; do
            set -- $pl
            f=$(sweep_recipe $model $ln $attn $1 $2 $wa $wa)
            r=$(quantize_cached "$(basename $model)-$(basename $f .json)" $model --recipe $f)
            a=${r%% *}
            if [ "$a" = nc ]; then row="$row not computed |"; continue; fi
            row="$row $(printf '%.2f (%+.2f)' "$a" "$(echo "$a - $fp" | bc -l)") |"
          done
          echo "$row"
        done
      done
    done
    liu_section $model "$fp"
    targets_section $model "$fp"
  done
}

JOBS=${RESULTS_JOBS:-1}
if [ -z "$PARTIAL" ] && { [ "$JOBS" -gt 1 ] || [ -n "${RESULTS_FIRST:-}" ]; }; then
  LISTING=$W/jobs.$$
  : >"$LISTING"
  write_results >/dev/null
  if [ -n "${RESULTS_FIRST:-}" ]; then
    # Each row goes to the tier of the first pattern it matches (unmatched last), stable within one.
    awk -v pats="$RESULTS_FIRST" 'BEGIN { n = split(pats, p, " ") }
      { t = n + 1; for (i = 1; i <= n; ++i) if ($2 ~ p[i]) { t = i; break }; print t "\t" $0 }' "$LISTING" |
      sort -s -n -k1,1 | cut -f2- >"$LISTING.sorted"
    mv "$LISTING.sorted" "$LISTING"
  fi
  echo "[results] $(wc -l <"$LISTING") rows to compute, $JOBS at a time" >&2
  failed=0 running=0
  while read -r f name model args; do
    if [ $running -ge "$JOBS" ]; then wait -n || failed=1; running=$((running - 1)); fi
    # shellcheck disable=SC2086  # the arguments are words without spaces
    compute_row "$f" "$name" "$model" $args </dev/null &
    running=$((running + 1))
  done <"$LISTING"
  while [ $running -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
  rm -f "$LISTING"
  LISTING=
  [ $failed = 0 ] || { echo "results.sh: some rows failed (see the logs named above)" >&2; exit 1; }
fi
USED=$W/used.$$
: >"$USED"
write_results >$OUT.tmp
n=$(sort -u "$MISSING" | wc -l)
if [ "$n" -gt 0 ]; then
  note="**Partial table: $n rows not computed yet** (marked \"not computed\"; the targets that need them say
\"pending\"). \`RESULTS_JOBS=2 scripts/results.sh 1\` computes them (hours on 2 cores) and rewrites this file."
  awk -v note="$note" 'NR == 3 { print note; print "" } { print }' $OUT.tmp >$OUT.tmp2 && mv $OUT.tmp2 $OUT.tmp
fi
rm -f "$MISSING"
mv $OUT.tmp $OUT
echo "wrote $OUT${PARTIAL:+ (partial: $n rows not computed)}"
# RESULTS_PRUNE=1: delete cached rows this table did not read (stale keys). Safe with
# RESULTS_PARTIAL too: every row of the current code and models is read, cached or not.
if [ "${RESULTS_PRUNE:-0}" = 1 ] && [ "$OUT" = docs/RESULTS.md ]; then
  for f in "$ROWS"/*.row; do
    grep -qxF "$f" "$USED" || { rm -f "$f" "${f%.row}".mixed_precision.*; echo "pruned $f"; }
  done
  for f in "$ROWS"/*.pred; do  # per-sample outcomes no line read (or whose row is gone)
    grep -qxF "$f" "$USED" || { rm -f "$f"; echo "pruned $f"; }
  done
fi
rm -f "$USED"
