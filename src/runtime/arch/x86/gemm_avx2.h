// An exact u8·s8→s32 GEMM for x86 CPUs with AVX2 but no VNNI. oneDNN multiplies u8 by s8 there
// with vpmaddubsw, whose int16 pair sums saturate (255·127·2 > 32767) for 8-bit weights; this
// kernel widens both operands to int16 and multiplies with vpmaddwd, whose pair sums
// (≤ 2·255·128) are exact in int32. AVX2 and FMA-era integer instructions only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace qtx::rt::avx2 {

// Weight W [N, K] (row-major int8) packed once, at load, into panels of kPanel output channels:
// [panel][K/2 rounded up][kPanel] int32 words, each the int16 pair (W[n, 2q], W[n, 2q + 1]),
// low half first. An odd K's last pair and the columns past N in the last panel are zero.
struct PackedWeights {
  static constexpr int kPanel = 16;  // output channels per panel: two ymm of int32 lanes
  int N = 0, K = 0;
  int pairs = 0;   // (K + 1) / 2
  int panels = 0;  // ⌈N / kPanel⌉
  // 64-byte aligned: a panel's rows are loaded as aligned ymm words.
  struct Free {
    void operator()(int32_t* p) const;
  };
  std::unique_ptr<int32_t[], Free> data;

  static PackedWeights pack(const int8_t* w, int N, int K);  // w row-major [N, K]
  const int32_t* panel(int p) const { return data.get() + static_cast<size_t>(p) * pairs * kPanel; }
};

// C[M, N] = A[M, K] · Wᵀ exactly (zero point 0: callers fold −za · Σ_k W[n, k]), A row-major u8,
// C row-major int32 (leading dimension N). Exact while every |sum| fits int32 — always for
// K ≤ 65793 (255·128·K < 2^31); beyond that it wraps like the plain loop. Threads: OpenMP over
// row × column blocks when the product has ≥ 4 M multiply-adds and more than one thread is
// allowed (and not already inside a parallel region); else the calling thread alone. Scratch:
// each thread keeps a buffer of its widened activation block (≤ 96 rows × 192 int16 pairs,
// 72 KiB), allocated on its first call. K = 0 writes zeros.
void gemm_u8s8_exact(const PackedWeights& w, const uint8_t* A, int M, int32_t* C);

}  // namespace qtx::rt::avx2
