// Reference integer kernels of the integer-only runtime (plain C++, no SIMD, no oneDNN, no
// libtorch). Fast paths are tested against these. Formulas: docs/RECIPES.md and methods.md §5.
#pragma once
#include <cstdint>
#include <vector>

namespace qtx::rt {

// Rounding right shift, half away from zero (the rule fake-quant uses too). shift may be <= 0.
int64_t round_shift(int64_t x, int shift);

// A real multiplier M applied as m · 2^-shift with a 31-bit mantissa m (gemmlowp's dyadic form).
struct Requant {
  int32_t m = 0;
  int shift = 0;
  static Requant from_real(double M);
  int64_t apply(int64_t x) const { return round_shift(x * static_cast<int64_t>(m), shift); }
  double real() const;
};

// u8·s8 → s32 GEMM reference: C[M,N] = Σ_k (A[m,k] − za) · B[n,k] (B row-major [N, K], i.e. the
// weight as stored, per-output-channel symmetric so its zero point is 0).
void gemm_u8s8_ref(const uint8_t* A, int32_t za, const int8_t* B, int32_t* C, int M, int N, int K);

// Integer square root: ⌊√n⌋ by Newton's iteration (I-BERT), exact for all n ≥ 0.
uint64_t isqrt(uint64_t n);

// I-BERT's i-exp on integer scores q ≤ 0 at scale s, with the grid refined by 2^R so that
// ln2/s' ≥ 2^16 (docs/RECIPES.md). Constants depend only on s, so they are computed once.
struct IntExp {
  int R = 0;
  int64_t x0 = 0, b = 0, c = 0;  // −ln2, b/a, c/a on the refined grid
  static IntExp for_scale(double s);
  int64_t operator()(int64_t q) const;  // exp at a common scale (a·s'^2)
};

// Log-Int-Softmax over one row of integer scores: codes k (probability 2^-k) or -1 (zero) for
// entries with valid[i] != 0. FQ-ViT's rounding: r = round(Σexp / exp), k = round-at-1.5 log2 r.
void log_int_softmax_row(const int32_t* q, const uint8_t* valid, int n, const IntExp& ie, int bits, int8_t* codes);

}  // namespace qtx::rt
