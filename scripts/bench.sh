#!/usr/bin/env bash
# Writes this CPU's tables of docs/BENCHMARKS.md: the integer runtime next to libtorch FP32 on the
# same model, inputs and thread counts (medians of repeats, engines alternating), plus peak RSS of
# each engine in its own process and parity with fake-quant — once per instruction-set level given
# (default: the CPU's own and, where it has more, avx2: an AVX2-only CPU's path, with the FP32
# baseline on OpenBLAS's AVX2 kernels), each into docs/benchmarks/<cpu>-<level>.md; then
# docs/BENCHMARKS.md is assembled from every file there, so tables measured on other CPUs stay.
# Run on an otherwise idle machine: bash scripts/bench.sh [LEVEL...]   (LEVEL: avx2, avx512, avx512_vnni)
set -euo pipefail
cd "$(dirname "$0")/.."
Q=./build/qtx
[ -x "$Q" ] || bash scripts/build.sh -DQTX_BUILD_TESTS=OFF
VQ=runs/bench/vit-fmnist-fqvit-8-8-4
BQ=runs/bench/bert-austen-fqvit-8-8-8
VW=runs/bench/vit-fmnist-w4a8
BW=runs/bench/bert-austen-minmax-w8a8
$Q quantize --model models/vit-fmnist --recipe fqvit-8-8-4 --out "$VQ" > /dev/null
$Q quantize --model models/bert-austen --recipe fqvit-8-8-8 --calib 512 --out "$BQ" > /dev/null
$Q quantize --model models/vit-fmnist --recipe w4a8 --out "$VW" > /dev/null
$Q quantize --model models/bert-austen --recipe minmax-w8a8 --calib 512 --out "$BW" > /dev/null
# The OpenBLAS kernels the microbenchmarks' sgemm runs where the runtime uses AVX-512: what this
# environment sets, else SkylakeX on an AVX-512 CPU (qtx bench restarts libtorch the same way).
OPENBLAS_CORE_DEFAULT=${OPENBLAS_CORETYPE:-}
grep -q avx512f /proc/cpuinfo && case ${OPENBLAS_CORE_DEFAULT,,} in ""|haswell|zen) OPENBLAS_CORE_DEFAULT=SkylakeX ;; esac
rss() { sed -n 's/^peak RSS *\([0-9.]*\) MiB.*/\1/p'; }
# This CPU's name in file names, and the levels to measure.
cpu_slug=$(lscpu | sed -n 's/^Model name: *//p' | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-$//')-family$(lscpu | sed -n 's/^CPU family: *//p')-model$(lscpu | sed -n 's/^Model: *//p')
mkdir -p docs/benchmarks
native=$(./build/qtx_run --print-isa 2>/dev/null | sed -n 's/^cpu *//p')
levels=("$@")
if [ ${#levels[@]} -eq 0 ]; then
  levels=("$native")
  [ "$native" != avx2 ] && [ "$native" != scalar ] && levels+=(avx2)
fi
for level in "${levels[@]}"; do
  export QTX_MAX_ISA=$level
  out=docs/benchmarks/$cpu_slug-$level.md
  # The kernel microbenchmarks first: the int8 GEMM peak (the best oneDNN u8·s8 GOPS of all its
  # shapes, the large ones included, 1 thread) is the yardstick for the model's GEMMs below.
  # OpenBLAS's sgemm beside the int8 GEMMs runs the kernels of the same instruction set (as qtx bench
  # makes libtorch's): its AVX2 (Haswell) kernels below avx512.
  blas_core=$OPENBLAS_CORE_DEFAULT
  case $level in scalar|avx2) blas_core=Haswell ;; esac
  KB=$(OPENBLAS_CORETYPE=$blas_core OMP_NUM_THREADS=1 ./build/qtx_kernel_bench --benchmark_min_time=0.5 2>/dev/null | grep -E "^(BM_|Benchmark|-)")
  # Below AVX-512, the same kernels' plain loops too (QTX_MAX_ISA=scalar), for the AVX2 forms' gains.
  PLAIN=""
  case $level in avx2) PLAIN=$(QTX_MAX_ISA=scalar OMP_NUM_THREADS=1 ./build/qtx_kernel_bench --benchmark_min_time=0.5 \
    --benchmark_filter='^BM_(ChannelRequant|ChannelRequant32|TensorRequant|TensorRequantShift31|ResidualRequant|ResidualRequantBert|IntLayerNormRows|IntLayerNormSiteRows|IntElementwiseGelu|QkScores|AvLog2|LogIntSoftmaxRow|LogIntSoftmaxRows|AttentionHead)/' \
    2>/dev/null | grep -E "^(BM_|Benchmark|-)") ;; esac
  # best COUNTER (GOPS or GFLOPS) of the rows named PREFIX, in G/s: Google Benchmark scales its
  # counters (k/s, M/s, G/s, T/s), so the unit is read, not assumed.
  best_rate() {
    echo "$KB" | awk -v pre="$1" -v ctr="$2=" 'index($1, pre) == 1 {
      for (i = 1; i <= NF; ++i) if (index($i, ctr) == 1) {
        v = substr($i, length(ctr) + 1); u = v; sub(/^[0-9.]+/, "", u); g = v + 0
        if (u ~ /^k/) g /= 1e6; else if (u ~ /^M/) g /= 1e3; else if (u ~ /^T/) g *= 1e3; else if (u !~ /^G/) g /= 1e9
        if (g > p) p = g }
    } END { printf "%.0f", p }'
  }
  PEAK=$(best_rate BM_GemmOneDnn/ GOPS)
  F32=$(best_rate BM_GemmOneDnnF32/ GFLOPS)
  # peak_line: reads qtx bench's table, prints each cell's GEMM GOPS as a share of threads × peak.
  peak_line() {
    awk -v peak="$PEAK" -F'|' 'NF > 12 && $2 ~ /[0-9]/ { printf "%sbatch %d / %d thread%s: %.0f %%", sep, $2, $3, ($3 > 1 ? "s" : ""), 100 * $12 / (peak * $3); sep = ", " } END { print "." }'
  }
  # section TITLE FLOAT_DIR QDIR BATCHES...: speed table, bytes, peak RSS and parity of one model.
  section() {
    local title=$1 fp=$2 qd=$3; shift 3
    local bargs=()
    for b in "$@"; do bargs+=(--batch "$b"); done
    echo "### $title: integer runtime vs libtorch FP32"
    echo
    local table
    table=$($Q bench --model "$qd" --float-model "$fp" "${bargs[@]}" --threads 1 --threads 2 --repeats 20 2>/dev/null)
    echo "$table"
    echo
    echo "GEMM GOPS against the int8 peak ($PEAK GOPS per thread, the best oneDNN shape below; × threads):"
    echo "$(echo "$table" | peak_line) (Above 100 %: the forward's GEMMs ran faster than the microbenchmark's"
    echo "best in its own run; this virtual machine's run-to-run noise is several percent.)"
    echo
    echo "Model bytes on disk: FP32 $(stat -c %s $fp/model.safetensors), quantized $(stat -c %s $qd/model.safetensors) (model.safetensors)."
    echo
    echo "Peak RSS over a full test-split evaluation (batch 64, 1 thread), each engine in its own process:"
    echo "libtorch FP32 $($Q eval --model $fp --threads 1 2>/dev/null | rss) MiB,"
    echo "integer runtime $(./build/qtx_run --model $qd --threads 1 2>/dev/null | rss) MiB (\`qtx_run\`, the runtime without libtorch;"
    echo "inside the \`qtx\` binary, which links libtorch for data loading: $($Q eval --model $qd --engine int --threads 1 2>/dev/null | rss) MiB)."
    echo
    echo "Parity with libtorch fake-quant of the same artifact (full test split, 2 threads):"
    echo
    echo '```'
    $Q parity --model "$qd" --threads 2 2>/dev/null
    echo '```'
    echo
  }
  {
    echo "## $(lscpu | sed -n 's/^Model name: *//p') (CPU family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), kernels at $level"
    echo
    echo "Generated by \`bash scripts/bench.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD): $(nproc) cores, Debian $(cat /etc/debian_version),"
    echo "libtorch $(dpkg-query -W -f '${Version}' libtorch-dev), oneDNN $(dpkg-query -W -f '${Version}' libdnnl-dev). The runtime: $(./build/qtx_run --print-isa 2>/dev/null | sed -n 's/^summary *//p')."
    echo
    section "vit-fmnist, FQ-ViT 8/8/4" models/vit-fmnist "$VQ" 1 64
      section "bert-austen, FQ-ViT 8/8/8" models/bert-austen "$BQ" 1 32
    echo "### Recipes with float LayerNorm and Softmax (int8 GEMMs, float between them: docs/RUNTIME.md)"
    echo
    for pair in "vit-fmnist w4a8:models/vit-fmnist:$VW:64" "bert-austen minmax-w8a8:models/bert-austen:$BW:32"; do
      IFS=: read -r title fp qd b <<<"$pair"
      echo "#### $title"
      echo
      $Q bench --model "$qd" --float-model "$fp" --batch 1 --batch "$b" --threads 1 --repeats 10 2>/dev/null
      echo
      echo '```'
      $Q parity --model "$qd" --threads 2 2>/dev/null
      echo '```'
      echo
    done
    echo "### Kernel microbenchmarks (Google Benchmark, 1 thread)"
    echo
    echo "\`build/qtx_kernel_bench\` (bench/kernels_bench.cpp). GEMM shapes M/N/K: 17 rows = one image, 1088 = a"
    echo "batch of 64 (vit-fmnist), 4096 = 32 × 128 tokens (bert-austen), 160 and 128 rows = the MLP row blocks of the two (docs/RUNTIME.md); the larger shapes (1024³ to 2048³, 4096 × 768 × 768) are there for the machine's int8 GEMM peak,"
    echo "taken as the best oneDNN shape ($PEAK GOPS: the large shapes are no faster here). GOPS = 2·M·N·K per second."
    echo "\`BM_GemmOneDnnF32\` is the same product in fp32 through oneDNN (best $F32 GFLOPS): int8 : fp32 GEMM ratio"
    echo "$(awk -v a="$PEAK" -v b="$F32" 'BEGIN { printf "%.1f", a / b }')× on this machine today, the ceiling that GEMM-bound int8 speed-ups answer to."
    echo
    echo '```'
    echo "$KB"
    echo '```'
    if [ -n "$PLAIN" ]; then
      echo
      echo "The runtime's kernels above ran at $level; the same benchmarks with the kernels capped at scalar (the plain loops"
      echo "compiled for x86-64-v3: what the AVX2 forms gain):"
      echo
      echo '```'
      echo "$PLAIN"
      echo '```'
    fi
  } > "$out"
  echo "wrote $out"
done
{
  echo "# Benchmarks"
  echo
  echo "One section per CPU and instruction-set level the runtime's kernels ran at (docs/RUNTIME.md, \"Instruction"
  echo "sets\"), each written by \`bash scripts/bench.sh\` on that CPU into docs/benchmarks/ (its date, commit and"
  echo "versions in its first lines); \"kernels at avx2\" on a newer CPU is the AVX2-only CPU's path (\`QTX_MAX_ISA=avx2\`,"
  echo "oneDNN capped too, the FP32 baseline on OpenBLAS's AVX2 kernels). Compare speed-ups within a section only."
  echo
  echo "Latency of one forward of the whole batch, median of 20; the two engines alternate. Shares of the"
  echo "integer forward's wall time (extra profiled passes after the timed ones; docs/RUNTIME.md, \"Where the"
  echo "time goes\"): linear GEMMs (oneDNN u8·s8), attention matmuls (Q·Kᵀ and A·V, our own integer"
  echo "kernels) and non-GEMM (everything else: softmax, LayerNorm, activation, requantization, embedding,"
  echo "untimed glue), split out in the second table. GEMM GOPS: 2·M·N·K per second inside the linear"
  echo "GEMMs — compared below each table with the int8 peak from the microbenchmarks. BERT rows are batch × 128"
  echo "attended tokens (each passage's wordpieces repeated to fill 128: \`qtx bench --seq-len\`). The integer runtime runs"
  echo "the last layer's CLS rows alone past its keys and values (all the classifier reads; the same logits bit for bit);"
  echo "the two columns before the last time it with every row, as libtorch computes them: the speed-up of the int8 arithmetic alone."
  echo "Each repeat times both engines back to back; the last column gives the quartiles of the repeats' own speed-ups,"
  echo "how far this virtual machine's noise moves the ratio."
  echo
  echo "The FP32 baseline is libtorch on OpenBLAS's kernels of the same instruction set as the runtime's (each table"
  echo "names them): this project's machines may set OPENBLAS_CORETYPE=Haswell (AVX2 kernels), under which libtorch's FP32"
  echo "forward ran 1.5–1.7× slower on an AVX-512 CPU; \`qtx bench\` restarts itself with OPENBLAS_CORETYPE=SkylakeX"
  echo "where the runtime uses AVX-512, and with Haswell where it is capped below (\`--blas-as-picked\` keeps them)."
  echo "Versions of this file before 2026-12-06 timed libtorch on the Haswell kernels, so their speed-ups are not"
  echo "comparable with these."
  echo
  for f in docs/benchmarks/*.md; do cat "$f"; echo; done
} > docs/BENCHMARKS.md
echo "wrote docs/BENCHMARKS.md"
