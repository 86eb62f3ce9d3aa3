// Integer kernels of the integer-only runtime (no oneDNN, no libtorch): each is a plain C++ loop
// (the reference, what QTX_MAX_ISA=scalar runs) that hands the work to the fast form of the active
// instruction set where one exists (kernel_table.h, arch/x86/). Fast forms are tested against these. Formulas: docs/RECIPES.md and methods.md §5.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/simd.h"

namespace qtx::rt {

// Rounding right shift, half away from zero (the rule fake-quant uses too). shift may be <= 0.
// Inline and branch-free (shift |x| with half added, restore the sign) so loops vectorise.
inline int64_t round_shift(int64_t x, int shift) {
  if (shift <= 0) return x * (int64_t{1} << -shift);
  if (shift >= 63) return 0;
  const int64_t sgn = x >> 63;
  const int64_t a = (((x ^ sgn) - sgn) + (int64_t{1} << (shift - 1))) >> shift;
  return (a ^ sgn) - sgn;
}

// The shift that puts the largest of a set of real multipliers just below 2^30 (so every
// multiplier fits 31 bits); throws std::invalid_argument for scales that far apart (corrupt input).
int common_shift(double max_multiplier);

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
void gemm_u8s8_plain(const uint8_t* A, int32_t za, const int8_t* B, int32_t* C, int M, int N, int K);

// Integer square root: ⌊√n⌋, exact for all n ≥ 0 (a double estimate settled by integer compares).
uint64_t isqrt(uint64_t n);
// ⌊2^e / d⌋ for 1 ≤ d < 2^50 and a result below 2^63, exactly (a double estimate, then one
// integer correction): LayerNorm's per-row reciprocal without a 128-bit division call.
uint64_t pow2_div(int e, uint64_t d);

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

// The fast form of log_int_softmax_row for scores from one 8-bit (or narrower) quantizer:
// score − row max takes at most `range` + 1 values, so i-exp is a table made at load, and
// r = round(Σe / e) is one vectorised double division per element (exact while 2Σ < 2^53, else
// row_by_exp), k read off its exponent bits. Bit-identical to the reference (tested).
struct LogIntSoftmax {
  int bits = 4, range = 255;
  std::vector<int64_t> exp_of_gap;  // [range + 1]: i-exp of −gap
  static LogIntSoftmax make(const IntExp& ie, int range, int bits);
  // q: scores with max − min ≤ range among valid entries; valid == nullptr: all valid.
  void row(const int32_t* q, const uint8_t* valid, int n, int8_t* codes) const;
  // The same codes without floating point: k counts the thresholds r ≥ t_j that r passes, each
  // an `e ≤ ⌊2Σ / (2t_j − 1)⌋` compare (one integer division per threshold and row).
  void row_by_exp(const int32_t* q, const uint8_t* valid, int n, int8_t* codes) const;
  // `rows` rows of n scores each (q and codes n apart; valid: n flags for every row, or null):
  // row() per row, except rows of 8..32 scores with AVX-512 (vit-fmnist's 17 tokens), which go in
  // phases over the whole block — maxima, i-exp gathers and sums row by row into a dense buffer,
  // then one flat pass of divisions eight at a time — so that no row waits on the latencies of
  // the one before it (row by row, each row of 17 was a ~85-cycle chain of dependent steps).
  void rows(const int32_t* q, const uint8_t* valid, int rows, int n, int8_t* codes) const;
};

// A uniform quantizer's integer view: real = (q − zero) · scale.
struct QParams {
  double scale = 1;
  int32_t zero = 0;
  int32_t qmin = 0, qmax = 255;
};

// out[i] = clamp(round_shift(in[i] · r.m, r.shift) + o.zero) for n values (vectorised).
void requant_to_codes(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out);
// The same on in[begin, end) by the plain loop (the vector forms' tails and fallbacks).
void requant_to_codes_plain(const int32_t* in, size_t begin, size_t end, const Requant& r, const QParams& o, uint8_t* out);

// LayerNorm on PTF-shifted integers (FQ-ViT) with an integer square root: x_c = (q_c − z) << α_c
// share one scale, so mean and variance need no float; 1/σ is one fixed-point reciprocal per row
// and γ_c / s_out a multiplier per channel on a common shift. LayerNorm's ε (≤ 1e-5 of the
// variance in practice) is left out. Output codes are within one step of float LayerNorm on the
// dequantized input (in practice equal but for values within ~2^-20 of a rounding boundary).
struct IntLayerNorm {
  int C = 0, shift = 0;
  int32_t z = 0;
  std::vector<int> alpha;     // per channel, 0 when the input is plain layer-wise uniform
  std::vector<int64_t> gain;  // round(γ_c / s_out · 2^shift)
  std::vector<int64_t> bias;  // round((β_c / s_out + ½) · 2^(shift+24))
  // gain and bias with each group of 16 channels as its even then its odd channels (the
  // AVX-512 loop's lanes when shift + 24 ≥ 32; set by make()).
  std::vector<int64_t> gain_even_odd, bias_even_odd;
  int32_t zo = 0, qmin = 0, qmax = 255;
  // The output step's float32 placement (AVX-512, as RequantPlacement): y = d · (R · gain_f_c) +
  // bias_f_c with d = C·x − Σx, gain_f = gain / 2^(shift+56), bias_f = bias / 2^(shift+24) − ½ + zo,
  // so that the integer formula's code is round(y) wherever y lies farther than `tie_margin`
  // from k + ½. The margin bounds float32's roundings (of d, R, the gain, the bias and the fma,
  // each 2^-24 of a term no larger than the codes' range plus the largest |bias_f|) and the
  // integer formula's own rounding of t (half a unit of t, ≤ ½ · max gain / 2^(shift+24) in y).
  // Values nearer a boundary (~1 in 10^4) take the integer formula, so codes are its, bit for bit.
  std::vector<float> gain_f, bias_f;
  float tie_margin = 0;
  bool placed = false;  // false: the margin would exceed 1/32 of a step (the integer formula alone)
  static IntLayerNorm make(int32_t z, const std::vector<int>& alpha, const std::vector<float>& gamma,
                           const std::vector<float>& beta, const QParams& out);
  void row(const uint8_t* q, uint8_t* out) const;
  // The same from x_c = (q_c − z) << α_c, already computed (e.g. by a table from other codes).
  // vectorised = false: the plain loop only (the reference the AVX-512 form is tested against).
  void row_centred(const int32_t* x, uint8_t* out, bool vectorised = true) const;
  // row_centred's three steps, for callers that interleave rows (the per-row integer square
  // root and reciprocal are a chain of long latencies) or have the sums already:
  // Σx and Σx² of a row; the row's reciprocal R = 2^(k+56) / (C·σ·2^k) from them; the output
  // codes from x, Σx and R.
  void row_sums(const int32_t* x, int64_t* sum, int64_t* sq) const;
  int64_t row_factor(int64_t sum, int64_t sq) const;
  // vectorised: the AVX-512 loops, the float placement first where `placed`.
  void row_output(const int32_t* x, int64_t sum, int64_t R, uint8_t* out, bool vectorised = true) const;
};

// The float32 placement of an integer requantization to codes 0..255 (ChannelRequant,
// ResidualRequant with AVX-512): y = acc · m_c [+ h · m_h] + b_c in float32, with the zero
// points and 2^-shift folded into m and b at load. Its round(y) is the integer formula's code
// wherever y lies farther than `tie_margin` from a rounding boundary k + ½: the margin bounds
// float32's rounding of every term (set at load from the largest bias and code), and the
// accumulator is exact in float32 below 2^24 (guaranteed by the producer's weights, or checked
// per value). The other values — a few in a million — take the integer formula; the codes are
// the integer formula's bit for bit (tests). `on` false: the integer formula alone.
struct RequantPlacement {
  bool on = false;
  bool check_acc = true;      // |acc| ≥ 2^24 possible: such values take the integer formula
  std::vector<float> m;       // per channel: m_c / 2^shift
  std::vector<float> b;       // [bias_rows, N]: (bias_c − z_h·m_h) / 2^shift + z_out
  float mh = 0;               // ResidualRequant: m_h / 2^shift
  float tie_margin = 0;
};

// Per-channel requantization of int32 accumulators to 8-bit codes with one shift for all
// channels (so the loop vectorises): out = clamp(round((acc · m_c + bias_c) / 2^shift) + zo).
// bias_c is the layer's float bias in the shifted output domain (bias / out_scale · 2^shift, so
// it adds no rounding of its own); `bias_rows` > 1 holds one bias row per row index modulo
// bias_rows (ViT folds its position embeddings in that way).
struct ChannelRequant {
  int N = 0, bias_rows = 1, shift = 0;
  std::vector<int32_t> m;  // ≤ 2^30: int32 × int32 products vectorise
  std::vector<int64_t> bias;  // [bias_rows, N]
  int32_t zo = 0, qmin = 0, qmax = 255;
  // acc_scale[c]: real value of one accumulator step in channel c; out_scale: of one output step.
  // acc_offset[c] (empty: none): an integer added to every accumulator of channel c before the
  // scaling, folded exactly into bias_c (the GEMM input's zero-point term −za · Σ_k W[c,k]).
  // acc_bound: the largest |acc| the producer can give (0: unknown, then checked per value).
  static ChannelRequant make(const std::vector<double>& acc_scale, const std::vector<double>& bias_real, int bias_rows,
                             double out_scale, int32_t zo, int32_t qmin, int32_t qmax,
                             const std::vector<int64_t>& acc_offset = {}, int64_t acc_bound = 0);
  void rows(const int32_t* acc, int M, uint8_t* out) const;        // out codes [M, N]
  void rows32(const int32_t* acc, int M, int32_t* out) const;      // same into int32 (grid indices)
  // Channels from..N−1 of row i (acc_row, out_row: that row's) by the integer formula, the plain
  // loop: the vector forms' tails and fallbacks.
  void row_plain(const int32_t* acc_row, int i, int from, uint8_t* out_row) const;
  void row_plain(const int32_t* acc_row, int i, int from, int32_t* out_row) const;
  // make() throws std::invalid_argument when the scales need a shift outside [1, 62].

  // Set by make() for the AVX-512 loop (simd::Requant16): bias + ½ (the rounding), each group
  // of 16 channels as its even then its odd channels ([bias_rows, N]; the tail channels as
  // they are), and the lanes form for this shift and the largest |acc · m + bias| an int32
  // accumulator can give.
  std::vector<int64_t> add_even_odd;
  simd::Lanes lanes = simd::Lanes::Clamped64;
  RequantPlacement placement;  // rows() with AVX-512 (not rows32)
  // rows() by the integer formula alone (the form placement is tested against).
  void rows_integer(const int32_t* acc, int M, uint8_t* out) const;

 private:
  template <typename Out>
  void apply(const int32_t* acc, int M, Out* out, bool placed) const;
};

// Residual add of a linear layer's accumulators (per-channel scale, bias folded) and 8-bit
// codes of the residual stream into the add's output quantization, one rounding:
// out = clamp(round((acc · ma_c + bias_c + (h − zh) · mb) / 2^shift) + zo).
struct ResidualRequant {
  int N = 0, shift = 0;
  std::vector<int32_t> ma;
  std::vector<int64_t> bias;
  int64_t mb = 0;
  int32_t zh = 0, zo = 0, qmin = 0, qmax = 255;
  // acc_offset: as in ChannelRequant::make.
  static ResidualRequant make(const std::vector<double>& acc_scale, const std::vector<double>& bias_real,
                              const QParams& h, const QParams& out, const std::vector<int64_t>& acc_offset = {},
                              int64_t acc_bound = 0);
  void rows(const int32_t* acc, const uint8_t* h, int M, uint8_t* out) const;
  void rows_integer(const int32_t* acc, const uint8_t* h, int M, uint8_t* out) const;  // the integer formula alone
  // Channels from..N−1 of one row by the integer formula, the plain loop (as ChannelRequant's).
  void row_plain(const int32_t* acc_row, const uint8_t* h_row, int from, uint8_t* out_row) const;
  RequantPlacement placement;
  // Set by make(), as in ChannelRequant (the residual's term is added per element).
  std::vector<int64_t> add_even_odd;
  simd::Lanes lanes = simd::Lanes::Clamped64;

 private:
  void apply(const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) const;
};

// Any per-tensor map of an 8-bit code to an 8-bit code (requantization from one scale to
// another, PTF's per-α rescaling) is a 256-entry table computed once at load.
std::vector<uint8_t> requant_table(const QParams& from, double out_scale, int32_t zo, int32_t qmin, int32_t qmax);

// Scores of one attention head for Tq queries against T keys: S[t, j] (Tq × T) =
// Σ_d (q[t,d] − zq)(k[j,d] − zk), q/k rows `ld` apart. Tq < T: only the first queries are needed
// (a classifier's last layer, which reads the CLS row alone).
void qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S);
// A·V with Log-Int-Softmax codes [Tq, T]: ctx[t, d] = Σ_j (v[j,d] − zv) · 2^(kmax − code[t,j]) for
// codes in [0, kmax] (smaller probabilities than 2^-kmax are dropped); result at scale s_v · 2^-kmax.
void av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc);

// Process-wide: whether the attention kernels take their short-row forms for rows of at most 32
// keys (default true) — av_log2 by VNNI byte planes, LogIntSoftmax::rows in phases; false: the
// shifting loops and row() per row, for A/B timings (qtx_forward_ab --switch short-rows).
void set_short_attention_rows(bool on);
bool short_attention_rows();

// e^x on n float32 values in place (x ≤ 88; 0 below −87), for the hybrid recipes' float softmax:
// the exp of gelu_erf_f32 below, branch-free so GCC vectorises the loop (std::exp per value cost
// a fifth of BERT's hybrid forward). Within 2e-7 relative of std::exp (IntKernels.ExpF32MatchesStdExp).
void exp_f32(float* x, size_t n);

// The erf GELU, 0.5·x·(1 + erf(x/√2)), on n float32 values in place, for the hybrid recipes that
// keep GELU in float: erfc by the Numerical Recipes rational-exponential form (fractional error
// < 1.2e-7) and exp by Cody–Waite reduction and a degree-7 polynomial, branch-free so GCC
// vectorises the loop (a call to std::erf per value cost ~10 ns). Within 1e-6·max(1, |x|) of the
// double-precision formula (IntKernels.GeluErfF32MatchesDoubleFormula).
void gelu_erf_f32(float* x, size_t n);

}  // namespace qtx::rt
