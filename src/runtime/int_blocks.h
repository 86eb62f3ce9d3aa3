// Building blocks shared by the integer models (ViT and BERT): a linear layer (int8 GEMM + the
// real scale of its accumulators), a LayerNorm on 8-bit codes (PTF or layer-wise input),
// Log-Int-Softmax attention and the whole attention half of a block, elementwise functions by
// table, and the helpers at the model's ends. Each is assembled from an Artifact at load.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/artifact.h"
#include "runtime/gemm.h"
#include "runtime/int_kernels.h"
#include "runtime/parallel.h"

namespace qtx::rt {

// A per-tensor activation quantizer as integers (fails if the stored one is not per tensor).
QParams per_tensor(const StoredQuant& q, const std::string& what);

// run() leaves raw accumulators Σ_k x[m,k]·w[c,k]: the input zero point's term −z_in·Σ_k w[c,k]
// is `acc_offset`, which every consumer folds into its per-channel bias at load (one pass over
// the accumulators fewer per GEMM; oneDNN's own source zero point was measured slower).
struct IntLinear {
  std::unique_ptr<Int8Gemm> gemm;
  QParams in;                      // its input quantizer
  std::vector<double> acc_scale;   // s_in · s_w[c]
  std::vector<double> bias;        // float bias (0 when absent)
  std::vector<int64_t> acc_offset; // −z_in · Σ_k w[c,k]
  int N = 0, K = 0;
  // Reads weight, scales, input quantizer and bias of `site` (weight [N, K]).
  static IntLinear load(const Artifact& a, const std::string& site, int N, int K, bool has_bias, Kernels kernels);
  void run(const uint8_t* x, int M, int32_t* acc) const { gemm->run(x, M, 0, acc); }
  // The largest |accumulator| its weights allow with u8 inputs (0 without a GEMM).
  int64_t acc_bound() const { return gemm ? 255 * gemm->max_abs_row_sum() : 0; }
};

// Rows of N 32-bit values that fit in 512 KB per thread, half of each core's second-level cache
// (at least 16): the row block of the MLPs, whose fc1 outputs stay in cache from the GEMM to the
// activation. Per thread: the GEMM and the activation split the block's rows among the threads.
inline int rows_in_cache(int N) {
  return std::max(16, (512 * 1024 / 4 / std::max(1, N)) & ~15) * std::max(1, omp_get_max_threads());
}

// LayerNorm whose input quantizer (PTF or uniform) re-quantizes 8-bit residual codes: a table
// per PTF exponent maps a residual code straight to the centred, shifted input value
// (q − z) << α, then IntLayerNorm::row_centred.
struct IntLayerNormSite {
  std::vector<uint8_t> grid;                   // [K + 1][256]: residual code → input code at scale s·2^k
  std::vector<int32_t> centred;                // [K + 1][256]: residual code → (input code − z) << k
  std::vector<int32_t> table_base;             // per channel: α_c · 256, its row in `centred`
  std::vector<uint64_t> alpha_masks;           // [C / 64][K + 1]: bit i set where channel 64·b + i has α = k
  std::vector<int> alpha;                      // per channel
  std::vector<int16_t> alpha16;                // α per channel as int16 (the VNNI sums' shifts)
  bool int16_sums = false;                     // |x| < 2^15 and (C/16)·max x² < 2^31: Σx, Σx² by vpdpwssd
  IntLayerNorm norm;
  int C = 0, K = 0;
  int32_t z = 0;                               // the input quantizer's zero point
  static IntLayerNormSite load(const Artifact& a, const std::string& site, const std::string& param_prefix, int C,
                               const QParams& residual, const QParams& out);
  // α per channel (0..K), the residual stream's and the LayerNorm input's quantizers (in: the
  // layer-wise scale s, unsigned codes), γ, β and the output quantizer.
  static IntLayerNormSite make(const std::vector<int>& alpha, int K, const QParams& residual, const QParams& in,
                               const std::vector<float>& gamma, const std::vector<float>& beta, const QParams& out);
  // Blocks of rows: each row's centred values and sums, then the rows' square roots and
  // reciprocals back to back (independent chains of long latencies that then overlap), then the
  // outputs.
  void rows(const uint8_t* h, int M, uint8_t* out) const;
  // Plain loops: the int32 table per element, then the scalar LayerNorm row.
  void rows_plain(const uint8_t* h, int M, uint8_t* out) const;
  // One row's x_c = (input code − z) << α_c and Σx, Σx².
  void centre_row(const uint8_t* h_row, int32_t* x, int64_t* sum, int64_t* sq) const;
};

// Q·Kᵀ → score codes → Log-Int-Softmax → A·V by shifts, for all heads of a batch.
struct IntAttention {
  QParams q, k, v, scores;
  Requant score_requant;  // S · s_q·s_k/√dh / s_scores
  IntExp iexp;
  LogIntSoftmax lis;  // i-exp by table over the score range (bit-identical to the reference row)
  int bits = 4, kmax = 15, heads = 1, dh = 0;
  // Real value of one step of the context accumulators (s_v · 2^-kmax).
  double ctx_scale() const;
  static IntAttention load(const Artifact& a, const std::string& prefix, int heads, int dh);
  // k/v codes [B·T, heads·dh], q codes [B·Tq, heads·dh] (Tq = T, or 1: each sequence's first
  // query alone); valid [B, T] (nullptr: all); ctx int32 [B·Tq, heads·dh].
  void run(const uint8_t* qc, const uint8_t* kc, const uint8_t* vc, const int32_t* valid, int B, int T, int32_t* ctx,
           int Tq) const;
};

// The attention half of a transformer block on codes of one input grid: q/k/v GEMMs (each
// reading the input through a table to its own input quantizer), Log-Int-Softmax attention,
// the context requantized to the output projection's input, and that projection's GEMM.
struct IntSelfAttention {
  IntLinear q, k, v, o;
  std::vector<uint8_t> q_in, k_in, v_in;  // input grid → q / k / v input grids (empty: same)
  ChannelRequant q_out, k_out, v_out;     // accumulators → matmul input codes
  IntAttention attn;
  Requant ctx_to_o;
  std::string prefix, o_site;             // site names, for taps
  // `prefix` + query/key/value/matmul_qk/softmax/matmul_av; `o_site` the output projection.
  static IntSelfAttention load(const Artifact& a, const std::string& prefix, const std::string& o_site, int D, int heads,
                               bool qkv_bias, const QParams& input, Kernels kernels);
  struct Scratch {
    std::vector<uint8_t> x, qc, kc, vc, cls;
    std::vector<int32_t> ctx;
  };
  using TapFn = std::function<void(const std::string&, const uint8_t*, size_t)>;
  // in: input codes [B·T, D]; valid [B, T] or nullptr; o_acc: the output projection's
  // accumulators [B·T, D] (bias not applied: the residual requantization folds it in).
  // cls_only: only each sequence's first row is queried, o_acc is [B, D] — exact for a last
  // layer whose only reader is a classifier on the CLS row (every other op is per row).
  void run(const uint8_t* in, const int32_t* valid, int B, int T, Scratch& s, int32_t* o_acc, const TapFn& tap,
           bool cls_only = false) const;
};

// Scratch buffers are grown, never shrunk: a call with fewer tokens after one with more does not
// pay for zero-filling them again.
template <typename Vec>
void grow(Vec& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// A text model's input: B, T ≥ 1, T within max_position_embeddings, every id in the vocabulary
// (throws qtx::Error naming what is wrong).
void check_tokens(const ModelConfig& cfg, const int32_t* ids, int B, int T);

// A classifier's accumulators → float logits (the output boundary).
std::vector<float> dequantize_logits(const IntLinear& head, const int32_t* acc, int B);
// Row 0 of each of B sequences of T rows of D values (the CLS rows): codes or floats.
template <typename V>
std::vector<V> first_rows(const V* h, int B, int T, int D) {
  std::vector<V> out(static_cast<size_t>(B) * D);
  for (int b = 0; b < B; ++b) std::copy(h + static_cast<size_t>(b) * T * D, h + (static_cast<size_t>(b) * T + 1) * D, out.begin() + static_cast<size_t>(b) * D);
  return out;
}

// The first rows of B sequences moved to the front of h (rows 0..B−1), in place.
template <typename V>
void keep_first_rows(std::vector<V>* h, int B, int T, int D) {
  for (int b = 1; b < B; ++b)  // row b·T → row b: forward, each source lies at or past its destination
    std::copy(h->begin() + static_cast<std::ptrdiff_t>(b) * T * D, h->begin() + (static_cast<std::ptrdiff_t>(b) * T + 1) * D,
              h->begin() + static_cast<std::ptrdiff_t>(b) * D);
}

// After a layer that ran its CLS rows alone (cls_only): those rows moved to the front of h, and
// *in_front set for cls_rows. Nothing otherwise.
template <typename V>
void keep_cls_rows(bool cls_only, std::vector<V>* h, int B, int T, int D, bool* in_front) {
  if (!cls_only) return;
  keep_first_rows(h, B, T, D);
  *in_front = true;
}

// The B CLS rows of the last layer's output h: in front already where that layer ran them alone
// (keep_first_rows, in_front), else row 0 of each sequence.
template <typename V>
std::vector<V> cls_rows(const std::vector<V>& h, int B, int T, int D, bool in_front) {
  return in_front ? std::vector<V>(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(B) * D) : first_rows(h.data(), B, T, D);
}

// f applied to a linear layer's output, quantized by `out`, with integers only at run time.
// The accumulator is requantized to a fine grid of 2^29 steps over the input range that
// matters; the grid is cut into cells (2^13 of them where the output steps allow: 32 KB, the
// size of a first-level cache), and each cell stores the out-code at its start, the code after
// the one boundary it may contain, and that boundary's offset (found by bisection at load). So
// the result is exact up to the 2^-29 input grid — far finer than any output step.
struct IntElementwise {
  static constexpr int kGridBits = 29;
  int cell_bits = 16;  // 2^cell_bits fine steps per cell (smaller when output steps are dense)
  ChannelRequant to_grid;
  // Per cell: boundary (offset of the first fine step with code `after`; 0 with after == before
  // when the cell has none) | before << 16 | after << 24: one 32-bit gather per value.
  std::vector<uint32_t> packed;

  // The fast form of the same codes (AVX-512): the table's gather costs a few cycles a value, so
  // each value is first placed by arithmetic, on segment coordinates in float32: u = acc · scale_c
  // + bias_c = (x − lo) / w − ½ for x = acc · acc_scale_c + bias, clamped to [−½, 31.5), so that
  // round(u) is the segment (32 of width w over [lo, hi]) and s = u − round(u) ∈ [−½, ½] the
  // place in it; then y = f(x) / s_out + z by a polynomial in s fitted per segment at load. The
  // code is round(y) wherever y lies more than `tie_margin` from a rounding boundary (k + ½). That
  // margin bounds, at load, every difference between this y and the table's: float32 rounding of
  // u and of the polynomial, the fit, the table's own 2^-29 input grid, and f's change below lo
  // (lo lies above the table's own lower end where f is flat there to 2^-14 of a step); so those
  // codes are the table's, bit for bit. Values nearer a boundary (a fraction of a per cent) and
  // accumulators of 2^24 or more (not exact in float32; only checked where the weights allow
  // them) take the table. `on` is false where the fit cannot promise a margin below 1/32 of a
  // step (every value then takes the table).
  struct PolyGuess {
    static constexpr int kSegments = 32, kDegree = 3;
    bool on = false;
    bool acc_below_2_24 = false;  // every accumulator the producer's weights allow is below 2^24 in magnitude
    float lo = 0, hi = 0;         // the segments' range of x
    float u_min = -0.5f, u_max = 0;  // u_max: the float below 31.5 (round(u) ≤ 31)
    float tie_margin = 0;
    std::array<std::array<float, kSegments>, kDegree + 1> coef{};  // coef[j][segment]: of s^j, in output steps (z in coef[0])
    std::vector<float> scale, bias;  // per channel, of u: acc_scale / w, and (bias with the zero-point term − lo) / w − ½
    int32_t qmin = 0, qmax = 255;
    // u of accumulator `acc` of channel c, clamped, and y at u: the float operations of the vector loop.
    float place(int32_t acc, size_t c) const { return std::min(u_max, std::max(u_min, std::fma(static_cast<float>(acc), scale[c], bias[c]))); }
    float eval(float u) const;
  } poly;

  static IntElementwise make(const IntLinear& producer, const std::function<double(double)>& f, const QParams& out,
                             double lo, double hi);
  // acc [M, N] → out codes [M, N] in one pass (AVX-512 when compiled for it).
  void rows(const int32_t* acc, int M, uint8_t* out) const;
  // The same without the polynomial (every value by the table): what rows() was before it.
  void rows_by_table(const int32_t* acc, int M, uint8_t* out) const;
  // The plain form: all grid indices (ChannelRequant), then a cell lookup each.
  void rows_plain(const int32_t* acc, int M, uint8_t* out) const;
  uint8_t code_at(int32_t grid_index) const;
};

// Process-wide: whether IntElementwise::rows uses its polynomial form where it has one (default
// true). false: the table alone, as rows_by_table — for A/B timings (qtx_forward_ab).
void set_activation_polynomial(bool on);

// The MLP half of a block: fc1 GEMM → activation by table → fc2 GEMM, a block of rows at a
// time, so that fc1's int32 accumulators stay in the second-level cache from the GEMM to the
// activation (bert-austen at batch 32: 4096 rows × 1024 of them, 16 MB, which oneDNN writes more
// slowly than the same product on fewer rows — docs/RUNTIME.md).
struct IntMlp {
  IntLinear fc1, fc2;
  IntElementwise act;
  std::vector<uint8_t> act_to_fc2;  // activation codes → fc2's input grid (empty: the same)
  // `prefix` + intermediate.dense, intermediate.intermediate_act_fn, output.dense (both models' names).
  static IntMlp load(const Artifact& a, const std::string& prefix, int D, int F, const std::string& hidden_act, Kernels kernels);
  int row_block() const { return rows_in_cache(fc1.N); }
  // x: fc1's input codes [M, fc1.K]; y [M, fc1.N]: on return the activation's codes on fc2's
  // input grid (act_to_fc2 applied in place); out: fc2's accumulators [M, fc2.N], bias not
  // applied. `tap_act` (may be empty) is called once per block with that block's activation
  // codes, before the table to fc2's grid — so a tap that wants the whole site passes rows ≥ M
  // (IntModel::mlp_rows does whenever a tap is set).
  void run(const uint8_t* x, int M, int rows, std::vector<int32_t>& acc, uint8_t* y, int32_t* out,
           const std::function<void(const uint8_t*, size_t)>& tap_act) const;
};

// Requantization helpers shared by the integer models.
// A table mapping codes of `from` to codes of `to`; empty when the two quantizers are the same.
std::vector<uint8_t> table_between(const QParams& from, const QParams& to);
// out[i] = t[in[i]] (a copy when t is empty); in == out is allowed.
void apply_table(const std::vector<uint8_t>& t, const uint8_t* in, size_t n, uint8_t* out);
// The same loop without SIMD or threads (t: 256 entries): what apply_table's byte permutes are tested against.
void apply_table_plain(const uint8_t* t, const uint8_t* in, size_t n, uint8_t* out);
// A linear layer's accumulators (bias included) → codes of `out`.
ChannelRequant to_codes(const IntLinear& l, const QParams& out);
// One real value → its code (load time only: constants such as ViT's CLS row).
uint8_t code_of(double real, const QParams& q);

// Elementwise function by name (config hidden_act), in double for the tables.
std::function<double(double)> activation_fn(const std::string& hidden_act);

}  // namespace qtx::rt
