// The AVX2 forms of LayerNorm, its PTF tables, the GELU/tanh table and the code → code table
// (src/runtime/arch/x86/avx2_norm_act.h) against the plain forms, bit for bit, over the channel
// counts that matter (16, 17, 160, 192, 768: whole 32-channel blocks, 8-channel vectors and
// scalar tails), edge codes and zero points, and every branch of each kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/arch/x86/avx2_norm_act.h"
#include "runtime/cpu_isa.h"
#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"
#include "plain_reference.h"

using namespace qtx::rt;

namespace {

#define SKIP_WITHOUT_AVX2()                                                            \
  if (cpu_isa() < Isa::Avx2) GTEST_SKIP() << "this CPU has no AVX2/FMA/BMI2";      \
  const PlainReference plain_reference


const int kChannels[] = {16, 17, 160, 192, 768};

// Random γ, β for C channels (one negative γ), α in 0..K.
struct LnParams {
  std::vector<int> alpha;
  std::vector<float> gamma, beta;
};
LnParams ln_params(int C, int K, std::mt19937& rng, float beta_scale = 0.3f) {
  LnParams p;
  std::normal_distribution<float> g(1.0f, 0.4f), b(0.0f, beta_scale);
  for (int c = 0; c < C; ++c) {
    p.alpha.push_back(static_cast<int>(rng() % static_cast<uint32_t>(K + 1)));
    p.gamma.push_back(g(rng));
    p.beta.push_back(b(rng));
  }
  p.gamma[0] = -0.7f;
  return p;
}

// Rows of x = (q − z) << α: normal spreads from narrow to wide, then edge rows — every code 0 or
// 255 alternating, all equal (variance 0), one outlier among equal values.
std::vector<std::vector<int32_t>> ln_rows(const LnParams& p, int32_t z, int rows, std::mt19937& rng) {
  const int C = static_cast<int>(p.alpha.size());
  std::vector<std::vector<int32_t>> out;
  auto x_of = [&](int q, int c) { return (q - z) * (1 << p.alpha[static_cast<size_t>(c)]); };
  for (int r = 0; r < rows; ++r) {
    std::normal_distribution<double> xs(0, 1 + r % 60);
    std::vector<int32_t> x(static_cast<size_t>(C));
    for (int c = 0; c < C; ++c) x[static_cast<size_t>(c)] = x_of(std::clamp(static_cast<int>(std::lround(z + xs(rng))), 0, 255), c);
    out.push_back(x);
  }
  std::vector<int32_t> x(static_cast<size_t>(C));
  for (int c = 0; c < C; ++c) x[static_cast<size_t>(c)] = x_of(c % 2 ? 255 : 0, c);
  out.push_back(x);
  for (int c = 0; c < C; ++c) x[static_cast<size_t>(c)] = x_of(c % 3 ? 255 : 0, c);
  out.push_back(x);
  out.push_back(std::vector<int32_t>(static_cast<size_t>(C), 7));
  std::vector<int32_t> one(static_cast<size_t>(C), x_of(0, 0));
  one[static_cast<size_t>(C / 2)] = x_of(255, C / 2);
  out.push_back(one);
  return out;
}

// AVX2 row_output against the plain loop on every row; returns the number of values compared.
size_t expect_rows_match(const IntLayerNorm& ln, const std::vector<std::vector<int32_t>>& rows, const std::string& what) {
  size_t n = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int32_t* x = rows[r].data();
    int64_t sum = 0, sq = 0;
    ln.row_sums(x, &sum, &sq);
    const int64_t R = ln.row_factor(sum, sq);
    std::vector<uint8_t> want(static_cast<size_t>(ln.C)), got(static_cast<size_t>(ln.C)), got2(static_cast<size_t>(ln.C));
    ln.row_output(x, sum, R, want.data(), false);
    avx2::layernorm_row_output(ln, x, sum, R, got.data());
    EXPECT_EQ(want, got) << what << " row " << r;
    avx2::layernorm_row_centred(ln, x, got2.data());
    EXPECT_EQ(want, got2) << what << " row " << r << " (row_centred)";
    if (want != got || want != got2) return n;
    n += want.size();
  }
  return n;
}

// Values whose float placement lies within the margin of a rounding boundary (the loop's y).
size_t near_ties(const IntLayerNorm& ln, const std::vector<std::vector<int32_t>>& rows) {
  size_t n = 0;
  for (const auto& x : rows) {
    int64_t sum = 0, sq = 0;
    ln.row_sums(x.data(), &sum, &sq);
    const float Rf = static_cast<float>(ln.row_factor(sum, sq));
    for (int c = 0; c < ln.C; ++c) {
      const float d = static_cast<float>(static_cast<int32_t>(ln.C * x[static_cast<size_t>(c)] - sum));
      const float y = std::fma(d, Rf * ln.gain_f[static_cast<size_t>(c)], ln.bias_f[static_cast<size_t>(c)]);
      n += std::fabs(y - std::nearbyint(y)) > 0.5f - ln.tie_margin;
    }
  }
  return n;
}

}  // namespace

// Σx and Σx² in int64 against the plain loop: table-like values, int32's extremes (whose squares
// need every bit of the int64 products) and short rows (tails only).
TEST(Avx2NormAct, LayerNormRowSumsMatchPlainLoop) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(3);
  for (int C : {1, 7, 8, 9, 16, 17, 31, 160, 192, 768}) {
    IntLayerNorm ln;
    ln.C = C;
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<int32_t> x(static_cast<size_t>(C));
      for (auto& v : x) {
        switch (trial % 4) {
          case 0: v = static_cast<int32_t>(rng() % 131071) - 65535; break;  // (q − z) << 8
          case 1: v = static_cast<int32_t>(rng()); break;                   // any int32
          case 2: v = rng() % 2 ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max(); break;
          default: v = -1 - static_cast<int32_t>(rng() % 3); break;
        }
      }
      int64_t s0 = 0, q0 = 0, s1 = 0, q1 = 0;
      ln.row_sums(x.data(), &s0, &q0);
      avx2::layernorm_row_sums(ln, x.data(), &s1, &q1);
      ASSERT_EQ(s0, s1) << "C " << C << " trial " << trial;
      ASSERT_EQ(q0, q1) << "C " << C << " trial " << trial;
    }
  }
}

// The integer formula (placement off): both forms of the last shift — s ≥ 32 (high halves) and
// s < 32 (an output step ~10^-7: 64-bit shifts and clamp) — 8-bit and 4-bit outputs, zero points
// at 0 and 255, and one so far below the codes that the clamp bounds minus it leave int32 (the
// 64-bit clamp again, with every code clamped).
TEST(Avx2NormAct, LayerNormIntegerOutputMatchesPlainLoop) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(5);
  struct Out {
    QParams q;
    bool high;  // expected form: s ≥ 32 with the bounds in int32
  };
  const Out outs[] = {{QParams{0.03, 128, 0, 255}, true},  {QParams{0.04, 0, 0, 255}, true},
                      {QParams{0.04, 255, 0, 255}, true},  {QParams{0.35, 7, 0, 15}, true},
                      {QParams{1e-7, 128, 0, 255}, false}, {QParams{0.03, std::numeric_limits<int32_t>::min() + 5, 0, 255}, false}};
  for (int C : kChannels) {
    const LnParams p = ln_params(C, 3, rng);
    for (const Out& o : outs) {
      IntLayerNorm ln = IntLayerNorm::make(97, p.alpha, p.gamma, p.beta, o.q);
      ln.placed = false;
      const int s = ln.shift + 24;
      ASSERT_EQ(s >= 32 && int64_t{ln.qmin} - ln.zo >= INT32_MIN && int64_t{ln.qmax} - ln.zo <= INT32_MAX, o.high) << "shift " << ln.shift;
      const auto rows = ln_rows(p, 97, 40000 / C + 100, rng);
      EXPECT_EQ(expect_rows_match(ln, rows, "C " + std::to_string(C) + " out scale " + std::to_string(o.q.scale) + " zo " + std::to_string(o.q.zero)),
                rows.size() * static_cast<size_t>(C));
    }
  }
}

// The float placement: ~6·10^5 values a channel count landing everywhere between the rounding
// boundaries (and ~10^-4 of them within the margin, which take the integer formula: counted, so
// the blend is exercised), 8- and 4-bit outputs (the packs' saturation, an explicit clamp). With
// the margin set to zero the same data must give some other code — the test can see a wrong
// blend.
TEST(Avx2NormAct, LayerNormPlacementGivesTheIntegerCodes) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(23);
  size_t ties = 0, wrong_without_margin = 0;
  for (int C : kChannels) {
    const LnParams p = ln_params(C, 2, rng);
    for (const QParams out : {QParams{0.021, 127, 0, 255}, QParams{0.35, 7, 0, 15}}) {
      const IntLayerNorm ln = IntLayerNorm::make(97, p.alpha, p.gamma, p.beta, out);
      ASSERT_TRUE(ln.placed) << "margin " << ln.tie_margin;
      const auto rows = ln_rows(p, 97, 600000 / C, rng);
      EXPECT_EQ(expect_rows_match(ln, rows, "C " + std::to_string(C) + " out scale " + std::to_string(out.scale)),
                rows.size() * static_cast<size_t>(C));
      ties += near_ties(ln, rows);
      IntLayerNorm loose = ln;
      loose.tie_margin = 0;
      for (const auto& x : rows) {
        std::vector<uint8_t> want(static_cast<size_t>(C)), got(static_cast<size_t>(C));
        ln.row_centred(x.data(), want.data(), false);
        avx2::layernorm_row_centred(loose, x.data(), got.data());
        for (int c = 0; c < C; ++c) wrong_without_margin += want[static_cast<size_t>(c)] != got[static_cast<size_t>(c)];
      }
    }
  }
  EXPECT_GT(ties, 100u);
  EXPECT_GT(wrong_without_margin, 0u);
}

// The site: residual codes → x by the per-α tables (8-lane gathers), the sums from the same
// registers, blocks of 8 rows, the output step — against rows_plain (the int32 table per
// element, the scalar row) and centre_row. K from 0 to 8 (α = 8: |x| up to 255 · 2^8), α values
// absent, input zero points 0, 97 and 255, rows of codes 0/255, 17 rows (two blocks and one row).
TEST(Avx2NormAct, LayerNormSiteRowsMatchReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(17);
  const QParams residual{0.05, 131, 0, 255}, out{0.03, 120, 0, 255};
  for (int C : {16, 17, 160, 192, 768, 40}) {
    for (int K : {0, 3, 8, -3}) {
      for (int32_t zin : {97, 0, 255}) {
        const bool some_absent = K < 0;
        const int k_max = std::abs(K);
        const QParams in{0.011, zin, 0, 255};
        std::vector<int> alpha(static_cast<size_t>(C));
        std::vector<float> gamma(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
        for (int c = 0; c < C; ++c) {
          alpha[static_cast<size_t>(c)] = some_absent ? 1 + static_cast<int>(rng() % 2) : static_cast<int>(rng() % static_cast<uint32_t>(k_max + 1));
          gamma[static_cast<size_t>(c)] = 0.5f + static_cast<float>(rng() % 1000) / 1000.0f;
          beta[static_cast<size_t>(c)] = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 200.0f;
        }
        const IntLayerNormSite site = IntLayerNormSite::make(alpha, k_max, residual, in, gamma, beta, out);
        const int M = 17;
        std::vector<uint8_t> h(static_cast<size_t>(M) * C);
        for (auto& v : h) v = static_cast<uint8_t>(rng());
        for (int c = 0; c < C; ++c) {
          h[static_cast<size_t>(c)] = c % 2 ? 255 : 0;
          h[static_cast<size_t>(C) + c] = c % 5 ? 0 : 255;
          h[static_cast<size_t>(2 * C) + c] = 131;  // the residual's zero: x = 0 where z maps to itself
        }
        const std::string what = "C " + std::to_string(C) + " K " + std::to_string(K) + " z " + std::to_string(zin);
        std::vector<uint8_t> want(h.size()), plain(h.size()), got(h.size());
        site.rows_plain(h.data(), M, want.data());
        site.rows(h.data(), M, plain.data());
        set_max_isa(Isa::Avx2);  // IntLayerNormSite::rows with the AVX2 kernels (this file's centre_row and row_output)
        site.rows(h.data(), M, got.data());
        set_max_isa(Isa::Scalar);
        ASSERT_EQ(want, plain) << what;
        ASSERT_EQ(want, got) << what;
        for (int i = 0; i < M; ++i) {
          std::vector<int32_t> x0(static_cast<size_t>(C)), x1(static_cast<size_t>(C));
          int64_t s0 = 0, q0 = 0, s1 = -1, q1 = -1;
          site.centre_row(h.data() + static_cast<size_t>(i) * C, x0.data(), &s0, &q0);
          avx2::layernorm_site_centre_row(site, h.data() + static_cast<size_t>(i) * C, x1.data(), &s1, &q1);
          ASSERT_EQ(x0, x1) << what << " row " << i;
          ASSERT_EQ(s0, s1) << what << " row " << i;
          ASSERT_EQ(q0, q1) << what << " row " << i;
        }
      }
    }
  }
}

// centre_row's int64 sums, taken where int32 lanes could overflow: K = 16 (|x| up to 255 · 2^16)
// over 1024 channels. Only the table and the sums (such x are outside the output step's range).
TEST(Avx2NormAct, LayerNormSiteWideSumsMatchCentreRow) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(29);
  const int C = 1024, K = 16;
  std::vector<int> alpha(C);
  for (auto& a : alpha) a = rng() % 2 ? K : static_cast<int>(rng() % (K + 1));
  const IntLayerNormSite site = IntLayerNormSite::make(alpha, K, QParams{0.05, 131, 0, 255}, QParams{0.05, 0, 0, 255},
                                                       std::vector<float>(C, 1.0f), std::vector<float>(C, 0.0f), QParams{0.03, 120, 0, 255});
  for (int r = 0; r < 20; ++r) {
    std::vector<uint8_t> h(C);
    for (auto& v : h) v = static_cast<uint8_t>(r < 2 ? 255 * r : static_cast<int>(rng()));
    std::vector<int32_t> x0(C), x1(C);
    int64_t s0 = 0, q0 = 0, s1 = -1, q1 = -1;
    site.centre_row(h.data(), x0.data(), &s0, &q0);
    avx2::layernorm_site_centre_row(site, h.data(), x1.data(), &s1, &q1);
    ASSERT_EQ(x0, x1) << "row " << r;
    ASSERT_EQ(s0, s1) << "row " << r;
    ASSERT_EQ(q0, q1) << "row " << r;
  }
}

namespace {

IntLinear producer(int N, double s_lo, double s_hi, std::mt19937& rng, bool with_gemm) {
  IntLinear fc1;
  fc1.N = N;
  fc1.K = 64;
  if (with_gemm) {
    std::vector<int8_t> w(static_cast<size_t>(N) * fc1.K);
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    fc1.gemm = std::make_unique<Int8Gemm>(w.data(), N, fc1.K, Kernels::Fast);
    for (int32_t s : fc1.gemm->weight_sums()) fc1.acc_offset.push_back(-7 * static_cast<int64_t>(s));
  }
  for (int c = 0; c < N; ++c) {
    fc1.acc_scale.push_back(std::uniform_real_distribution<double>(s_lo, s_hi)(rng));
    fc1.bias.push_back(std::uniform_real_distribution<double>(-0.5, 0.5)(rng));
  }
  return fc1;
}

// Accumulators of row i, channel c: x = x0 + i · scale_c (contiguous runs: every rounding boundary
// crossed in unit steps), clamped to int32.
std::vector<int32_t> runs(const IntLinear& fc1, double x0, double x1, int* M) {
  const int N = fc1.N;
  std::vector<int64_t> start(static_cast<size_t>(N));
  *M = 0;
  for (int c = 0; c < N; ++c) {
    const double off = fc1.acc_offset.empty() ? 0.0 : static_cast<double>(fc1.acc_offset[static_cast<size_t>(c)]);
    start[static_cast<size_t>(c)] = std::llround((x0 - fc1.bias[static_cast<size_t>(c)]) / fc1.acc_scale[static_cast<size_t>(c)] - off);
    *M = std::max(*M, static_cast<int>((x1 - x0) / fc1.acc_scale[static_cast<size_t>(c)]));
  }
  std::vector<int32_t> acc(static_cast<size_t>(*M) * N);
  for (int i = 0; i < *M; ++i)
    for (int c = 0; c < N; ++c)
      acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(std::clamp<int64_t>(start[static_cast<size_t>(c)] + i, INT32_MIN, INT32_MAX));
  return acc;
}

// Wide random accumulators with int32's extremes and the float-exactness edge ±2^24 planted.
std::vector<int32_t> wide(int M, int N, int32_t span, std::mt19937& rng) {
  std::vector<int32_t> acc(static_cast<size_t>(M) * N);
  std::uniform_int_distribution<int32_t> d(-span, span);
  for (auto& a : acc) a = d(rng);
  const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, INT32_MAX, (1 << 24) - 1, 1 << 24, -(1 << 24), -(1 << 24) + 1, 0};
  for (size_t i = 0; i < acc.size(); i += 7) acc[i] = edges[(i / 7) % 8];
  return acc;
}

}  // namespace

// The polynomial form of IntElementwise gives the table's codes on contiguous runs of
// accumulators from below the table's range to past its top (every boundary crossed in fine
// steps), and on wide random ones with int32's extremes: GELU at 8 bits with the weights' bound
// unknown (every |acc| checked against 2^24, the packs' clamp), GELU at 4 bits after a real GEMM
// (no check, the explicit clamp), tanh (the BERT pooler's range). Against rows_plain and
// rows() (the plain loop here). With the margin zero the runs must give some other code.
TEST(Avx2NormAct, ElementwisePolynomialGivesTheTableCodes) {
  SKIP_WITHOUT_AVX2();
  struct Case {
    const char* fn;
    QParams out;
    bool with_gemm;
    double lo, hi;
  };
  const Case cases[] = {{"gelu", QParams{0.021, 9, 0, 255}, false, -8.0, 0.0},
                        {"gelu", QParams{0.3, 1, 0, 15}, true, -8.0, 0.0},
                        {"tanh", QParams{2.0 / 255, 128, 0, 255}, false, -10.0, 10.0}};
  size_t wrong_without_margin = 0;
  for (const Case& cs : cases) {
    for (int N : kChannels) {
      std::mt19937 rng(11 + N);
      const double step = 3e-4 * std::max(1, N / 64);  // ~3·10^6 accumulators per channel count
      const IntLinear fc1 = producer(N, step, 2.5 * step, rng, cs.with_gemm);
      const double hi = cs.hi != 0 ? cs.hi : (cs.out.qmax - cs.out.zero + 1) * cs.out.scale;
      const IntElementwise e = IntElementwise::make(fc1, activation_fn(cs.fn), cs.out, cs.lo, hi);
      ASSERT_TRUE(e.poly.on) << cs.fn << " scale " << cs.out.scale;
      ASSERT_EQ(e.poly.acc_below_2_24, cs.with_gemm);
      const std::string what = std::string(cs.fn) + " N " + std::to_string(N) + " out scale " + std::to_string(cs.out.scale);
      int M = 0;
      std::vector<int32_t> acc = runs(fc1, cs.lo - 1.0, hi + 0.5, &M);
      for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1) {
          M = 300;
          acc = wide(M, N, 40000000, rng);
        }
        std::vector<uint8_t> ref(acc.size()), plain(acc.size()), got(acc.size());
        e.rows_plain(acc.data(), M, ref.data());
        e.rows(acc.data(), M, plain.data());
        avx2::elementwise_rows(e, acc.data(), M, got.data());
        ASSERT_EQ(ref, plain) << what;
        size_t differ = 0;
        for (size_t i = 0; i < acc.size(); ++i) differ += got[i] != ref[i];
        EXPECT_EQ(differ, 0u) << what << (pass ? " (wide)" : " (runs)") << " of " << acc.size();
        if (pass == 1 && !e.poly.acc_below_2_24) {
          // The |acc| ≥ 2^24 lanes go to the table: with every polynomial made wrong (y far above
          // the codes) and no margin, exactly those lanes still give the table's codes.
          IntElementwise broken = e;
          broken.poly.tie_margin = 0;
          for (auto& k : broken.poly.coef[0]) k = 1e4f;
          avx2::elementwise_rows(broken, acc.data(), M, got.data());
          size_t fixed = 0;
          for (size_t i = 0; i < acc.size(); ++i) {
            if (acc[i] < -(1 << 24) + 1 || acc[i] > (1 << 24) - 1) {
              EXPECT_EQ(got[i], ref[i]) << what << " acc " << acc[i];
              fixed += ref[i] != cs.out.qmax;
            }
          }
          EXPECT_GT(fixed, 0u) << what;
        }
        if (pass == 0) {
          IntElementwise loose = e;
          loose.poly.tie_margin = 0;
          avx2::elementwise_rows(loose, acc.data(), M, got.data());
          for (size_t i = 0; i < acc.size(); ++i) wrong_without_margin += got[i] != ref[i];
        }
      }
    }
  }
  EXPECT_GT(wrong_without_margin, 0u);
}

// The table form (gathers): GELU and tanh on wide random accumulators with int32's extremes, the
// grid's shift below 32 (64-bit shift and clamp) and at or above 32 (accumulator steps so small
// that the multipliers fall below 1/4: the high halves and a 32-bit shift), and, with the
// polynomial off, elementwise_rows falling back to it.
TEST(Avx2NormAct, ElementwiseTableMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (const char* fn : {"gelu", "tanh"}) {
    for (bool tiny : {false, true}) {
      for (int N : {16, 17, 37, 160, 192, 768}) {
        std::mt19937 rng(7 + N);
        const IntLinear fc1 = producer(N, tiny ? 1e-9 : 5e-6, tiny ? 3e-9 : 5e-5, rng, false);
        const QParams out = std::string(fn) == "tanh" ? QParams{2.0 / 255, 128, 0, 255} : QParams{0.021, 9, 0, 255};
        const double lo = std::string(fn) == "tanh" ? -10.0 : -8.0, hi = std::string(fn) == "tanh" ? 10.0 : (out.qmax - out.zero + 1) * out.scale;
        IntElementwise e = IntElementwise::make(fc1, activation_fn(fn), out, lo, hi);
        ASSERT_EQ(e.to_grid.shift >= 32, tiny) << "shift " << e.to_grid.shift;
        const int M = 200;
        std::vector<int32_t> acc = wide(M, N, tiny ? INT32_MAX : 400000, rng);
        if (tiny) {
          // Every grid index around up to 64 of the table's code boundaries, on every channel (the
          // cell's compare at the boundary's exact index and the one before it).
          std::vector<int64_t> bounds;
          for (size_t cell = 0; cell < e.packed.size(); ++cell)
            if ((e.packed[cell] >> 16 & 0xff) != e.packed[cell] >> 24) bounds.push_back((int64_t{static_cast<int64_t>(cell)} << e.cell_bits) + (e.packed[cell] & 0xffff));
          const size_t stride = std::max<size_t>(1, bounds.size() / 64);
          const ChannelRequant& r = e.to_grid;
          for (size_t b = 0; b < bounds.size(); b += stride)
            for (int k = -40; k < 40; ++k)
              for (int c = 0; c < N; ++c) {
                const long double a0 = (std::ldexp(static_cast<long double>(bounds[b] - r.zo), r.shift) - r.bias[static_cast<size_t>(c)]) / r.m[static_cast<size_t>(c)];
                acc.push_back(static_cast<int32_t>(std::clamp<long double>(std::floor(a0) + k, INT32_MIN, INT32_MAX)));
              }
        }
        const int rows = static_cast<int>(acc.size() / static_cast<size_t>(N));
        std::vector<uint8_t> ref(acc.size()), got(acc.size());
        e.rows_plain(acc.data(), rows, ref.data());
        avx2::elementwise_rows_by_table(e, acc.data(), rows, got.data());
        ASSERT_EQ(ref, got) << fn << " N " << N << (tiny ? " shift ≥ 32" : "");
        e.poly.on = false;
        std::fill(got.begin(), got.end(), 0);
        avx2::elementwise_rows(e, acc.data(), rows, got.data());
        ASSERT_EQ(ref, got) << fn << " N " << N << " (polynomial off)";
      }
    }
  }
}

// apply_table's 16 sub-tables and blend tree against the plain loop: lengths around the 32-code
// vector (threads from 2^14 codes), out of place and in place, a random table (every sub-table
// different) and a requantization table, every code 0..255 present.
TEST(Avx2NormAct, CodeTableMatchesPlainLoop) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 rng(31);
  std::vector<uint8_t> table(256);
  for (auto& v : table) v = static_cast<uint8_t>(rng());
  std::vector<uint8_t> reversed(256);
  for (int i = 0; i < 256; ++i) reversed[static_cast<size_t>(i)] = static_cast<uint8_t>(255 - i);
  for (const auto& t : {table, reversed, table_between(QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255})}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{256}, size_t{1000}, size_t{100003}}) {
      std::vector<uint8_t> in(n);
      for (size_t i = 0; i < n; ++i) in[i] = static_cast<uint8_t>(i < 256 ? i : rng());
      std::vector<uint8_t> want(n), got(n);
      apply_table_plain(t.data(), in.data(), n, want.data());
      avx2::apply_table(t, in.data(), n, got.data());
      ASSERT_EQ(want, got) << "n " << n;
      avx2::apply_table(t, in.data(), n, in.data());
      ASSERT_EQ(want, in) << "in place, n " << n;
    }
  }
  std::vector<uint8_t> x(40, 3), y(40);
  avx2::apply_table({}, x.data(), x.size(), y.data());
  EXPECT_EQ(x, y);
  std::vector<uint8_t> short_table(10);
  EXPECT_THROW(avx2::apply_table(short_table, x.data(), x.size(), x.data()), std::logic_error);
}
