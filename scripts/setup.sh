#!/usr/bin/env bash
# Installs everything qtx needs on a fresh Debian 12 (run as root, or with sudo available).
# All dependencies are Debian packages; nothing is downloaded from anywhere else.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp      # models, calibration, autograd; OpenMP BLAS (reference BLAS is ~10x slower)
  libgloo-dev                           # c10d/Gloo for multi-process work
  libdnnl-dev                           # oneDNN int8 GEMMs for the integer runtime
  libcli11-dev nlohmann-json3-dev       # CLI parsing, JSON
  libgtest-dev libgmock-dev libbenchmark-dev
  libpng-dev zlib1g-dev                 # PNG images, gzip'd IDX files
  libicu-dev                            # Unicode case folding, NFD and categories for the BERT tokenizer
  dataset-fashion-mnist                 # /usr/share/datasets/fashion-mnist
  bc                                    # arithmetic in scripts/results.sh
  python3                               # tests/patch_safetensors.py (corrupt-artifact tests; standard library only)
  clang-14 libclang-rt-14-dev libomp-14-dev  # sanitizer build and libFuzzer targets (scripts/sanitize.sh, fuzz.sh)
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "[setup] all Debian packages present"
fi
