#include "runtime/int_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "runtime/kernel_table.h"
#include "runtime/parallel.h"
#include "runtime/simd.h"

namespace qtx::rt {
namespace {
std::atomic<bool> g_short_rows{true};  // set_short_attention_rows

// A bias in the fixed point of a requantization, rounded as before: the kernels add it to
// products below 2^62 in int64, so beyond 2^60 it could overflow (and std::llround itself is
// undefined past int64); only a corrupt artifact, a bias huge next to its output scale, gets there.
constexpr int64_t kMaxFixedBias = int64_t{1} << 60;
int64_t fixed_bias(double v, const char* what) {
  if (!(std::fabs(v) <= static_cast<double>(kMaxFixedBias)))
    throw std::invalid_argument(std::string(what) + " is too large for its output scale (" + std::to_string(v) +
                                " in fixed point, limit 2^60)");
  return std::llround(v);
}
// bias + offset · m, exact, under the same limit.
int64_t add_offset(int64_t bias, int64_t offset, int64_t m, const char* what) {
  int64_t prod = 0, sum = 0;
  if (__builtin_mul_overflow(offset, m, &prod) || __builtin_add_overflow(bias, prod, &sum) || sum > kMaxFixedBias ||
      sum < -kMaxFixedBias)
    throw std::invalid_argument(std::string(what) + " plus its zero-point offset is too large for its output scale (limit 2^60)");
  return sum;
}
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

void gemm_u8s8_plain(const uint8_t* A, int32_t za, const int8_t* B, int32_t* C, int M, int N, int K) {
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


void LogIntSoftmax::rows(const int32_t* q, const uint8_t* valid, int n_rows, int n, int8_t* codes) const {
  const KernelTable& k = active_kernels();
  if (k.lis_rows && short_attention_rows() && k.lis_rows(*this, q, valid, n_rows, n, codes)) return;
  for (int t = 0; t < n_rows; ++t) row(q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
}

void LogIntSoftmax::row(const int32_t* q_in, const uint8_t* valid, int n, int8_t* codes_out) const {
  const KernelTable& kt = active_kernels();
  if (kt.lis_row) return kt.lis_row(*this, q_in, valid, n, codes_out);
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
  const int i_exp = kt.lis_exps ? kt.lis_exps(*this, q, valid, n, mx, e, &sum) : 0;
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
  const int i0 = kt.lis_codes ? kt.lis_codes(e, n, two_sum, top, codes) : 0;
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
    n.bias.push_back(fixed_bias((beta[c] / out.scale + 0.5) * std::ldexp(1.0, n.shift + 24), "LayerNorm β"));  // + ½: round half up
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
  // Unsigned: sums past int64 (only int32's extremes in long rows get there) wrap as the vector
  // forms' do, defined, instead of overflowing.
  uint64_t sum = 0, sq = 0;
  for (int c = 0; c < n; ++c) {
    sum += static_cast<uint64_t>(static_cast<int64_t>(x[c]));
    sq += static_cast<uint64_t>(static_cast<int64_t>(x[c]) * x[c]);
  }
  *sum_out = static_cast<int64_t>(sum);
  *sq_out = static_cast<int64_t>(sq);
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
  const KernelTable& k = active_kernels();
  int c = vectorised && k.layernorm_output ? k.layernorm_output(*this, x_in, sum, R, out_in) : 0;
  for (; c < n; ++c) {
    const int64_t d = nn * x[c] - sum;
    const int64_t t = (d * R + (int64_t{1} << 31)) >> 32;  // normalised value · 2^24
    const int64_t qo = ((t * g[c] + b[c]) >> s) + zout;    // round(γ·t/s_out + β/s_out) + zo
    out[c] = static_cast<uint8_t>(qo < lo ? lo : (qo > hi ? hi : qo));
  }
}

void requant_to_codes_plain(const int32_t* in_p, size_t begin, size_t end, const Requant& r, const QParams& o, uint8_t* out_p) {
  const int32_t* __restrict in = in_p;
  uint8_t* __restrict out = out_p;
  const int64_t m = r.m, z = o.zero, lo = o.qmin, hi = o.qmax;
  if (r.shift <= 0) {
    for (size_t i = begin; i < end; ++i) {
      const int64_t v = round_shift(in[i] * m, r.shift) + z;
      out[i] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
    }
    return;
  }
  const int sh = r.shift;
  const int64_t half = int64_t{1} << (sh - 1);
  for (size_t i = begin; i < end; ++i) {
    // round_shift branch-free: shift |x| with half added, then restore the sign.
    const int64_t x = in[i] * m;
    const int64_t sgn = x >> 63;
    const int64_t a = ((((x ^ sgn) - sgn) + half) >> sh);
    const int64_t v = ((a ^ sgn) - sgn) + z;
    out[i] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
  }
}

void requant_to_codes(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out) {
  if (const auto fast = active_kernels().requant_codes) return fast(in, n, r, o, out);
  parallel_range(n, [&](size_t begin, size_t end) { requant_to_codes_plain(in, begin, end, r, o, out); });
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
  // y must stay within int32 for the rounding conversion (a lane beyond converts to INT32_MIN and
  // would clamp to the wrong end): |acc|·max m + |b| + the residual term below 2^30.
  double m_max = 0;
  for (float v : p.m) m_max = std::max(m_max, std::fabs(static_cast<double>(v)));
  const double acc_max = acc_bound > 0 ? static_cast<double>(acc_bound) : std::ldexp(1.0, 31);
  if (!(m_max * acc_max + b_max + h_term < std::ldexp(1.0, 30))) return p;
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
    r.bias[i] = fixed_bias(bias_real[i] / out_scale * std::ldexp(1.0, r.shift), "requantization: bias");
  if (!acc_offset.empty()) {
    if (acc_offset.size() != static_cast<size_t>(r.N)) throw std::invalid_argument("ChannelRequant: one offset per channel");
    for (size_t i = 0; i < r.bias.size(); ++i)
      r.bias[i] = add_offset(r.bias[i], acc_offset[i % r.N], r.m[i % r.N], "requantization: bias");
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

namespace {
// ChannelRequant's integer formula on channels from..N−1 of row i. Fields in restrict-qualified
// locals: an 8-bit store may alias anything, and without this the compiler reloads every field
// per element and cannot vectorise.
template <typename Out>
void channel_row_plain(const ChannelRequant& r, const int32_t* a_in, int i, int from, Out* o_in) {
  const int32_t* __restrict a = a_in;
  Out* __restrict o = o_in;
  const int32_t* __restrict mm = r.m.data();
  const int64_t* __restrict b = r.bias.data() + static_cast<size_t>(i % r.bias_rows) * r.N;
  const int64_t half = r.shift > 0 ? int64_t{1} << (r.shift - 1) : 0;
  const int n = r.N, sh = r.shift;
  const int64_t z = r.zo, lo = r.qmin, hi = r.qmax;
  for (int c = from; c < n; ++c) {
    const int64_t v = ((static_cast<int64_t>(a[c]) * mm[c] + b[c] + half) >> sh) + z;
    o[c] = static_cast<Out>(v < lo ? lo : (v > hi ? hi : v));
  }
}
}  // namespace

void ChannelRequant::row_plain(const int32_t* acc_row, int i, int from, uint8_t* out_row) const {
  channel_row_plain(*this, acc_row, i, from, out_row);
}
void ChannelRequant::row_plain(const int32_t* acc_row, int i, int from, int32_t* out_row) const {
  channel_row_plain(*this, acc_row, i, from, out_row);
}

template <typename Out>
void ChannelRequant::apply(const int32_t* acc, int M, Out* out, bool placed) const {
  const KernelTable& k = active_kernels();
  if constexpr (std::is_same_v<Out, uint8_t>) {
    if (k.channel_rows) return k.channel_rows(*this, acc, M, out, placed);
  } else {
    if (k.channel_rows32) return k.channel_rows32(*this, acc, M, out);
  }
  const int n = N;
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) { row_plain(acc + static_cast<size_t>(i) * n, i, 0, out + static_cast<size_t>(i) * n); });
}

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
    r.bias.push_back(fixed_bias(bias_real[c] / out.scale * std::ldexp(1.0, r.shift), "requantization: residual bias"));
    if (!acc_offset.empty()) r.bias.back() = add_offset(r.bias.back(), acc_offset.at(c), r.ma.back(), "requantization: residual bias");
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

void ResidualRequant::row_plain(const int32_t* acc_row, const uint8_t* h_row, int from, uint8_t* out_row) const {
  const int32_t* __restrict a = acc_row;  // locals: see channel_row_plain
  const uint8_t* __restrict hr = h_row;
  uint8_t* __restrict o = out_row;
  const int64_t half = shift > 0 ? int64_t{1} << (shift - 1) : 0;
  const int n = N, sh = shift;
  const int64_t z = zo, lo = qmin, hi = qmax, mh = mb, zr = zh;
  const int32_t* __restrict ma_ = ma.data();
  const int64_t* __restrict b = bias.data();
  for (int c = from; c < n; ++c) {
    const int64_t v = ((static_cast<int64_t>(a[c]) * ma_[c] + b[c] + (static_cast<int64_t>(hr[c]) - zr) * mh + half) >> sh) + z;
    o[c] = static_cast<uint8_t>(v < lo ? lo : (v > hi ? hi : v));
  }
}

void ResidualRequant::apply(const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) const {
  if (const auto fast = active_kernels().residual_rows) return fast(*this, acc, h, M, out, placed);
  const int n = N;
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const size_t off = static_cast<size_t>(i) * n;
    row_plain(acc + off, h + off, 0, out + off);
  });
}


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

}  // namespace

void qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  const KernelTable& kt = active_kernels();
  if (kt.qk_scores && kt.qk_scores(q, zq, k, zk, Tq, T, dh, ld, S)) return;
  qk_scores_plain(q, zq, k, zk, Tq, T, dh, ld, S);
}

namespace {
// One output row at a time in a local accumulator: with DH a constant the row lives in vector
// registers (the loop over keys would otherwise load and store the output row per key).
template <int DH>
void av_log2_rows(const int8_t* codes, const int32_t* vc, int Tq, int T, int dh_rt, int kmax, int32_t* ctx, int ldc) {
  const int dh = DH > 0 ? DH : dh_rt;
  for (int t = 0; t < Tq; ++t) {
    uint32_t acc[DH > 0 ? DH : 1024] = {};  // wraps as the vector forms' int32 lanes do, defined
    const int8_t* __restrict ct = codes + static_cast<size_t>(t) * T;
    for (int j = 0; j < T; ++j) {
      const int c = ct[j];
      if (c < 0 || c > kmax) continue;
      const int sh = kmax - c;
      const int32_t* __restrict vr = vc + static_cast<size_t>(j) * dh;
      // A shift, not a multiply (int32 multiplies are slow in vector units); unsigned so that
      // shifting a negative value is defined — the result is the same two's-complement bits.
      for (int d = 0; d < dh; ++d) acc[d] += static_cast<uint32_t>(vr[d]) << sh;
    }
    int32_t* __restrict o = ctx + static_cast<size_t>(t) * ldc;
    for (int d = 0; d < dh; ++d) o[d] = static_cast<int32_t>(acc[d]);
  }
}
}  // namespace


void set_short_attention_rows(bool on) { g_short_rows.store(on, std::memory_order_relaxed); }
bool short_attention_rows() { return g_short_rows.load(std::memory_order_relaxed); }

void av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  if (dh > 1024) throw std::invalid_argument("av_log2: head size above 1024");
  const KernelTable& kt = active_kernels();
  if (kt.av_log2 && kt.av_log2(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc)) return;
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
