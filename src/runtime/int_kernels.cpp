#include "runtime/int_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "runtime/parallel.h"
#include "runtime/simd.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define QTX_VNNI 1
#endif

namespace qtx::rt {
namespace {
std::atomic<bool> g_short_rows{true};  // set_short_attention_rows
}  // namespace

Requant Requant::from_real(double M) {
  Requant r;
  if (!(M > 0)) return r;
  int e = 0;
  const double f = std::frexp(M, &e);  // M = f · 2^e, f ∈ [0.5, 1)
  int64_t m = static_cast<int64_t>(std::llround(f * (int64_t{1} << 31)));
  if (m == (int64_t{1} << 31)) {  // f rounded up to 1.0
    m /= 2;
    ++e;
  }
  r.m = static_cast<int32_t>(m);
  r.shift = 31 - e;
  return r;
}

double Requant::real() const { return m * std::pow(2.0, -shift); }

void gemm_u8s8_ref(const uint8_t* A, int32_t za, const int8_t* B, int32_t* C, int M, int N, int K) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      int32_t acc = 0;
      for (int k = 0; k < K; ++k) acc += (static_cast<int32_t>(A[i * K + k]) - za) * B[j * K + k];
      C[i * N + j] = acc;
    }
}

uint64_t isqrt(uint64_t n) {
  if (n < 2) return n;
  // An estimate from the correctly rounded double square root, which is within one of ⌊√n⌋
  // (n rounds to 53 bits first); then integer compares settle it. No division, where Newton's
  // iteration takes five or six 64-bit divisions per LayerNorm row.
  uint64_t x = static_cast<uint64_t>(std::sqrt(static_cast<double>(n)));
  constexpr uint64_t kMaxRoot = 0xffffffffu;  // ⌊√(2^64 − 1)⌋: x·x must not wrap
  if (x > kMaxRoot) x = kMaxRoot;
  while (x * x > n) --x;
  while (x < kMaxRoot && (x + 1) * (x + 1) <= n) ++x;
  return x;
}

uint64_t pow2_div(int e, uint64_t d) {
  const unsigned __int128 num = static_cast<unsigned __int128>(1) << e;
  // The double quotient is within 2^-52 relative of the true one (d rounds to 53 bits, then the
  // division rounds): for results below 2^63, within a few thousand units. The remainder then
  // fits int64 and its own floor-division by d settles the result exactly.
  auto r = static_cast<int64_t>(std::ldexp(1.0, e) / static_cast<double>(d));
  if (r < 0) r = 0;
  const auto rem = static_cast<int64_t>(static_cast<__int128>(num) - static_cast<__int128>(r) * static_cast<__int128>(d));
  const auto sd = static_cast<int64_t>(d);
  int64_t q = rem / sd;  // truncates toward zero: make it the floor
  if (rem % sd != 0 && rem < 0) --q;
  return static_cast<uint64_t>(r + q);
}

IntExp IntExp::for_scale(double s) {
  constexpr double kB = 0.96963238 / 0.35815147, kC = 1.0 / 0.35815147;
  IntExp e;
  e.R = std::max(0, static_cast<int>(std::ceil(std::log2(65536.0 * s / std::log(2.0)))));
  const double sr = s / std::pow(2.0, e.R);
  e.x0 = static_cast<int64_t>(std::floor(-0.6931471805599453 / sr));
  e.b = static_cast<int64_t>(std::floor(kB / sr));
  e.c = static_cast<int64_t>(std::floor(kC / (sr * sr)));
  return e;
}

int64_t IntExp::operator()(int64_t q) const {
  int64_t x = std::max(q * (int64_t{1} << R), 30 * x0);
  // z = ⌊x / x0⌋ with x ≤ 0, x0 < 0 (C++ division truncates toward zero; both negative → floor).
  const int64_t z = x / x0;
  const int64_t p = x - x0 * z;
  const int64_t e = (p + b) * p + c;
  return e >> z;
}

void log_int_softmax_row(const int32_t* q, const uint8_t* valid, int n, const IntExp& ie, int bits, int8_t* codes) {
  int32_t mx = std::numeric_limits<int32_t>::min();
  for (int i = 0; i < n; ++i)
    if (valid[i]) mx = std::max(mx, q[i]);
  thread_local std::vector<int64_t> e;
  e.assign(static_cast<size_t>(n), 0);
  int64_t sum = 0;
  for (int i = 0; i < n; ++i)
    if (valid[i]) sum += e[static_cast<size_t>(i)] = ie(static_cast<int64_t>(q[i]) - mx);
  const int top = 1 << bits;
  for (int i = 0; i < n; ++i) {
    const int64_t ei = e[static_cast<size_t>(i)];
    if (!valid[i] || ei <= 0) {
      codes[i] = -1;
      continue;
    }
    const int64_t r = (2 * sum + ei) / (2 * ei);  // round(sum / e), half up (both positive)
    int k = 63 - __builtin_clzll(static_cast<uint64_t>(r));
    if (k > 0 && r - (int64_t{1} << k) >= (int64_t{1} << (k - 1))) ++k;
    codes[i] = static_cast<int8_t>(k >= top ? -1 : k);
  }
}

LogIntSoftmax LogIntSoftmax::make(const IntExp& ie, int range, int bits) {
  LogIntSoftmax l;
  l.bits = bits;
  l.range = range;
  for (int g = 0; g <= range; ++g) l.exp_of_gap.push_back(ie(-g));
  return l;
}

namespace {
// Log-Int-Softmax's thresholds on r = round(Σe / e): 2, 3, 6, 12, …, 3·2^(j−2) (j ≤ 61).
int64_t lis_threshold(int j) { return j == 1 ? int64_t{2} : int64_t{3} << (j - 2); }
}  // namespace

#if defined(__AVX512F__) && defined(__AVX512DQ__)
namespace {
// The codes of r = ⌊(2Σ + e) / 2e⌋ for eight e (LogIntSoftmax::row's scalar loop gives the
// reasoning): k from r's exponent and first mantissa bit, -1 where e ≤ 0 or k ≥ top; stored for
// the lanes in `in`.
inline void lis_codes8(__m512i ev, __m512d two_sum, __m512i top, __mmask8 in, int8_t* codes) {
  const __m512d ed = _mm512_cvtepi64_pd(ev);
  const __m512d r = _mm512_roundscale_pd(_mm512_div_pd(_mm512_add_pd(two_sum, ed), _mm512_add_pd(ed, ed)),
                                         _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512i b = _mm512_castpd_si512(r);
  const __m512i k = _mm512_add_epi64(_mm512_sub_epi64(_mm512_srli_epi64(b, 52), _mm512_set1_epi64(1023)),
                                     _mm512_and_si512(_mm512_srli_epi64(b, 51), _mm512_set1_epi64(1)));
  const __mmask8 dropped = _mm512_cmple_epi64_mask(ev, _mm512_setzero_si512()) | _mm512_cmpge_epi64_mask(k, top);
  _mm512_mask_cvtepi64_storeu_epi8(codes, in, _mm512_mask_blend_epi64(dropped, k, _mm512_set1_epi64(-1)));
}
}  // namespace
#endif

void LogIntSoftmax::rows(const int32_t* q, const uint8_t* valid, int n_rows, int n, int8_t* codes) const {
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if (g_short_rows.load(std::memory_order_relaxed) && n >= 8 && n <= 32 && n_rows <= 64) {
    alignas(64) int64_t E[64 * 32 + 8];  // dense: row t's exps at t·n (+ 8: the last masked load's reach)
    alignas(64) double two_sum[64];
    uint64_t exact_rows = 0;              // rows whose 2Σ + e may reach 2^53: row_by_exp afterwards
    const long long* tab = reinterpret_cast<const long long*>(exp_of_gap.data());
    const __mmask16 in0 = static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
    const __mmask16 in1 = static_cast<__mmask16>(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
    __mmask16 live0 = in0, live1 = in1;
    if (valid) {
      const __mmask32 in = static_cast<__mmask32>(in0 | static_cast<uint32_t>(in1) << 16);
      const __mmask32 ok = _mm256_mask_test_epi8_mask(in, _mm256_maskz_loadu_epi8(in, valid), _mm256_set1_epi8(-1));
      live0 = static_cast<__mmask16>(ok);
      live1 = static_cast<__mmask16>(ok >> 16);
    }
    const __m512i low = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
    for (int t = 0; t < n_rows; ++t) {
      const int32_t* qt = q + static_cast<size_t>(t) * n;
      const __m512i q0 = _mm512_mask_loadu_epi32(low, live0, qt), q1 = _mm512_mask_loadu_epi32(low, live1, qt + 16);
      const __m512i mx = _mm512_set1_epi32(_mm512_reduce_max_epi32(_mm512_max_epi32(q0, q1)));
      const __m512i g0 = _mm512_sub_epi32(mx, q0), g1 = _mm512_sub_epi32(mx, q1);  // gaps (not read where not live)
      const __m512i e0 = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live0), _mm512_castsi512_si256(g0), tab, 8);
      const __m512i e1 = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live0 >> 8), _mm512_extracti64x4_epi64(g0, 1), tab, 8);
      __m512i e2 = _mm512_setzero_si512(), e3 = _mm512_setzero_si512();
      if (live1) e2 = _mm512_mask_i32gather_epi64(e2, static_cast<__mmask8>(live1), _mm512_castsi512_si256(g1), tab, 8);
      if (live1 >> 8) e3 = _mm512_mask_i32gather_epi64(e3, static_cast<__mmask8>(live1 >> 8), _mm512_extracti64x4_epi64(g1, 1), tab, 8);
      int64_t* Et = E + static_cast<size_t>(t) * n;
      _mm512_storeu_si512(Et, e0);
      _mm512_mask_storeu_epi64(Et + 8, static_cast<__mmask8>(in0 >> 8), e1);
      _mm512_mask_storeu_epi64(Et + 16, static_cast<__mmask8>(in1), e2);
      _mm512_mask_storeu_epi64(Et + 24, static_cast<__mmask8>(in1 >> 8), e3);
      const int64_t sum = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(e0, e1), _mm512_add_epi64(e2, e3)));
      two_sum[t] = 2.0 * static_cast<double>(sum);
      if (2 * sum + exp_of_gap[0] >= (int64_t{1} << 53)) exact_rows |= uint64_t{1} << t;
    }
    // Eight exps at a time over all rows; n ≥ 8, so eight span at most two rows: row r's 2Σ up
    // to lane `edge`, row r + 1's after it.
    const __m512i top = _mm512_set1_epi64(int64_t{1} << bits);
    const int total = n_rows * n;
    int r = 0, row_end = n;  // the row of element i, and where it ends
    for (int i = 0; i < total; i += 8) {
      const __mmask8 in = static_cast<__mmask8>(total - i >= 8 ? 0xff : (1u << (total - i)) - 1);
      const int edge = row_end - i;  // lanes before the next row
      __m512d ts = _mm512_set1_pd(two_sum[r]);
      if (edge < 8) ts = _mm512_mask_blend_pd(static_cast<__mmask8>(0xffu << edge), ts, _mm512_set1_pd(two_sum[std::min(r + 1, n_rows - 1)]));
      lis_codes8(_mm512_maskz_loadu_epi64(in, E + i), ts, top, in, codes + i);
      if (edge <= 8) {
        ++r;
        row_end += n;
      }
    }
    for (int t = 0; exact_rows; ++t, exact_rows >>= 1)
      if (exact_rows & 1) row_by_exp(q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
    return;
  }
#endif
  for (int t = 0; t < n_rows; ++t) row(q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
}

void LogIntSoftmax::row(const int32_t* q_in, const uint8_t* valid, int n, int8_t* codes_out) const {
  const int32_t* __restrict q = q_in;
  int8_t* __restrict codes = codes_out;
  const int64_t* __restrict tab = exp_of_gap.data();
  constexpr int32_t kLow = std::numeric_limits<int32_t>::min();
  int32_t mx = kLow;
  if (valid) {
    const uint8_t* __restrict ok = valid;
    for (int i = 0; i < n; ++i) mx = std::max(mx, ok[i] ? q[i] : kLow);
  } else {
    for (int i = 0; i < n; ++i) mx = std::max(mx, q[i]);
  }
  thread_local std::vector<int64_t> ev;
  ev.resize(static_cast<size_t>(n));
  int64_t* __restrict e = ev.data();
  int64_t sum = 0;
  int i_exp = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  // e = i-exp of the gap by two 8-lane gathers per 16 scores, the sum in vector lanes (the
  // scalar loop below, which GCC leaves scalar when tuning for AMD, had been half of the row).
  {
    const __m512i mxv = _mm512_set1_epi32(mx);
    __m512i acc = _mm512_setzero_si512();
    for (; i_exp + 16 <= n; i_exp += 16) {
      const __m512i gap = _mm512_sub_epi32(mxv, _mm512_loadu_si512(q + i_exp));
      __mmask16 live = 0xffff;
      if (valid) live = _mm_test_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(valid + i_exp)), _mm_set1_epi8(-1));
      const __m512i lo = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live), _mm512_castsi512_si256(gap), tab, 8);
      const __m512i hi = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live >> 8), _mm512_extracti64x4_epi64(gap, 1), tab, 8);
      _mm512_storeu_si512(e + i_exp, lo);
      _mm512_storeu_si512(e + i_exp + 8, hi);
      acc = _mm512_add_epi64(acc, _mm512_add_epi64(lo, hi));
    }
    sum = _mm512_reduce_add_epi64(acc);
  }
#endif
  if (valid) {
    for (int i = i_exp; i < n; ++i) sum += e[i] = valid[i] ? tab[mx - q[i]] : 0;
  } else {
    for (int i = i_exp; i < n; ++i) sum += e[i] = tab[mx - q[i]];
  }
  // r = ⌊(2Σ + e) / 2e⌋ in double is exact while 2Σ + e < 2^53: both operands are exact, and a
  // quotient that is not an integer lies at least 1/2e below the next one, more than half an ulp.
  if (2 * sum + tab[0] >= (int64_t{1} << 53)) return row_by_exp(q_in, valid, n, codes_out);
  const double two_sum = 2.0 * static_cast<double>(sum);
  const int64_t top = int64_t{1} << bits;
  int i0 = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  // The loop below, eight lanes at a time (GCC leaves it scalar): the same double operations,
  // which IEEE makes exact per lane, then the same exponent and mantissa bits.
  {
    const __m512d ts = _mm512_set1_pd(two_sum);
    const __m512i top_v = _mm512_set1_epi64(top);
    for (; i0 < n; i0 += 8) {
      const __mmask8 in = static_cast<__mmask8>(n - i0 >= 8 ? 0xff : (1u << (n - i0)) - 1);
      lis_codes8(_mm512_maskz_loadu_epi64(in, e + i0), ts, top_v, in, codes + i0);
    }
  }
#endif
  for (int i = i0; i < n; ++i) {
    const double ei = static_cast<double>(e[i]);
    const double r = std::floor((two_sum + ei) / (2.0 * ei));
    // k = #thresholds t_j ≤ r (2, 3, 6, 12, …) = ⌊log2 r⌋ + the bit below r's top bit: the
    // double's exponent plus its first mantissa bit (r ≥ 1).
    int64_t b;
    std::memcpy(&b, &r, sizeof b);
    const int64_t k = (b >> 52) - 1023 + ((b >> 51) & 1);
    codes[i] = static_cast<int8_t>(e[i] <= 0 || k >= top ? -1 : k);  // e = 0 (r = ∞) or 2^-k below the grid
  }
}

void LogIntSoftmax::row_by_exp(const int32_t* q_in, const uint8_t* valid, int n, int8_t* codes_out) const {
  const int32_t* __restrict q = q_in;
  int8_t* __restrict codes = codes_out;
  const int64_t* __restrict tab = exp_of_gap.data();
  const int top = 1 << bits;
  int32_t mx = std::numeric_limits<int32_t>::min();
  thread_local std::vector<int64_t> ev;
  thread_local std::vector<int32_t> kv;
  ev.resize(static_cast<size_t>(n));
  kv.assign(static_cast<size_t>(n), 0);
  int64_t* __restrict e = ev.data();
  int32_t* __restrict k = kv.data();
  int64_t sum = 0;
  if (valid) {
    const uint8_t* __restrict ok = valid;
    for (int i = 0; i < n; ++i) mx = std::max(mx, ok[i] ? q[i] : std::numeric_limits<int32_t>::min());
    for (int i = 0; i < n; ++i) sum += e[i] = ok[i] ? tab[mx - q[i]] : 0;
  } else {
    for (int i = 0; i < n; ++i) mx = std::max(mx, q[i]);
    for (int i = 0; i < n; ++i) sum += e[i] = tab[mx - q[i]];
  }
  // k = ⌊log2 r⌋ + the bit below r's top bit, r = ⌊(2Σ + e) / 2e⌋, is the number of thresholds
  // t_j (2, 3, 6, 12, …, 3·2^(j−2)) with r ≥ t_j, and r ≥ t ⇔ e ≤ ⌊2Σ / (2t − 1)⌋: one integer
  // division per threshold and row, then compares over the row that vectorise.
  for (int j = 1; j < top && j < 62; ++j) {
    const int64_t E = 2 * sum / (2 * lis_threshold(j) - 1);
    if (E < 1) break;  // no e ≥ 1 passes this or any later threshold
    for (int i = 0; i < n; ++i) k[i] += e[i] <= E;
  }
  // e ≤ 0 (below the i-exp grid or padding) → -1, and so is k ≥ top, i.e. r ≥ t_top (a threshold
  // that no r reaches when top ≥ 62, as 2Σ < 2^62).
  const int64_t Etop = top < 62 ? 2 * sum / (2 * lis_threshold(top) - 1) : 0;
  for (int i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(e[i] <= 0 || e[i] <= Etop ? -1 : k[i]);
}

IntLayerNorm IntLayerNorm::make(int32_t z, const std::vector<int>& alpha, const std::vector<float>& gamma,
                                const std::vector<float>& beta, const QParams& out) {
  IntLayerNorm n;
  if (gamma.size() > 4096) throw std::invalid_argument("IntLayerNorm: more than 4096 channels");
  n.C = static_cast<int>(gamma.size());
  n.z = z;
  n.alpha = alpha.empty() ? std::vector<int>(gamma.size(), 0) : alpha;
  double mx = 1e-30;
  for (float g : gamma) mx = std::max(mx, std::fabs(g) / out.scale);
  int e = 0;
  std::frexp(mx, &e);
  n.shift = 30 - e;  // |gain| < 2^30; with |t| < 2^29 the products stay below 2^59
  if (n.shift < 1 || n.shift + 24 > 62) throw std::invalid_argument("LayerNorm gain γ/s_out out of range");
  for (size_t c = 0; c < gamma.size(); ++c) {
    n.gain.push_back(std::llround(gamma[c] / out.scale * std::ldexp(1.0, n.shift)));
    n.bias.push_back(std::llround((beta[c] / out.scale + 0.5) * std::ldexp(1.0, n.shift + 24)));  // + ½: round half up
  }
  n.zo = out.zero;
  n.qmin = out.qmin;
  n.qmax = out.qmax;
  {  // the float placement: terms and margin (see the header)
    double g_max = 0, b_max = 0;
    for (size_t c = 0; c < n.gain.size(); ++c) {
      n.gain_f.push_back(static_cast<float>(std::ldexp(static_cast<double>(n.gain[c]), -(n.shift + 56))));
      n.bias_f.push_back(static_cast<float>(std::ldexp(static_cast<double>(n.bias[c]), -(n.shift + 24)) - 0.5 + n.zo));
      g_max = std::max(g_max, std::fabs(static_cast<double>(n.gain[c])));
      b_max = std::max(b_max, std::fabs(static_cast<double>(n.bias_f.back())));
    }
    // |y| that matters: the codes' range and one step beyond (farther out the clamp decides, and
    // the error, relative to |y|, cannot bring y back); |d · R · gain_f| ≤ |y| + |bias_f|.
    const double y_max = std::max(std::abs(n.qmin), std::abs(n.qmax)) + 2.0;
    const double margin = 1.1 * (std::ldexp(5.0 * (y_max + b_max), -24) + 0.5 * std::ldexp(g_max, -(n.shift + 24)));
    n.placed = margin < 1.0 / 32;
    n.tie_margin = n.placed ? std::nextafter(static_cast<float>(margin), 1.0f) : 0.0f;
  }
  n.gain_even_odd = n.gain;
  n.bias_even_odd = n.bias;
  for (int c = 0; c + 16 <= n.C; c += 16) {
    simd::split_even_odd(n.gain.data() + c, n.gain_even_odd.data() + c);
    simd::split_even_odd(n.bias.data() + c, n.bias_even_odd.data() + c);
  }
  return n;
}

void IntLayerNorm::row(const uint8_t* q, uint8_t* out) const {
  int32_t x[4096];
  for (int c = 0; c < C; ++c) x[c] = (static_cast<int32_t>(q[c]) - z) * (1 << alpha[static_cast<size_t>(c)]);
  row_centred(x, out);
}

void IntLayerNorm::row_centred(const int32_t* x, uint8_t* out, bool vectorised) const {
  int64_t sum = 0, sq = 0;
  row_sums(x, &sum, &sq);
  row_output(x, sum, row_factor(sum, sq), out, vectorised);
}

void IntLayerNorm::row_sums(const int32_t* x_in, int64_t* sum_out, int64_t* sq_out) const {
  const int n = C;
  const int32_t* __restrict x = x_in;
  int64_t sum = 0, sq = 0;
  for (int c = 0; c < n; ++c) {
    sum += x[c];
    sq += static_cast<int64_t>(x[c]) * x[c];
  }
  *sum_out = sum;
  *sq_out = sq;
}

int64_t IntLayerNorm::row_factor(int64_t sum, int64_t sq) const {
  const int n = C;
  // With d_c = C·x_c − Σx (integral), Σd² = C²·Σx² − C·(Σx)² = C³·var: one pass, no stored d.
  // Σd² = C·(C·Σx² − (Σx)²), so C²·var = Σd²/C = C·Σx² − (Σx)² exactly, without dividing.
  const uint64_t vc = static_cast<uint64_t>(static_cast<__int128>(n) * sq - static_cast<__int128>(sum) * sum);  // C²·var
  // sd = C·σ·2^k with k chosen so sd has ~24 significant bits.
  int k = 0;
  if (vc > 0) {
    const int bits = 64 - __builtin_clzll(vc);
    k = std::max(0, (48 - bits) / 2);
  }
  const int64_t sd = static_cast<int64_t>(isqrt(vc << (2 * k)));
  // t = d · 2^(k+24) / sd as d · R / 2^32 with R = 2^(k+56) / sd, one division per row:
  // |d|·2^k ≤ √C·sd, so |d·R| < 2^(33+log2 √C) stays far inside int64.
  // (pow2_div: a 128-bit division is a library call of ~100 cycles, once per row.)
  return sd <= 0 ? 0 : static_cast<int64_t>(pow2_div(k + 56, static_cast<uint64_t>(sd)));
}

void IntLayerNorm::row_output(const int32_t* x_in, int64_t sum, int64_t R, uint8_t* out_in, bool vectorised) const {
  // Fields in restrict-qualified locals: 8-bit stores may alias anything, and the compiler
  // would otherwise reload every member per element and not vectorise.
  const int n = C;
  const int32_t* __restrict x = x_in;
  uint8_t* __restrict out = out_in;
  const int64_t* __restrict g = gain.data();
  const int64_t* __restrict b = bias.data();
  const int s = shift + 24;
  const int64_t zout = zo, lo = qmin, hi = qmax, nn = n;
  int c = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)  // DQ: the 64-bit multiply
  if (vectorised) {
    // The same integer steps; t (|t| ≤ 2^24·√C < 2^31) and γ/s_out (< 2^30) are int32, so t·g is
    // one 32×32→64 multiply. d = C·x − Σx is int32 too (|d| < 2^26).
    const __m512i n_v = _mm512_set1_epi32(n), sum_v = _mm512_set1_epi32(static_cast<int32_t>(sum)), R_v = _mm512_set1_epi64(R),
                  r31 = _mm512_set1_epi64(int64_t{1} << 31), z_v = _mm512_set1_epi64(zout), lo_v = _mm512_set1_epi64(lo),
                  hi_v = _mm512_set1_epi64(hi);
    const __m128i s_v = _mm_cvtsi32_si128(s);
    auto eight = [&](__m256i d, const int64_t* g8, const int64_t* b8) {
      const __m512i t = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mullo_epi64(_mm512_cvtepi32_epi64(d), R_v), r31), 32);
      __m512i q = _mm512_add_epi64(_mm512_mul_epi32(t, _mm512_loadu_si512(g8)), _mm512_loadu_si512(b8));
      q = _mm512_add_epi64(_mm512_sra_epi64(q, s_v), z_v);
      return _mm512_cvtepi64_epi32(_mm512_min_epi64(_mm512_max_epi64(q, lo_v), hi_v));
    };
    if (s >= 32 && zout - lo >= INT32_MIN && hi - zout <= INT32_MAX) {
      // Even and odd lanes apart (no widening or narrowing across lanes): d's halves sign-extended
      // in place, γ and β already split so at load, and ⌊q / 2^s⌋ from the high halves of q
      // gathered by one blend and one 32-bit shift (⌊q/2^s⌋ = ⌊⌊q/2^32⌋/2^(s−32)⌋).
      const int64_t* __restrict ge = gain_even_odd.data();
      const int64_t* __restrict be = bias_even_odd.data();
      const __m512i lo32 = _mm512_set1_epi32(static_cast<int32_t>(lo - zout)), hi32 = _mm512_set1_epi32(static_cast<int32_t>(hi - zout)),
                    z32 = _mm512_set1_epi32(static_cast<int32_t>(zout));
      const __m128i s32 = _mm_cvtsi32_si128(s - 32);
      auto half = [&](__m512i d64, const int64_t* g8, const int64_t* b8) {
        const __m512i t = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mullo_epi64(d64, R_v), r31), 32);
        return _mm512_add_epi64(_mm512_mul_epi32(t, _mm512_loadu_si512(g8)), _mm512_loadu_si512(b8));
      };
      auto integer16 = [&](__m512i d, int at) __attribute__((always_inline)) {
        const __m512i qe = half(_mm512_srai_epi64(_mm512_slli_epi64(d, 32), 32), ge + at, be + at);
        const __m512i qo = half(_mm512_srai_epi64(d, 32), ge + at + 8, be + at + 8);
        const __m512i v = simd::floor_shift_high_halves(qe, qo, s32);
        return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo32), hi32), z32);
      };
      const float* __restrict gf = gain_f.data();
      const float* __restrict bf = bias_f.data();
      const __m512 R_f = _mm512_set1_ps(static_cast<float>(R)), near_tie = _mm512_set1_ps(0.5f - tie_margin);
      const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
      const bool full = lo == 0 && hi == 255;
      simd::with_flag(placed, [&](auto by_float) {
        auto sixteen = [&](int at) __attribute__((always_inline)) {
          const __m512i d = _mm512_sub_epi32(_mm512_mullo_epi32(_mm512_loadu_si512(x + at), n_v), sum_v);
          if constexpr (!decltype(by_float)::value) {
            return integer16(d, at);
          } else {  // the float placement; a vector's lanes near a boundary by the integer steps
            const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(R_f, _mm512_loadu_ps(gf + at)), _mm512_loadu_ps(bf + at));
            __mmask16 open;
            __m512i code = simd::round_unless_near_tie(y, near_tie, &open);
            if (!full) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
            if (__builtin_expect(open != 0, 0)) code = _mm512_mask_blend_epi32(open, code, integer16(d, at));
            return code;
          }
        };
        c = full && decltype(by_float)::value ? simd::store_codes_clamped(out, c, n, sixteen)
                                              : simd::store_code_vectors(out, c, n, lo >= 0 && hi <= 255, sixteen);
      });
    }
    for (; c + 16 <= n; c += 16) {
      const __m512i d = _mm512_sub_epi32(_mm512_mullo_epi32(_mm512_loadu_si512(x + c), n_v), sum_v);
      const __m256i q0 = eight(_mm512_castsi512_si256(d), g + c, b + c), q1 = eight(_mm512_extracti64x4_epi64(d, 1), g + c + 8, b + c + 8);
      simd::store_lanes(out + c, _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1));
    }
  }
#endif
  for (; c < n; ++c) {
    const int64_t d = nn * x[c] - sum;
    const int64_t t = (d * R + (int64_t{1} << 31)) >> 32;  // normalised value · 2^24
    const int64_t qo = ((t * g[c] + b[c]) >> s) + zout;    // round(γ·t/s_out + β/s_out) + zo
    out[c] = static_cast<uint8_t>(qo < lo ? lo : (qo > hi ? hi : qo));
  }
}

void requant_to_codes(const int32_t* in_p, size_t n, const Requant& r, const QParams& o, uint8_t* out_p) {
  const int32_t* __restrict in = in_p;
  uint8_t* __restrict out = out_p;
  const int64_t m = r.m, z = o.zero, lo = o.qmin, hi = o.qmax;
  if (r.shift <= 0) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = round_shift(in[i] * m, r.shift) + z;
      out[i] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
    }
    return;
  }
  // The loop gets its values as locals (by value into the lambda, then restrict pointers): an
  // 8-bit store may alias anything reached through the closure, which stops vectorisation.
  const int sh = r.shift;
  const int64_t half = int64_t{1} << (sh - 1);
  // AVX-512: simd::RoundShift16 where it applies (the clamp bounds minus the zero point in int32).
  [[maybe_unused]] const bool wide = sh >= 32 && sh <= 62 && m >= 0 && lo - z >= INT32_MIN && hi - z <= INT32_MAX;
  parallel_range(n, [=](size_t begin, size_t end) {
    const int32_t* __restrict src = in;
    uint8_t* __restrict dst = out;
    const int64_t m_ = m, z_ = z, lo_ = lo, hi_ = hi, half_ = half;
    const int sh_ = sh;
    size_t i = begin;
#if defined(__AVX512F__)
    if (wide) {
      const simd::RoundShift16 rs(m_, sh_, static_cast<int32_t>(lo_ - z_), static_cast<int32_t>(hi_ - z_), static_cast<int32_t>(z_));
      for (; i + 16 <= end; i += 16) simd::store_lanes(dst + i, rs(_mm512_loadu_si512(src + i)));
    }
#endif
    for (; i < end; ++i) {
      // round_shift branch-free: shift |x| with half added, then restore the sign.
      const int64_t x = src[i] * m_;
      const int64_t sgn = x >> 63;
      const int64_t a = ((((x ^ sgn) - sgn) + half_) >> sh_);
      const int64_t v = ((a ^ sgn) - sgn) + z_;
      dst[i] = static_cast<uint8_t>(v < lo_ ? lo_ : (v > hi_ ? hi_ : v));
    }
  });
}

}  // namespace qtx::rt

namespace qtx::rt {

// One shift for a set of multipliers: the largest gets 30 significant bits.
int common_shift(double max_multiplier) {
  int e = 0;
  std::frexp(max_multiplier, &e);
  const int shift = 30 - e;
  // Scales this far apart (a ratio above 2^29 or below 2^-32) only come from a corrupt artifact.
  if (!(max_multiplier > 0) || shift < 1 || shift > 62)
    throw std::invalid_argument("requantization multiplier " + std::to_string(max_multiplier) + " is out of range");
  return shift;
}

namespace {
// bias + half per channel, each full group of 16 channels reordered [even | odd] (simd::Requant16).
std::vector<int64_t> even_odd_addends(const std::vector<int64_t>& bias, int N, int shift) {
  const int64_t half = int64_t{1} << (shift - 1);
  std::vector<int64_t> out(bias.size());
  for (size_t i = 0; i < bias.size(); ++i) out[i] = bias[i] + half;
  for (size_t row = 0; N > 0 && row < bias.size() / static_cast<size_t>(N); ++row)
    for (int c = 0; c + 16 <= N; c += 16) {
      int64_t group[16];
      const size_t at = row * static_cast<size_t>(N) + static_cast<size_t>(c);
      std::copy(out.begin() + static_cast<std::ptrdiff_t>(at), out.begin() + static_cast<std::ptrdiff_t>(at) + 16, group);
      simd::split_even_odd(group, out.data() + at);
    }
  return out;
}

long double max_abs(const std::vector<int64_t>& v) {
  long double m = 0;
  for (int64_t x : v) m = std::max(m, std::fabs(static_cast<long double>(x)));
  return m;
}

// RequantPlacement for y = acc·m_c/2^s [+ h·m_h/2^s] + (bias − z_h·m_h)/2^s + z_out (codes
// within 0..255; else off). float32 rounds m, m_h and b (2^-24 of each) and the fmas (2^-24 of
// each result), so |y − exact| ≤ 2^-24 (|acc·m| + |h·m_h| + |b| + |inner| + |y|) with
// |acc·m| ≤ |y| + |inner| and |inner| ≤ 255|m_h| + |b|: 2^-24 (2|y| + 3·255|m_h| + 3|b|). Values
// whose code matters lie within [qmin − 2, qmax + 2]; farther out, the clamp decides and the
// relative error cannot move them back in (the bias bound below).
RequantPlacement placement_for(const std::vector<int32_t>& m, const std::vector<int64_t>& bias, int shift, int32_t zo,
                               int32_t qmin, int32_t qmax, int64_t mh, int32_t zh, int64_t acc_bound) {
  RequantPlacement p;
  if (qmin < 0 || qmax > 255) return p;
  const double inv = std::ldexp(1.0, -shift);
  for (int32_t v : m) p.m.push_back(static_cast<float>(v * inv));
  double b_max = 0;
  for (int64_t v : bias) {
    const double b = (static_cast<double>(v) - static_cast<double>(zh) * static_cast<double>(mh)) * inv + zo;
    p.b.push_back(static_cast<float>(b));
    b_max = std::max(b_max, std::fabs(b));
  }
  p.mh = static_cast<float>(static_cast<double>(mh) * inv);
  const double h_term = 255.0 * std::fabs(static_cast<double>(mh) * inv), y_max = std::max(std::abs(qmin), std::abs(qmax)) + 2.0;
  const double margin = std::ldexp(2 * y_max + 3 * h_term + 3 * b_max, -24) * 1.01;
  if (!(b_max < (1 << 20)) || !(h_term < (1 << 20)) || !(margin < 1.0 / 64)) return p;
  p.tie_margin = std::nextafter(static_cast<float>(margin), 1.0f);
  p.check_acc = !(acc_bound > 0 && acc_bound < (int64_t{1} << 24));
  p.on = true;
  return p;
}

// Round half up: a tie (exactly .5 after a 30-bit multiplier) is the only case where this
// differs from half-away-from-zero, and a floor shift vectorises.
int32_t clamp32(int64_t v, int32_t lo, int32_t hi) { return static_cast<int32_t>(v < lo ? lo : (v > hi ? hi : v)); }
}  // namespace

ChannelRequant ChannelRequant::make(const std::vector<double>& acc_scale, const std::vector<double>& bias_real,
                                    int bias_rows, double out_scale, int32_t zo, int32_t qmin, int32_t qmax,
                                    const std::vector<int64_t>& acc_offset, int64_t acc_bound) {
  // simd::Requant16 clamps to [qmin − zo, qmax − zo] in int32 lanes.
  if (static_cast<int64_t>(qmax) - zo > INT32_MAX || static_cast<int64_t>(qmin) - zo < INT32_MIN)
    throw std::invalid_argument("requantization: zero point too far from the code range");
  ChannelRequant r;
  r.N = static_cast<int>(acc_scale.size());
  r.bias_rows = bias_rows;
  double mx = 0;
  for (double s : acc_scale) mx = std::max(mx, s / out_scale);
  r.shift = common_shift(mx);
  for (double s : acc_scale) r.m.push_back(static_cast<int32_t>(std::llround(s / out_scale * std::ldexp(1.0, r.shift))));
  r.bias.resize(static_cast<size_t>(bias_rows) * r.N, 0);
  for (size_t i = 0; i < bias_real.size() && i < r.bias.size(); ++i)
    r.bias[i] = std::llround(bias_real[i] / out_scale * std::ldexp(1.0, r.shift));
  if (!acc_offset.empty()) {
    if (acc_offset.size() != static_cast<size_t>(r.N)) throw std::invalid_argument("ChannelRequant: one offset per channel");
    for (size_t i = 0; i < r.bias.size(); ++i) r.bias[i] += acc_offset[i % r.N] * r.m[i % r.N];
  }
  r.zo = zo;
  r.qmin = qmin;
  r.qmax = qmax;
  r.add_even_odd = even_odd_addends(r.bias, r.N, r.shift);
  std::vector<int64_t> m64(r.m.begin(), r.m.end());
  r.lanes = simd::lanes_for(r.shift, std::ldexp(1.0L, 31) * max_abs(m64) + max_abs(r.add_even_odd));
  r.placement = placement_for(r.m, r.bias, r.shift, zo, qmin, qmax, 0, 0, acc_bound);
  return r;
}

template <typename Out>
void ChannelRequant::apply(const int32_t* acc, int M, Out* out, [[maybe_unused]] bool placed) const {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if constexpr (std::is_same_v<Out, uint8_t>)
    if (placed) return rows_placed(acc, M, out);
#endif
  // Members and vectors copied to restrict-qualified locals: an 8-bit store may alias anything,
  // and without this the compiler reloads every field per element and cannot vectorise.
  const int64_t half = shift > 0 ? int64_t{1} << (shift - 1) : 0;
  const int n = N, br = bias_rows, sh = shift;
  const int64_t z = zo, lo = qmin, hi = qmax;
  const int32_t* __restrict mm = m.data();
  const int64_t* __restrict bb = bias.data();
  [[maybe_unused]] const int64_t* __restrict eo = add_even_odd.data();
  [[maybe_unused]] const simd::Lanes form = lanes;
  [[maybe_unused]] const bool byte_codes = lo >= 0 && hi <= 255;  // store_64_codes saturates to 0..255
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const int32_t* __restrict a = acc + static_cast<size_t>(i) * n;
    const size_t brow = static_cast<size_t>(i % br) * n;
    const int64_t* __restrict b = bb + brow;
    Out* __restrict o = out + static_cast<size_t>(i) * n;
    int c = 0;
#if defined(__AVX512F__)
    const int64_t* __restrict e = eo + brow;
    simd::with_lanes(form, [&](auto L) {
      const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
      auto sixteen = [&](int at) {
        return rq(_mm512_loadu_si512(a + at), _mm512_loadu_si512(mm + at), _mm512_loadu_si512(e + at), _mm512_loadu_si512(e + at + 8));
      };
      if constexpr (std::is_same_v<Out, uint8_t>) {
        c = simd::store_code_vectors(o, c, n, byte_codes, sixteen);
      } else {
        for (; c + 16 <= n; c += 16) simd::store_lanes(o + c, sixteen(c));
      }
    });
#endif
    for (; c < n; ++c) {
      const int64_t v = ((static_cast<int64_t>(a[c]) * mm[c] + b[c] + half) >> sh) + z;
      o[c] = static_cast<Out>(v < lo ? lo : (v > hi ? hi : v));
    }
  });
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
void ChannelRequant::rows_placed(const int32_t* acc, int M, uint8_t* out) const {
  // Every choice and constant once per call, outside the row loop (rows of 192 channels are
  // twelve vectors: setting up per row had cost as much as a sixth of the kernel).
  const int n = N, br = bias_rows, sh = shift;
  const int64_t z = zo, lo = qmin, hi = qmax, half = int64_t{1} << (shift - 1);
  const int32_t* __restrict mm = m.data();
  const int64_t* __restrict bb = bias.data();
  const int64_t* __restrict eo = add_even_odd.data();
  const float* __restrict pm = placement.m.data();
  const float* __restrict pb_all = placement.b.data();
  const __m512 near_tie = _mm512_set1_ps(0.5f - placement.tie_margin);
  const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
  const __m512i exact_max = _mm512_set1_epi32((1 << 24) - 1);
  simd::with_lanes(lanes, [&](auto L) {
  simd::with_flag(placement.check_acc, [&](auto check_acc) {
  simd::with_flag(lo == 0 && hi == 255, [&](auto full) {  // store_codes_clamped clamps to exactly 0..255
    const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
    parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
      const int32_t* __restrict a = acc + static_cast<size_t>(i) * n;
      const size_t brow = static_cast<size_t>(i % br) * n;
      const int64_t* __restrict e = eo + brow;
      const float* __restrict pb = pb_all + brow;
      uint8_t* __restrict o = out + static_cast<size_t>(i) * n;
      const auto placed16 = [&](int at) __attribute__((always_inline)) {
        const __m512i av = _mm512_loadu_si512(a + at);
        __mmask16 open;
        __m512i code = simd::round_unless_near_tie(
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(pm + at), _mm512_loadu_ps(pb + at)), near_tie, &open);
        if constexpr (decltype(check_acc)::value) open |= _mm512_cmpgt_epu32_mask(_mm512_abs_epi32(av), exact_max);
        if constexpr (!decltype(full)::value) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
        if (__builtin_expect(open != 0, 0))  // rare: a branch, so the integer form is not computed for every vector
          code = _mm512_mask_blend_epi32(open, code, rq(av, _mm512_loadu_si512(mm + at), _mm512_loadu_si512(e + at), _mm512_loadu_si512(e + at + 8)));
        return code;
      };
      int c = simd::store_codes_clamped(o, 0, n, placed16);
      for (; c < n; ++c) {
        const int64_t v = ((static_cast<int64_t>(a[c]) * mm[c] + bb[brow + static_cast<size_t>(c)] + half) >> sh) + z;
        o[c] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
      }
    });
  });
  });
  });
}
#endif

void ChannelRequant::rows(const int32_t* acc, int M, uint8_t* out) const { apply(acc, M, out, placement.on); }
void ChannelRequant::rows_integer(const int32_t* acc, int M, uint8_t* out) const { apply(acc, M, out, false); }
void ChannelRequant::rows32(const int32_t* acc, int M, int32_t* out) const { apply(acc, M, out, false); }

ResidualRequant ResidualRequant::make(const std::vector<double>& acc_scale, const std::vector<double>& bias_real,
                                      const QParams& h, const QParams& out, const std::vector<int64_t>& acc_offset,
                                      int64_t acc_bound) {
  ResidualRequant r;
  r.N = static_cast<int>(acc_scale.size());
  double mx = h.scale / out.scale;
  for (double s : acc_scale) mx = std::max(mx, s / out.scale);
  r.shift = common_shift(mx);
  for (size_t c = 0; c < acc_scale.size(); ++c) {
    r.ma.push_back(static_cast<int32_t>(std::llround(acc_scale[c] / out.scale * std::ldexp(1.0, r.shift))));
    r.bias.push_back(std::llround(bias_real[c] / out.scale * std::ldexp(1.0, r.shift)));
    if (!acc_offset.empty()) r.bias.back() += acc_offset.at(c) * r.ma.back();
  }
  r.mb = std::llround(h.scale / out.scale * std::ldexp(1.0, r.shift));
  r.zh = h.zero;
  r.zo = out.zero;
  r.qmin = out.qmin;
  r.qmax = out.qmax;
  if (static_cast<int64_t>(r.qmax) - r.zo > INT32_MAX || static_cast<int64_t>(r.qmin) - r.zo < INT32_MIN)
    throw std::invalid_argument("requantization: zero point too far from the code range");
  r.add_even_odd = even_odd_addends(r.bias, r.N, r.shift);
  std::vector<int64_t> ma64(r.ma.begin(), r.ma.end());
  const long double h_term = std::max(std::fabs(static_cast<long double>(r.zh)), std::fabs(255.0L - r.zh)) * std::fabs(static_cast<long double>(r.mb));
  r.lanes = simd::lanes_for(r.shift, std::ldexp(1.0L, 31) * max_abs(ma64) + max_abs(r.add_even_odd) + h_term);
  r.placement = placement_for(r.ma, r.bias, r.shift, r.zo, r.qmin, r.qmax, r.mb, r.zh, acc_bound);
  return r;
}

void ResidualRequant::rows(const int32_t* acc, const uint8_t* h, int M, uint8_t* out) const {
  apply(acc, h, M, out, placement.on);
}

void ResidualRequant::rows_integer(const int32_t* acc, const uint8_t* h, int M, uint8_t* out) const {
  apply(acc, h, M, out, false);
}

void ResidualRequant::apply(const int32_t* acc, const uint8_t* h, int M, uint8_t* out, [[maybe_unused]] bool placed) const {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  if (placed) return rows_placed(acc, h, M, out);
#endif
  const int64_t half = shift > 0 ? int64_t{1} << (shift - 1) : 0;  // locals: see ChannelRequant::apply
  const int n = N, sh = shift;
  const int64_t z = zo, lo = qmin, hi = qmax, mh = mb, zr = zh;
  const int32_t* __restrict ma_ = ma.data();
  const int64_t* __restrict b = bias.data();
  [[maybe_unused]] const int64_t* __restrict e = add_even_odd.data();
  [[maybe_unused]] const simd::Lanes form = lanes;
  [[maybe_unused]] const bool byte_codes = lo >= 0 && hi <= 255;  // store_64_codes saturates to 0..255
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const size_t off = static_cast<size_t>(i) * n;
    const int32_t* __restrict a = acc + off;
    const uint8_t* __restrict hr = h + off;
    uint8_t* __restrict o = out + off;
    int c = 0;
#if defined(__AVX512F__)
    simd::with_lanes(form, [&](auto L) {
      const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
      // mb < 2^31 and h − zh are int32, so each half of the residual's term is one vpmuldq.
      const __m512i mh_v = _mm512_set1_epi64(mh), zr_v = _mm512_set1_epi32(static_cast<int32_t>(zr));
      auto sixteen = [&](int at) {
        const __m512i hc = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hr + at))), zr_v);
        const __m512i add_e = _mm512_add_epi64(_mm512_loadu_si512(e + at), _mm512_mul_epi32(hc, mh_v));
        const __m512i add_o = _mm512_add_epi64(_mm512_loadu_si512(e + at + 8), _mm512_mul_epi32(_mm512_srli_epi64(hc, 32), mh_v));
        return rq(_mm512_loadu_si512(a + at), _mm512_loadu_si512(ma_ + at), add_e, add_o);
      };
      c = simd::store_code_vectors(o, c, n, byte_codes, sixteen);
    });
#endif
    for (; c < n; ++c) {
      const int64_t v = ((static_cast<int64_t>(a[c]) * ma_[c] + b[c] + (static_cast<int64_t>(hr[c]) - zr) * mh + half) >> sh) + z;
      o[c] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
    }
  });
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
void ResidualRequant::rows_placed(const int32_t* acc, const uint8_t* h, int M, uint8_t* out) const {
  // As ChannelRequant::rows_placed: choices and constants once per call.
  const int n = N, sh = shift;
  const int64_t z = zo, lo = qmin, hi = qmax, mh = mb, zr = zh, half = int64_t{1} << (shift - 1);
  const int32_t* __restrict ma_ = ma.data();
  const int64_t* __restrict b = bias.data();
  const int64_t* __restrict e = add_even_odd.data();
  const float* __restrict pm = placement.m.data();
  const float* __restrict pb = placement.b.data();
  const __m512 mh_f = _mm512_set1_ps(placement.mh), near_tie = _mm512_set1_ps(0.5f - placement.tie_margin);
  const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
  const __m512i exact_max = _mm512_set1_epi32((1 << 24) - 1);
  const __m512i mh_v = _mm512_set1_epi64(mh), zr_v = _mm512_set1_epi32(static_cast<int32_t>(zr));
  simd::with_lanes(lanes, [&](auto L) {
  simd::with_flag(placement.check_acc, [&](auto check_acc) {
  simd::with_flag(lo == 0 && hi == 255, [&](auto full) {
    const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
    parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
      const size_t off = static_cast<size_t>(i) * n;
      const int32_t* __restrict a = acc + off;
      const uint8_t* __restrict hr = h + off;
      uint8_t* __restrict o = out + off;
      const auto placed16 = [&](int at) __attribute__((always_inline)) {
        const __m512i av = _mm512_loadu_si512(a + at);
        const __m512i hc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hr + at)));
        const __m512 inner = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hc), mh_f, _mm512_loadu_ps(pb + at));
        __mmask16 open;
        __m512i code = simd::round_unless_near_tie(_mm512_fmadd_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(pm + at), inner), near_tie, &open);
        if constexpr (decltype(check_acc)::value) open |= _mm512_cmpgt_epu32_mask(_mm512_abs_epi32(av), exact_max);
        if constexpr (!decltype(full)::value) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
        if (__builtin_expect(open != 0, 0)) {  // rare: the integer form (ResidualRequant::apply's) for this vector
          const __m512i hz = _mm512_sub_epi32(hc, zr_v);
          const __m512i add_e = _mm512_add_epi64(_mm512_loadu_si512(e + at), _mm512_mul_epi32(hz, mh_v));
          const __m512i add_o = _mm512_add_epi64(_mm512_loadu_si512(e + at + 8), _mm512_mul_epi32(_mm512_srli_epi64(hz, 32), mh_v));
          code = _mm512_mask_blend_epi32(open, code, rq(av, _mm512_loadu_si512(ma_ + at), add_e, add_o));
        }
        return code;
      };
      int c = simd::store_codes_clamped(o, 0, n, placed16);
      for (; c < n; ++c) {
        const int64_t v = ((static_cast<int64_t>(a[c]) * ma_[c] + b[c] + (static_cast<int64_t>(hr[c]) - zr) * mh + half) >> sh) + z;
        o[c] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
      }
    });
  });
  });
  });
}
#endif

std::vector<uint8_t> requant_table(const QParams& from, double out_scale, int32_t zo, int32_t qmin, int32_t qmax) {
  std::vector<uint8_t> t(256, 0);
  for (int q = 0; q < 256; ++q) {
    const double x = (q - from.zero) * from.scale / out_scale;
    const double r = x >= 0 ? std::floor(x + 0.5) : -std::floor(-x + 0.5);
    t[static_cast<size_t>(q)] = static_cast<uint8_t>(clamp32(static_cast<int64_t>(r) + zo, qmin, qmax));
  }
  return t;
}

namespace {
// The plain form: centred int16 operands, each score an int16 dot product.
void qk_scores_plain(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  thread_local std::vector<int16_t> kc, qc;
  kc.resize(static_cast<size_t>(T) * dh);
  qc.resize(static_cast<size_t>(dh));
  for (int j = 0; j < T; ++j)
    for (int d = 0; d < dh; ++d) kc[static_cast<size_t>(j) * dh + d] = static_cast<int16_t>(k[static_cast<size_t>(j) * ld + d] - zk);
  for (int t = 0; t < Tq; ++t) {
    for (int d = 0; d < dh; ++d) qc[static_cast<size_t>(d)] = static_cast<int16_t>(q[static_cast<size_t>(t) * ld + d] - zq);
    const int16_t* __restrict qr = qc.data();
    for (int j = 0; j < T; ++j) {
      const int16_t* __restrict kr = kc.data() + static_cast<size_t>(j) * dh;
      int32_t s = 0;
      for (int d = 0; d < dh; ++d) s += static_cast<int32_t>(qr[d]) * kr[d];
      S[static_cast<size_t>(t) * T + j] = s;
    }
  }
}

#ifdef QTX_VNNI
// r[i] (sixteen rows of sixteen dwords) becomes its transpose: r[g][i] = old r[i][g].
inline void transpose_16x16_epi32(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8)
    for (int k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_i32x4(r[i + k], r[i + 4 + k], 0x88);
      t[i + 4 + k] = _mm512_shuffle_i32x4(r[i + k], r[i + 4 + k], 0xdd);
    }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0xdd);
  }
}

// The packing one key and one dimension at a time (head sizes that are not a multiple of 64).
void qk_pack_plain(const uint8_t* k, int32_t zq, int32_t zk, const uint8_t* q, int Tq, int T, int G, int dh, int ld,
                   std::vector<uint32_t>& kp, std::vector<int32_t>& key_term, std::vector<int32_t>& query_term) {
  const int JB = (T + 15) / 16;
  for (int j = T; j < JB * 16; ++j) {  // keys past T: zero (their scores are not stored)
    key_term[static_cast<size_t>(j)] = 0;
    for (int g = 0; g < G; ++g) kp[static_cast<size_t>(j / 16) * G * 16 + static_cast<size_t>(g) * 16 + j % 16] = 0;
  }
  for (int j = 0; j < T; ++j) {
    const uint8_t* kr = k + static_cast<size_t>(j) * ld;
    uint32_t* dst = kp.data() + static_cast<size_t>(j / 16) * G * 16 + j % 16;
    int32_t sum = 0;
    for (int g = 0; g < G; ++g) {
      uint32_t w;
      std::memcpy(&w, kr + 4 * g, 4);
      dst[static_cast<size_t>(g) * 16] = w ^ 0x80808080u;
    }
    for (int d = 0; d < dh; ++d) sum += kr[d] - 128;
    key_term[static_cast<size_t>(j)] = -zq * sum;
  }
  for (int t = 0; t < Tq; ++t) {
    int32_t sum = 0;
    for (int d = 0; d < dh; ++d) sum += q[static_cast<size_t>(t) * ld + d] - zq;
    query_term[static_cast<size_t>(t)] = (128 - zk) * sum;
  }
}

// The products on the packed keys, four queries per pass: S[t, j] for the first T keys (packed
// in kp), S's rows ldS apart.
void qk_scores_packed(const uint8_t* q, int Tq, int T, int G, int ld, const std::vector<uint32_t>& kp,
                      const std::vector<int32_t>& key_term, const std::vector<int32_t>& query_term, int32_t* S, int ldS) {
  const int JB = (T + 15) / 16;
  auto bcast = [&](int t, int g) {
    uint32_t w;
    std::memcpy(&w, q + static_cast<size_t>(t) * ld + 4 * g, 4);
    return _mm512_set1_epi32(static_cast<int32_t>(w));
  };
  for (int jb = 0; jb < JB; ++jb) {
    const uint32_t* kb = kp.data() + static_cast<size_t>(jb) * G * 16;
    const __m512i kt = _mm512_loadu_si512(key_term.data() + static_cast<size_t>(jb) * 16);
    const __mmask16 m = T - jb * 16 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (T - jb * 16)) - 1);
    int t = 0;
    for (; t + 4 <= Tq; t += 4) {
      __m512i a0 = kt, a1 = kt, a2 = kt, a3 = kt;
      for (int g = 0; g < G; ++g) {
        const __m512i kv = _mm512_loadu_si512(kb + static_cast<size_t>(g) * 16);
        a0 = _mm512_dpbusd_epi32(a0, bcast(t, g), kv);
        a1 = _mm512_dpbusd_epi32(a1, bcast(t + 1, g), kv);
        a2 = _mm512_dpbusd_epi32(a2, bcast(t + 2, g), kv);
        a3 = _mm512_dpbusd_epi32(a3, bcast(t + 3, g), kv);
      }
      const __m512i acc[4] = {a0, a1, a2, a3};
      for (int r = 0; r < 4; ++r)
        _mm512_mask_storeu_epi32(S + static_cast<size_t>(t + r) * ldS + jb * 16, m,
                                 _mm512_add_epi32(acc[r], _mm512_set1_epi32(query_term[static_cast<size_t>(t + r)])));
    }
    for (; t < Tq; ++t) {
      __m512i a = kt;
      for (int g = 0; g < G; ++g) a = _mm512_dpbusd_epi32(a, bcast(t, g), _mm512_loadu_si512(kb + static_cast<size_t>(g) * 16));
      _mm512_mask_storeu_epi32(S + static_cast<size_t>(t) * ldS + jb * 16, m,
                               _mm512_add_epi32(a, _mm512_set1_epi32(query_term[static_cast<size_t>(t)])));
    }
  }
}

// Keys j0..T−1 (a few past the last whole block of sixteen) against every query, by one vpdpbusd
// per query and 64 dimensions and a horizontal sum of sixteen queries at a time (a transpose and
// adds) — instead of a packed block of sixteen keys mostly empty (vit-fmnist: 17 = 16 + 1 keys).
void qk_leftover_keys(const uint8_t* q, int32_t zq, const uint8_t* k, int Tq, int T, int j0, int dh, int ld,
                      const std::vector<int32_t>& query_term, int32_t* S) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), ones = _mm512_set1_epi8(1);
  for (int j = j0; j < T; ++j) {
    const uint8_t* kr = k + static_cast<size_t>(j) * ld;
    __m512i kf[16];  // dh ≤ 1024
    __m512i ksum = _mm512_setzero_si512();
    const int nd = dh / 64;
    for (int c = 0; c < nd; ++c) {
      kf[c] = _mm512_xor_si512(_mm512_loadu_si512(kr + 64 * c), flip);
      ksum = _mm512_dpbusd_epi32(ksum, ones, kf[c]);
    }
    const int32_t key_term = -zq * _mm512_reduce_add_epi32(ksum);
    auto dot = [&](int t) {
      const uint8_t* qr = q + static_cast<size_t>(t) * ld;
      __m512i a = _mm512_setzero_si512();
      for (int c = 0; c < nd; ++c) a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(qr + 64 * c), kf[c]);
      return a;
    };
    int t = 0;
    for (; t + 16 <= Tq; t += 16) {
      __m512i a[16];
      for (int i = 0; i < 16; ++i) a[i] = dot(t + i);
      transpose_16x16_epi32(a);
      __m512i sum = _mm512_add_epi32(_mm512_loadu_si512(query_term.data() + t), _mm512_set1_epi32(key_term));
      for (int i = 0; i < 16; ++i) sum = _mm512_add_epi32(sum, a[i]);
      alignas(64) int32_t out[16];
      _mm512_store_si512(out, sum);
      for (int i = 0; i < 16; ++i) S[static_cast<size_t>(t + i) * T + j] = out[i];
    }
    for (; t < Tq; ++t) S[static_cast<size_t>(t) * T + j] = _mm512_reduce_add_epi32(dot(t)) + key_term + query_term[static_cast<size_t>(t)];
  }
}

// With AVX512-VNNI: vpdpbusd multiplies four u8 (q) by four s8 and adds them into each int32
// lane. K' = k − 128 is s8 (k ^ 0x80), packed as [T/16][dh/4][16 keys][4 dims]; then
// Σ_d (q − zq)(k − zk) = Σ_d q·K' − zq·Σ_d K' + (128 − zk)·Σ_d (q − zq), the last two terms
// one number per key and per query. Sixteen keys per vector, four queries per pass.
void qk_scores_vnni(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  // A last block of at most four keys goes by qk_leftover_keys (dh a multiple of 64, ≥ 16 queries).
  const int leftover = dh % 64 == 0 && dh <= 1024 && Tq >= 16 && T % 16 <= 4 ? T % 16 : 0;
  const int Tp = T - leftover;  // keys in packed blocks
  const int G = dh / 4, JB = (Tp + 15) / 16;
  thread_local std::vector<uint32_t> kp;
  thread_local std::vector<int32_t> key_term, query_term;
  kp.resize(static_cast<size_t>(JB) * G * 16);
  key_term.resize(static_cast<size_t>(JB) * 16);
  query_term.resize(static_cast<size_t>(Tq));
  if (G % 16 == 0) {
    // The packing by 16 × 16 dword transposes (sixteen keys' rows of 64 bytes in, sixteen words
    // of four dimensions for sixteen keys out), the key sums Σ_d (k − 128) by vpdpbusd with
    // ones, the query sums by byte sums: the scalar packing had been a third of this kernel.
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), ones = _mm512_set1_epi8(1);
    for (int jb = 0; jb < JB; ++jb) {
      __m512i sums = _mm512_setzero_si512();
      for (int gt = 0; gt < G / 16; ++gt) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) {
          const int j = jb * 16 + i;
          r[i] = j < Tp ? _mm512_xor_si512(_mm512_loadu_si512(k + static_cast<size_t>(j) * ld + 64 * gt), flip) : _mm512_setzero_si512();
        }
        transpose_16x16_epi32(r);
        for (int g = 0; g < 16; ++g) {
          _mm512_storeu_si512(kp.data() + (static_cast<size_t>(jb) * G + 16 * gt + g) * 16, r[g]);
          sums = _mm512_dpbusd_epi32(sums, ones, r[g]);
        }
      }
      // Keys past Tp were zero rows, so their sums (and terms) are 0.
      _mm512_storeu_si512(key_term.data() + static_cast<size_t>(jb) * 16, _mm512_mullo_epi32(sums, _mm512_set1_epi32(-zq)));
    }
    for (int t = 0; t < Tq; ++t) {
      const uint8_t* qr = q + static_cast<size_t>(t) * ld;
      __m512i bytes = _mm512_setzero_si512();
      for (int d = 0; d < dh; d += 64) bytes = _mm512_add_epi64(bytes, _mm512_sad_epu8(_mm512_loadu_si512(qr + d), _mm512_setzero_si512()));
      const int32_t sum = static_cast<int32_t>(_mm512_reduce_add_epi64(bytes)) - zq * dh;
      query_term[static_cast<size_t>(t)] = (128 - zk) * sum;
    }
  } else {
    qk_pack_plain(k, zq, zk, q, Tq, Tp, G, dh, ld, kp, key_term, query_term);
  }
  qk_scores_packed(q, Tq, Tp, G, ld, kp, key_term, query_term, S, T);
  if (leftover) qk_leftover_keys(q, zq, k, Tq, T, Tp, dh, ld, query_term, S);
}
#endif
}  // namespace

void qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
#ifdef QTX_VNNI
  // Below two vectors of keys the scalar packing cost more than it saved (17 tokens were slower);
  // with the transposes (dh a multiple of 64) 17 tokens take half the time of the plain loops
  // (BM_QkScores/17). Fewer than 8 queries (a last layer's CLS row) take the plain loops.
  if (dh % 4 == 0 && (T >= 32 || (dh % 64 == 0 && T >= 16)) && Tq >= 8) return qk_scores_vnni(q, zq, k, zk, Tq, T, dh, ld, S);
#endif
  qk_scores_plain(q, zq, k, zk, Tq, T, dh, ld, S);
}

namespace {
// One output row at a time in a local accumulator: with DH a constant the row lives in vector
// registers (the loop over keys would otherwise load and store the output row per key).
template <int DH>
void av_log2_rows(const int8_t* codes, const int32_t* vc, int Tq, int T, int dh_rt, int kmax, int32_t* ctx, int ldc) {
  const int dh = DH > 0 ? DH : dh_rt;
  for (int t = 0; t < Tq; ++t) {
    int32_t acc[DH > 0 ? DH : 1024] = {};
    const int8_t* __restrict ct = codes + static_cast<size_t>(t) * T;
    for (int j = 0; j < T; ++j) {
      const int c = ct[j];
      if (c < 0 || c > kmax) continue;
      const int sh = kmax - c;
      const int32_t* __restrict vr = vc + static_cast<size_t>(j) * dh;
      // A shift, not a multiply (int32 multiplies are slow in vector units); unsigned so that
      // shifting a negative value is defined — the result is the same two's-complement bits.
      for (int d = 0; d < dh; ++d) acc[d] += static_cast<int32_t>(static_cast<uint32_t>(vr[d]) << sh);
    }
    int32_t* __restrict o = ctx + static_cast<size_t>(t) * ldc;
    for (int d = 0; d < dh; ++d) o[d] = acc[d];
  }
}
}  // namespace

#ifdef QTX_VNNI
namespace {
// kAvQueries queries' weights (rows r[] of a plane) against the key groups in `live`, each V load
// used by all of them. NB: the number of 16-wide blocks as a constant (so the inner loop unrolls),
// or 0 to take nb. Two queries (eight accumulators): four are no faster in the microbenchmark
// (with V held in registers) and would skip fewer key groups, whose liveness is per pass.
constexpr int kAvQueries = 2;
template <int NB>
[[gnu::always_inline]] inline void av_rows_accumulate(const int* live, int nlive, const uint8_t* const (&r)[kAvQueries],
                                                      const uint32_t* vbase, int dh, int nb, __m512i (&acc)[kAvQueries][4]) {
  const int n_blocks = NB > 0 ? NB : nb;
  for (int l = 0; l < nlive; ++l) {
    const int g = live[l];
    __m512i w[kAvQueries];
    for (int u = 0; u < kAvQueries; ++u) {
      uint32_t x;
      std::memcpy(&x, r[u] + 4 * g, 4);
      w[u] = _mm512_set1_epi32(static_cast<int32_t>(x));
    }
    const uint32_t* vr = vbase + static_cast<size_t>(g) * dh;
    for (int i = 0; i < n_blocks; ++i) {
      __m512i vv = _mm512_loadu_si512(vr + 16 * i);
      // Held in a register: GCC would fold the load into every query's vpdpbusd, loading V
      // once per query instead of once per pass.
      asm("" : "+v"(vv));
      for (int u = 0; u < kAvQueries; ++u) acc[u][i] = _mm512_dpbusd_epi32(acc[u][i], w[u], vv);
    }
  }
}

// V for vpdpbusd: vp[g·dh + d] holds dimension d of keys 4g..4g+3, one byte each, as v − 128
// in s8 (dh a multiple of 16; keys past T zero). 64 dimensions at a time: byte and word unpacks
// leave 128-bit lane L of word vector k with dimensions 16L + 4k..+3, and a 4 × 4 transpose of
// the lanes puts them in order; then 16 at a time in one 128-bit lane.
void interleave_values(const uint8_t* v, int ld, int T, int G, int dh, uint32_t* vp) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int g = 0; g < G; ++g) {
    const uint8_t* rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = 4 * g + i < T ? v + static_cast<size_t>(4 * g + i) * ld : nullptr;
    uint32_t* out = vp + static_cast<size_t>(g) * dh;
    int d = 0;
    for (; d + 64 <= dh; d += 64) {
      __m512i r[4];
      for (int i = 0; i < 4; ++i) r[i] = rows[i] ? _mm512_xor_si512(_mm512_loadu_si512(rows[i] + d), flip) : _mm512_setzero_si512();
      const __m512i lo01 = _mm512_unpacklo_epi8(r[0], r[1]), lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
      const __m512i hi01 = _mm512_unpackhi_epi8(r[0], r[1]), hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
      const __m512i w0 = _mm512_unpacklo_epi16(lo01, lo23), w1 = _mm512_unpackhi_epi16(lo01, lo23);
      const __m512i w2 = _mm512_unpacklo_epi16(hi01, hi23), w3 = _mm512_unpackhi_epi16(hi01, hi23);
      const __m512i t0 = _mm512_shuffle_i32x4(w0, w1, 0x44), t1 = _mm512_shuffle_i32x4(w0, w1, 0xee);
      const __m512i t2 = _mm512_shuffle_i32x4(w2, w3, 0x44), t3 = _mm512_shuffle_i32x4(w2, w3, 0xee);
      _mm512_storeu_si512(out + d, _mm512_shuffle_i32x4(t0, t2, 0x88));
      _mm512_storeu_si512(out + d + 16, _mm512_shuffle_i32x4(t0, t2, 0xdd));
      _mm512_storeu_si512(out + d + 32, _mm512_shuffle_i32x4(t1, t3, 0x88));
      _mm512_storeu_si512(out + d + 48, _mm512_shuffle_i32x4(t1, t3, 0xdd));
    }
    for (; d < dh; d += 16) {
      __m128i r[4];
      for (int i = 0; i < 4; ++i)
        r[i] = rows[i] ? _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + d)), _mm512_castsi512_si128(flip))
                       : _mm_setzero_si128();
      const __m128i lo01 = _mm_unpacklo_epi8(r[0], r[1]), lo23 = _mm_unpacklo_epi8(r[2], r[3]);
      const __m128i hi01 = _mm_unpackhi_epi8(r[0], r[1]), hi23 = _mm_unpackhi_epi8(r[2], r[3]);
      __m128i* o = reinterpret_cast<__m128i*>(out + d);
      _mm_storeu_si128(o, _mm_unpacklo_epi16(lo01, lo23));
      _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(lo01, lo23));
      _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(hi01, hi23));
      _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(hi01, hi23));
    }
  }
}

// A·V with AVX512-VNNI. The weight 2^(kmax − code) of a key is split by its exponent e into
// byte planes: plane p holds 2^(e − 8p) where ⌊e/8⌋ = p, 0 elsewhere, so each plane is u8 and
// Σ_j 2^e·(v_j − z) = Σ_p 2^(8p)·Σ_j plane_p[j]·(v_j − 128) + (128 − z)·Σ_j 2^e — vpdpbusd
// products with V − 128 as s8, plus one term per query. Arithmetic is mod 2^32 like the
// shifting loop's, so the two agree bit for bit.
void av_log2_vnni(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  const int TJ = (T + 3) & ~3, G = TJ / 4, DB = dh / 16, planes = kmax / 8 + 1;
  thread_local std::vector<uint8_t> P;    // [planes][Tq][TJ]
  thread_local std::vector<uint32_t> vp;  // [G][dh]: four keys' v − 128 per dimension
  thread_local std::vector<int32_t> weight_sum;
  P.resize(static_cast<size_t>(planes) * Tq * TJ);
  vp.resize(static_cast<size_t>(G) * dh);
  weight_sum.resize(static_cast<size_t>(Tq));
  interleave_values(v, ld, T, G, dh, vp.data());
  const uint32_t km = static_cast<uint32_t>(kmax);
#if defined(__AVX512VBMI__)
  // Sixty-four codes at a time: each plane's byte of a code by one vpermb from a 64-entry table
  // (codes outside [0, kmax], as unsigned bytes above kmax, masked to 0), the weight sum by
  // byte sums of the planes.
  __m512i tab[3];
  for (int p = 0; p < planes; ++p) {
    alignas(64) uint8_t b[64];
    for (uint32_t c = 0; c < 64; ++c) {
      const uint32_t e = km - c;
      b[c] = static_cast<uint8_t>(c <= km && (e >> 3) == static_cast<uint32_t>(p) ? 1u << (e & 7) : 0u);
    }
    tab[p] = _mm512_load_si512(b);
  }
  const __m512i km_v = _mm512_set1_epi8(static_cast<char>(kmax));
  for (int t = 0; t < Tq; ++t) {
    const int8_t* ct = codes + static_cast<size_t>(t) * T;
    uint64_t sum = 0;
    for (int j = 0; j < TJ; j += 64) {
      const __mmask64 in_row = T - j >= 64 ? ~__mmask64{0} : (__mmask64{1} << (T - j)) - 1;
      const __mmask64 in_plane = TJ - j >= 64 ? ~__mmask64{0} : (__mmask64{1} << (TJ - j)) - 1;
      const __m512i c = _mm512_maskz_loadu_epi8(in_row, ct + j);
      const __mmask64 valid = _mm512_mask_cmple_epu8_mask(in_row, c, km_v);
      for (int p = 0; p < planes; ++p) {
        const __m512i w = _mm512_maskz_permutexvar_epi8(valid, c, tab[p]);
        _mm512_mask_storeu_epi8(P.data() + (static_cast<size_t>(p) * Tq + t) * TJ + j, in_plane, w);
        sum += static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_sad_epu8(w, _mm512_setzero_si512()))) << (8 * p);
      }
    }
    weight_sum[static_cast<size_t>(t)] = static_cast<int32_t>(static_cast<uint32_t>(sum) * static_cast<uint32_t>(128 - zv));
  }
#else
  for (int t = 0; t < Tq; ++t) {
    const int8_t* __restrict ct = codes + static_cast<size_t>(t) * T;
    for (int p = 0; p < planes; ++p) {
      uint8_t* __restrict row = P.data() + (static_cast<size_t>(p) * Tq + t) * TJ;
      const uint32_t pp = static_cast<uint32_t>(p);
      for (int j = 0; j < T; ++j) {
        const uint32_t e = km - static_cast<uint32_t>(static_cast<int32_t>(ct[j]));  // > kmax when the code is out of range
        row[j] = static_cast<uint8_t>(e <= km && (e >> 3) == pp ? 1u << (e & 7) : 0u);
      }
      for (int j = T; j < TJ; ++j) row[j] = 0;
    }
    uint32_t sum = 0;
    for (int j = 0; j < T; ++j) {
      const uint32_t e = km - static_cast<uint32_t>(static_cast<int32_t>(ct[j]));
      sum += e <= km ? 1u << e : 0u;
    }
    weight_sum[static_cast<size_t>(t)] = static_cast<int32_t>(sum * static_cast<uint32_t>(128 - zv));
  }
#endif
  // kAvQueries queries per pass share each load of V; groups of four keys whose weights are zero
  // for all of them in a plane (plane 0 holds only probabilities below
  // 2^(8−kmax)) are left out of that plane's loop. Each plane's sums are added into ctx, which
  // starts at the weight-sum term.
  thread_local std::vector<int> live;
  live.resize(static_cast<size_t>(G) + 16);  // + one vector: the compressing stores write whole vectors
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int t0 = 0; t0 < Tq; t0 += kAvQueries) {
    const int nt = std::min(kAvQueries, Tq - t0);
    for (int d0 = 0; d0 < DB; d0 += 4) {  // four 16-wide blocks of the head per pass
      const int nb = std::min(4, DB - d0);
      for (int u = 0; u < nt; ++u)
        for (int i = 0; i < nb; ++i)
          _mm512_storeu_si512(ctx + static_cast<size_t>(t0 + u) * ldc + (d0 + i) * 16, _mm512_set1_epi32(weight_sum[static_cast<size_t>(t0 + u)]));
      for (int p = 0; p < planes; ++p) {
        const uint8_t* r[kAvQueries];  // rows past Tq repeat the last one (their sums are not stored)
        for (int u = 0; u < kAvQueries; ++u) r[u] = P.data() + (static_cast<size_t>(p) * Tq + t0 + std::min(u, nt - 1)) * TJ;
        int nlive = 0;
        for (int g = 0; g < G; g += 16) {  // sixteen groups a vector: their indices where any weight word is non-zero
          const __mmask16 in = G - g >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (G - g)) - 1);
          __m512i w = _mm512_maskz_loadu_epi32(in, r[0] + 4 * g);
          for (int u = 1; u < kAvQueries; ++u) w = _mm512_or_si512(w, _mm512_maskz_loadu_epi32(in, r[u] + 4 * g));
          const __mmask16 m = _mm512_test_epi32_mask(w, w);
          _mm512_storeu_si512(live.data() + nlive, _mm512_maskz_compress_epi32(m, _mm512_add_epi32(iota, _mm512_set1_epi32(g))));
          nlive += __builtin_popcount(m);
        }
        if (nlive == 0) continue;
        __m512i acc[kAvQueries][4];
        for (auto& row : acc)
          for (auto& x : row) x = _mm512_setzero_si512();
        const uint32_t* vbase = vp.data() + static_cast<size_t>(d0) * 16;
        if (nb == 4)
          av_rows_accumulate<4>(live.data(), nlive, r, vbase, dh, nb, acc);
        else
          av_rows_accumulate<0>(live.data(), nlive, r, vbase, dh, nb, acc);
        for (int u = 0; u < nt; ++u)
          for (int i = 0; i < nb; ++i) {
            int32_t* o = ctx + static_cast<size_t>(t0 + u) * ldc + (d0 + i) * 16;
            _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), _mm512_slli_epi32(acc[u][i], static_cast<unsigned>(8 * p))));
          }
      }
    }
  }
}

#if defined(__AVX512VBMI__) && defined(__AVX512VL__)
// A·V for short rows (T ≤ 32: vit-fmnist's 17 tokens), the byte planes of av_log2_vnni with its
// setup cut to what 32 keys need: buffers on the stack, a query's planes by one 32-byte vpermb
// each, its weight sum Σ 2^e by vpdpbusd against ones (every lane gets the sum, no horizontal
// add), and no skipping of empty key groups (at 17 tokens 90 % of the weights are non-zero).
constexpr int kShortKeys = 32, kShortMaxDh = 256;

inline __m512i weight_word(const uint8_t* plane_row, int g) {
  uint32_t x;
  std::memcpy(&x, plane_row + 4 * g, 4);
  return _mm512_set1_epi32(static_cast<int32_t>(x));
}

// NB 16-wide blocks of one query's output from `base` (its weight-sum term): Σ_p 2^(8p)·Σ_g
// plane_p · V over the key groups.
template <int NB>
[[gnu::always_inline]] inline void av_short_blocks(const uint8_t (*P)[kShortKeys], int planes, int G, const uint32_t* vb, int dh,
                                                   __m512i base, int32_t* o) {
  __m512i out[NB];
  for (auto& x : out) x = base;
  for (int p = 0; p < planes; ++p) {
    __m512i acc[NB];
    for (auto& x : acc) x = _mm512_setzero_si512();
    for (int g = 0; g < G; ++g) {
      const __m512i w = weight_word(P[p], g);
      const uint32_t* vr = vb + static_cast<size_t>(g) * dh;
      for (int i = 0; i < NB; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], w, _mm512_loadu_si512(vr + 16 * i));
    }
    for (int i = 0; i < NB; ++i) out[i] = _mm512_add_epi32(out[i], _mm512_slli_epi32(acc[i], static_cast<unsigned>(8 * p)));
  }
  for (int i = 0; i < NB; ++i) _mm512_storeu_si512(o + 16 * i, out[i]);
}

void av_log2_short(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  const int G = (T + 3) / 4, DB = dh / 16, planes = kmax / 8 + 1;
  alignas(64) uint32_t vp[kShortKeys / 4 * kShortMaxDh];
  interleave_values(v, ld, T, G, dh, vp);
  const uint32_t km = static_cast<uint32_t>(kmax);
  __m256i tab[3];  // plane p's byte of each code 0..31 (2^(e − 8p) where ⌊e/8⌋ = p, e = kmax − code)
  for (int p = 0; p < planes; ++p) {
    alignas(32) uint8_t b[32];
    for (uint32_t c = 0; c < 32; ++c) {
      const uint32_t e = km - c;
      b[c] = static_cast<uint8_t>(c <= km && (e >> 3) == static_cast<uint32_t>(p) ? 1u << (e & 7) : 0u);
    }
    tab[p] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
  }
  const __m256i km_v = _mm256_set1_epi8(static_cast<char>(kmax));
  const __mmask32 in_row = T >= 32 ? ~__mmask32{0} : (__mmask32{1} << T) - 1;
  const __m512i ones = _mm512_set1_epi8(1), zero_term = _mm512_set1_epi32(128 - zv);
  alignas(32) uint8_t P[3][kShortKeys];
  for (int t = 0; t < Tq; ++t) {
    // Codes outside [0, kmax] (as unsigned bytes: above kmax) weigh 0; keys past T are 0 too.
    const __m256i c = _mm256_maskz_loadu_epi8(in_row, codes + static_cast<size_t>(t) * T);
    const __mmask32 valid = _mm256_mask_cmple_epu8_mask(in_row, c, km_v);
    __m512i base = _mm512_setzero_si512();
    for (int p = 0; p < planes; ++p) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(P[p]), _mm256_maskz_permutexvar_epi8(valid, c, tab[p]));
      __m512i sum = _mm512_setzero_si512();
      for (int g = 0; g < G; ++g) sum = _mm512_dpbusd_epi32(sum, weight_word(P[p], g), ones);
      base = _mm512_add_epi32(base, _mm512_slli_epi32(sum, static_cast<unsigned>(8 * p)));
    }
    base = _mm512_mullo_epi32(base, zero_term);
    int32_t* o = ctx + static_cast<size_t>(t) * ldc;
    int d0 = 0;
    for (; d0 + 4 <= DB; d0 += 4) av_short_blocks<4>(P, planes, G, vp + 16 * d0, dh, base, o + 16 * d0);
    for (; d0 < DB; ++d0) av_short_blocks<1>(P, planes, G, vp + 16 * d0, dh, base, o + 16 * d0);
  }
}
#endif
}  // namespace
#endif

void set_short_attention_rows(bool on) { g_short_rows.store(on, std::memory_order_relaxed); }

void av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  if (dh > 1024) throw std::invalid_argument("av_log2: head size above 1024");
#ifdef QTX_VNNI
#if defined(__AVX512VBMI__) && defined(__AVX512VL__)
  if (g_short_rows.load(std::memory_order_relaxed) && dh % 16 == 0 && dh <= kShortMaxDh && T <= kShortKeys && kmax <= 23) return av_log2_short(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc);
#endif
  if (dh % 16 == 0 && T >= 32 && Tq >= 8 && kmax <= 23) return av_log2_vnni(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc);
#endif
  thread_local std::vector<int32_t> vc;
  vc.resize(static_cast<size_t>(T) * dh);
  for (int j = 0; j < T; ++j)
    for (int d = 0; d < dh; ++d) vc[static_cast<size_t>(j) * dh + d] = static_cast<int32_t>(v[static_cast<size_t>(j) * ld + d]) - zv;
  switch (dh) {
    case 32: av_log2_rows<32>(codes, vc.data(), Tq, T, dh, kmax, ctx, ldc); break;
    case 64: av_log2_rows<64>(codes, vc.data(), Tq, T, dh, kmax, ctx, ldc); break;
    default: av_log2_rows<0>(codes, vc.data(), Tq, T, dh, kmax, ctx, ldc); break;
  }
}

namespace {
// e^a for a in [−87, 88]: 2^k · e^r with |r| ≤ ln2/2, ln 2 split in two so k·ln2_hi is exact, e^r
// by its degree-7 Taylor polynomial. Inline and branch-free, so loops calling it vectorise.
inline float exp_reduced(float a) {
  const float k = std::floor(a * 1.44269504088896341f + 0.5f);
  const float r = (a - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;
  const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
  const int32_t e = (static_cast<int32_t>(k) + 127) << 23;
  float two_k;
  std::memcpy(&two_k, &e, sizeof two_k);
  return p * two_k;
}
}  // namespace

void exp_f32(float* x, size_t n) {
  float* __restrict v = x;
  for (size_t i = 0; i < n; ++i) {
    const float a = v[i];
    const float y = exp_reduced(std::min(88.0f, std::max(-87.0f, a)));
    v[i] = a < -87.0f ? 0.0f : y;  // e^-87 ≈ 1.6e-38: below it, 0 (as float's e^x, up to denormals)
  }
}

void gelu_erf_f32(float* x, size_t n) {
  float* __restrict v = x;
  for (size_t i = 0; i < n; ++i) {
    const float xi = v[i];
    const float xc = std::min(20.0f, std::max(-20.0f, xi));  // erfc(20/√2) ≈ 0 in float: keeps inf finite
    const float z = std::fabs(xc) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float a = -z * z - 1.26551223f +
              t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f +
              t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    a = std::max(a, -87.0f);
    const float half_x_erfc = 0.5f * xc * (t * exp_reduced(a));  // 0.5·x·erfc(|x|/√2)
    v[i] = xi >= 0 ? xi - half_x_erfc : (xi < 0 ? half_x_erfc : xi);  // NaN stays NaN
  }
}

}  // namespace qtx::rt
