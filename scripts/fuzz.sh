#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan + UBSan, in build-fuzz/) and runs each for
# SECONDS (default 600) on a copy of its seed corpus (fuzz/corpus/<target>/). Prints per target the
# executions, corpus size, coverage (libFuzzer's cov: edges and ft: features) and findings; exits
# non-zero on any crash, leak, hang (one input > 10 s), out-of-memory or sanitizer report.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 30 (the CI smoke run)
# QTX_FUZZ_JOBS=2 runs two targets at a time. Findings and logs: build-fuzz/fuzz-run/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
shift || true
ALL=(fuzz_safetensors fuzz_hf_config fuzz_tokenizer fuzz_image fuzz_idx fuzz_artifact)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
JOBS=${QTX_FUZZ_JOBS:-1}
BUILD=build-fuzz

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${QTX_CLANG:-clang++-14}" \
  -DQTX_FUZZ=ON -DQTX_WITH_TORCH=OFF -DQTX_BUILD_TESTS=OFF >/dev/null
if ! cmake --build "$BUILD" --target "${TARGETS[@]}" -j"${QTX_BUILD_JOBS:-2}" >"$BUILD/build.log" 2>&1; then
  grep -iE "error" "$BUILD/build.log" | head -20 >&2
  echo "build failed (log: $BUILD/build.log)" >&2
  exit 1
fi

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_one() {
  local t=$1 dir=$BUILD/fuzz-run/$1
  rm -rf "$dir" && mkdir -p "$dir/corpus" "$dir/findings" "$dir/tmp"
  cp fuzz/corpus/"$t"/* "$dir/corpus/"
  local dict=()
  [ -f fuzz/dict/"$t".dict ] && dict=(-dict=fuzz/dict/"$t".dict)
  TMPDIR="$dir/tmp" "$BUILD/fuzz/$t" "$dir/corpus" "${dict[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/findings/" >"$dir/log" 2>&1 || echo $? >"$dir/rc"
}

pids=()
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

status=0
printf '%-18s %12s %8s %8s %8s %s\n' target executions corpus cov ft findings
for t in "${TARGETS[@]}"; do
  dir=$BUILD/fuzz-run/$t
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo "?")
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo "?")
  corpus=$(find "$dir/corpus" -type f | wc -l)
  findings=$(find "$dir/findings" -type f | wc -l)
  if [ -f "$dir/rc" ] || [ "$findings" -gt 0 ]; then
    status=1
    printf '%-18s %12s %8s %8s %8s %s\n' "$t" "$execs" "$corpus" "$cov" "$ft" "$findings FOUND (see $dir/log)"
    grep -E 'ERROR|SUMMARY|runtime error' "$dir/log" | head -3 | sed 's/^/    /'
  else
    printf '%-18s %12s %8s %8s %8s %s\n' "$t" "$execs" "$corpus" "$cov" "$ft" "0"
  fi
done
exit $status
