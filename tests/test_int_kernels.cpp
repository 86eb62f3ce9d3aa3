// Integer kernels against exact (double / long double) arithmetic, and oneDNN's GEMM against
// the reference GEMM.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <thread>
#include <random>

#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"
#include "runtime/profile.h"

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
  gemm_u8s8_plain(A, 128, B, C, 2, 2, 3);
  EXPECT_EQ(C[0], (10 - 128) * 1 + (20 - 128) * -1 + (30 - 128) * 2);
  EXPECT_EQ(C[1], (10 - 128) * -128 + (20 - 128) * 127);
  EXPECT_EQ(C[2], (0 - 128) * 1 + (255 - 128) * -1 + 0);
  EXPECT_EQ(C[3], (0 - 128) * -128 + (255 - 128) * 127);
}

TEST(IntKernels, IsqrtIsExactFloorSqrt) {
  // Small n exhaustively, around perfect squares up to the largest root, random magnitudes.
  auto exact = [](uint64_t n, uint64_t r) {
    return static_cast<unsigned __int128>(r) * r <= n && static_cast<unsigned __int128>(r + 1) * (r + 1) > n;
  };
  std::vector<uint64_t> ns;
  for (uint64_t n = 0; n < 200000; ++n) ns.push_back(n);
  for (uint64_t r : {uint64_t{1} << 25, (uint64_t{1} << 26) - 1, uint64_t{1} << 26, uint64_t{4294967295}})
    for (uint64_t n : {r * r - 1, r * r, r * r + 1}) ns.push_back(n);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 20000; ++i) ns.push_back(rng() >> (rng() % 64));
  ns.push_back(~uint64_t{0});
  for (uint64_t n : ns) {
    ASSERT_TRUE(exact(n, isqrt(n))) << n;
  }
}

TEST(IntKernels, Pow2DivIsExactFloor) {
  // Against the 128-bit division: every d at the ends of its range, powers of two and their
  // neighbours, and random d and e with the result below 2^63 (LayerNorm: e = k + 56, d ≈ 2^24).
  auto check = [](int e, uint64_t d) {
    const unsigned __int128 want = (static_cast<unsigned __int128>(1) << e) / d;
    if (want >= (static_cast<unsigned __int128>(1) << 63) || d >= (uint64_t{1} << 50)) return;
    ASSERT_EQ(pow2_div(e, d), static_cast<uint64_t>(want)) << "e " << e << " d " << d;
  };
  for (int e = 0; e < 63; ++e) check(e, 1);
  for (int e = 0; e < 113; ++e)
    for (int b = 0; b < 50; ++b)
      for (int64_t delta : {-1, 0, 1}) {
        const uint64_t d = (uint64_t{1} << b) + static_cast<uint64_t>(delta);
        if (d >= 1) check(e, d);
      }
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200000; ++i) {
    const uint64_t d = (rng() >> (14 + rng() % 50)) | 1;
    check(static_cast<int>(rng() % 113), d);
    check(56 + static_cast<int>(rng() % 25), (uint64_t{1} << 23) + rng() % (uint64_t{1} << 24));
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

TEST(IntKernels, OneDnnGemmMatchesReferenceBitExactly) {
  std::mt19937 rng(3);
  for (auto [M, N, K, za] : std::vector<std::array<int, 4>>{{1, 7, 5, 0}, {17, 192, 49, 131}, {64, 33, 768, 255}, {5, 10, 192, 1}}) {
    std::vector<uint8_t> A(static_cast<size_t>(M) * K);
    std::vector<int8_t> W(static_cast<size_t>(N) * K);
    for (auto& a : A) a = static_cast<uint8_t>(rng());
    for (auto& w : W) w = static_cast<int8_t>(rng());
    Int8Gemm fast(W.data(), N, K, Kernels::Fast), ref(W.data(), N, K, Kernels::Reference);
    std::vector<int32_t> c1(static_cast<size_t>(M) * N), c2(c1.size()), c3(c1.size());
    fast.run(A.data(), M, za, c1.data());
    ref.run(A.data(), M, za, c2.data());
    EXPECT_EQ(c1, c2) << M << "x" << N << "x" << K;
    fast.run(A.data(), M, za, c3.data());  // the cached plan gives the same result
    EXPECT_EQ(c1, c3);
  }
}

// GELU by table: the one-pass (AVX-512 where compiled for it) rows equal the plain two-step
// rows bit for bit, and both equal quantized erf-GELU computed in double except where the
// exact value lies within 1e-4 of an output step's rounding boundary (the table's input grid
// is 2^-29 of its range) or outside the table's range (clamped to its ends).
TEST(IntKernels, ElementwiseTableOnePassMatchesReferenceAndExactGelu) {
  const int N = 37;  // two 16-channel vectors and a tail
  std::mt19937 rng(5);
  IntLinear fc1;
  fc1.N = N;
  for (int c = 0; c < N; ++c) {
    fc1.acc_scale.push_back(std::uniform_real_distribution<double>(5e-6, 5e-5)(rng));
    fc1.bias.push_back(std::uniform_real_distribution<double>(-0.5, 0.5)(rng));
  }
  const QParams out{0.021, 9, 0, 255};
  const double lo = -8.0, hi = (out.qmax - out.zero + 1) * out.scale;
  auto gelu = activation_fn("gelu");
  IntElementwise e = IntElementwise::make(fc1, gelu, out, lo, hi);
  const int M = 400;
  std::vector<int32_t> acc(static_cast<size_t>(M) * N);
  std::uniform_int_distribution<int32_t> wide(-400000, 400000);
  for (auto& a : acc) a = wide(rng);
  acc[0] = INT32_MIN + 1;  // far outside the range on both sides
  acc[1] = INT32_MAX;
  std::vector<uint8_t> fast(acc.size()), ref(acc.size());
  e.rows(acc.data(), M, fast.data());
  e.rows_plain(acc.data(), M, ref.data());
  ASSERT_EQ(fast, ref);
  int checked = 0;
  for (size_t i = 0; i < acc.size(); ++i) {
    const size_t c = i % N;
    const double x = std::min(hi, std::max(lo, acc[i] * fc1.acc_scale[c] + fc1.bias[c]));
    const double y = gelu(x) / out.scale;
    const double r = y >= 0 ? std::floor(y + 0.5) : -std::floor(-y + 0.5);
    const double exact = std::min<double>(out.qmax, std::max<double>(out.qmin, r + out.zero));
    if (std::fabs(y - std::floor(y) - 0.5) < 1e-4) continue;
    EXPECT_EQ(ref[i], exact) << "row " << i / N << " channel " << c << " x " << x;
    ++checked;
  }
  EXPECT_GT(checked, M * N * 9 / 10);
}

// The polynomial form of IntElementwise (AVX-512): every accumulator of a contiguous range per
// channel — x from below the table's range (−9: the polynomial's flat tail, clamped) to past its top, about a thousand accumulators per
// output step, so every rounding boundary is crossed in fine steps — gives the table's code bit
// for bit. Two configurations: 8-bit codes with the weights' bound unknown (every |acc| checked
// against 2^24, the saturating-pack clamp), and 4-bit codes after a real GEMM whose weights keep
// every accumulator below 2^24 (no check, an explicit clamp). The margin must leave the table
// well under 1 % of the values, or the fast form would be no faster.
TEST(IntKernels, ElementwisePolynomialGivesTheTableCodesOnEveryAccumulator) {
  struct Case {
    QParams out;
    bool with_gemm;
  };
  for (const Case& cs : {Case{QParams{0.021, 9, 0, 255}, false}, Case{QParams{0.3, 1, 0, 15}, true}}) {
    const int N = 80;  // 64-code stores and one vector more; the near-tie lanes by words of four vectors and one alone
    std::mt19937 rng(11);
    IntLinear fc1;
    fc1.N = N;
    fc1.K = 64;
    std::vector<int8_t> w(static_cast<size_t>(N) * fc1.K);
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    if (cs.with_gemm) {
      fc1.gemm = std::make_unique<Int8Gemm>(w.data(), N, fc1.K, Kernels::Fast);
      for (int32_t s : fc1.gemm->weight_sums()) fc1.acc_offset.push_back(-7 * static_cast<int64_t>(s));
    }
    for (int c = 0; c < N; ++c) {
      fc1.acc_scale.push_back(std::uniform_real_distribution<double>(3e-5, 8e-5)(rng));
      fc1.bias.push_back(std::uniform_real_distribution<double>(-0.5, 0.5)(rng));
    }
    const double lo = -8.0, hi = (cs.out.qmax - cs.out.zero + 1) * cs.out.scale;
    IntElementwise e = IntElementwise::make(fc1, activation_fn("gelu"), cs.out, lo, hi);
    ASSERT_TRUE(e.poly.on) << "scale " << cs.out.scale;
    EXPECT_EQ(e.poly.acc_below_2_24, cs.with_gemm);
    // Row i, channel c: the accumulator whose x is −9 + i · scale_c (bias and zero-point term included).
    const double x_end = hi + 0.5;
    int M = 0;
    std::vector<int64_t> start(N);
    for (int c = 0; c < N; ++c) {
      const double off = fc1.acc_offset.empty() ? 0.0 : static_cast<double>(fc1.acc_offset[static_cast<size_t>(c)]);
      start[static_cast<size_t>(c)] = std::llround((-9.0 - fc1.bias[static_cast<size_t>(c)]) / fc1.acc_scale[static_cast<size_t>(c)] - off);
      M = std::max(M, static_cast<int>((x_end + 9.0) / fc1.acc_scale[static_cast<size_t>(c)]));
    }
    std::vector<int32_t> acc(static_cast<size_t>(M) * N);
    for (int i = 0; i < M; ++i)
      for (int c = 0; c < N; ++c) acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(start[static_cast<size_t>(c)] + i);
    std::vector<uint8_t> fast(acc.size()), ref(acc.size());
    e.rows(acc.data(), M, fast.data());
    e.rows_plain(acc.data(), M, ref.data());
    size_t differ = 0, near_tie = 0;
    for (size_t i = 0; i < acc.size(); ++i) {
      differ += fast[i] != ref[i];
      const size_t c = i % N;
      const float y = e.poly.eval(e.poly.place(acc[i], c));
      near_tie += std::fabs(y - std::nearbyint(y)) > 0.5f - e.poly.tie_margin;
    }
    EXPECT_EQ(differ, 0u) << "of " << acc.size() << " values, out scale " << cs.out.scale;
    EXPECT_LT(static_cast<double>(near_tie), 0.01 * static_cast<double>(acc.size())) << "tie margin " << e.poly.tie_margin;
  }
}

// The float placement of the requantizations (RequantPlacement, AVX-512) gives the integer
// formula's codes bit for bit: accumulators in contiguous runs per channel, ~1000 per output
// step, so every rounding boundary of the code range is crossed in unit steps; a bias per row
// (bias_rows 3), a 4-bit code range (explicit clamp), int32's extremes and accumulators past
// 2^24 (which the per-value check sends to the integer formula); for the residual add, every
// residual code. The placement must be on and leave the integer formula under 1 % of the values.
TEST(IntKernels, RequantPlacementGivesTheIntegerCodes) {
  std::mt19937 rng(13);
  const int N = 37, M = 3000;  // 64-wide stores, 16-wide and a scalar tail per row
  std::vector<double> acc_scale, bias;
  std::vector<int64_t> offset;
  for (int c = 0; c < N; ++c) {
    acc_scale.push_back(std::uniform_real_distribution<double>(1e-5, 3e-5)(rng));
    bias.push_back(std::uniform_real_distribution<double>(-0.3, 0.3)(rng));
    offset.push_back(static_cast<int64_t>(rng() % 2001) - 1000);
  }
  std::vector<double> bias3 = bias;  // three bias rows
  for (int r = 1; r < 3; ++r)
    for (int c = 0; c < N; ++c) bias3.push_back(bias[static_cast<size_t>(c)] + 0.01 * r);
  for (const QParams& out : {QParams{0.02, 128, 0, 255}, QParams{0.01, 3, 0, 15}}) {
    const ChannelRequant r = ChannelRequant::make(acc_scale, bias3, 3, out.scale, out.zero, out.qmin, out.qmax, offset);
    ASSERT_TRUE(r.placement.on) << "out scale " << out.scale;
    EXPECT_TRUE(r.placement.check_acc);  // no bound given
    // Row i: channel c's accumulator runs from where its code is below qmin upwards in unit steps.
    std::vector<int32_t> acc(static_cast<size_t>(M) * N);
    for (int c = 0; c < N; ++c) {
      const double per_code = out.scale / acc_scale[static_cast<size_t>(c)];  // accumulators per output step
      const int64_t start = static_cast<int64_t>((-(out.zero + 2) * out.scale - bias[static_cast<size_t>(c)]) / acc_scale[static_cast<size_t>(c)]) -
                            offset[static_cast<size_t>(c)];
      const int64_t stride = std::max<int64_t>(1, static_cast<int64_t>((out.qmax + 4) * per_code / M));
      for (int i = 0; i < M; ++i) acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(start + i * stride + (i % 7));
    }
    acc[0] = INT32_MIN;
    acc[1] = INT32_MAX;
    acc[2] = (1 << 24) + 5;
    acc[3] = -(1 << 24) - 5;
    // Rows of near-ties: accumulators whose exact value (acc·m + bias) / 2^shift lies within
    // 2^-17 of k + ½ for a code k in range (bias row 0) — where float32's own rounding of y could
    // pick the other code, so these are what the margin is for.
    const int64_t unit = int64_t{1} << r.shift;
    std::vector<std::vector<int32_t>> ties(N);
    for (int c = 0; c < N; ++c) {
      const int64_t mc = r.m[static_cast<size_t>(c)], bc = r.bias[static_cast<size_t>(c)];
      for (int64_t a = acc[static_cast<size_t>(N + c)]; ties[static_cast<size_t>(c)].size() < 40 && a < acc[static_cast<size_t>(N + c)] + (int64_t{1} << 23); ++a) {
        const int64_t v = a * mc + bc, rem = v - (v >> r.shift) * unit;  // v mod 2^shift, in [0, 2^shift)
        if (std::llabs(rem - unit / 2) < (unit >> 17)) ties[static_cast<size_t>(c)].push_back(static_cast<int32_t>(a));
      }
    }
    for (size_t k = 0; k < 40; ++k)  // rows 3·k + 6 (bias row 0 of the three), channel c: its k-th near-tie
      for (int c = 0; c < N; ++c)
        if (k < ties[static_cast<size_t>(c)].size()) acc[(3 * k + 6) * N + static_cast<size_t>(c)] = ties[static_cast<size_t>(c)][k];
    std::vector<uint8_t> placed(acc.size()), integer(acc.size());
    r.rows(acc.data(), M, placed.data());
    r.rows_integer(acc.data(), M, integer.data());
    size_t differ = 0, in_range = 0;
    for (size_t i = 0; i < acc.size(); ++i) {
      differ += placed[i] != integer[i];
      in_range += integer[i] > out.qmin && integer[i] < out.qmax;
    }
    EXPECT_EQ(differ, 0u) << "of " << acc.size() << ", out scale " << out.scale;
    EXPECT_GT(in_range, acc.size() / 2) << "out scale " << out.scale;  // the runs cover the code range, not only its clamped ends
  }
  // Residual add: every residual code against fine accumulator runs.
  const QParams h{0.05, 131, 0, 255}, out{0.06, 120, 0, 255};
  const ResidualRequant rr = ResidualRequant::make(acc_scale, bias, h, out, offset, int64_t{1} << 20);
  ASSERT_TRUE(rr.placement.on);
  EXPECT_FALSE(rr.placement.check_acc);  // a bound below 2^24 given
  const int MR = 256 * 20;
  std::vector<int32_t> acc(static_cast<size_t>(MR) * N);
  std::vector<uint8_t> hc(acc.size());
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < N; ++c) {
      acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>((i / 256) * 1777 + c * 31 - 20000);
      hc[static_cast<size_t>(i) * N + c] = static_cast<uint8_t>(i % 256);
    }
  std::vector<uint8_t> placed(acc.size()), integer(acc.size());
  rr.rows(acc.data(), hc.data(), MR, placed.data());
  rr.rows_integer(acc.data(), hc.data(), MR, integer.data());
  EXPECT_EQ(placed, integer);
}

// The requantization loops on 101 channels (64 at a time, 16 at a time and a tail, where that is
// compiled) against their integer formula evaluated here one value at a time, bit for bit:
// clamp(((acc · m_c + bias + half) >> shift) + zo), with the zero-point offset folded in. The
// output scales put each kernel in each of simd::Requant16's three lanes forms (shift ≥ 32;
// below 32 with every sum fitting; below 32 clamped in int64), asserted, and the accumulators
// include int32's extremes.
TEST(IntKernels, RequantizationVectorsMatchTheScalarFormula) {
  const int N = 101, M = 50;  // a 64-channel group, two of 16 and a tail
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> scale(1e-5, 9e-4), real(-2.0, 2.0);
  std::vector<double> acc_scale, bias;
  std::vector<int64_t> offset;
  for (int c = 0; c < N; ++c) {
    acc_scale.push_back(scale(rng));
    bias.push_back(real(rng));
    offset.push_back(static_cast<int64_t>(rng() % 200001) - 100000);
  }
  std::vector<double> bias2 = bias;  // two bias rows (ViT folds position embeddings this way)
  for (double b : bias) bias2.push_back(-b);
  std::vector<int32_t> acc(static_cast<size_t>(M) * N);
  std::vector<uint8_t> h(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) {
    acc[i] = static_cast<int32_t>(rng() % 400001) - 200000;
    h[i] = static_cast<uint8_t>(rng());
  }
  for (size_t i = 0; i < 40; ++i) acc[i * 41 % acc.size()] = i % 2 ? INT32_MAX : INT32_MIN;
  auto clamp = [](int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); };
  using simd::Lanes;
  // Output scales: 0.03 (multipliers below 0.03: shift ≥ 34), 2.5e-3 (below 0.36: shift 31,
  // sums within 2^62), 2e-4 (up to 4.5: shift 27, sums beyond 2^58).
  const std::vector<std::pair<double, Lanes>> channel_cases = {
      {0.03, Lanes::HighHalves}, {2.5e-3, Lanes::Fitting}, {2e-4, Lanes::Clamped64}};
  for (const auto& [out_scale, form] : channel_cases) {
    const ChannelRequant r = ChannelRequant::make(acc_scale, bias2, 2, out_scale, 110, 0, 255, offset);
    ASSERT_EQ(r.lanes, form) << "output scale " << out_scale << ", shift " << r.shift;
    std::vector<uint8_t> out(acc.size());
    std::vector<int32_t> out32(acc.size());
    r.rows(acc.data(), M, out.data());
    r.rows32(acc.data(), M, out32.data());
    const int64_t half = int64_t{1} << (r.shift - 1);
    for (int i = 0; i < M; ++i)
      for (int c = 0; c < N; ++c) {
        const size_t k = static_cast<size_t>(i) * N + c;
        const int64_t want = clamp(((static_cast<int64_t>(acc[k]) * r.m[c] + r.bias[static_cast<size_t>(i % 2) * N + c] + half) >> r.shift) + r.zo, r.qmin, r.qmax);
        ASSERT_EQ(out[k], want) << "output scale " << out_scale << " row " << i << " channel " << c;
        ASSERT_EQ(out32[k], want) << "output scale " << out_scale << " row " << i << " channel " << c;
      }
  }
  // Residuals: h's multiplier largest (shift 30) with small accumulator multipliers: Fitting;
  // accumulator multipliers up to 1.5 (shift 29): Clamped64; everything below 0.03: HighHalves.
  const std::vector<std::tuple<double, double, Lanes>> residual_cases = {
      {0.021, 0.03, Lanes::Fitting}, {1e-5, 6e-4, Lanes::Clamped64}, {0.021, 1.0, Lanes::HighHalves}};
  for (const auto& [h_scale, out_scale, form] : residual_cases) {
    const ResidualRequant res = ResidualRequant::make(acc_scale, bias, QParams{h_scale, 120, 0, 255}, QParams{out_scale, 128, 0, 255}, offset);
    ASSERT_EQ(res.lanes, form) << "output scale " << out_scale << ", shift " << res.shift;
    std::vector<uint8_t> out(acc.size());
    res.rows(acc.data(), h.data(), M, out.data());
    const int64_t rhalf = int64_t{1} << (res.shift - 1);
    for (size_t k = 0; k < acc.size(); ++k) {
      const size_t c = k % N;
      const int64_t v = static_cast<int64_t>(acc[k]) * res.ma[c] + res.bias[c] + (static_cast<int64_t>(h[k]) - res.zh) * res.mb;
      ASSERT_EQ(out[k], clamp(((v + rhalf) >> res.shift) + res.zo, res.qmin, res.qmax)) << "output scale " << out_scale << " value " << k;
    }
  }
}

// requant_to_codes (one multiplier for a whole tensor, rounding half away from zero) against
// round_shift one value at a time: shifts of 32 and more take the AVX-512 loop where it is
// compiled, 31 and below the plain one; int32's extremes included.
TEST(IntKernels, RequantToCodesMatchesRoundShift) {
  std::mt19937 rng(8);
  std::vector<int32_t> in(1000 + 7);
  for (auto& x : in) x = static_cast<int32_t>(rng() % 2000001) - 1000000;
  in[0] = INT32_MIN;
  in[1] = INT32_MAX;
  in[2] = -1;
  for (double M : {0.013, 3.1e-5, 0.7, 2.5e-10, 0.5}) {
    const Requant r = Requant::from_real(M);
    in[3] = static_cast<int32_t>(std::min<int64_t>(INT32_MAX, (int64_t{1} << std::min(r.shift, 40)) / std::max<int64_t>(1, r.m)));
    for (const QParams o : {QParams{1.0, 128, 0, 255}, QParams{1.0, 3, 0, 15}}) {
      std::vector<uint8_t> out(in.size());
      requant_to_codes(in.data(), in.size(), r, o, out.data());
      for (size_t i = 0; i < in.size(); ++i) {
        const int64_t v = round_shift(static_cast<int64_t>(in[i]) * r.m, r.shift) + o.zero;
        ASSERT_EQ(out[i], std::clamp<int64_t>(v, o.qmin, o.qmax)) << "M " << M << " shift " << r.shift << " value " << in[i];
      }
    }
  }
}

TEST(IntKernels, ChannelRequantWithinHalfAStepOfExact) {
  const std::vector<double> acc_scale = {1.3e-4, 2.9e-5, 7.7e-4}, bias = {0.31, -1.7, 0.05};
  ChannelRequant r = ChannelRequant::make(acc_scale, bias, 1, 0.04, 100, 0, 255);
  std::vector<int32_t> acc;
  for (int i = -3000; i <= 3000; i += 7)
    for (size_t c = 0; c < 3; ++c) acc.push_back(i * 37 + static_cast<int32_t>(c));
  const int M = static_cast<int>(acc.size() / 3);
  std::vector<uint8_t> out(acc.size());
  r.rows(acc.data(), M, out.data());
  for (size_t i = 0; i < acc.size(); ++i) {
    const double exact = std::min(255.0, std::max(0.0, (acc[i] * acc_scale[i % 3] + bias[i % 3]) / 0.04 + 100));
    EXPECT_LE(std::fabs(out[i] - exact), 0.5 + 1e-6) << i;
  }
  // Scales a corrupt artifact could hold are refused instead of shifting out of range.
  EXPECT_THROW(ChannelRequant::make({1e12}, {0.0}, 1, 1e-6, 0, 0, 255), std::invalid_argument);
}

TEST(IntKernels, ResidualRequantWithinHalfAStepOfExact) {
  const std::vector<double> acc_scale = {2.1e-4, 5.3e-5}, bias = {0.2, -0.4};
  QParams h{0.021, 120, 0, 255}, o{0.03, 128, 0, 255};
  ResidualRequant r = ResidualRequant::make(acc_scale, bias, h, o);
  std::vector<int32_t> acc;
  std::vector<uint8_t> hc;
  for (int a = -900; a <= 900; a += 13)
    for (int q = 0; q < 256; q += 17)
      for (int c = 0; c < 2; ++c) {
        acc.push_back(a * 11);
        hc.push_back(static_cast<uint8_t>(q));
      }
  std::vector<uint8_t> out(acc.size());
  r.rows(acc.data(), hc.data(), static_cast<int>(acc.size() / 2), out.data());
  for (size_t i = 0; i < acc.size(); ++i) {
    const double real = acc[i] * acc_scale[i % 2] + bias[i % 2] + (hc[i] - 120) * 0.021;
    const double exact = std::min(255.0, std::max(0.0, real / 0.03 + 128));
    EXPECT_LE(std::fabs(out[i] - exact), 0.5 + 1e-6) << i;
  }
}

TEST(IntKernels, TableLogIntSoftmaxMatchesReferenceBitExactly) {
  std::mt19937 rng(11);
  for (double scale : {0.002, 0.03, 0.08, 0.4}) {
    IntExp ie = IntExp::for_scale(scale);
    for (int bits : {4, 8}) {
      LogIntSoftmax fast = LogIntSoftmax::make(ie, 255, bits);
      // Both paths: exact double division per element, and integer threshold compares.
      for (int trial = 0; trial < 300; ++trial) {
        const int n = 1 + static_cast<int>(rng() % 130);
        std::vector<int32_t> q(static_cast<size_t>(n));
        std::vector<uint8_t> valid(static_cast<size_t>(n), 1);
        const int32_t spread = 1 + static_cast<int32_t>(rng() % 256);  // max − min ≤ 255
        for (auto& x : q) x = -128 + static_cast<int32_t>(rng() % static_cast<uint32_t>(spread));
        if (trial % 2)
          for (auto& v : valid) v = rng() % 4 != 0;
        valid[rng() % valid.size()] = 1;
        if (trial % 7 == 0) std::fill(q.begin(), q.end(), q[0]);  // all equal
        const uint8_t* mask = trial % 2 ? valid.data() : nullptr;
        std::vector<int8_t> want(q.size()), got(q.size()), by_exp(q.size());
        log_int_softmax_row(q.data(), valid.data(), n, ie, bits, want.data());
        fast.row(q.data(), mask, n, got.data());
        fast.row_by_exp(q.data(), mask, n, by_exp.data());
        ASSERT_EQ(want, got) << "scale " << scale << " bits " << bits << " trial " << trial;
        ASSERT_EQ(want, by_exp) << "scale " << scale << " bits " << bits << " trial " << trial;
      }
    }
  }
}

// LogIntSoftmax::rows — its phased form for rows of 8..32 scores (blocks of eight exps spanning
// two rows, n = 8 and 16 where they never do) and row() per row otherwise — against the reference
// row by row, with and without a validity mask shared by the rows.
TEST(IntKernels, LogIntSoftmaxRowsMatchReferenceRowByRow) {
  std::mt19937 rng(29);
  IntExp ie = IntExp::for_scale(0.03);
  for (int bits : {4, 8}) {
    LogIntSoftmax lis = LogIntSoftmax::make(ie, 255, bits);
    for (int n : {5, 8, 9, 16, 17, 23, 32, 33, 50})
      for (int n_rows : {1, 3, 17, 32, 64, 65})
        for (bool masked : {false, true}) {
          std::vector<int32_t> q(static_cast<size_t>(n_rows) * n);
          for (auto& x : q) x = -128 + static_cast<int32_t>(rng() % 256);
          std::vector<uint8_t> valid(static_cast<size_t>(n), 1);
          if (masked)
            for (auto& v : valid) v = rng() % 3 != 0;
          valid[0] = 1;
          std::vector<int8_t> got(q.size()), want(q.size());
          lis.rows(q.data(), masked ? valid.data() : nullptr, n_rows, n, got.data());
          for (int t = 0; t < n_rows; ++t)
            log_int_softmax_row(q.data() + static_cast<size_t>(t) * n, valid.data(), n, ie, bits, want.data() + static_cast<size_t>(t) * n);
          ASSERT_EQ(got, want) << "bits " << bits << " n " << n << " rows " << n_rows << (masked ? " masked" : "");
        }
  }
}

TEST(IntKernels, AttentionScoresAndLog2AvMatchPlainLoops) {
  std::mt19937 rng(5);
  // dh 32 and 64 take the register-accumulator paths of A·V, 8 and 6 the generic one; dh 6 the
  // plain Q·Kᵀ where the VNNI one (dh a multiple of 4, T ≥ 32; dh a multiple of 64, T ≥ 16: its
  // packing by transposes, vit-fmnist's 17 tokens) is compiled; T 37 and 50 the tails
  // of 16-key vectors and of 4-query passes, T 70 and 130 those of the 64-code plane building.
  // kmax 15 (4-bit softmax) and 20 (8-bit: three byte planes in the VNNI A·V), 7 (one plane).
  // Tq: all T queries, one (a last layer's CLS row: the plain loops) and 9 of them (VNNI with
  // fewer queries than keys, an odd count: the tail of the query pairs).
  // T ≤ 32 with dh a multiple of 16 takes the short-row VNNI A·V: 64 dimensions at a time (dh
  // 64, 80) and 16 at a time (dh 16, 48, 80's last block), T 32 its longest rows.
  for (auto [dh, T, kmax] : std::vector<std::array<int, 3>>{
           {8, 9, 15}, {6, 40, 15}, {32, 37, 15}, {64, 9, 20}, {64, 17, 15}, {64, 32, 7}, {16, 5, 15},
           {48, 20, 15}, {80, 31, 20}, {64, 50, 15}, {64, 50, 20}, {128, 33, 20}, {32, 70, 15}, {64, 130, 20}})
    for (int Tq : {T, 1, std::min(T, 9)}) {
      SCOPED_TRACE("dh " + std::to_string(dh) + " T " + std::to_string(T) + " Tq " + std::to_string(Tq) + " kmax " + std::to_string(kmax));
      const int ld = 3 * dh;
      std::vector<uint8_t> q(static_cast<size_t>(T) * ld), k(q.size()), v(q.size());
      for (auto* t : {&q, &k, &v})
        for (auto& x : *t) x = static_cast<uint8_t>(rng());
      std::vector<int32_t> S(static_cast<size_t>(Tq) * T);
      qk_scores(q.data(), 128, k.data(), 120, Tq, T, dh, ld, S.data());
      for (int t = 0; t < Tq; ++t)
        for (int j = 0; j < T; ++j) {
          int32_t s = 0;
          for (int d = 0; d < dh; ++d) s += (q[static_cast<size_t>(t) * ld + d] - 128) * (k[static_cast<size_t>(j) * ld + d] - 120);
          EXPECT_EQ(S[static_cast<size_t>(t) * T + j], s);
        }
      // Codes spread over -1 (zero) .. kmax + 1 (dropped), then sharp rows: mostly -1, a few large
      // probabilities, so that whole key groups and whole byte planes are empty (the VNNI A·V
      // skips them).
      for (bool sharp : {false, true}) {
        std::vector<int8_t> codes(S.size());
        for (auto& c : codes)
          c = static_cast<int8_t>(sharp ? (rng() % 9 == 0 ? static_cast<int>(rng() % 4) : -1) : static_cast<int>(rng() % (kmax + 3)) - 1);
        std::vector<int32_t> ctx(static_cast<size_t>(T) * ld, 7);
        av_log2(codes.data(), v.data(), 131, Tq, T, dh, ld, kmax, ctx.data(), ld);
        for (int t = 0; t < T; ++t) {
          if (t >= Tq) {  // rows past the queries untouched
            EXPECT_EQ(ctx[static_cast<size_t>(t) * ld], 7);
            continue;
          }
          for (int d = 0; d < dh; ++d) {
            int64_t want = 0;
            for (int j = 0; j < T; ++j) {
              const int c = codes[static_cast<size_t>(t) * T + j];
              if (c >= 0 && c <= kmax) want += static_cast<int64_t>(v[static_cast<size_t>(j) * ld + d] - 131) * (int64_t{1} << (kmax - c));
            }
            EXPECT_EQ(ctx[static_cast<size_t>(t) * ld + d], static_cast<int32_t>(want)) << (sharp ? "sharp rows" : "spread rows");
          }
          EXPECT_EQ(ctx[static_cast<size_t>(t) * ld + dh], 7);  // columns outside the head untouched
        }
      }
    }
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
    {  // the vectorised form against the plain loop, bit for bit
      std::vector<int32_t> xc(C);
      std::vector<uint8_t> plain(C);
      for (int c = 0; c < C; ++c) xc[static_cast<size_t>(c)] = (q[static_cast<size_t>(c)] - z) * (1 << alpha[static_cast<size_t>(c)]);
      ln.row_centred(xc.data(), plain.data(), false);
      ASSERT_EQ(o, plain) << "row " << r;
    }
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
  // The AVX-512 loop has two forms, by the output shift (above: 48, the even/odd lanes form);
  // an output step this fine (γ/s_out ≈ 10^7) puts it at 30, the widening form. Both against
  // the plain loop, with 200 channels (a 16-channel tail loop too). The widening form only
  // arises for such steps, so its outputs here are mostly clamped to 0 or 255: it checks the
  // arithmetic up to the clamp and the clamp itself, not a spread of mid-range codes.
  const int C2 = 200;
  std::vector<float> gamma2(C2), beta2(C2);
  for (int c = 0; c < C2; ++c) {
    gamma2[static_cast<size_t>(c)] = g(rng);
    beta2[static_cast<size_t>(c)] = b(rng) * 1e-5f;
  }
  for (const QParams o2 : {QParams{0.04, 128, 0, 255}, QParams{1e-7, 128, 0, 255}}) {
    IntLayerNorm ln2 = IntLayerNorm::make(z, std::vector<int>(C2, 1), gamma2, beta2, o2);
    ASSERT_EQ(ln2.shift + 24 >= 32, o2.scale > 1e-3) << ln2.shift;
    for (int r = 0; r < 50; ++r) {
      std::vector<int32_t> xc(C2);
      std::normal_distribution<double> xs(0, 1 + r % 5);
      for (auto& v : xc) v = static_cast<int32_t>(std::lround(xs(rng) * 40));
      std::vector<uint8_t> fast(C2), plain(C2);
      ln2.row_centred(xc.data(), fast.data(), true);
      ln2.row_centred(xc.data(), plain.data(), false);
      ASSERT_EQ(fast, plain) << "output scale " << o2.scale << " row " << r;
    }
  }
}

// The float placement of LayerNorm's output step (AVX-512) gives the integer formula's codes bit
// for bit: 4000 rows of 200 channels (64-wide stores, a 16-wide one and a scalar tail) with
// spreads from narrow to wide, so that ~10^6 values land everywhere between the rounding
// boundaries, and a 4-bit output range (explicit clamp). It must be on.
TEST(IntKernels, LayerNormPlacementGivesTheIntegerCodes) {
  std::mt19937 rng(23);
  const int C = 200;
  std::vector<float> gamma(C), beta(C);
  std::normal_distribution<float> g(1.0f, 0.4f), b(0.0f, 0.3f);
  for (int c = 0; c < C; ++c) {
    gamma[static_cast<size_t>(c)] = g(rng);
    beta[static_cast<size_t>(c)] = b(rng);
  }
  for (const QParams out : {QParams{0.021, 127, 0, 255}, QParams{0.35, 7, 0, 15}}) {
    IntLayerNorm ln = IntLayerNorm::make(97, std::vector<int>(C, 0), gamma, beta, out);
    ASSERT_TRUE(ln.placed) << "margin " << ln.tie_margin;
    size_t differ = 0;
    for (int r = 0; r < 4000; ++r) {
      std::vector<int32_t> x(C);
      std::normal_distribution<double> xs(0, 3 + r % 60);
      for (auto& v : x) v = static_cast<int32_t>(std::lround(xs(rng)));
      std::vector<uint8_t> fast(C), plain(C);
      ln.row_centred(x.data(), fast.data(), true);
      ln.row_centred(x.data(), plain.data(), false);
      for (int c = 0; c < C; ++c) differ += fast[static_cast<size_t>(c)] != plain[static_cast<size_t>(c)];
    }
    EXPECT_EQ(differ, 0u) << "out scale " << out.scale << ", margin " << ln.tie_margin;
  }
}

TEST(IntKernels, LayerNormSiteByteTablesMatchReference) {
  // The 64-channel byte-permute path (AVX512-VBMI; with K ≤ 3 its sums by int16 vpdpwssd, with
  // K = 7 the int16 squares could overflow, so in int64) and the gather path against the int32
  // table per element and the scalar row; C = 192 and 256 are whole blocks, 200 and 40 leave
  // tails; 9 rows are a block of 8 and one more. K = 3 twice: every α present, then only 1 and 2
  // (as in vit-fmnist, where no channel has α = 0; the byte path skips absent α's tables).
  std::mt19937 rng(17);
  const QParams residual{0.05, 131, 0, 255}, in{0.011, 97, 0, 255}, out{0.03, 120, 0, 255};
  for (int C : {192, 256, 200, 40}) {
    for (int K : {0, 3, 7, -3}) {
      const bool some_absent = K < 0;
      K = std::abs(K);
      std::vector<int> alpha(static_cast<size_t>(C));
      std::vector<float> gamma(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
      for (int c = 0; c < C; ++c) {
        alpha[static_cast<size_t>(c)] = some_absent ? 1 + static_cast<int>(rng() % 2) : static_cast<int>(rng() % static_cast<uint32_t>(K + 1));
        gamma[static_cast<size_t>(c)] = 0.5f + static_cast<float>(rng() % 1000) / 1000.0f;
        beta[static_cast<size_t>(c)] = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 200.0f;
      }
      const IntLayerNormSite site = IntLayerNormSite::make(alpha, K, residual, in, gamma, beta, out);
      if (C >= 192) {  // (40 channels are few enough for K = 7)
        EXPECT_EQ(site.int16_sums, K <= 3);
      }
      const int M = 9;
      std::vector<uint8_t> h(static_cast<size_t>(M) * C);
      for (auto& v : h) v = static_cast<uint8_t>(rng());
      for (int c = 0; c < C; ++c) h[static_cast<size_t>(c)] = c % 2 ? 255 : 0;  // the table ends
      std::vector<uint8_t> want(h.size()), got(h.size());
      site.rows_plain(h.data(), M, want.data());
      site.rows(h.data(), M, got.data());
      ASSERT_EQ(want, got) << "C " << C << " K " << K << (some_absent ? " (α 1 and 2 only)" : "");
      // The table itself: the residual code requantized onto s·2^α, then (code − z) << α.
      const int c = C - 1, code = h[static_cast<size_t>(C) + c], k = alpha[static_cast<size_t>(c)];
      const double real = (code - residual.zero) * residual.scale / (in.scale * std::ldexp(1.0, k));
      const int q = std::clamp(static_cast<int>(std::lround(real)) + in.zero, 0, 255);
      EXPECT_EQ(site.centred[static_cast<size_t>(k * 256 + code)], (q - in.zero) * (1 << k));
    }
  }
}

TEST(IntKernels, CodeTableBytePermutesMatchPlainLoop) {
  // apply_table (64 codes per pair of byte permutes with AVX512-VBMI, threads from 2^14 codes)
  // against the plain loop: lengths with and without a tail, out of place and in place, a
  // table whose two halves differ (bit 7 picks the half) and every code 0..255 present.
  std::mt19937 rng(23);
  std::vector<uint8_t> table(256);
  for (auto& v : table) v = static_cast<uint8_t>(rng());
  const QParams from{0.05, 131, 0, 255}, to{0.011, 97, 0, 255};
  for (const auto& t : {table, table_between(from, to)}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{256}, size_t{1000}, size_t{100003}}) {
      std::vector<uint8_t> in(n);
      for (size_t i = 0; i < n; ++i) in[i] = static_cast<uint8_t>(i < 256 ? i : rng());
      std::vector<uint8_t> want(n), got(n);
      apply_table_plain(t.data(), in.data(), n, want.data());
      apply_table(t, in.data(), n, got.data());
      ASSERT_EQ(want, got) << "n " << n;
      apply_table(t, in.data(), n, in.data());
      ASSERT_EQ(want, in) << "in place, n " << n;
    }
  }
  EXPECT_EQ(table_between(from, from).size(), 0u);  // the same quantizer: no table, a copy
  std::vector<uint8_t> short_table(10), x(4);
  EXPECT_THROW(apply_table(short_table, x.data(), x.size(), x.data()), std::logic_error);
}

// A fused region's wall time is shared among its laps' classes in proportion to their time:
// 10 ms charged to softmax and 30 ms to A·V come out as about a quarter and three quarters of
// the region, and the two sum to its wall time.
TEST(IntKernels, FusedOpRegionSharesWallTimeByLaps) {
  using qtx::rt::OpClass;
  qtx::rt::profile_ops(true);
  const auto t0 = std::chrono::steady_clock::now();
  {
    qtx::rt::FusedOpRegion region;
    for (int i = 0; i < 2; ++i) {
      qtx::rt::FusedOpRegion::Laps laps(region);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      laps.lap(OpClass::Softmax);
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
      laps.lap(OpClass::AttentionMatmul);
    }
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const qtx::rt::OpProfile p = qtx::rt::op_profile();
  qtx::rt::profile_ops(false);
  const double sm = p.seconds[static_cast<size_t>(OpClass::Softmax)], av = p.seconds[static_cast<size_t>(OpClass::AttentionMatmul)];
  EXPECT_NEAR(sm / (sm + av), 0.25, 0.08);
  EXPECT_NEAR(sm + av, wall, wall * 0.05);
  EXPECT_EQ(p.seconds[static_cast<size_t>(OpClass::LinearGemm)], 0);
  // Off: a region records nothing.
  {
    qtx::rt::FusedOpRegion region;
    qtx::rt::FusedOpRegion::Laps laps(region);
    laps.lap(OpClass::Softmax);
  }
  EXPECT_EQ(qtx::rt::op_profile().timed(), 0);
}

// The hybrid runtime's float softmax exp against std::exp (in double) every 1e-4 over
// [−87, 88]: within 2e-7 relative; below −87 and at −∞ exactly 0, e^0 exactly 1.
TEST(IntKernels, ExpF32MatchesStdExp) {
  std::vector<float> x;
  for (int i = -870000; i <= 880000; ++i) x.push_back(static_cast<float>(i * 1e-4));
  std::vector<float> y = x;
  exp_f32(y.data(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    const double err = std::fabs(y[i] - want) / want;
    worst = std::max(worst, err);
    ASSERT_LE(err, 2e-7) << "x = " << x[i] << ": " << y[i] << " vs " << want;
  }
  std::printf("worst relative error: %.3g\n", worst);
  float ends[3] = {-88.0f, -std::numeric_limits<float>::infinity(), 0.0f};
  exp_f32(ends, 3);
  EXPECT_EQ(ends[0], 0.0f);
  EXPECT_EQ(ends[1], 0.0f);
  EXPECT_EQ(ends[2], 1.0f);
}

// The hybrid runtime's float GELU against the double-precision erf formula on a dense grid over
// [−30, 30] (every 1e-4) and at the ends of float: within 1e-6·max(1, |x|), infinities mapped
// to GELU's limits and NaN kept.
TEST(IntKernels, GeluErfF32MatchesDoubleFormula) {
  std::vector<float> x;
  for (int i = -300000; i <= 300000; ++i) x.push_back(static_cast<float>(i * 1e-4));
  for (float s : {1e-30f, 1e-8f, 3.4e38f}) {
    x.push_back(s);
    x.push_back(-s);
  }
  std::vector<float> y = x;
  gelu_erf_f32(y.data(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i], want = 0.5 * xi * (1.0 + std::erf(xi / std::sqrt(2.0)));
    const double err = std::fabs(y[i] - want) / std::max(1.0, std::fabs(xi));
    worst = std::max(worst, err);
    ASSERT_LE(err, 1e-6) << "x = " << xi << ": " << y[i] << " vs " << want;
  }
  std::printf("worst error / max(1, |x|): %.3g\n", worst);
  float ends[3] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), std::nanf("")};
  gelu_erf_f32(ends, 3);
  EXPECT_EQ(ends[0], std::numeric_limits<float>::infinity());
  EXPECT_NEAR(ends[1], 0.0f, 1e-30f);
  EXPECT_TRUE(std::isnan(ends[2]));
}
