#!/usr/bin/env bash
# End-to-end tests of the qtx command line: help, info, eval on user data, and bad input.
# Each bad input must give exit status 1 and an "error: ..." line naming the problem (never a
# crash, i.e. a status >= 128). Usage: cli_test.sh QTX_BINARY SOURCE_DIR
set -u
QTX=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

# expect_error "what" "needle" cmd...: exit 1 and stderr has an error line containing needle.
expect_error() {
  local what=$1 needle=$2
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [[ $rc -eq 0 || $rc -ge 128 ]] || ! grep -qF -- "$needle" "$T/err"; then
    echo "FAIL: $what: rc=$rc, wanted an error containing '$needle'; stderr:"
    cat "$T/err"
    fails=$((fails + 1))
  else
    echo "ok:   $what -> $(grep -m1 -F -- "$needle" "$T/err")"
  fi
}

# expect_ok "what" "needle" cmd...: exit 0 and stdout contains needle.
expect_ok() {
  local what=$1 needle=$2
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [[ $rc -ne 0 ]] || ! grep -qF -- "$needle" "$T/out"; then
    echo "FAIL: $what: rc=$rc, wanted '$needle' on stdout; stdout/stderr:"
    cat "$T/out" "$T/err"
    fails=$((fails + 1))
  else
    echo "ok:   $what -> $(grep -m1 -F -- "$needle" "$T/out")"
  fi
}

VIT=$SRC/models/vit-fmnist
BERT=$SRC/models/bert-austen

expect_ok "help lists subcommands" "eval" "$QTX" --help
expect_ok "eval --help explains --data" "label<TAB>text" "$QTX" eval --help
expect_error "no subcommand" "subcommand" "$QTX"
expect_error "unknown subcommand" "frobnicate" "$QTX" frobnicate
expect_error "unknown option" "--bogus" "$QTX" eval --model "$VIT" --bogus
expect_error "missing model folder" "does not exist" "$QTX" eval --model "$T/nothing"
expect_ok "info prints op sites" "vit.encoder.layer.11.layernorm_before" "$QTX" info "$VIT"
expect_ok "info prints BERT sites" "bert.encoder.layer.3.attention.self.matmul_qk" "$QTX" info "$BERT"
expect_ok "eval fmnist" "accuracy" "$QTX" eval --model "$VIT" --data fmnist --limit 64 --threads 2
# --predictions: one "label predicted" line per sample, agreeing with the printed accuracy.
expect_ok "eval --predictions" "accuracy" "$QTX" eval --model "$VIT" --limit 64 --threads 2 --predictions "$T/pred"
hits=$(sed -n 's/^accuracy .*(\([0-9]*\)\/64).*/\1/p' "$T/out")
if [[ "$(wc -l <"$T/pred")" -ne 64 || -z "$hits" || "$(awk '$1 == $2' "$T/pred" | wc -l)" -ne "$hits" ]]; then
  echo "FAIL: --predictions file: $(wc -l <"$T/pred") lines, $(awk '$1 == $2' "$T/pred" | wc -l) correct, accuracy line says ${hits:-nothing}"
  fails=$((fails + 1))
else
  echo "ok:   --predictions file: 64 lines, $hits correct as printed"
fi
expect_error "--predictions into a missing folder (before evaluating)" "cannot write into" "$QTX" eval --model "$VIT" --limit 4 --predictions "$T/no/such/dir/p"
# --exclude-calib: the training split less the calibration sample (59990 drawn of 60000: 10 left).
expect_ok "eval --exclude-calib leaves the rest of the training split" "/10)" "$QTX" eval --model "$VIT" --split train --exclude-calib 59990 --threads 2
expect_error "--exclude-calib without --split train" "needs --split train" "$QTX" eval --model "$VIT" --exclude-calib 1000
expect_error "--calib-seed without --exclude-calib" "only with --exclude-calib" "$QTX" eval --model "$VIT" --calib-seed 3
expect_error "--exclude-calib with --mlm" "--mlm scores whole" "$QTX" eval --model "$BERT" --split train --exclude-calib 512 --mlm
expect_ok "eval austen6 + mlm" "mlm" "$QTX" eval --model "$BERT" --data austen6 --limit 32 --mlm --threads 2

# User data: a TSV of label<TAB>text, and a folder of per-label images.
printf 'Emma\tEmma Woodhouse, handsome, clever, and rich, with a comfortable home.\nPersuasion\tSir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man.\n' >"$T/ok.tsv"
expect_ok "eval user TSV (both passages evaluated)" "/2)" "$QTX" eval --model "$BERT" --data "$T/ok.tsv"
printf 'Emma\tA passage.\nUlysses\tStately, plump Buck Mulligan.\n' >"$T/label.tsv"
expect_error "TSV with an unknown label" "label.tsv:2" "$QTX" eval --model "$BERT" --data "$T/label.tsv"
printf 'Emma\t   \n' >"$T/empty.tsv"
expect_error "TSV with empty text" "empty text" "$QTX" eval --model "$BERT" --data "$T/empty.tsv"
mkdir -p "$T/imgs/Trouser" "$T/imgs/T-shirt_top"
{ printf 'P5\n28 28\n255\n'; head -c 784 /dev/zero; } >"$T/imgs/Trouser/a.pgm"
{ printf 'P5\n14 14\n255\n'; head -c 196 /dev/zero; } >"$T/imgs/T-shirt_top/b.pgm"
expect_ok "eval image folder (resized as preprocessor_config says)" "accuracy" "$QTX" eval --model "$VIT" --data "$T/imgs"
mkdir -p "$T/imgs/Spaceship"
cp "$T/imgs/Trouser/a.pgm" "$T/imgs/Spaceship/"
expect_error "image folder with an unknown label" "Spaceship" "$QTX" eval --model "$VIT" --data "$T/imgs"
rm -rf "$T/imgs/Spaceship"
printf 'P5\n28 28\n255\n' >"$T/imgs/Trouser/truncated.pgm"
expect_error "truncated image" "truncated.pgm" "$QTX" eval --model "$VIT" --data "$T/imgs"
rm "$T/imgs/Trouser/truncated.pgm"

# Broken model folders, each a copy of a shipped model with one defect.
broken() { rm -rf "$T/m"; cp -r "$1" "$T/m"; }
broken "$VIT"
sed -i 's/"do_resize": true/"do_resize": false/' "$T/m/preprocessor_config.json"
expect_error "wrong image size with resizing off" "14x14" "$QTX" eval --model "$T/m" --data "$T/imgs"
broken "$VIT"
head -c 100000 "$VIT/model.safetensors" >"$T/m/model.safetensors"
expect_error "truncated safetensors" "model.safetensors" "$QTX" eval --model "$T/m" --limit 8
broken "$VIT"
printf '\xff\xff\xff\xff\xff\x00\x00\x00' | dd of="$T/m/model.safetensors" bs=1 count=8 conv=notrunc status=none
expect_error "absurd safetensors header length" "absurd" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"hidden_act": "gelu"/"hidden_act": "swish2"/' "$T/m/config.json"
expect_error "unknown hidden_act" "unknown hidden_act 'swish2'" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"num_hidden_layers": 12/"num_hidden_layers": 13/' "$T/m/config.json"
expect_error "config/checkpoint mismatch (one layer too many)" "num_hidden_layers is 13 but the file stores 12 encoder layer(s)" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"intermediate_size": 768/"intermediate_size": 512/' "$T/m/config.json"
expect_error "config/checkpoint mismatch (shape)" "but config.json (intermediate_size 512) implies 512" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"num_hidden_layers": 12/"num_hidden_layers": 11/' "$T/m/config.json"
expect_error "config/checkpoint mismatch (one layer too few)" "num_hidden_layers is 11 but the file stores 12" "$QTX" info "$T/m"
broken "$VIT"
echo '{"model_type": "vit", ' >"$T/m/config.json"
expect_error "malformed config.json" "config.json" "$QTX" info "$T/m"
broken "$BERT"
grep -v '^\[CLS\]$' "$BERT/vocab.txt" >"$T/m/vocab.txt"
expect_error "vocab without [CLS]" "no [CLS] token" "$QTX" eval --model "$T/m" --limit 4
broken "$BERT"
rm "$T/m/vocab.txt"
expect_error "missing vocab.txt" "vocab.txt" "$QTX" eval --model "$T/m" --limit 4
broken "$VIT"
rm "$T/m/preprocessor_config.json"
expect_error "missing preprocessor_config.json" "preprocessor_config.json" "$QTX" eval --model "$T/m" --limit 4
expect_error "--mlm on a ViT" "only BERT" "$QTX" eval --model "$VIT" --limit 4 --mlm
expect_error "bad split" "split" "$QTX" eval --model "$VIT" --split validation

# Quantization: recipes, artifact, analysis, and broken artifacts.
expect_error "unknown recipe" "neither a built-in recipe" "$QTX" quantize --model "$VIT" --recipe nope --out "$T/q"
printf '{"roles": {"linear_wieght": {"bits": 8}}}' >"$T/bad.json"
expect_error "recipe with an unknown role" "unknown role 'linear_wieght'" "$QTX" quantize --model "$VIT" --recipe "$T/bad.json" --out "$T/q"
printf '{"roles": {"linear_weight": {"bits": 33}}}' >"$T/bits.json"
expect_error "recipe with bits 33" "bits 33 is out of range" "$QTX" quantize --model "$VIT" --recipe "$T/bits.json" --out "$T/q"
printf '{"roles": {"linear_weight": {}}, "overrides": [{"pattern": "encoder.layer.42.*", "role": "linear_weight", "bits": 4}]}' >"$T/pat.json"
expect_error "override matching no site" "matches no op site" "$QTX" quantize --model "$VIT" --recipe "$T/pat.json" --out "$T/q"
expect_ok "quantize fqvit-8-8-4" "wrote" "$QTX" quantize --model "$VIT" --recipe fqvit-8-8-4 --calib 32 --out "$T/q" --threads 2
expect_ok "eval a quantized artifact" "accuracy" "$QTX" eval --model "$T/q" --limit 64 --threads 2
expect_ok "info lists quantizers" "layernorm_input" "$QTX" info "$T/q"
expect_ok "analyze per-site error" "SQNR" "$QTX" analyze --model "$T/q" --limit 8 --threads 2
expect_error "analyze a float model" "not a quantized artifact" "$QTX" analyze --model "$VIT"
{ printf 'P5\n28 28\n255\n'; head -c 784 /dev/zero | tr '\0' '\200'; } >"$T/img.pgm"
expect_ok "predict through the integer runtime" "engine     int" "$QTX" predict --model "$T/q" --image "$T/img.pgm" --threads 2
expect_ok "predict with libtorch, top 2" "%" "$QTX" predict --model "$VIT" --image "$T/img.pgm" --top-k 2 --threads 2
expect_error "predict text on an image model" "is an image model" "$QTX" predict --model "$VIT" --text "hello"
expect_error "predict an unsupported image file" "unsupported image format" "$QTX" predict --model "$VIT" --image "$SRC/README.md"
expect_error "predict a missing image" "img-missing.png" "$QTX" predict --model "$VIT" --image "$T/img-missing.png"
expect_error "predict empty text" "empty text" "$QTX" predict --model "$BERT" --text "   "
expect_error "predict --engine int on a float model" "runs quantized folders" "$QTX" predict --model "$VIT" --engine int --image "$T/img.pgm"
RUN=$(dirname "$QTX")/qtx_run
expect_ok "qtx_run evaluates without libtorch" "accuracy" "$RUN" --model "$T/q" --limit 64 --threads 2
expect_ok "qtx_run classifies an image" "img.pgm" "$RUN" --model "$T/q" --image "$T/img.pgm"
expect_ok "qtx_run --profile shares by op class" "linear GEMMs" "$RUN" --model "$T/q" --limit 64 --threads 2 --profile
expect_ok "qtx_run --profile names the instruction set" "isa        kernels" "$RUN" --model "$T/q" --limit 16 --profile
expect_ok "qtx_run --print-isa, capped at avx2" "active   avx2" env QTX_MAX_ISA=avx2 "$RUN" --print-isa
expect_error "an unknown QTX_MAX_ISA" "not one of scalar, avx2, avx512, avx512_vnni" env QTX_MAX_ISA=avx9 "$RUN" --model "$T/q"
expect_error "an unknown QTX_MAX_ISA (qtx)" "not one of scalar, avx2" env QTX_MAX_ISA=avx9 "$QTX" eval --model "$T/q" --engine int --limit 4
expect_ok "qtx bench: speed-up and the op-class split" "| non-GEMM |" "$QTX" bench --model "$T/q" --float-model "$VIT" --batch 2 --threads 1 --repeats 2
expect_ok "qtx bench names the FP32 baseline's BLAS" "libtorch FP32 on" "$QTX" bench --model "$T/q" --float-model "$VIT" --batch 1 --threads 1 --repeats 1
# On a CPU with the AVX-512 that OpenBLAS's SkylakeX kernels use, an environment pinning its AVX2
# kernels does not reach the baseline: bench restarts with SkylakeX (--blas-as-picked keeps Haswell).
if grep -q avx512f /proc/cpuinfo && grep -q avx512bw /proc/cpuinfo && grep -q avx512dq /proc/cpuinfo && grep -q avx512vl /proc/cpuinfo &&
   grep -q avx512cd /proc/cpuinfo && "$QTX" bench --model "$T/q" --float-model "$VIT" --batch 1 --threads 1 --repeats 1 2>/dev/null | grep -q "OpenBLAS"; then
  expect_ok "qtx bench on AVX-512 times libtorch on AVX-512 kernels" "kernels SkylakeX" env OPENBLAS_CORETYPE=Haswell "$QTX" bench --model "$T/q" --float-model "$VIT" --batch 1 --threads 1 --repeats 1
  expect_ok "qtx bench --blas-as-picked keeps the environment's kernels" "kernels Haswell" env OPENBLAS_CORETYPE=Haswell "$QTX" bench --model "$T/q" --float-model "$VIT" --batch 1 --threads 1 --repeats 1 --blas-as-picked
fi
expect_error "qtx_run on a float folder" "not a quantized model folder" "$RUN" --model "$VIT"
expect_error "qtx_run on a bad image" "unsupported image format" "$RUN" --model "$T/q" --image "$SRC/README.md"
expect_error "unknown calibration method" "unknown calibration method 'nope'" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method nope --out "$T/q3"
expect_error "mixed precision without liu" "needs --method liu" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --avg-bits 4 --calib 8 --out "$T/q3"
expect_error "mixed precision bits out of range" "outside 2..8" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method liu --avg-bits 4 --mp-bits 1,4 --calib 8 --out "$T/q3"
expect_error "correct-in-search without bias correction" "needs --method liu with its bias correction" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method liu --correct-in-search --no-bias-correction --calib 8 --out "$T/q3"
expect_error "correct-in-search with easyquant" "needs --method liu with its bias correction" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method easyquant --correct-in-search --calib 8 --out "$T/q3"
expect_error "mixed-precision option without a target" "only applies to mixed precision" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method liu --mp-model-output --calib 8 --out "$T/q3"
expect_error "two sensitivity measures at once" "excludes" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method liu --avg-bits 4 --mp-model-output --mp-msa-output --calib 8 --out "$T/q3"
expect_error "liu on a recipe it cannot search" "no per-tensor signed symmetric quantizers" "$QTX" quantize --model "$VIT" --recipe fqvit-8-8-4 --method liu --calib 8 --out "$T/q3"
expect_error "unknown observer override" "unknown observer 'nope'" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --observer nope --out "$T/q3"
expect_ok "liu search with mixed precision" "method liu" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method liu --avg-bits 5 --mp-bits 4,8 --calib 8 --batch 8 --candidates 5 --mp-samples 8 --out "$T/liu" --threads 2
for f in mixed_precision.txt mixed_precision.json mixed_precision.svg; do
  if [[ -s "$T/liu/$f" ]]; then echo "ok:   liu wrote $f"; else echo "FAIL: liu did not write $f"; fails=$((fails + 1)); fi
done
# Ω on the logits of a checkpoint that also carries an MLM head (its decoder is never reached).
expect_ok "mixed precision on the model's output (BERT)" "method liu" "$QTX" quantize --model "$BERT" --recipe sym-w4a4 --method liu --avg-bits 5 --mp-bits 4,8 --mp-model-output --calib 8 --batch 8 --candidates 5 --mp-samples 8 --out "$T/liu-bert" --threads 2
if grep -q '"sensitivity_on": "model-output"' "$T/liu-bert/mixed_precision.json" 2>/dev/null; then echo "ok:   its plan records the measure"; else echo "FAIL: mixed_precision.json lacks sensitivity_on model-output"; fails=$((fails + 1)); fi
expect_ok "eval a liu artifact" "accuracy" "$QTX" eval --model "$T/liu" --limit 64 --threads 2
# calibration.json records the sample and the method's settings as the method ran them;
# --outside-calib reads it (a seed other than the defaults, so a reader ignoring it would fail).
has() {  # has FILE PATTERN...: every extended regex matches a line of FILE
  local f=$1 p
  shift
  for p in "$@"; do
    if grep -qE -- "$p" "$f"; then echo "ok:   $(basename "$(dirname "$f")")/calibration.json has $p"
    else echo "FAIL: $f lacks $p"; cat "$f"; fails=$((fails + 1)); fi
  done
}
has "$T/liu/calibration.json" '^  "method": "liu",$' '^  "samples": 8,$' '"candidates": 5,' '"avg_bits": 5' '"ranking": true,'
expect_ok "quantize easyquant" "method easyquant" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --method easyquant --calib 8 --batch 8 --candidates 3 --out "$T/eq" --threads 2
has "$T/eq/calibration.json" '"objective": "cosine",' '"ranking": false,' '"bias_correction": false,'
expect_ok "quantize with seed 5" "wrote" "$QTX" quantize --model "$VIT" --recipe sym-w4a4 --calib 8 --seed 5 --out "$T/s5" --threads 2
has "$T/s5/calibration.json" '^  "method": "observer",$' '^  "samples": 8,$' '^  "seed": 5,$'
expect_ok "info shows the calibration record" "calibrated observer on 8 fmnist/train samples (seed 5)" "$QTX" info "$T/s5"
expect_ok "eval --outside-calib" "/40)" "$QTX" eval --model "$T/s5" --split train --outside-calib --limit 40 --threads 2
if grep -q "outside the calibration sample (8, seed 5)" "$T/err"; then echo "ok:   --outside-calib left out the 8 samples of seed 5"
else echo "FAIL: --outside-calib did not leave out 8 samples of seed 5"; cat "$T/err"; fails=$((fails + 1)); fi
expect_error "--outside-calib without --split train" "give --split train" "$QTX" eval --model "$T/s5" --outside-calib
expect_error "--outside-calib with --exclude-calib" "without --exclude-calib" "$QTX" eval --model "$T/s5" --split train --outside-calib --exclude-calib 8
expect_error "--outside-calib with other data" "calibrated on fmnist, not austen6" "$QTX" eval --model "$T/s5" --split train --outside-calib --data austen6
expect_error "--outside-calib on a float model" "calibration.json: not found" "$QTX" eval --model "$VIT" --split train --outside-calib
mkdir -p "$T/s5bad" && cp "$T/s5"/{config.json,preprocessor_config.json,recipe.json,model.safetensors} "$T/s5bad/"
echo '{"data": "fmnist", "split": "train", "samples": -3, "seed": 0}' >"$T/s5bad/calibration.json"
expect_error "--outside-calib with a malformed calibration.json" "calibration.json: unreadable or malformed" "$QTX" eval --model "$T/s5bad" --split train --outside-calib
# FQ-ViT's own form (the residual sum quantized once, with PTF) runs in fake-quant; the integer
# runtime, whose residual stream has one scale, refuses it instead of ignoring the factors.
cat >"$T/res-ptf.json" <<'JSON'
{"name": "residual ptf", "roles": {"linear_weight": {"bits": 8}, "linear_input": {"bits": 8}, "qk_input": {"bits": 8},
 "av_input": {"bits": 8}, "attn_scores": {"bits": 8}, "act_output": {"bits": 8}, "embedding": {"bits": 8},
 "residual": {"scheme": "ptf", "bits": 8}, "layernorm_input": {"scheme": "ptf", "bits": 8}, "softmax_output": {"scheme": "log2", "bits": 4}}}
JSON
expect_ok "quantize with a PTF residual stream" "wrote" "$QTX" quantize --model "$VIT" --recipe "$T/res-ptf.json" --calib 16 --out "$T/qres" --threads 2
expect_error "integer runtime on a PTF residual stream" "PTF quantizer here" "$RUN" --model "$T/qres" --limit 4
expect_error "quantize an artifact again" "already quantized" "$QTX" quantize --model "$T/q" --recipe w4a8 --out "$T/q2"
cp -r "$T/q" "$T/qbad"
head -c 300000 "$T/q/model.safetensors" >"$T/qbad/model.safetensors"
expect_error "truncated artifact" "model.safetensors" "$QTX" eval --model "$T/qbad" --limit 4
cp "$T/q/model.safetensors" "$T/qbad/model.safetensors"
sed -i 's/"bits": 8/"bits": 4/' "$T/qbad/recipe.json"
expect_error "artifact inconsistent with its recipe" "bytes" "$QTX" eval --model "$T/qbad" --limit 4

# Your model, your data: a copy of the shipped ViT whose classes are renamed ("T-shirt-top", as
# another trainer spelled it) or generic (LABEL_k), and the shipped BERT with its own class names.
model_copy() {  # model_copy SRC DST 'sed script': DST shares SRC's weights, config edited
  mkdir -p "$2" && for f in "$(cd "$1" && pwd)"/*; do ln -sf "$f" "$2/"; done
  rm "$2/config.json" && sed -e "$3" "$1/config.json" >"$2/config.json"
}
model_copy "$VIT" "$T/vit-renamed" 's#"T-shirt/top"#"T-shirt-top"#; s#"Ankle boot"#"ankle_boot"#'
expect_ok "eval fmnist on renamed labels (matched by name)" "accuracy" "$QTX" eval --model "$T/vit-renamed" --data fmnist --limit 64 --threads 2
generic=""; i=0
for n in "T-shirt/top" Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot"; do generic+="s#\"$n\"#\"LABEL_$i\"#;"; i=$((i + 1)); done
model_copy "$VIT" "$T/vit-generic" "$generic"
expect_error "LABEL_k model on fmnist: both sides listed" "LABEL_0, LABEL_1" "$QTX" eval --model "$T/vit-generic" --data fmnist --limit 8
expect_ok "LABEL_k model on fmnist --labels-by-index" "accuracy" "$QTX" eval --model "$T/vit-generic" --data fmnist --limit 64 --threads 2 --labels-by-index
by_index=$(grep -o "([0-9]*/64)" "$T/out")
"$QTX" eval --model "$VIT" --data fmnist --limit 64 --threads 2 >"$T/out" 2>/dev/null
if [[ -n "$by_index" && "$by_index" == "$(grep -o "([0-9]*/64)" "$T/out")" ]]; then echo "ok:   --labels-by-index scores as the original labels $by_index"
else echo "FAIL: --labels-by-index gave ${by_index:-nothing}, the original model $(grep -o "([0-9]*/64)" "$T/out")"; fails=$((fails + 1)); fi
expect_ok "quantize a LABEL_k model on fmnist (calibration needs no labels)" "wrote" "$QTX" quantize --model "$T/vit-generic" --recipe minmax-w8a8 --calib 16 --out "$T/q-generic" --threads 2
expect_ok "quantize on --calib-data images in label folders" "wrote" "$QTX" quantize --model "$T/vit-renamed" --recipe fqvit-8-8-4 --calib-data "$T/imgs" --out "$T/q-imgs" --threads 2
has "$T/q-imgs/calibration.json" '"data": "'"$T"'/imgs",' '"split": "all",' '"samples": 2,'
mkdir -p "$T/flat" && cp "$T/imgs/Trouser/a.pgm" "$T/flat/x.pgm" && cp "$T/imgs/T-shirt_top/b.pgm" "$T/flat/y.pgm"
expect_ok "quantize on --calib-data unlabeled images" "wrote" "$QTX" quantize --model "$T/vit-generic" --recipe minmax-w8a8 --calib-data "$T/flat" --out "$T/q-flat" --threads 2
expect_ok "parity of the model calibrated on user images" "agreement" "$QTX" parity --model "$T/q-imgs" --data fmnist --limit 64 --threads 2
expect_error "evaluate on unlabeled images" "has no labels" "$QTX" eval --model "$T/vit-renamed" --data "$T/flat"
echo "not an image" >"$T/flat/readme.md"
expect_error "calibration folder with a non-image file" "readme.md" "$QTX" quantize --model "$VIT" --recipe minmax-w8a8 --calib-data "$T/flat" --out "$T/q-bad"
[[ ! -e "$T/q-bad" ]] && echo "ok:   nothing written" || { echo "FAIL: $T/q-bad written"; fails=$((fails + 1)); }
mkdir -p "$T/none"
expect_error "empty calibration folder" "no images" "$QTX" quantize --model "$VIT" --recipe minmax-w8a8 --calib-data "$T/none" --out "$T/q-bad"
model_copy "$BERT" "$T/bert-own" 's#"Emma"#"own class"#; s#"Persuasion"#"Other-Class"#'
printf 'Own Class\tEmma Woodhouse, handsome, clever, and rich, with a comfortable home.\nother class\tSir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man.\n' >"$T/own.tsv"
printf 'Emma Woodhouse, handsome, clever, and rich.\nSir Walter Elliot, of Kellynch Hall.\nIt is a truth universally acknowledged.\n' >"$T/own.txt"
expect_ok "BERT with its own classes: quantize on a labelled TSV" "wrote" "$QTX" quantize --model "$T/bert-own" --recipe fqvit-8-8-8 --calib-data "$T/own.tsv" --out "$T/q-own" --threads 2
expect_ok "BERT with its own classes: quantize on unlabeled text" "wrote" "$QTX" quantize --model "$T/bert-own" --recipe minmax-w8a8 --calib-data "$T/own.txt" --out "$T/q-own-txt" --threads 2
has "$T/q-own-txt/calibration.json" '"samples": 3,'
expect_ok "BERT with its own classes: eval the quantized model on its TSV" "/2)" "$QTX" eval --model "$T/q-own" --data "$T/own.tsv"
expect_ok "BERT with its own classes: integer runtime on its TSV" "/2)" "$QTX" eval --model "$T/q-own" --data "$T/own.tsv" --engine int
expect_error "TSV label the model does not know" "own class, Northanger Abbey, Other-Class" "$QTX" eval --model "$T/bert-own" --data "$T/ok.tsv"
expect_error "evaluate on unlabeled text" "has no labels" "$QTX" eval --model "$T/bert-own" --data "$T/own.txt"
: >"$T/empty.txt"
expect_error "empty calibration text" "no passages" "$QTX" quantize --model "$BERT" --recipe minmax-w8a8 --calib-data "$T/empty.txt" --out "$T/q-bad"

# Hardening (issue 35): each situation a hostile user found, now one clear error that loses nothing.
PATCH="python3 $SRC/tests/patch_safetensors.py"
sums() { (cd "$1" && find . -type f | sort | xargs md5sum); }
# Limits before work: human ranges, sizes checked against the weight file before a model is built.
expect_error "--batch 0 gives a human range" "--batch: Value 0 not in range 1 to 65536" "$QTX" eval --model "$VIT" --batch 0
expect_error "--threads 100000 in qtx eval (hung)" "--threads: Value 100000 not in range 0 to 1024" "$QTX" eval --model "$VIT" --threads 100000
expect_error "--threads 100000 in qtx_run (segfault)" "--threads: Value 100000 not in range 0 to 1024" "$RUN" --model "$T/q" --threads 100000
broken "$VIT"
sed -i 's/"num_hidden_layers": 12/"num_hidden_layers": 100000/' "$T/m/config.json"
start=$(date +%s)
expect_error "num_hidden_layers 100000 fails before building (info)" "num_hidden_layers is 100000 but the file stores 12" "$QTX" info "$T/m"
if (( $(date +%s) - start > 10 )); then echo "FAIL: info took $(( $(date +%s) - start )) s on 100000 layers"; fails=$((fails + 1)); fi
broken "$VIT"
sed -i 's/"num_hidden_layers": 12/"num_hidden_layers": 4294967308/' "$T/m/config.json"
expect_error "2^32+12 layers is not 12" "field 'num_hidden_layers' must be an integer in [-2147483648, 2147483647], got 4294967308" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"hidden_size": 192/"hidden_size": 192.9/' "$T/m/config.json"
expect_error "hidden_size 192.9 is not 192" "field 'hidden_size' must be an integer" "$QTX" info "$T/m"
broken "$VIT"
sed -i 's/"hidden_size": 192/"hidden_size": 1073741952/' "$T/m/config.json"
expect_error "absurd hidden_size: a mismatch, not an allocation failure" "implies" "$QTX" eval --model "$T/m" --limit 4
expect_error "--calib beyond the training split" "--calib 100000000: more samples than fashion-mnist/train (60000 images)" "$QTX" quantize --model "$VIT" --recipe w4a8 --calib 100000000 --out "$T/qc"
expect_error "stats --calib beyond the training split" "--calib 100000000: more samples than fashion-mnist/train (60000 images)" "$QTX" stats --model "$VIT" --calib 100000000 --out "$T/st"
# NaN logits: a final LayerNorm scaled past float range.
broken "$VIT"
$PATCH "$T/m/model.safetensors" fill vit.layernorm.weight 3e38
expect_error "NaN logits are not scored as an accuracy" "logit for sample 0" "$QTX" eval --model "$T/m" --limit 8 --threads 2
expect_error "NaN logits are not printed as -nan%" "logit for sample 0" "$QTX" predict --model "$T/m" --image "$T/img.pgm" --threads 2
# Preprocessor 14x14 beside a 28x28 model (qtx_run read past the images; predict gave a label).
rm -rf "$T/qpp" && cp -r "$T/q" "$T/qpp"
sed -i 's/"height": 28/"height": 14/; s/"width": 28/"width": 14/' "$T/qpp/preprocessor_config.json"
expect_error "preprocessor 14x14 vs model 28x28 (qtx_run)" "size 14x14 does not match config.json image_size 28" "$RUN" --model "$T/qpp" --limit 256 --batch 256
expect_error "preprocessor 14x14 vs model 28x28 (predict)" "size 14x14 does not match config.json image_size 28" "$QTX" predict --model "$T/qpp" --image "$T/img.pgm"
# An artifact whose config says 1 layer while 12 are stored.
rm -rf "$T/q1" && cp -r "$T/q" "$T/q1"
sed -i 's/"num_hidden_layers": 12/"num_hidden_layers": 1/' "$T/q1/config.json"
expect_error "qtx_run on 1 configured layer of 12 stored" "num_hidden_layers is 1 but the file stores 12" "$RUN" --model "$T/q1" --limit 4
# Quantizer parameters the runtime rejects are rejected by the fake-quant loader too, and
# predict no longer falls back to it with exit 0.
qcorrupt() {  # qcorrupt WHAT NEEDLE PATCH-ARGS...: a copy of $T/q with one value changed
  local what=$1 needle=$2
  shift 2
  rm -rf "$T/qx" && cp -r "$T/q" "$T/qx"
  $PATCH "$T/qx/model.safetensors" "$@"
  expect_error "$what (fake-quant)" "$needle" "$QTX" eval --model "$T/qx" --limit 4 --threads 2
  expect_error "$what (integer runtime)" "$needle" "$RUN" --model "$T/qx" --limit 4
  expect_error "$what (predict exits non-zero)" "$needle" "$QTX" predict --model "$T/qx" --image "$T/img.pgm"
}
L0=qtx.vit.encoder.layer.0
qcorrupt "zero point out of range" "zero_point' entry 0 is 300; it must be an integer in [0, 255]" set $L0.attention.attention.query.input0.zero_point 0 300
qcorrupt "zero point near INT32_MIN" "it must be an integer in [0, 255]" set $L0.residual_attention.output.zero_point 0 -2147483648
qcorrupt "fractional zero point" "is 3.5; it must be an integer" set $L0.attention.attention.query.input0.zero_point 0 3.5
qcorrupt "PTF alpha above K" "a PTF exponent must be an integer in 0..3" set $L0.layernorm_before.input0.alpha 0 9
qcorrupt "denormal scale" "a scale must be a finite, normal number > 0" set $L0.attention.attention.query.input0.scale 0 1e-42
qcorrupt "unknown format tag" "metadata 'qtx.format' is 'qtx-quantized/9'" meta qtx.format qtx-quantized/9
# A tensor nothing reads: the fake-quant loader knows every site and rejects it (the integer
# runtime, which skips heads it does not run, rejects only layers beyond the config).
rm -rf "$T/qx" && cp -r "$T/q" "$T/qx"
$PATCH "$T/qx/model.safetensors" add qtx.stray.scale 1.0
expect_error "a tensor nothing uses (fake-quant)" "unexpected tensor 'qtx.stray.scale'" "$QTX" eval --model "$T/qx" --limit 4 --threads 2
# A 6-bit weight code out of its range (stored one per byte).
printf '{"name": "w6", "roles": {"linear_weight": {"bits": 6}, "linear_input": {"bits": 8}}}' >"$T/w6.json"
expect_ok "quantize with 6-bit weights" "wrote" "$QTX" quantize --model "$VIT" --recipe "$T/w6.json" --calib 8 --out "$T/q6" --threads 2
$PATCH "$T/q6/model.safetensors" set classifier.weight.qweight 0 100
expect_error "weight code out of range (fake-quant)" "'classifier.weight.qweight' element 0 is code 100, outside the 6-bit range [-32, 31]" "$QTX" eval --model "$T/q6" --limit 4
# Recipes with weights wider than the 8-bit codes (were stored & 0xFF).
printf '{"roles": {"linear_weight": {"bits": 16}}}' >"$T/w16.json"
expect_error "recipe with 16-bit weights" "quantizes weights to 16 bits; stored weight codes hold 2..8 bits" "$QTX" quantize --model "$VIT" --recipe "$T/w16.json" --calib 8 --out "$T/q16"
rm -rf "$T/qx" && cp -r "$T/q" "$T/qx"
python3 -c 'import json, sys; p = sys.argv[1]; r = json.load(open(p)); r["roles"]["linear_weight"]["bits"] = 32; json.dump(r, open(p, "w"))' "$T/qx/recipe.json"
expect_error "artifact whose recipe says 32-bit weights" "stored weight codes hold 2..8 bits" "$RUN" --model "$T/qx" --limit 4
# Lost data: --out at the input model (any spelling), at another model, and a failed save.
broken "$VIT"
before=$(sums "$T/m")
expect_error "quantize --out m/ (the input itself)" "is the input folder" "$QTX" quantize --model "$T/m" --recipe w4a8 --calib 8 --out "$T/m/"
expect_error "quantize --out ./m (the input itself)" "is the input folder" bash -c "Q=\$(realpath '$QTX'); cd '$T' && \$Q quantize --model m --recipe w4a8 --calib 8 --out ./m"
rm -rf "$T/other" && cp -r "$BERT" "$T/other"
expect_error "quantize --out at another model's folder" "exists and is not a qtx output" "$QTX" quantize --model "$T/m" --recipe w4a8 --calib 8 --out "$T/other"
if [[ "$(sums "$T/m")" == "$before" ]] && cmp -s "$T/other/model.safetensors" "$BERT/model.safetensors"; then echo "ok:   the input and the other model are untouched"
else echo "FAIL: a refused --out changed a model"; fails=$((fails + 1)); fi
before=$(sums "$T/q")
expect_error "a save that fails half-way" "injected failure" env QTX_TEST_FAIL_COMMIT=1 "$QTX" quantize --model "$VIT" --recipe w4a8 --calib 8 --out "$T/q" --threads 2
if [[ "$(sums "$T/q")" == "$before" ]] && ! ls -d "$T"/q.tmp-* >/dev/null 2>&1; then echo "ok:   the failed save left the previous artifact exactly as it was"
else echo "FAIL: the failed save changed $T/q or left a temporary folder"; fails=$((fails + 1)); fi
expect_ok "quantize replaces an earlier artifact" "wrote" "$QTX" quantize --model "$VIT" --recipe w4a8 --calib 8 --out "$T/qre" --threads 2
expect_ok "... and again, in place" "wrote" "$QTX" quantize --model "$VIT" --recipe w4a8 --calib 8 --out "$T/qre/" --threads 2
expect_ok "--force writes over the input model" "wrote" "$QTX" quantize --model "$T/m" --recipe w4a8 --calib 8 --out "$T/m" --force --threads 2
expect_error "train --out at a folder no training wrote" "exists and is not a qtx output" "$QTX" train --task vit-fmnist --out "$T/imgs" --epochs 1 --limit 8

# Training: a tiny ViT distilled from a CNN teacher on 256 images, then resumed (nothing retrained).
TINY=(--task vit-fmnist --out "$T/tr" --limit 256 --epochs 1 --batch 64 --hidden 32 --layers 1 --heads 2 --intermediate 64 --patch 7 --distill-cnn 1 --threads 2)
expect_ok "train a tiny distilled ViT" "CNN teacher epoch 1/1" "$QTX" train "${TINY[@]}"
expect_ok "train resumes: teacher loaded" "CNN teacher loaded" "$QTX" train "${TINY[@]}"
if grep -q '"teacher_epochs": 1' "$T/tr/train_log.json"; then echo "ok:   train_log.json records the distillation"; else echo "FAIL: train_log.json lacks distill"; fails=$((fails + 1)); fi
expect_ok "eval the trained tiny ViT" "accuracy" "$QTX" eval --model "$T/tr" --data fmnist --limit 64
expect_error "distillation weight out of range" "--distill-weight" "$QTX" train --task vit-fmnist --out "$T/tr2" --distill-weight 2

if [[ $fails -ne 0 ]]; then
  echo "$fails CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"
