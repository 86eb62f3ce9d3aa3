// The AVX2 requantization kernels (src/runtime/arch/x86/requant_avx2.*) against the members'
// plain loops and the integer formula evaluated here one value at a time, bit for bit: rows of
// every width up to a few vectors (full groups of 16, a group of 8 among the tail, scalar tails),
// each of the three lanes forms, bias rows, codes outside 0..255 (stored by their low byte),
// extreme zero points, int32's extreme accumulators, planted near-ties for the float placement,
// and the structs outside the vector forms' preconditions (which take the plain loop).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <random>
#include <vector>

#include "runtime/arch/x86/requant_avx2.h"
#include "runtime/cpu_isa.h"
#include "runtime/int_kernels.h"
#include "plain_reference.h"

using namespace qtx::rt;
using simd::Lanes;

namespace {

int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// The integer formula of ChannelRequant / ResidualRequant (the members' plain loops).
int64_t channel_want(const ChannelRequant& r, int32_t a, int i, int c) {
  const int64_t half = int64_t{1} << (r.shift - 1);
  const int64_t b = r.bias[static_cast<size_t>(i % r.bias_rows) * r.N + c];
  return clamp64(((static_cast<int64_t>(a) * r.m[c] + b + half) >> r.shift) + r.zo, r.qmin, r.qmax);
}
int64_t residual_want(const ResidualRequant& r, int32_t a, uint8_t h, int c) {
  const int64_t half = int64_t{1} << (r.shift - 1);
  const int64_t v = static_cast<int64_t>(a) * r.ma[c] + r.bias[c] + (static_cast<int64_t>(h) - r.zh) * r.mb + half;
  return clamp64((v >> r.shift) + r.zo, r.qmin, r.qmax);
}

struct Layer {
  std::vector<double> acc_scale, bias;  // bias: [bias_rows, N]
  std::vector<int64_t> offset;
};

Layer random_layer(int N, int bias_rows, double scale_lo, double scale_hi, double bias_max, bool negative_scales, std::mt19937& rng) {
  Layer l;
  std::uniform_real_distribution<double> scale(scale_lo, scale_hi), real(-bias_max, bias_max);
  for (int c = 0; c < N; ++c) {
    double s = scale(rng);
    if (negative_scales && c % 3 == 1) s = -s;
    l.acc_scale.push_back(s);
    l.offset.push_back(static_cast<int64_t>(rng() % 200001) - 100000);
  }
  for (int i = 0; i < bias_rows * N; ++i) l.bias.push_back(real(rng));
  return l;
}

// Accumulators over rows of N: most put the exact value within a few steps of the code range
// (so every code and both clamped ends occur), some anywhere in int32, and int32's extremes.
std::vector<int32_t> random_acc(const Layer& l, int M, int N, double out_scale, int32_t zo, int32_t qmin, int32_t qmax,
                                std::mt19937& rng) {
  std::vector<int32_t> acc(static_cast<size_t>(M) * N);
  std::uniform_real_distribution<double> code(static_cast<double>(qmin) - 3, static_cast<double>(qmax) + 3);
  for (int i = 0; i < M; ++i)
    for (int c = 0; c < N; ++c) {
      const size_t k = static_cast<size_t>(i) * N + c;
      const unsigned pick = rng() % 16;
      if (pick == 0) {
        acc[k] = static_cast<int32_t>(rng());
      } else if (pick == 1) {
        acc[k] = rng() % 2 ? INT32_MAX : INT32_MIN;
      } else {
        const double a = ((code(rng) - zo) * out_scale - l.bias[static_cast<size_t>(c)]) / l.acc_scale[static_cast<size_t>(c)] - l.offset[static_cast<size_t>(c)];
        acc[k] = static_cast<int32_t>(std::clamp(a, -2147483648.0, 2147483647.0));
      }
    }
  return acc;
}

const std::vector<int> kWidths = {1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 101, 160, 192};

struct Codes {
  int32_t zo, qmin, qmax;
};
// Codes within 0..255 (4- and 8-bit), outside it (int8 and 12-bit grids: the low byte is
// stored), and zero points at int32's ends.
const std::vector<Codes> kCodes = {{110, 0, 255}, {3, 0, 15}, {0, -128, 127}, {1000, 0, 4095}, {INT32_MAX, 0, 255}, {INT32_MIN + 300, -40, 255}};

// Output scales that give each lanes form for accumulator scales in [1e-5, 9e-4] (the widest
// rows: shift 53 and 34 HighHalves, 31 Fitting, 27, 20 and 13 Clamped64; narrow rows, with fewer
// multipliers drawn, may land in another form: the test counts the forms it met).
struct ScaleCase {
  double out_scale;
};
const std::vector<ScaleCase> kChannelScales = {{1e4}, {0.03}, {2.5e-3}, {2e-4}, {1e-6}, {1e-8}};

}  // namespace


// rows / rows_integer and rows32 by the integer formula: every width, 1 and 3 bias rows, every
// lanes form, every code grid; against the members and the formula here.
TEST(Avx2Requant, ChannelRowsMatchPlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(21);
  size_t forms_seen[3] = {0, 0, 0};
  for (int N : kWidths)
    for (int bias_rows : {1, 3})
      for (const ScaleCase& sc : kChannelScales)
        for (const Codes& q : kCodes) {
          const bool negative = N % 2 == 1;  // some negative multipliers (signed products)
          const Layer l = random_layer(N, bias_rows, 1e-5, 9e-4, sc.out_scale < 1e-5 ? 1e-4 : 2.0, negative, rng);
          const ChannelRequant r = ChannelRequant::make(l.acc_scale, l.bias, bias_rows, sc.out_scale, q.zo, q.qmin, q.qmax, l.offset);
          ++forms_seen[static_cast<int>(r.lanes)];
          const int M = 7;
          const auto acc = random_acc(l, M, N, sc.out_scale, q.zo, q.qmin, q.qmax, rng);
          std::vector<uint8_t> got(acc.size()), got_placed(acc.size()), plain(acc.size());
          std::vector<int32_t> got32(acc.size()), plain32(acc.size());
          avx2::channel_requant_rows(r, acc.data(), M, got.data(), false);
          avx2::channel_requant_rows(r, acc.data(), M, got_placed.data(), true);
          avx2::channel_requant_rows32(r, acc.data(), M, got32.data());
          r.rows_integer(acc.data(), M, plain.data());
          r.rows32(acc.data(), M, plain32.data());
          ASSERT_EQ(got, plain) << "N " << N << " bias rows " << bias_rows << " out scale " << sc.out_scale << " zo " << q.zo;
          ASSERT_EQ(got32, plain32) << "N " << N << " bias rows " << bias_rows << " out scale " << sc.out_scale << " zo " << q.zo;
          ASSERT_EQ(got_placed, plain) << "N " << N << " bias rows " << bias_rows << " out scale " << sc.out_scale << " zo " << q.zo;
          for (int i = 0; i < M; ++i)
            for (int c = 0; c < N; ++c) {
              const size_t k = static_cast<size_t>(i) * N + c;
              const int64_t want = channel_want(r, acc[k], i, c);
              ASSERT_EQ(got32[k], want) << "N " << N << " row " << i << " channel " << c << " shift " << r.shift;
              ASSERT_EQ(got[k], static_cast<uint8_t>(want)) << "N " << N << " row " << i << " channel " << c << " shift " << r.shift;
            }
        }
  EXPECT_GT(forms_seen[0], 0u);
  EXPECT_GT(forms_seen[1], 0u);
  EXPECT_GT(forms_seen[2], 0u);
}

// Large row blocks (the models' shapes, threaded where OpenMP allows), integer and placed.
TEST(Avx2Requant, ChannelRowsMatchPlainLoopOnModelShapes) {
  const PlainReference plain_reference;
  std::mt19937 rng(22);
  for (auto [M, N, bias_rows] : {std::tuple{1088, 192, 17}, std::tuple{1088, 160, 1}, std::tuple{128, 768, 1}, std::tuple{64, 3072, 1}}) {
    const Layer l = random_layer(N, bias_rows, 1e-5, 3e-5, 0.3, false, rng);
    const ChannelRequant r = ChannelRequant::make(l.acc_scale, l.bias, bias_rows, 0.02, 128, 0, 255, l.offset);
    ASSERT_TRUE(r.placement.on);
    const auto acc = random_acc(l, M, N, 0.02, 128, 0, 255, rng);
    std::vector<uint8_t> got(acc.size()), placed(acc.size()), plain(acc.size());
    avx2::channel_requant_rows(r, acc.data(), M, got.data(), false);
    avx2::channel_requant_rows(r, acc.data(), M, placed.data(), true);
    r.rows_integer(acc.data(), M, plain.data());
    EXPECT_EQ(got, plain) << M << " x " << N;
    EXPECT_EQ(placed, plain) << M << " x " << N;
  }
}

// The float placement (placed = true) against the integer formula where float32 is least sure:
// accumulators in unit steps across the whole code range and beyond both ends (every boundary
// k + ½ crossed), int32's extremes and ±(2^24 + 5) (not exact in float32), and planted near-ties
// (exact value within 2^-17 of k + ½); with a bound below 2^24 given (no per-value check) and
// without. The same run with the margin set to zero must differ somewhere: the near-ties are
// real, and the margin is what keeps them exact.
TEST(Avx2Requant, ChannelPlacementGivesTheIntegerCodes) {
  const PlainReference plain_reference;
  std::mt19937 rng(13);
  for (int N : {37, 192}) {
    const int M = 3000;
    const Layer l = random_layer(N, 1, 1e-5, 3e-5, 0.3, false, rng);
    std::vector<double> bias3 = l.bias;  // three bias rows
    for (int r = 1; r < 3; ++r)
      for (int c = 0; c < N; ++c) bias3.push_back(l.bias[static_cast<size_t>(c)] + 0.01 * r);
    for (const QParams& out : {QParams{0.02, 128, 0, 255}, QParams{0.01, 3, 0, 15}, QParams{0.02, 0, 10, 200}})
      for (int64_t bound : {int64_t{0}, int64_t{1} << 23}) {
        const ChannelRequant r = ChannelRequant::make(l.acc_scale, bias3, 3, out.scale, out.zero, out.qmin, out.qmax, l.offset, bound);
        ASSERT_TRUE(r.placement.on);
        ASSERT_EQ(r.placement.check_acc, bound == 0);
        std::vector<int32_t> acc(static_cast<size_t>(M) * N);
        for (int c = 0; c < N; ++c) {
          const double per_code = out.scale / l.acc_scale[static_cast<size_t>(c)];
          const int64_t start = static_cast<int64_t>((-(out.zero + 2 - out.qmin) * out.scale - l.bias[static_cast<size_t>(c)]) / l.acc_scale[static_cast<size_t>(c)]) -
                                l.offset[static_cast<size_t>(c)];
          const int64_t stride = std::max<int64_t>(1, static_cast<int64_t>((out.qmax - out.qmin + 4) * per_code / M));
          for (int i = 0; i < M; ++i) acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(start + i * stride + (i % 7));
        }
        if (bound == 0) {
          acc[0] = INT32_MIN;
          acc[1] = INT32_MAX;
          acc[2] = (1 << 24) + 5;
          acc[3] = -(1 << 24) - 5;
          acc[4] = 1 << 24;
          acc[5] = -(1 << 24);
        }
        const int64_t unit = int64_t{1} << r.shift;
        for (int c = 0; c < N; ++c) {  // rows 3k + 6 (bias row 0): channel c's k-th near-tie
          std::vector<int32_t> ties;
          const int64_t mc = r.m[static_cast<size_t>(c)], bc = r.bias[static_cast<size_t>(c)];
          const int64_t from = acc[static_cast<size_t>(N + c)];
          for (int64_t a = from; ties.size() < (N > 64 ? 8u : 40u) && a < from + (int64_t{1} << 23); ++a) {
            const int64_t v = a * mc + bc, rem = v - (v >> r.shift) * unit;
            if (std::llabs(rem - unit / 2) < (unit >> 17)) ties.push_back(static_cast<int32_t>(a));
          }
          for (size_t k = 0; k < ties.size(); ++k) acc[(3 * k + 6) * N + static_cast<size_t>(c)] = ties[k];
        }
        std::vector<uint8_t> placed(acc.size()), plain(acc.size());
        avx2::channel_requant_rows(r, acc.data(), M, placed.data(), true);
        r.rows_integer(acc.data(), M, plain.data());
        size_t differ = 0, in_range = 0;
        for (size_t k = 0; k < acc.size(); ++k) {
          differ += placed[k] != plain[k];
          in_range += plain[k] > out.qmin && plain[k] < out.qmax;
          ASSERT_EQ(plain[k], channel_want(r, acc[k], static_cast<int>(k / N), static_cast<int>(k % N)));
        }
        EXPECT_EQ(differ, 0u) << "N " << N << " out scale " << out.scale << " bound " << bound;
        EXPECT_GT(in_range, acc.size() / 2);
        ChannelRequant no_margin = r;
        no_margin.placement.tie_margin = 0;
        avx2::channel_requant_rows(no_margin, acc.data(), M, placed.data(), true);
        EXPECT_NE(placed, plain) << "no near-tie decided by the margin: N " << N << " out scale " << out.scale;
      }
  }
}

// Multipliers of 150–900 with no bound on the accumulators: y = acc·m + b could leave int32, where
// the rounding conversion gives INT32_MIN (the AVX-512 loop then clamped 960 of 3072 codes to the
// wrong end). make() leaves the float placement off for such layers; every level gives the
// integer formula's codes.
TEST(Avx2Requant, ChannelPlacementOffWhereYCouldLeaveInt32) {
  const PlainReference plain_reference;
  std::mt19937 rng(5);
  const int N = 24, M = 64;
  const Layer l = random_layer(N, 1, 150.0, 900.0, 1e3, false, rng);
  const ChannelRequant r = ChannelRequant::make(l.acc_scale, l.bias, 1, 1.0, 128, 0, 255);
  EXPECT_FALSE(r.placement.on);
  std::vector<int32_t> acc(static_cast<size_t>(M) * N);
  std::uniform_int_distribution<int32_t> any(-(1 << 24) + 1, (1 << 24) - 1), near(-8, 8);
  for (size_t k = 0; k < acc.size(); ++k) acc[k] = k % 2 ? any(rng) : near(rng);
  std::vector<uint8_t> plain(acc.size());
  r.rows(acc.data(), M, plain.data());
  for (Isa level : runnable_isas()) {
    set_max_isa(level);
    std::vector<uint8_t> got(acc.size());
    r.rows(acc.data(), M, got.data());
    EXPECT_EQ(got, plain) << isa_name(level);
  }
  set_max_isa(Isa::Scalar);
  for (size_t k = 0; k < acc.size(); ++k) ASSERT_EQ(plain[k], channel_want(r, acc[k], 0, static_cast<int>(k % N)));
}

// The per-value check of accumulators ≥ 2^24 (not exact in float32) when no bound was given:
// with the margin zeroed, near-ties among such accumulators (small multipliers put them within
// the code range) keep the integer codes only through that check — and differ without it.
TEST(Avx2Requant, PlacementChecksLargeAccumulators) {
  const PlainReference plain_reference;
  std::mt19937 rng(41);
  const int N = 24, M = 40;
  const Layer l = random_layer(N, 1, 4e-10, 6e-10, 0.05, false, rng);
  const QParams h{0.02, 128, 0, 255}, out{0.0002, 128, 0, 255};
  ChannelRequant r = ChannelRequant::make(l.acc_scale, l.bias, 1, out.scale, out.zero, out.qmin, out.qmax);
  ResidualRequant rr = ResidualRequant::make(l.acc_scale, l.bias, h, out);
  ASSERT_TRUE(r.placement.on && r.placement.check_acc && rr.placement.on && rr.placement.check_acc);
  std::vector<int32_t> acc(static_cast<size_t>(M) * N), acc_r(acc.size());
  const std::vector<uint8_t> hc(acc.size(), static_cast<uint8_t>(h.zero));  // h's term zero: the same values
  std::uniform_int_distribution<int32_t> from((1 << 24) + 1000, 45000000);
  for (int c = 0; c < N; ++c) {
    const int64_t unit = int64_t{1} << r.shift, unit_r = int64_t{1} << rr.shift;
    for (int i = 0; i < M; ++i) {  // channel c's i-th near-tie above a random start, negated in odd rows
      const int sign = i % 2 ? -1 : 1;
      for (int64_t a = from(rng);; ++a) {
        const int64_t v = sign * a * r.m[static_cast<size_t>(c)] + r.bias[static_cast<size_t>(c)], rem = v - (v >> r.shift) * unit;
        if (std::llabs(rem - unit / 2) < (unit >> 18)) {
          acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(sign * a);
          break;
        }
      }
      for (int64_t a = from(rng);; ++a) {
        const int64_t v = sign * a * rr.ma[static_cast<size_t>(c)] + rr.bias[static_cast<size_t>(c)], rem = v - (v >> rr.shift) * unit_r;
        if (std::llabs(rem - unit_r / 2) < (unit_r >> 18)) {
          acc_r[static_cast<size_t>(i) * N + c] = static_cast<int32_t>(sign * a);
          break;
        }
      }
    }
  }
  std::vector<uint8_t> placed(acc.size()), plain(acc.size()), placed_r(acc.size()), plain_r(acc.size());
  r.rows_integer(acc.data(), M, plain.data());
  rr.rows_integer(acc_r.data(), hc.data(), M, plain_r.data());
  size_t in_range = 0;
  for (size_t k = 0; k < acc.size(); ++k) in_range += (plain[k] > 0 && plain[k] < 255) + (plain_r[k] > 0 && plain_r[k] < 255);
  EXPECT_GT(in_range, acc.size());
  r.placement.tie_margin = rr.placement.tie_margin = 0;
  avx2::channel_requant_rows(r, acc.data(), M, placed.data(), true);
  avx2::residual_requant_rows(rr, acc_r.data(), hc.data(), M, placed_r.data(), true);
  EXPECT_EQ(placed, plain);
  EXPECT_EQ(placed_r, plain_r);
  r.placement.check_acc = rr.placement.check_acc = false;
  avx2::channel_requant_rows(r, acc.data(), M, placed.data(), true);
  avx2::residual_requant_rows(rr, acc_r.data(), hc.data(), M, placed_r.data(), true);
  EXPECT_NE(placed, plain) << "no large accumulator decided by the check";
  EXPECT_NE(placed_r, plain_r) << "no large accumulator decided by the check";
}

// ResidualRequant by the integer formula and by the placement: every width, each lanes form,
// residual zero points at int32's ends (h − zh beyond int32), codes outside 0..255.
TEST(Avx2Requant, ResidualRowsMatchPlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(31);
  // (acc scale range, h scale, out scale): h's multiplier largest (shift 30, Fitting), acc
  // multipliers up to ~1.5 (shift 29, Clamped64), everything small (HighHalves), and huge
  // accumulator multipliers (shift 13, Clamped64).
  struct Case {
    double s_lo, s_hi, h_scale, out_scale;
  };
  const std::vector<Case> cases = {{1e-5, 9e-4, 0.021, 0.03}, {1e-5, 9e-4, 1e-5, 6e-4}, {1e-5, 9e-4, 0.021, 1.0}, {1e-5, 9e-4, 1e-9, 1e-8}};
  const std::vector<std::pair<QParams, QParams>> grids = {
      {QParams{0, 120, 0, 255}, QParams{0, 128, 0, 255}},    {QParams{0, 3, 0, 15}, QParams{0, 7, 0, 15}},
      {QParams{0, -5, 0, 255}, QParams{0, 0, -128, 127}},     {QParams{0, INT32_MIN, 0, 255}, QParams{0, INT32_MAX, 0, 255}},
      {QParams{0, INT32_MAX, 0, 255}, QParams{0, 900, 0, 4095}}};
  size_t forms_seen[3] = {0, 0, 0};
  for (int N : kWidths)
    for (const Case& cs : cases)
      for (auto [h, out] : grids) {
        h.scale = cs.h_scale;
        out.scale = cs.out_scale;
        const Layer l = random_layer(N, 1, cs.s_lo, cs.s_hi, cs.out_scale < 1e-5 ? 1e-4 : 2.0, N % 2 == 0, rng);
        const ResidualRequant r = ResidualRequant::make(l.acc_scale, l.bias, h, out, l.offset);
        ++forms_seen[static_cast<int>(r.lanes)];
        const int M = 9;
        const auto acc = random_acc(l, M, N, cs.out_scale, out.zero, out.qmin, out.qmax, rng);
        std::vector<uint8_t> hc(acc.size());
        for (auto& x : hc) x = static_cast<uint8_t>(rng());
        hc[0] = 0;
        hc[hc.size() - 1] = 255;
        std::vector<uint8_t> got(acc.size()), got_placed(acc.size()), plain(acc.size());
        avx2::residual_requant_rows(r, acc.data(), hc.data(), M, got.data(), false);
        avx2::residual_requant_rows(r, acc.data(), hc.data(), M, got_placed.data(), true);
        r.rows_integer(acc.data(), hc.data(), M, plain.data());
        // The member's AVX-512 form (where compiled) takes h − zh in int32 lanes, which wraps for
        // zh < 256 − 2^31: there the formula below is the reference alone.
        if (h.zero >= INT32_MIN + 256) {
          ASSERT_EQ(got, plain) << "N " << N << " out scale " << cs.out_scale << " zh " << h.zero << " zo " << out.zero;
          ASSERT_EQ(got_placed, plain) << "N " << N << " out scale " << cs.out_scale << " zh " << h.zero << " zo " << out.zero;
        }
        for (size_t k = 0; k < acc.size(); ++k) {
          const uint8_t want = static_cast<uint8_t>(residual_want(r, acc[k], hc[k], static_cast<int>(k % N)));
          ASSERT_EQ(got[k], want) << "N " << N << " value " << k;
          ASSERT_EQ(got_placed[k], want) << "N " << N << " value " << k;
        }
      }
  EXPECT_GT(forms_seen[0], 0u);
  EXPECT_GT(forms_seen[1], 0u);
  EXPECT_GT(forms_seen[2], 0u);
}

// The residual's placement: every residual code against fine accumulator runs across the code
// range, on 37 channels (a group of 16, a group of 8, a scalar tail) and 192; with and without
// the per-value accumulator check, and planted near-ties. Margin zero must differ somewhere.
TEST(Avx2Requant, ResidualPlacementGivesTheIntegerCodes) {
  const PlainReference plain_reference;
  std::mt19937 rng(17);
  for (int N : {37, 192})
    for (int64_t bound : {int64_t{0}, int64_t{1} << 20}) {
      const Layer l = random_layer(N, 1, 1e-5, 3e-5, 0.3, false, rng);
      const QParams h{0.05, 131, 0, 255}, out{0.06, 120, 0, 255};
      const ResidualRequant r = ResidualRequant::make(l.acc_scale, l.bias, h, out, l.offset, bound);
      ASSERT_TRUE(r.placement.on);
      ASSERT_EQ(r.placement.check_acc, bound == 0);
      const int M = 256 * 40;
      std::vector<int32_t> acc(static_cast<size_t>(M) * N);
      std::vector<uint8_t> hc(acc.size());
      for (int i = 0; i < M; ++i)
        for (int c = 0; c < N; ++c) {
          acc[static_cast<size_t>(i) * N + c] = static_cast<int32_t>((i / 256) * 997 + c * 31 - 20000 - l.offset[static_cast<size_t>(c)]);
          hc[static_cast<size_t>(i) * N + c] = static_cast<uint8_t>(i % 256);
        }
      if (bound == 0) {
        acc[0] = INT32_MIN;
        acc[1] = INT32_MAX;
        acc[2] = (1 << 24) + 5;
        acc[3] = -(1 << 24);
      }
      // Planted near-ties: in rows 3k + 6, each channel's accumulator moved up to the next one
      // whose exact value lies within 2^-17 of k + ½ (with that row's residual code).
      const int64_t unit = int64_t{1} << r.shift;
      for (int k = 0; k < (N > 64 ? 8 : 40); ++k)
        for (int c = 0; c < N; ++c) {
          const size_t at = static_cast<size_t>(3 * k + 6) * N + c;
          const int64_t rest = r.bias[static_cast<size_t>(c)] + (static_cast<int64_t>(hc[at]) - r.zh) * r.mb;
          for (int64_t a = acc[at]; a < acc[at] + (int64_t{1} << 23); ++a) {
            const int64_t v = a * r.ma[static_cast<size_t>(c)] + rest, rem = v - (v >> r.shift) * unit;
            if (std::llabs(rem - unit / 2) < (unit >> 17)) {
              acc[at] = static_cast<int32_t>(a);
              break;
            }
          }
        }
      std::vector<uint8_t> placed(acc.size()), plain(acc.size());
      avx2::residual_requant_rows(r, acc.data(), hc.data(), M, placed.data(), true);
      r.rows_integer(acc.data(), hc.data(), M, plain.data());
      EXPECT_EQ(placed, plain) << "N " << N << " bound " << bound;
      size_t in_range = 0;
      for (uint8_t v : plain) in_range += v > 0 && v < 255;
      EXPECT_GT(in_range, plain.size() / 2);
      ResidualRequant no_margin = r;
      no_margin.placement.tie_margin = 0;
      avx2::residual_requant_rows(no_margin, acc.data(), hc.data(), M, placed.data(), true);
      EXPECT_NE(placed, plain) << "no near-tie decided by the margin: N " << N;
    }
}

// Structs outside the vector forms' preconditions (as a caller could build them by hand) take
// the plain loop's expressions: qmin > qmax, a shift above 62 is not reachable from make().
TEST(Avx2Requant, StructsOutsideTheVectorFormsTakeThePlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(3);
  const int N = 40, M = 5;
  const Layer l = random_layer(N, 1, 1e-5, 9e-4, 2.0, false, rng);
  ChannelRequant r = ChannelRequant::make(l.acc_scale, l.bias, 1, 0.03, 110, 0, 255, l.offset);
  r.qmin = 200;
  r.qmax = 100;  // the plain clamp: below 200 → 200, else 100
  r.placement.on = false;
  const auto acc = random_acc(l, M, N, 0.03, 110, 0, 255, rng);
  std::vector<uint8_t> got(acc.size());
  std::vector<int32_t> got32(acc.size());
  avx2::channel_requant_rows(r, acc.data(), M, got.data(), false);
  avx2::channel_requant_rows32(r, acc.data(), M, got32.data());
  for (size_t k = 0; k < acc.size(); ++k) {
    ASSERT_EQ(got32[k], channel_want(r, acc[k], static_cast<int>(k / N), static_cast<int>(k % N)));
    ASSERT_EQ(got[k], static_cast<uint8_t>(got32[k]));
  }
  ResidualRequant rr = ResidualRequant::make(l.acc_scale, l.bias, QParams{0.021, 120, 0, 255}, QParams{0.03, 128, 0, 255}, l.offset);
  rr.mb = int64_t{1} << 33;  // beyond vpmuldq's int32 operand
  std::vector<uint8_t> hc(acc.size());
  for (auto& x : hc) x = static_cast<uint8_t>(rng());
  std::vector<int32_t> small(acc.size());
  for (auto& x : small) x = static_cast<int32_t>(rng() % 2001) - 1000;
  avx2::residual_requant_rows(rr, small.data(), hc.data(), M, got.data(), false);
  for (size_t k = 0; k < acc.size(); ++k) ASSERT_EQ(got[k], static_cast<uint8_t>(residual_want(rr, small[k], hc[k], static_cast<int>(k % N))));
}

// requant_to_codes: shifts from 62 down to 10 (each of the two forms: ≥ 32 and 31 (m < 2^31) by
// high halves, 30 and below by capped int64 lanes), every length up to a few vectors and a threaded one, int32's
// extremes and exact ties (half away from zero), code grids inside and outside 0..255, zero
// points at int32's ends (lo − zero = INT32_MIN and bounds beyond int32 take the plain loop).
TEST(Avx2Requant, RequantToCodesMatchesPlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(8);
  std::vector<int32_t> in(200000 + 7);
  for (auto& x : in) x = rng() % 4 ? static_cast<int32_t>(rng() % 2000001) - 1000000 : static_cast<int32_t>(rng());
  in[0] = INT32_MIN;
  in[1] = INT32_MAX;
  in[2] = -1;
  in[3] = 1;
  in[4] = 0;
  in[5] = INT32_MIN + 1;
  const std::vector<QParams> grids = {QParams{1.0, 128, 0, 255}, QParams{1.0, 3, 0, 15},         QParams{1.0, 0, -128, 127},
                                      QParams{1.0, -5, 0, 255},  QParams{1.0, INT32_MAX, 0, 255}, QParams{1.0, 0, INT32_MIN, 255},
                                      QParams{1.0, 0, INT32_MIN + 1, INT32_MAX}, QParams{1.0, INT32_MIN + 5, 0, 255}};
  int wide = 0, narrow = 0;
  for (double M : {0.013, 3.1e-5, 0.7, 2.5e-10, 0.5, 1.0, 1.5, 1.9, 2.5, 3.0, 1000.0, 1048576.0, 0.25}) {
    const Requant r = Requant::from_real(M);
    ASSERT_GE(r.shift, 1);
    ASSERT_LE(r.shift, 62);
    (r.shift >= 31 ? wide : narrow)++;
    // Exact ties: x·m = (2k + 1)·2^(shift−1) for a small odd multiple, where it fits.
    std::vector<int32_t> x = in;
    for (int k = 0; k < 40; ++k) {
      int64_t t = 0;
      if (__builtin_mul_overflow(2 * int64_t{k} + 1, int64_t{1} << (r.shift - 1), &t)) break;
      if (t % r.m == 0 && t / r.m <= INT32_MAX) {
        x[static_cast<size_t>(10 + k)] = static_cast<int32_t>(t / r.m);
        x[static_cast<size_t>(60 + k)] = static_cast<int32_t>(-t / r.m);
      }
    }
    for (const QParams& o : grids)
      for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{31}, size_t{32}, size_t{33}, size_t{47}, size_t{1007}, x.size()}) {
        std::vector<uint8_t> got(n + 1, 77), plain(n + 1, 77);
        avx2::requant_to_codes(x.data(), n, r, o, got.data());
        qtx::rt::requant_to_codes(x.data(), n, r, o, plain.data());
        ASSERT_EQ(got, plain) << "M " << M << " shift " << r.shift << " zero " << o.zero << " n " << n;
        for (size_t i = 0; i < n; ++i) {
          const int64_t v = clamp64(round_shift(static_cast<int64_t>(x[i]) * r.m, r.shift) + o.zero, o.qmin, o.qmax);
          ASSERT_EQ(got[i], static_cast<uint8_t>(v)) << "M " << M << " shift " << r.shift << " value " << x[i];
        }
      }
  }
  EXPECT_GT(wide, 0);
  EXPECT_GT(narrow, 0);
}
