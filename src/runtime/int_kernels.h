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

// A uniform quantizer's integer view: real = (q − zero) · scale.
struct QParams {
  double scale = 1;
  int32_t zero = 0;
  int32_t qmin = 0, qmax = 255;
};

// GELU on 8-bit codes as an exact 256-entry table: entry c holds the output code of
// quantize_out(gelu(dequantize_in(c − 128 + (in.qmin < 0 ? 0 : 128)))) — the fake-quant model's
// computation done once per possible input code, so the runtime matches it exactly.
std::vector<uint8_t> gelu_table_u8(const QParams& in, const QParams& out);

// Residual add of two quantized tensors into a third quantization: both operands are brought
// to the output scale by dyadic multipliers with a common shift, summed, rounded once.
struct RequantAdd {
  int64_t ma = 0, mb = 0;
  int shift = 0;
  int32_t za = 0, zb = 0, zo = 0, qmin = 0, qmax = 255;
  static RequantAdd make(const QParams& a, const QParams& b, const QParams& out);
  int32_t operator()(int32_t qa, int32_t qb) const;
};

// LayerNorm on PTF-shifted integers (FQ-ViT) with an integer square root: x_c = (q_c − z) << α_c
// share one scale, so mean and variance need no float; 1/σ is a fixed-point reciprocal and
// γ_c / s_out a dyadic multiplier per channel. LayerNorm's ε (≤ 1e-5 of the variance in practice)
// is left out. Output codes are within one step of float LayerNorm on the dequantized input.
struct IntLayerNorm {
  int C = 0;
  int32_t z = 0;
  std::vector<int> alpha;     // per channel, 0 when the input is plain layer-wise uniform
  std::vector<Requant> gain;  // γ_c / s_out
  std::vector<int64_t> bias;  // round(β_c / s_out · 2^16)
  int32_t zo = 0, qmin = 0, qmax = 255;
  static IntLayerNorm make(int32_t z, const std::vector<int>& alpha, const std::vector<float>& gamma,
                           const std::vector<float>& beta, const QParams& out);
  void row(const uint8_t* q, uint8_t* out) const;
};

}  // namespace qtx::rt
