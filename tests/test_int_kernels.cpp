// Reference integer kernels against exact (double / long double) arithmetic.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/int_kernels.h"

using namespace qtx::rt;

TEST(IntKernels, RoundShiftIsHalfAwayFromZero) {
  EXPECT_EQ(round_shift(5, 1), 3);    // 2.5 -> 3
  EXPECT_EQ(round_shift(-5, 1), -3);  // -2.5 -> -3
  EXPECT_EQ(round_shift(7, 2), 2);    // 1.75 -> 2
  EXPECT_EQ(round_shift(-6, 2), -2);  // -1.5 -> -2
  EXPECT_EQ(round_shift(-5, 2), -1);  // -1.25 -> -1
  EXPECT_EQ(round_shift(3, 0), 3);
  EXPECT_EQ(round_shift(3, -2), 12);
}

TEST(IntKernels, RequantMatchesRealMultiplier) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> logm(-20, 4);
  std::uniform_int_distribution<int64_t> acc(-(1 << 24), 1 << 24);
  for (int i = 0; i < 2000; ++i) {
    const double M = std::pow(2.0, logm(rng));
    Requant r = Requant::from_real(M);
    EXPECT_NEAR(r.real() / M, 1.0, 1e-9);
    EXPECT_GE(r.m, 1 << 30);  // a full 31-bit mantissa
    const int64_t x = acc(rng);
    const double want = x * r.real();
    const int64_t got = r.apply(x);
    // Exact rounding of x·m·2^-shift, half away from zero.
    EXPECT_LE(std::fabs(got - want), 0.5 + 1e-9) << M << " " << x;
  }
}

TEST(IntKernels, GemmReferenceHandCase) {
  const uint8_t A[2 * 3] = {10, 20, 30, 0, 255, 128};
  const int8_t B[2 * 3] = {1, -1, 2, -128, 127, 0};
  int32_t C[4];
  gemm_u8s8_ref(A, 128, B, C, 2, 2, 3);
  EXPECT_EQ(C[0], (10 - 128) * 1 + (20 - 128) * -1 + (30 - 128) * 2);
  EXPECT_EQ(C[1], (10 - 128) * -128 + (20 - 128) * 127);
  EXPECT_EQ(C[2], (0 - 128) * 1 + (255 - 128) * -1 + 0);
  EXPECT_EQ(C[3], (0 - 128) * -128 + (255 - 128) * 127);
}

TEST(IntKernels, IsqrtIsExactFloorSqrt) {
  for (uint64_t n = 0; n < 200000; ++n) {
    uint64_t r = isqrt(n);
    ASSERT_TRUE(r * r <= n && (r + 1) * (r + 1) > n) << n;
  }
  std::mt19937_64 rng(2);
  for (int i = 0; i < 20000; ++i) {
    uint64_t n = rng() >> (rng() % 40);
    uint64_t r = isqrt(n);
    ASSERT_TRUE(static_cast<unsigned __int128>(r) * r <= n && static_cast<unsigned __int128>(r + 1) * (r + 1) > n) << n;
  }
}

TEST(IntKernels, LogIntSoftmaxRowCodes) {
  // One dominant score: code 0 (probability 1/1 after rounding) and tiny ones dropped at 4 bits.
  IntExp ie = IntExp::for_scale(0.05);
  const int32_t q[4] = {0, -400, -20, 5};  // real: 0, -20, -1, 0.25
  const uint8_t valid[4] = {1, 1, 1, 0};
  int8_t codes[4];
  log_int_softmax_row(q, valid, 4, ie, 4, codes);
  // p ≈ [0.731, 1.5e-9, 0.269, masked]: 1/p ≈ 1.37 -> r=1 -> k=0; 3.72 -> r=4 -> k=2; 7e8 -> k=29 ≥ 16 -> dropped.
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], -1);
  EXPECT_EQ(codes[2], 2);
  EXPECT_EQ(codes[3], -1);
}

TEST(IntKernels, GeluTableMatchesFloatGeluThenQuantize) {
  QParams in{0.05, 130, 0, 255}, out{0.03, 10, 0, 255};
  std::vector<uint8_t> t = gelu_table_u8(in, out);
  for (int c = 0; c < 256; ++c) {
    const double x = (c - 130) * 0.05;
    const double y = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    const double want = std::min(255.0, std::max(0.0, std::round(y / 0.03) + 10));
    EXPECT_EQ(t[static_cast<size_t>(c)], want) << c;  // std::round also rounds half away from zero
  }
  EXPECT_EQ(t[130], 10);  // gelu(0) = 0 -> the output zero point
}

TEST(IntKernels, RequantAddWithinHalfAStepOfExact) {
  QParams a{0.021, 120, 0, 255}, b{0.0073, 131, 0, 255}, o{0.03, 128, 0, 255};
  RequantAdd add = RequantAdd::make(a, b, o);
  int worst = 0;
  for (int qa = 0; qa < 256; qa += 3)
    for (int qb = 0; qb < 256; qb += 5) {
      const double real = (qa - 120) * 0.021 + (qb - 131) * 0.0073;
      const double exact = std::min(255.0, std::max(0.0, real / 0.03 + 128));
      const int got = add(qa, qb);
      EXPECT_LE(std::fabs(got - exact), 0.5 + 1e-6) << qa << " " << qb;
      worst = std::max(worst, std::abs(got - static_cast<int>(std::lround(exact))));
    }
  EXPECT_LE(worst, 1);
}

TEST(IntKernels, IntegerLayerNormOnPtfShiftedCodesMatchesFloat) {
  // 192 channels, a few of them 8x wider (α = 3) as PTF would mark them.
  std::mt19937 rng(4);
  const int C = 192;
  const double s = 0.01;  // PTF base scale
  const int32_t z = 120;
  std::vector<int> alpha(C, 0);
  for (int c = 0; c < C; c += 17) alpha[static_cast<size_t>(c)] = 3;
  std::vector<float> gamma(C), beta(C);
  std::normal_distribution<float> g(1.0f, 0.3f), b(0.0f, 0.2f);
  for (int c = 0; c < C; ++c) {
    gamma[static_cast<size_t>(c)] = g(rng);
    beta[static_cast<size_t>(c)] = b(rng);
  }
  gamma[5] = -0.7f;
  QParams out{0.04, 128, 0, 255};
  IntLayerNorm ln = IntLayerNorm::make(z, alpha, gamma, beta, out);
  int exact = 0, total = 0;
  for (int r = 0; r < 200; ++r) {
    std::vector<uint8_t> q(C), o(C);
    std::normal_distribution<double> xs(0, 1 + r % 5);
    for (int c = 0; c < C; ++c)
      q[static_cast<size_t>(c)] = static_cast<uint8_t>(std::min(255.0, std::max(0.0, std::round(z + xs(rng) * 20))));
    ln.row(q.data(), o.data());
    std::vector<double> x(C);
    double mean = 0, var = 0;
    for (int c = 0; c < C; ++c) mean += x[static_cast<size_t>(c)] = (q[static_cast<size_t>(c)] - z) * s * (1 << alpha[static_cast<size_t>(c)]);
    mean /= C;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= C;
    for (int c = 0; c < C; ++c) {
      const double y = (x[static_cast<size_t>(c)] - mean) / std::sqrt(var) * gamma[static_cast<size_t>(c)] + beta[static_cast<size_t>(c)];
      const double want = std::min(255.0, std::max(0.0, std::round(y / out.scale) + out.zero));
      const int got = o[static_cast<size_t>(c)];
      ASSERT_LE(std::fabs(got - want), 1.0) << r << "," << c;
      exact += got == static_cast<int>(want);
      ++total;
    }
  }
  EXPECT_GT(exact, total * 99 / 100);  // off by one step only at rounding ties of the float result
}
