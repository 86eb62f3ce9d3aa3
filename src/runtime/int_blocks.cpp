#include "runtime/int_blocks.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "formats/error.h"
#include "runtime/elementwise_steps.h"
#include "runtime/kernel_table.h"
#include "runtime/parallel.h"
#include "runtime/profile.h"
#include "runtime/simd.h"

namespace qtx::rt {

QParams per_tensor(const StoredQuant& q, const std::string& what) {
  if (q.spec.scheme != Scheme::Uniform)
    fail(what, std::string(q.spec.scheme == Scheme::Ptf ? "a PTF" : "a log2") +
                   " quantizer here: the integer runtime carries this tensor on one uniform scale (PTF only at LayerNorm inputs)");
  if (q.scale.size() != 1) fail(what, "the integer runtime needs a per-tensor activation quantizer here");
  if (q.spec.bits > 8) fail(what, std::to_string(q.spec.bits) + "-bit activations: the integer runtime runs 2–8 bits");
  QParams p;
  p.scale = q.scale[0];
  p.zero = static_cast<int32_t>(q.zero[0]);
  p.qmin = q.spec.qmin();
  p.qmax = q.spec.qmax();
  if (p.qmin < 0) fail(what, "signed activation codes: the integer runtime expects unsigned (asymmetric) activations");
  return p;
}

IntLinear IntLinear::load(const Artifact& a, const std::string& site, int N, int K, bool has_bias, Kernels kernels) {
  IntLinear l;
  l.N = N;
  l.K = K;
  l.in = per_tensor(a.need_quant(site, "input0", Role::LinearInput), site + " input");
  StoredWeight w = a.need_weight(site, N, K);
  l.gemm = std::make_unique<Int8Gemm>(w.codes.data(), N, K, kernels);
  for (int c = 0; c < N; ++c) l.acc_scale.push_back(l.in.scale * w.scale[static_cast<size_t>(c)]);
  for (int32_t s : l.gemm->weight_sums()) l.acc_offset.push_back(-static_cast<int64_t>(l.in.zero) * s);
  l.bias.assign(static_cast<size_t>(N), 0.0);
  if (has_bias) {
    std::vector<float> b = a.param(site + ".bias", N);
    for (int c = 0; c < N; ++c) l.bias[static_cast<size_t>(c)] = b[static_cast<size_t>(c)];
  }
  return l;
}

IntLayerNormSite IntLayerNormSite::load(const Artifact& a, const std::string& site, const std::string& param_prefix,
                                        int C, const QParams& residual, const QParams& out) {
  StoredQuant q = a.need_quant(site, "input0", Role::LayerNormInput);
  if (q.scale.size() != 1) fail(site, "the integer runtime needs a layer-wise (PTF or per-tensor) LayerNorm input quantizer");
  const int32_t z = static_cast<int32_t>(q.zero[0]);
  int K = 0;
  std::vector<int> alpha(static_cast<size_t>(C), 0);
  if (q.spec.scheme == Scheme::Ptf) {
    if (static_cast<int>(q.alpha.size()) != C) fail(a.weights_path(), "'qtx." + site + ".input0.alpha' has " + std::to_string(q.alpha.size()) + " entries for " + std::to_string(C) + " channels");
    K = q.spec.ptf_k;
    for (int c = 0; c < C; ++c) alpha[static_cast<size_t>(c)] = static_cast<int>(q.alpha[static_cast<size_t>(c)]);
  }
  if (K < 0 || K > 8) fail(site, "PTF factor K = " + std::to_string(K) + " outside 0..8");
  for (int c = 0; c < C; ++c)
    if (alpha[static_cast<size_t>(c)] < 0 || alpha[static_cast<size_t>(c)] > K)
      fail(a.weights_path(), "'qtx." + site + ".input0.alpha' holds " + std::to_string(alpha[static_cast<size_t>(c)]) + " outside 0..K = " + std::to_string(K));
  if (q.spec.qmin() < 0 || q.spec.qmax() > 255) fail(site, "the integer runtime needs an unsigned LayerNorm input quantizer (8 bits or fewer)");
  std::vector<float> gamma = a.param(param_prefix + ".weight", C), beta = a.param(param_prefix + ".bias", C);
  QParams in{q.scale[0], z, q.spec.qmin(), q.spec.qmax()};
  return make(alpha, K, residual, in, gamma, beta, out);
}

IntLayerNormSite IntLayerNormSite::make(const std::vector<int>& alpha, int K, const QParams& residual, const QParams& in,
                                        const std::vector<float>& gamma, const std::vector<float>& beta, const QParams& out) {
  IntLayerNormSite s;
  s.C = static_cast<int>(alpha.size());
  s.K = K;
  s.alpha = alpha;
  s.z = in.zero;
  if (in.qmin < 0 || in.qmax > 255) throw std::invalid_argument("LayerNorm input quantizer must be unsigned 8-bit or narrower");
  for (int c = 0; c < s.C; ++c) s.table_base.push_back(alpha[static_cast<size_t>(c)] * 256);
  for (int k = 0; k <= K; ++k) {
    const std::vector<uint8_t> t = requant_table(residual, in.scale * std::ldexp(1.0, k), in.zero, in.qmin, in.qmax);
    s.grid.insert(s.grid.end(), t.begin(), t.end());
    for (int code = 0; code < 256; ++code) s.centred.push_back((static_cast<int32_t>(t[static_cast<size_t>(code)]) - in.zero) * (1 << k));
  }
  // Per block of 64 channels and per k: which channels have α = k (the byte-table path's blends).
  for (int c0 = 0; c0 + 64 <= s.C; c0 += 64)
    for (int k = 0; k <= K; ++k) {
      uint64_t m = 0;
      for (int i = 0; i < 64; ++i) m |= static_cast<uint64_t>(alpha[static_cast<size_t>(c0 + i)] == k) << i;
      s.alpha_masks.push_back(m);
    }
  s.norm = IntLayerNorm::make(in.zero, alpha, gamma, beta, out);
  for (int a : alpha) s.alpha16.push_back(static_cast<int16_t>(a));
  const int64_t x_max = static_cast<int64_t>(std::max(std::abs(in.qmin - in.zero), std::abs(in.qmax - in.zero))) << K;
  s.int16_sums = x_max < 32768 && (static_cast<int64_t>(s.C) / 16 + 1) * x_max * x_max < (int64_t{1} << 31);
  return s;
}

void IntLayerNormSite::rows_plain(const uint8_t* h, int M, uint8_t* out) const {
  std::vector<int32_t> x(static_cast<size_t>(C));
  for (int i = 0; i < M; ++i) {
    const uint8_t* r = h + static_cast<size_t>(i) * C;
    for (int c = 0; c < C; ++c) x[static_cast<size_t>(c)] = centred[static_cast<size_t>(alpha[static_cast<size_t>(c)] * 256 + r[c])];
    norm.row_centred(x.data(), out + static_cast<size_t>(i) * C, false);
  }
}

void IntLayerNormSite::rows(const uint8_t* h, int M, uint8_t* out) const {
  OpTimer timer(OpClass::LayerNorm);
  constexpr int kRows = 8;
  parallel_for((M + kRows - 1) / kRows, static_cast<size_t>(M) * C, [&](int blk) {
    thread_local std::vector<int32_t> xs;
    grow(xs, static_cast<size_t>(kRows) * C);
    const int r0 = blk * kRows, nr = std::min(kRows, M - r0);
    int64_t sum[kRows], sq[kRows], R[kRows];
    for (int i = 0; i < nr; ++i)
      centre_row(h + static_cast<size_t>(r0 + i) * C, xs.data() + static_cast<size_t>(i) * C, &sum[i], &sq[i]);
    for (int i = 0; i < nr; ++i) R[i] = norm.row_factor(sum[i], sq[i]);
    for (int i = 0; i < nr; ++i)
      norm.row_output(xs.data() + static_cast<size_t>(i) * C, sum[i], R[i], out + static_cast<size_t>(r0 + i) * C);
  });
}

void IntLayerNormSite::centre_row(const uint8_t* h_row, int32_t* x_out, int64_t* sum_out, int64_t* sq_out) const {
  const uint8_t* __restrict r = h_row;
  int32_t* __restrict x = x_out;
  const int32_t* __restrict tab = centred.data();
  const int* __restrict al = alpha.data();
  const KernelTable& k = active_kernels();
  bool have_sums = false;
  int c = k.layernorm_centre ? k.layernorm_centre(*this, h_row, x_out, sum_out, sq_out, &have_sums) : 0;
  for (; c < C; ++c) x[c] = tab[al[c] * 256 + r[c]];
  if (!have_sums) norm.row_sums(x_out, sum_out, sq_out);
}

double IntAttention::ctx_scale() const { return v.scale * std::ldexp(1.0, -kmax); }

IntAttention IntAttention::load(const Artifact& a, const std::string& prefix, int heads, int dh) {
  IntAttention t;
  const std::string qk = prefix + "matmul_qk", av = prefix + "matmul_av", sm = prefix + "softmax";
  t.heads = heads;
  t.dh = dh;
  t.q = per_tensor(a.need_quant(qk, "input0", Role::QkInput), qk + " input0");
  t.k = per_tensor(a.need_quant(qk, "input1", Role::QkInput), qk + " input1");
  t.scores = per_tensor(a.need_quant(qk, "output", Role::AttnScores), qk + " output");
  t.v = per_tensor(a.need_quant(av, "input1", Role::AvInput), av + " input1");
  StoredQuant p = a.need_quant(sm, "output", Role::SoftmaxOutput);
  if (p.spec.scheme != Scheme::Log2 || !p.spec.int_exp)
    fail(a.dir(), "recipe '" + a.recipe().name + "' quantizes the attention probabilities of '" + sm +
                      "' uniformly; the integer runtime executes Log-Int-Softmax only (recipes fqvit-8-8-8, fqvit-8-8-4, lis-8-8-4)");
  t.bits = p.spec.bits;
  // Probabilities below 2^-20 are dropped: 255 · Σ 2^-k · 2^20 stays inside int32.
  t.kmax = std::min((1 << t.bits) - 1, 20);
  t.score_requant = Requant::from_real(t.q.scale * t.k.scale / std::sqrt(static_cast<double>(dh)) / t.scores.scale);
  t.iexp = IntExp::for_scale(t.scores.scale);
  t.lis = LogIntSoftmax::make(t.iexp, t.scores.qmax - t.scores.qmin, t.bits);
  return t;
}

void IntAttention::run(const uint8_t* qc, const uint8_t* kc, const uint8_t* vc, const int32_t* valid, int B, int T,
                       int32_t* ctx, int Tq) const {
  const int D = heads * dh;
  FusedOpRegion region;
  // One (sequence, head) pair per iteration; its scratch is per thread, kept between calls.
  parallel_for(B * heads, static_cast<size_t>(B) * heads * Tq * T, [&](int bh) {
    FusedOpRegion::Laps laps(region);
    const int b = bh / heads, h = bh % heads;
    thread_local std::vector<int32_t> S;
    thread_local std::vector<int8_t> codes;
    thread_local std::vector<uint8_t> ok;
    grow(S, static_cast<size_t>(Tq) * T);
    grow(codes, static_cast<size_t>(Tq) * T);
    grow(ok, static_cast<size_t>(T));
    const size_t kv_base = static_cast<size_t>(b) * T * D + static_cast<size_t>(h) * dh;
    const size_t q_base = static_cast<size_t>(b) * Tq * D + static_cast<size_t>(h) * dh;
    if (valid)
      for (int j = 0; j < T; ++j) ok[static_cast<size_t>(j)] = valid[static_cast<size_t>(b) * T + j] != 0;
    const uint8_t* mask = valid ? ok.data() : nullptr;
    qk_scores(qc + q_base, q.zero, kc + kv_base, k.zero, Tq, T, dh, D, S.data());
    laps.lap(OpClass::AttentionMatmul);
    {  // scores → score codes − zero point (locals: the loop vectorises)
      int32_t* __restrict sp = S.data();
      const size_t n = static_cast<size_t>(Tq) * T;
      const int64_t m = score_requant.m, lo = scores.qmin - scores.zero, hi = scores.qmax - scores.zero;
      const int sh = score_requant.shift;
      const auto fast = active_kernels().round_shift_inplace;
      size_t i = fast && simd::round_shift_vectors_handle(m, sh) && lo >= INT32_MIN && hi <= INT32_MAX
                     ? fast(sp, n, m, sh, static_cast<int32_t>(lo), static_cast<int32_t>(hi))
                     : 0;
      for (; i < n; ++i) {
        const int64_t c = round_shift(sp[i] * m, sh);
        sp[i] = static_cast<int32_t>(c < lo ? lo : (c > hi ? hi : c));
      }
    }
    laps.lap(OpClass::Requant);
    lis.rows(S.data(), mask, Tq, T, codes.data());
    laps.lap(OpClass::Softmax);
    av_log2(codes.data(), vc + kv_base, v.zero, Tq, T, dh, D, kmax, ctx + q_base, D);
    laps.lap(OpClass::AttentionMatmul);
  });
}

IntSelfAttention IntSelfAttention::load(const Artifact& a, const std::string& prefix, const std::string& o_site, int D,
                                        int heads, bool qkv_bias, const QParams& input, Kernels kernels) {
  IntSelfAttention s;
  s.prefix = prefix;
  s.o_site = o_site;
  s.q = IntLinear::load(a, prefix + "query", D, D, qkv_bias, kernels);
  s.k = IntLinear::load(a, prefix + "key", D, D, qkv_bias, kernels);
  s.v = IntLinear::load(a, prefix + "value", D, D, qkv_bias, kernels);
  s.o = IntLinear::load(a, o_site, D, D, true, kernels);
  s.q_in = table_between(input, s.q.in);
  s.k_in = table_between(input, s.k.in);
  s.v_in = table_between(input, s.v.in);
  s.attn = IntAttention::load(a, prefix, heads, D / heads);
  s.q_out = to_codes(s.q, s.attn.q);
  s.k_out = to_codes(s.k, s.attn.k);
  s.v_out = to_codes(s.v, s.attn.v);
  s.ctx_to_o = Requant::from_real(s.attn.ctx_scale() / s.o.in.scale);
  return s;
}

void IntSelfAttention::run(const uint8_t* in, const int32_t* valid, int B, int T, Scratch& s, int32_t* o_acc,
                           const TapFn& tap, bool cls_only) const {
  const int M = B * T, Mq = cls_only ? B : M;  // Mq: the query rows (and the output's)
  const size_t MD = static_cast<size_t>(M) * q.N, MqD = static_cast<size_t>(Mq) * q.N;
  for (auto* v : {&s.x, &s.qc, &s.kc, &s.vc}) grow(*v, MD);
  grow(s.ctx, MD);
  // Each projection's accumulators go through o_acc (free until the output projection).
  auto project = [&](const std::vector<uint8_t>& table, const IntLinear& l, const ChannelRequant& out, const uint8_t* rows,
                     int n_rows, uint8_t* codes) {
    const uint8_t* x = rows;
    if (!table.empty()) {
      apply_table(table, rows, static_cast<size_t>(n_rows) * l.K, s.x.data());
      x = s.x.data();
    }
    l.run(x, n_rows, o_acc);
    timed(OpClass::Requant, [&] { out.rows(o_acc, n_rows, codes); });
  };
  if (cls_only) {  // the CLS rows' queries only: keys and values still come from every row
    s.cls = first_rows(in, B, T, q.K);
    project(q_in, q, q_out, s.cls.data(), B, s.qc.data());
  } else {
    project(q_in, q, q_out, in, M, s.qc.data());
  }
  project(k_in, k, k_out, in, M, s.kc.data());
  project(v_in, v, v_out, in, M, s.vc.data());
  tap(prefix + "matmul_qk.input0", s.qc.data(), MqD);
  tap(prefix + "matmul_av.input1", s.vc.data(), MD);
  attn.run(s.qc.data(), s.kc.data(), s.vc.data(), valid, B, T, s.ctx.data(), cls_only ? 1 : T);
  timed(OpClass::Requant, [&] { requant_to_codes(s.ctx.data(), MqD, ctx_to_o, o.in, s.x.data()); });
  tap(o_site + ".input0", s.x.data(), MqD);
  o.run(s.x.data(), Mq, o_acc);
}

void check_tokens(const ModelConfig& cfg, const int32_t* ids, int B, int T) {
  if (B < 1 || T < 1) fail("bert", "empty input: no tokens");
  if (T > cfg.max_position_embeddings)
    fail("bert", "sequence of " + std::to_string(T) + " tokens exceeds max_position_embeddings " +
                     std::to_string(cfg.max_position_embeddings));
  const int M = B * T;
  for (int i = 0; i < M; ++i)
    if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
      fail("bert", "token id " + std::to_string(ids[i]) + " outside the vocabulary (0.." + std::to_string(cfg.vocab_size - 1) + ")");
}

std::vector<float> dequantize_logits(const IntLinear& head, const int32_t* acc, int B) {
  const int L = head.N;
  std::vector<float> logits(static_cast<size_t>(B) * L);
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) {
      const size_t i = static_cast<size_t>(b) * L + l;
      logits[i] = static_cast<float>((acc[i] + head.acc_offset[static_cast<size_t>(l)]) * head.acc_scale[static_cast<size_t>(l)] +
                                     head.bias[static_cast<size_t>(l)]);
    }
  return logits;
}

namespace {

// Monomial coefficients, in t = x − c, of the degree-D polynomial through g at the D + 1
// Chebyshev nodes of [a, b] (near the best uniform approximation of that degree): the
// Vandermonde system solved by Gaussian elimination with partial pivoting in long double.
std::vector<double> chebyshev_fit(const std::function<double(double)>& g, double a, double b, double c, int D) {
  const int n = D + 1;
  std::vector<std::vector<long double>> A(static_cast<size_t>(n), std::vector<long double>(static_cast<size_t>(n) + 1));
  for (int k = 0; k < n; ++k) {
    const double x = 0.5 * (a + b) + 0.5 * (b - a) * std::cos(M_PI * (k + 0.5) / n);
    long double tp = 1;
    for (int j = 0; j < n; ++j, tp *= static_cast<long double>(x - c)) A[static_cast<size_t>(k)][static_cast<size_t>(j)] = tp;
    A[static_cast<size_t>(k)][static_cast<size_t>(n)] = g(x);
  }
  for (int col = 0; col < n; ++col) {
    int piv = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs(A[static_cast<size_t>(r)][static_cast<size_t>(col)]) > std::fabs(A[static_cast<size_t>(piv)][static_cast<size_t>(col)])) piv = r;
    std::swap(A[static_cast<size_t>(col)], A[static_cast<size_t>(piv)]);
    for (int r = 0; r < n; ++r) {
      if (r == col) continue;
      const long double q = A[static_cast<size_t>(r)][static_cast<size_t>(col)] / A[static_cast<size_t>(col)][static_cast<size_t>(col)];
      for (int j = col; j <= n; ++j) A[static_cast<size_t>(r)][static_cast<size_t>(j)] -= q * A[static_cast<size_t>(col)][static_cast<size_t>(j)];
    }
  }
  std::vector<double> coef(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j)
    coef[static_cast<size_t>(j)] = static_cast<double>(A[static_cast<size_t>(j)][static_cast<size_t>(n)] / A[static_cast<size_t>(j)][static_cast<size_t>(j)]);
  return coef;
}

// IntElementwise::PolyGuess for f on [lo, hi] after `producer`, or one with on = false. The
// margin adds up bounds, in output steps, on how far y can lie from the table's f(x_grid)/s + z:
// - u: float32 rounding of the fma and of scale_c and bias_c, each at most 2^-24 of its value,
//   |acc · scale_c| ≤ |u| + |bias_c|, so 2^-23 (|u| + |bias_c|); the table's grid (one step of
//   the 2^29 over [lo, hi], one more for its bias and multiplier roundings); u_max's distance
//   below 31.5 (2^-19); times the largest slope of f / s_out in u. s = u − round(u) is exact;
// - y: the fit's error (the float coefficients in exact arithmetic, on 2^10 points a segment and
//   1 % beyond its ends, plus a tenth), Horner's float32 rounding, (2D + 2) · 2^-24 · Σ_j |c_j| S^j
//   (S = ½ and 1 %), and a few ulps of y;
// - below the segments' lo (above the table's own, where f is flat): f's change there.
// The vector loop's own float evaluation, `eval`, is then checked against f on the same points.
IntElementwise::PolyGuess fit_poly_guess(const IntLinear& producer, const std::function<double(double)>& f, const QParams& out,
                                         double table_lo, double hi, double grid_step) {
  using P = IntElementwise::PolyGuess;
  P p;
  const auto g = [&](double x) { return f(x) / out.scale + out.zero; };
  // lo: as high as f stays within 2^-14 of a step of its value there all the way down to the
  // table's lower end (GELU: about −4.5 at 8 bits, where the table starts at −8).
  double lo = table_lo, tail_err = 0;
  {
    constexpr int kSteps = 1 << 12;
    const double h = (hi - table_lo) / kSteps;
    double run_min = g(table_lo), run_max = run_min;
    for (int i = 1; i < kSteps / 2; ++i) {
      const double x = table_lo + i * h, gx = g(x);
      run_min = std::min(run_min, gx);
      run_max = std::max(run_max, gx);
      if (run_max - run_min > std::ldexp(1.0, -14)) break;
      lo = x;
      tail_err = run_max - run_min;
    }
  }
  p.lo = static_cast<float>(lo);
  p.hi = static_cast<float>(hi);
  const double w = (hi - lo) / P::kSegments;
  if (!(w > 0)) return p;
  p.u_max = std::nextafter(static_cast<float>(P::kSegments) - 0.5f, 0.0f);
  const size_t N = producer.acc_scale.size();
  double bias_max = 0;
  for (size_t c = 0; c < N; ++c) {
    const double b = producer.bias[c] + (producer.acc_offset.empty() ? 0.0 : static_cast<double>(producer.acc_offset[c]) * producer.acc_scale[c]);
    p.scale.push_back(static_cast<float>(producer.acc_scale[c] / w));
    p.bias.push_back(static_cast<float>((b - lo) / w - 0.5));
    bias_max = std::max(bias_max, std::fabs(static_cast<double>(p.bias.back())));
  }
  p.acc_below_2_24 = producer.gemm && producer.acc_bound() < (int64_t{1} << 24);
  p.qmin = out.qmin;
  p.qmax = out.qmax;
  double fit_err = 0, horner_err = 0, g_max = 0;
  const double ext = 0.01, S = 0.5 + ext;
  const auto x_at = [&](int sg, double s) { return lo + (sg + 0.5 + s) * w; };
  for (int sg = 0; sg < P::kSegments; ++sg) {
    const std::vector<double> k = chebyshev_fit([&](double s) { return g(x_at(sg, s)); }, -S, S, 0.0, P::kDegree);
    double sum = 0, sp = 1;
    for (int j = 0; j <= P::kDegree; ++j, sp *= S) {
      p.coef[static_cast<size_t>(j)][static_cast<size_t>(sg)] = static_cast<float>(k[static_cast<size_t>(j)]);
      sum += std::fabs(static_cast<double>(p.coef[static_cast<size_t>(j)][static_cast<size_t>(sg)])) * sp;
    }
    horner_err = std::max(horner_err, (2.0 * P::kDegree + 2) * std::ldexp(1.0, -24) * sum);
    for (int i = 0; i <= 1024; ++i) {
      const double s = -S + 2 * S * i / 1024.0;
      double y = p.coef[P::kDegree][static_cast<size_t>(sg)];
      for (int j = P::kDegree - 1; j >= 0; --j) y = y * s + p.coef[static_cast<size_t>(j)][static_cast<size_t>(sg)];
      const double gx = g(x_at(sg, s));
      fit_err = std::max(fit_err, std::fabs(y - gx));
      g_max = std::max(g_max, std::fabs(gx));
    }
  }
  double slope = 0;  // of g in u: per unit of x, times w
  for (int i = 0; i < (1 << 14); ++i) {
    const double h = (hi - lo) / 16384.0, x = lo + i * h;
    slope = std::max(slope, std::fabs(g(x + h) - g(x)) / h * w);
  }
  const double du = std::ldexp(P::kSegments + bias_max, -23) * 1.05 + 2 * grid_step / w + std::ldexp(1.0, -19);
  const double y_err = 1.1 * fit_err + horner_err + std::ldexp(g_max + 1, -21);
  const double margin = 1.05 * slope * du + y_err + tail_err;
  if (!(margin < 1.0 / 32)) return p;
  // The loop's own float evaluation must stay within the bound for y (a check on the bound, not
  // a substitute for it).
  for (int i = 0; i <= P::kSegments * 1024; ++i) {
    const float u = std::min(p.u_max, static_cast<float>(-0.5 + i / 1024.0));
    if (std::fabs(p.eval(u) - g(lo + (u + 0.5) * w)) > y_err) return p;
  }
  p.tie_margin = std::nextafter(static_cast<float>(margin), 1.0f);
  p.on = true;
  return p;
}

}  // namespace

float IntElementwise::PolyGuess::eval(float u) const {
  const float r = std::nearbyint(u);  // ties to even, as the vector loop's conversions
  const size_t sg = static_cast<size_t>(r);
  const float s = u - r;
  float y = coef[kDegree][sg];
  for (int j = kDegree - 1; j >= 0; --j) y = std::fma(y, s, coef[static_cast<size_t>(j)][sg]);
  return y;
}

IntElementwise IntElementwise::make(const IntLinear& producer, const std::function<double(double)>& f, const QParams& out,
                                    double lo, double hi) {
  constexpr int32_t kSteps = int32_t{1} << kGridBits;
  IntElementwise e;
  const double g = (hi - lo) / (kSteps - 1);
  const int32_t z = static_cast<int32_t>(std::llround(-lo / g));
  e.to_grid = ChannelRequant::make(producer.acc_scale, producer.bias, 1, g, z, 0, kSteps - 1, producer.acc_offset);
  auto code = [&](int64_t i) {
    const double y = f(static_cast<double>(i - z) * g) / out.scale;
    const double r = y >= 0 ? std::floor(y + 0.5) : -std::floor(-y + 0.5);
    return static_cast<uint8_t>(std::min<double>(out.qmax, std::max<double>(out.qmin, r + out.zero)));
  };
  // The largest cells in which the code never moves by more than one step; cells with a dip and
  // a rise inside (f's minimum) keep the codes at their ends.
  for (e.cell_bits = 16; e.cell_bits >= 8; --e.cell_bits) {
    const int64_t cells = int64_t{1} << (kGridBits - e.cell_bits), width = int64_t{1} << e.cell_bits;
    e.packed.assign(static_cast<size_t>(cells), 0);
    bool fits = true;
    for (int64_t c = 0; c < cells && fits; ++c) {
      const int64_t first = c * width, last = first + width - 1;
      const uint8_t before = code(first), after = code(last);
      int64_t boundary = 0;
      if (before != after) {
        fits = std::abs(before - after) == 1;
        int64_t a = first, b = last;  // code(a) == before, code(b) == after
        while (b - a > 1) {
          const int64_t m = (a + b) / 2;
          (code(m) == before ? a : b) = m;
        }
        boundary = b - first;
      }
      e.packed[static_cast<size_t>(c)] = static_cast<uint32_t>(boundary) | static_cast<uint32_t>(before) << 16 | static_cast<uint32_t>(after) << 24;
    }
    if (fits) {
      e.poly = fit_poly_guess(producer, f, out, lo, hi, g);
      return e;
    }
  }
  throw std::invalid_argument("elementwise table: output steps too dense for the input grid");
}

uint8_t IntElementwise::code_at(int32_t g) const {
  const uint32_t c = packed[static_cast<uint32_t>(g) >> cell_bits];
  const uint32_t off = static_cast<uint32_t>(g) & ((1u << cell_bits) - 1);
  return static_cast<uint8_t>(off < (c & 0xffffu) ? c >> 16 : c >> 24);
}

void IntElementwise::rows_plain(const int32_t* acc, int M, uint8_t* out) const {
  std::vector<int32_t> grid(static_cast<size_t>(M) * to_grid.N);
  to_grid.rows32(acc, M, grid.data());
  for (size_t i = 0; i < grid.size(); ++i) out[i] = code_at(grid[i]);
}

namespace {
std::atomic<bool> g_activation_polynomial{true};

}  // namespace

void set_activation_polynomial(bool on) { g_activation_polynomial.store(on, std::memory_order_relaxed); }

void IntElementwise::rows(const int32_t* acc, int M, uint8_t* out) const {
  const KernelTable& k = active_kernels();
  if (k.elementwise_poly && poly.on && g_activation_polynomial.load(std::memory_order_relaxed)) {
    OpTimer timer(OpClass::Activation);
    if (k.elementwise_poly(*this, acc, M, out)) return;
  }
  rows_by_table(acc, M, out);
}

void IntElementwise::rows_by_table(const int32_t* acc, int M, uint8_t* out) const {
  OpTimer timer(OpClass::Activation);
  // One pass: accumulator → grid index → cell, without writing the grid indices out. The same
  // integer steps as rows_plain (ChannelRequant::apply, then code_at); the active
  // instruction set's form of a row first (a gather of the cells), the plain steps after it.
  const int n = to_grid.N;
  const TableSteps table(*this);
  const auto vector_row = active_kernels().elementwise_table_row;
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const int32_t* __restrict a = acc + static_cast<size_t>(i) * n;
    uint8_t* __restrict o = out + static_cast<size_t>(i) * n;
    int c = vector_row ? vector_row(*this, a, o) : 0;
    for (; c < n; ++c) o[c] = table.code(a[c], c);
  });
}

IntMlp IntMlp::load(const Artifact& a, const std::string& prefix, int D, int F, const std::string& hidden_act, Kernels kernels) {
  IntMlp m;
  m.fc1 = IntLinear::load(a, prefix + "intermediate.dense", F, D, true, kernels);
  m.fc2 = IntLinear::load(a, prefix + "output.dense", D, F, true, kernels);
  const std::string act_site = prefix + "intermediate.intermediate_act_fn";
  const QParams ao = per_tensor(a.need_quant(act_site, "output", Role::ActOutput), act_site);
  m.act = IntElementwise::make(m.fc1, activation_fn(hidden_act), ao, -8.0, std::max(1.0, (ao.qmax - ao.zero + 1) * ao.scale));
  m.act_to_fc2 = table_between(ao, m.fc2.in);
  return m;
}

void IntMlp::run(const uint8_t* x, int M, int rows, std::vector<int32_t>& acc, uint8_t* y, int32_t* out,
                 const std::function<void(const uint8_t*, size_t)>& tap_act) const {
  const int F = fc1.N;
  rows = std::max(1, std::min(rows, M));
  grow(acc, static_cast<size_t>(rows) * F);
  for (int r0 = 0; r0 < M; r0 += rows) {
    const int n = std::min(rows, M - r0);
    const size_t nF = static_cast<size_t>(n) * F;
    uint8_t* yb = y + static_cast<size_t>(r0) * F;
    fc1.run(x + static_cast<size_t>(r0) * fc1.K, n, acc.data());
    act.rows(acc.data(), n, yb);
    if (tap_act) tap_act(yb, nF);
    apply_table(act_to_fc2, yb, nF, yb);
    fc2.run(yb, n, out + static_cast<size_t>(r0) * fc2.N);
  }
}

namespace {
bool same(const QParams& a, const QParams& b) { return a.scale == b.scale && a.zero == b.zero && a.qmin == b.qmin && a.qmax == b.qmax; }
}  // namespace

std::vector<uint8_t> table_between(const QParams& from, const QParams& to) {
  return same(from, to) ? std::vector<uint8_t>() : requant_table(from, to.scale, to.zero, to.qmin, to.qmax);
}

void apply_table(const std::vector<uint8_t>& t, const uint8_t* in, size_t n, uint8_t* out) {
  OpTimer timer(OpClass::Requant);
  if (t.empty()) {
    if (in != out) std::copy(in, in + n, out);
    return;
  }
  if (t.size() != 256) throw std::logic_error("apply_table: a code table has 256 entries");
  const uint8_t* __restrict tab = t.data();  // a local: 8-bit stores may alias the vector
  const uint8_t* src = in;
  uint8_t* dst = out;  // may be `in` (in place)
  const auto fast = active_kernels().code_table;
  parallel_range(n, [=](size_t begin, size_t end) {  // by value: see requant_to_codes
    const uint8_t* __restrict t_ = tab;
    const size_t i = fast ? fast(t_, src, begin, end, dst) : begin;
    apply_table_plain(t_, src + i, end - i, dst + i);
  });
}

void apply_table_plain(const uint8_t* t, const uint8_t* in, size_t n, uint8_t* out) {
  const uint8_t* __restrict t_ = t;
  const uint8_t* s_ = in;  // may be `out` (in place): each code is read before it is written
  uint8_t* d_ = out;
  for (size_t i = 0; i < n; ++i) d_[i] = t_[s_[i]];
}

ChannelRequant to_codes(const IntLinear& l, const QParams& out) {
  return ChannelRequant::make(l.acc_scale, l.bias, 1, out.scale, out.zero, out.qmin, out.qmax, l.acc_offset, l.acc_bound());
}

uint8_t code_of(double real, const QParams& q) {
  const double r = real / q.scale;
  const double c = (r >= 0 ? std::floor(r + 0.5) : -std::floor(-r + 0.5)) + q.zero;
  return static_cast<uint8_t>(std::min<double>(q.qmax, std::max<double>(q.qmin, c)));
}

std::function<double(double)> activation_fn(const std::string& act) {
  if (act == "gelu") return [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); };
  if (act == "gelu_new" || act == "gelu_pytorch_tanh")
    return [](double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); };
  if (act == "relu") return [](double x) { return x > 0 ? x : 0.0; };
  if (act == "tanh") return [](double x) { return std::tanh(x); };
  fail("config.json", "hidden_act '" + act + "' has no integer-runtime table");
}

}  // namespace qtx::rt
