#include "runtime/int_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qtx::rt {

int64_t round_shift(int64_t x, int shift) {
  if (shift <= 0) return x * (int64_t{1} << -shift);
  if (shift >= 63) return 0;
  const int64_t half = int64_t{1} << (shift - 1);
  return x >= 0 ? (x + half) >> shift : -((-x + half) >> shift);
}

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
  // Start above the root (2^⌈bits/2⌉) and iterate x ← ⌊(x + ⌊n/x⌋)/2⌋ while it decreases.
  int bits = 64 - __builtin_clzll(n);
  uint64_t x = uint64_t{1} << ((bits + 1) / 2);
  for (;;) {
    uint64_t y = (x + n / x) / 2;
    if (y >= x) return x;
    x = y;
  }
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
  std::vector<int64_t> e(static_cast<size_t>(n), 0);
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

std::vector<uint8_t> gelu_table_u8(const QParams& in, const QParams& out) {
  std::vector<uint8_t> t(256);
  for (int c = 0; c < 256; ++c) {
    const int32_t q = in.qmin < 0 ? c - 128 : c;
    const double x = (q - in.zero) * in.scale;
    const double y = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    double r = y / out.scale;
    r = r >= 0 ? std::floor(r + 0.5) : -std::floor(-r + 0.5);  // half away from zero
    const int64_t qo = std::min<int64_t>(out.qmax, std::max<int64_t>(out.qmin, static_cast<int64_t>(r) + out.zero));
    t[static_cast<size_t>(c)] = static_cast<uint8_t>(qo & 0xFF);
  }
  return t;
}

RequantAdd RequantAdd::make(const QParams& a, const QParams& b, const QParams& out) {
  RequantAdd r;
  // Common shift: 30 bits of headroom for the larger of the two multipliers.
  const double big = std::max(a.scale, b.scale) / out.scale;
  int e = 0;
  std::frexp(big, &e);
  r.shift = 30 - e;
  r.ma = std::llround(a.scale / out.scale * std::ldexp(1.0, r.shift));
  r.mb = std::llround(b.scale / out.scale * std::ldexp(1.0, r.shift));
  r.za = a.zero;
  r.zb = b.zero;
  r.zo = out.zero;
  r.qmin = out.qmin;
  r.qmax = out.qmax;
  return r;
}

int32_t RequantAdd::operator()(int32_t qa, int32_t qb) const {
  const int64_t acc = (static_cast<int64_t>(qa) - za) * ma + (static_cast<int64_t>(qb) - zb) * mb;
  const int64_t q = round_shift(acc, shift) + zo;
  return static_cast<int32_t>(std::min<int64_t>(qmax, std::max<int64_t>(qmin, q)));
}

IntLayerNorm IntLayerNorm::make(int32_t z, const std::vector<int>& alpha, const std::vector<float>& gamma,
                                const std::vector<float>& beta, const QParams& out) {
  IntLayerNorm n;
  n.C = static_cast<int>(gamma.size());
  n.z = z;
  n.alpha = alpha.empty() ? std::vector<int>(gamma.size(), 0) : alpha;
  for (size_t c = 0; c < gamma.size(); ++c) {
    // A negative γ keeps its sign in the mantissa.
    Requant g = Requant::from_real(std::fabs(gamma[c]) / out.scale);
    if (gamma[c] < 0) g.m = -g.m;
    n.gain.push_back(g);
    n.bias.push_back(std::llround(beta[c] / out.scale * 65536.0));
  }
  n.zo = out.zero;
  n.qmin = out.qmin;
  n.qmax = out.qmax;
  return n;
}

void IntLayerNorm::row(const uint8_t* q, uint8_t* out) const {
  std::vector<int64_t> x(static_cast<size_t>(C));
  int64_t sum = 0;
  for (int c = 0; c < C; ++c) sum += x[static_cast<size_t>(c)] = (static_cast<int64_t>(q[c]) - z) << alpha[static_cast<size_t>(c)];
  // d_c = C·(x_c − μ) stays integral; Σd² = C³·var.
  uint64_t v = 0;
  for (int c = 0; c < C; ++c) {
    const int64_t d = C * x[static_cast<size_t>(c)] - sum;
    v += static_cast<uint64_t>(d * d);
  }
  const uint64_t vc = v / static_cast<uint64_t>(C);  // C²·var
  // sd = C·σ·2^k with k chosen so sd has ~24 significant bits.
  int k = 0;
  if (vc > 0) {
    const int bits = 64 - __builtin_clzll(vc);
    k = std::max(0, (48 - bits) / 2);
  }
  const int64_t sd = static_cast<int64_t>(isqrt(vc << (2 * k)));
  for (int c = 0; c < C; ++c) {
    const size_t i = static_cast<size_t>(c);
    int64_t t = 0;  // normalised value · 2^16
    if (sd > 0) {
      const int64_t num = (C * x[i] - sum) * (int64_t{1} << (k + 16));
      t = num >= 0 ? (num + sd / 2) / sd : -((-num + sd / 2) / sd);
    }
    const int64_t y16 = round_shift(t * gain[i].m, gain[i].shift) + bias[i];  // y / s_out · 2^16
    const int64_t qo = round_shift(y16, 16) + zo;
    out[c] = static_cast<uint8_t>(std::min<int64_t>(qmax, std::max<int64_t>(qmin, qo)));
  }
}

}  // namespace qtx::rt
