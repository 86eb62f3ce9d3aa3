#!/usr/bin/env bash
# Builds the libtorch-free unit tests (test_formats: formats, data readers, recipes, the integer
# runtime's kernels at every ISA level) with AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/ and runs them, plus the kernel tests capped at AVX2 and at the plain loops. Any
# sanitizer report aborts its test (halt_on_error, -fno-sanitize-recover=all).
# (libtorch is a prebuilt, uninstrumented library, so test_models is left out; see docs/ROBUSTNESS.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-asan
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${QTX_CLANG:-clang++-14}" \
  -DQTX_SANITIZE=ON -DQTX_WITH_TORCH=OFF -DQTX_BUILD_TESTS=ON >/dev/null
if ! cmake --build "$BUILD" --target test_formats -j"${QTX_BUILD_JOBS:-2}" >"$BUILD/build.log" 2>&1; then
  grep -iE "error" "$BUILD/build.log" | head -20 >&2
  echo "build failed (log: $BUILD/build.log)" >&2
  exit 1
fi
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Less the one test that compares wall clock with sleeps (instrumented code runs 2-3x slower; the
# capped runs leave it out too).
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)" -E 'IntKernels.FusedOpRegionSharesWallTimeByLaps'
