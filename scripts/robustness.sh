#!/usr/bin/env bash
# Runs the corrupt-input cases against the built binaries and prints docs/ROBUSTNESS.md's table:
# the command-line checks (tests/cli_test.sh: exit status 1 and one "error:" line, or the right
# output) and the unit tests of the shared validation (test_formats). Usage, after a build:
#   scripts/robustness.sh [BUILD_DIR]        (default build; takes about two minutes on 2 cores)
set -u
B=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
bash "$SRC/tests/cli_test.sh" "$B/qtx" "$SRC" >"$log" 2>&1
"$B/tests/test_formats" --gtest_brief=1 \
  --gtest_filter='ConfigFields.*:ConfigAgainstWeights.*:Preprocessor.*:QuantParams.*:WeightCodes.*:Logits.*:OutputFolder.*:Safetensors.*:Config.*:Idx.*:Images.*:Tokenizer.VocabularyFileErrors:Tsv.*' \
  >>"$log" 2>&1
units=$?
ok=$(grep -c '^ok:' "$log")
failed=$(grep -c '^FAIL:' "$log")
crashed=$(grep -cE '^FAIL: .*rc=(1[2-9][0-9]|2[0-9][0-9])' "$log")
printf '| outcome | command-line cases |\n|---|---:|\n'
printf '| clear error or correct behaviour | %d |\n' "$ok"
printf '| wrong (no error, wrong message or changed files) | %d |\n' "$failed"
printf '| crashes (signal) | %d |\n' "$crashed"
printf '\nunit tests of the validation: %s\n' "$([[ $units -eq 0 ]] && echo passed || echo FAILED)"
[[ $failed -eq 0 && $units -eq 0 ]]
