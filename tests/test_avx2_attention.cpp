// The AVX2 attention kernels (src/runtime/arch/x86/attention_avx2.cpp) against the plain forms,
// bit for bit: Q·Kᵀ, A·V by powers of two, Log-Int-Softmax rows. The qtx::rt entry points are
// the plain loops in an x86-64-v3 build (and exact fast forms in others, equal to them).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/arch/x86/attention_avx2.h"
#include "runtime/int_kernels.h"
#include "plain_reference.h"

using namespace qtx::rt;

namespace {

// Codes for q/k/v: random, or the extremes (all 0, all 255, 0/255 alternating).
void fill_codes(std::vector<uint8_t>& x, int mode, std::mt19937& rng) {
  for (size_t i = 0; i < x.size(); ++i) {
    switch (mode) {
      case 0: x[i] = static_cast<uint8_t>(rng()); break;
      case 1: x[i] = 0; break;
      case 2: x[i] = 255; break;
      default: x[i] = (i + rng() % 2) % 2 ? 255 : 0; break;
    }
  }
}

const std::vector<int> kTokens = {1, 5, 16, 17, 31, 64, 128, 197};

}  // namespace

// Every T of the list with head sizes 32, 64, 80 (the transposing packing, dh a multiple of 16)
// and 6, 7, 24 (the scalar packing, an odd dh's last dimension paired with 0); Tq = T, 1 (a CLS
// row), 3, 9 (tails of the four-query tiles); keys in tiles of 16 and 8 and a partial last block
// (197 = 24·8 + 5), or one or two leftover keys by dot products (10, 17, 18 with dh a multiple
// of 16); zero points from the middle to the extremes.
TEST(Avx2Attention, QkScoresMatchPlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(41);
  std::vector<int> tokens = kTokens;
  tokens.insert(tokens.end(), {10, 18});  // one and two keys past whole blocks (dot products), as 17
  for (int dh : {32, 64, 80, 6, 7, 24})
    for (int T : tokens)
      for (int Tq : {T, 1, std::min(T, 3), std::min(T, 9)})
        for (auto [zq, zk, mode] : std::vector<std::array<int, 3>>{{128, 120, 0}, {0, 255, 0}, {-255, 510, 0}, {0, 0, 2}, {255, 255, 1}, {0, 255, 3}}) {
          if (Tq != T && mode != 0) continue;
          SCOPED_TRACE("dh " + std::to_string(dh) + " T " + std::to_string(T) + " Tq " + std::to_string(Tq) + " zq " + std::to_string(zq) +
                       " zk " + std::to_string(zk) + " mode " + std::to_string(mode));
          const int ld = dh + 3;
          std::vector<uint8_t> q(static_cast<size_t>(T) * ld), k(q.size());
          fill_codes(q, mode, rng);
          fill_codes(k, mode, rng);
          std::vector<int32_t> want(static_cast<size_t>(Tq) * T + 16, -7), got(want);
          qk_scores(q.data(), zq, k.data(), zk, Tq, T, dh, ld, want.data());
          avx2::qk_scores(q.data(), zq, k.data(), zk, Tq, T, dh, ld, got.data());
          ASSERT_EQ(got, want);  // including the 16 past the scores: untouched
          // The plain form itself against the formula (so that the comparison means something).
          for (int t = 0; t < Tq; t += std::max(1, Tq / 3))
            for (int j = 0; j < T; ++j) {
              int64_t s = 0;
              for (int d = 0; d < dh; ++d) s += int64_t{q[static_cast<size_t>(t) * ld + d] - zq} * (k[static_cast<size_t>(j) * ld + d] - zk);
              ASSERT_EQ(want[static_cast<size_t>(t) * T + j], s);
            }
        }
}

// A·V over the T list, head sizes 32, 64, 80 (eight-, four- and one-vector passes) and 6, 13
// (a partial vector of dimensions), Tq = T, 1, 3; kmax 3, 7, 14, 15, 20, 29, 31 (shifts up to
// 31); codes spread over −1..kmax + 1, sharp rows (mostly −1), all 0 (every weight 2^kmax, the
// largest sums: wrap-around at kmax 31) and all out of range (no weight: count 32); zero points
// 131, 0, 255, −32512 and 32767 with values 0 or 255.
TEST(Avx2Attention, AvLog2MatchesPlainLoop) {
  const PlainReference plain_reference;
  std::mt19937 rng(43);
  for (int dh : {32, 64, 80, 6, 13})
    for (int T : kTokens)
      for (int kmax : {3, 7, 14, 15, 20, 29, 31})
        for (int Tq : {T, 1, std::min(T, 3)})
          for (int kind = 0; kind < 4; ++kind)
            for (auto [zv, mode] : std::vector<std::array<int, 2>>{{131, 0}, {0, 2}, {255, 1}, {-32512, 2}, {32767, 1}, {32767, 0}}) {
              if ((Tq != T || kind != 0) && zv != 131) continue;
              SCOPED_TRACE("dh " + std::to_string(dh) + " T " + std::to_string(T) + " Tq " + std::to_string(Tq) + " kmax " + std::to_string(kmax) +
                           " kind " + std::to_string(kind) + " zv " + std::to_string(zv));
              const int ld = dh + 5, ldc = dh + 3;
              std::vector<uint8_t> v(static_cast<size_t>(T) * ld);
              fill_codes(v, mode, rng);
              std::vector<int8_t> codes(static_cast<size_t>(Tq) * T);
              for (auto& c : codes) {
                switch (kind) {
                  case 0: c = static_cast<int8_t>(static_cast<int>(rng() % (kmax + 3)) - 1); break;
                  case 1: c = static_cast<int8_t>(rng() % 9 == 0 ? static_cast<int>(rng() % 4) : -1); break;
                  case 2: c = 0; break;
                  default: c = static_cast<int8_t>(rng() % 2 ? -1 - static_cast<int>(rng() % 100) : kmax + 1 + static_cast<int>(rng() % 50)); break;
                }
              }
              std::vector<int32_t> want(static_cast<size_t>(Tq) * ldc + 8, 7), got(want);
              av_log2(codes.data(), v.data(), zv, Tq, T, dh, ld, kmax, want.data(), ldc);
              avx2::av_log2(codes.data(), v.data(), zv, Tq, T, dh, ld, kmax, got.data(), ldc);
              ASSERT_EQ(got, want);  // columns dh..ldc and the tail untouched (7) in both
            }
}

// Zero points far outside the codes' range (v − zv wraps in uint32 as in the plain form) and the
// head-size check.
TEST(Avx2Attention, AvLog2ExtremeZeroPointsAndLimits) {
  const PlainReference plain_reference;
  std::mt19937 rng(47);
  for (int zv : {-32513, 32768, -100000, 1 << 30})
    for (int T : {5, 17, 128}) {
      const int dh = 64, ld = 64, kmax = 20;
      std::vector<uint8_t> v(static_cast<size_t>(T) * ld);
      fill_codes(v, 0, rng);
      std::vector<int8_t> codes(static_cast<size_t>(T) * T);
      for (auto& c : codes) c = static_cast<int8_t>(static_cast<int>(rng() % (kmax + 3)) - 1);
      std::vector<int32_t> want(static_cast<size_t>(T) * dh, 7), got(want);
      av_log2(codes.data(), v.data(), zv, T, T, dh, ld, kmax, want.data(), dh);
      avx2::av_log2(codes.data(), v.data(), zv, T, T, dh, ld, kmax, got.data(), dh);
      ASSERT_EQ(got, want) << "zv " << zv << " T " << T;
    }
  {  // kmax < 0: no code has a weight
    std::vector<uint8_t> v(5 * 8, 9);
    std::vector<int8_t> codes(25, 0);
    std::vector<int32_t> want(5 * 8, 7), got(want);
    av_log2(codes.data(), v.data(), 1, 5, 5, 8, 8, -1, want.data(), 8);
    avx2::av_log2(codes.data(), v.data(), 1, 5, 5, 8, 8, -1, got.data(), 8);
    EXPECT_EQ(got, want);
  }
  std::vector<int32_t> ctx(1);
  EXPECT_THROW(avx2::av_log2(nullptr, nullptr, 0, 1, 1, 1025, 1025, 15, ctx.data(), 1025), std::invalid_argument);
}

namespace {
// Scores for Log-Int-Softmax rows: within `spread` (≤ range + 1) values of each other.
std::vector<int32_t> lis_scores(std::mt19937& rng, size_t n, int spread, int base) {
  std::vector<int32_t> q(n);
  for (auto& x : q) x = base + static_cast<int32_t>(rng() % static_cast<uint32_t>(spread));
  return q;
}

// A table as make() builds it, then, for top_log2 > 0, one scaled to exp(0) = 2^top_log2: at 48
// a row's 2Σ + e reaches 2^53 when most of its scores are near the maximum (row_by_exp) but not
// otherwise; at 54 every row does (and e ≥ 2^52 would break the double division's conversion).
LogIntSoftmax lis_for(double scale, int bits, int top_log2 = 0) {
  LogIntSoftmax l = LogIntSoftmax::make(IntExp::for_scale(scale), 255, bits);
  if (top_log2 > 0)
    for (auto& e : l.exp_of_gap) e = static_cast<int64_t>(std::ldexp(static_cast<double>(e), top_log2) / static_cast<double>(l.exp_of_gap[0]));
  return l;
}
}  // namespace

// lis_row against LogIntSoftmax::row and the reference log_int_softmax_row: row lengths 1..130
// (tails of the eight-lane loops), with and without masks (and all-masked rows), all-equal rows,
// scores spanning the whole table (gap 255), 2, 4 and 8 bits, and tables that send some rows to
// row_by_exp (2Σ + e ≥ 2^53).
TEST(Avx2Attention, LisRowMatchesPlainRow) {
  const PlainReference plain_reference;
  std::mt19937 rng(53);
  for (double scale : {0.002, 0.03, 0.08, 0.4})
    for (int bits : {2, 4, 8}) {
      const LogIntSoftmax l = lis_for(scale, bits);
      const IntExp ie = IntExp::for_scale(scale);
      for (int trial = 0; trial < 300; ++trial) {
        const int n = 1 + static_cast<int>(rng() % 130);
        const int spread = trial % 5 == 0 ? 256 : 1 + static_cast<int>(rng() % 256);
        std::vector<int32_t> q = lis_scores(rng, static_cast<size_t>(n), spread, -128);
        if (trial % 5 == 0) q[rng() % q.size()] = -128, q[rng() % q.size()] = 127;  // gap 255 exactly
        std::vector<uint8_t> valid(static_cast<size_t>(n), 1);
        if (trial % 2)
          for (auto& x : valid) x = static_cast<uint8_t>(rng() % 4 != 0 ? 1 + rng() % 255 : 0);  // any non-zero byte is valid
        if (trial % 11 == 1) std::fill(valid.begin(), valid.end(), 0);
        if (trial % 7 == 0) std::fill(q.begin(), q.end(), q[0]);
        const uint8_t* mask = trial % 2 ? valid.data() : nullptr;
        std::vector<int8_t> want(q.size() + 8, 99), got(want), ref(q.size());
        l.row(q.data(), mask, n, want.data());
        avx2::lis_row(l, q.data(), mask, n, got.data());
        ASSERT_EQ(got, want) << "scale " << scale << " bits " << bits << " trial " << trial << " n " << n;
        std::vector<uint8_t> all(static_cast<size_t>(n), 1);
        log_int_softmax_row(q.data(), mask ? mask : all.data(), n, ie, bits, ref.data());
        ASSERT_TRUE(std::equal(ref.begin(), ref.end(), got.begin())) << "scale " << scale << " bits " << bits << " trial " << trial;
      }
    }
  // Large tables: rows near the 2^53 limit on both sides.
  for (auto [bits, top_log2] : std::vector<std::array<int, 2>>{{4, 48}, {8, 48}, {4, 54}}) {
    const LogIntSoftmax l = lis_for(0.03, bits, top_log2);
    int by_exp = 0, by_div = 0;
    for (int trial = 0; trial < 200; ++trial) {
      const int n = 8 + static_cast<int>(rng() % 90);  // odd trials: narrow rows, mostly above the limit
      std::vector<int32_t> q = lis_scores(rng, static_cast<size_t>(n), trial % 2 ? 1 + static_cast<int>(rng() % 4) : 20 + static_cast<int>(rng() % 40), 0);
      int64_t sum = 0;
      const int32_t mx = *std::max_element(q.begin(), q.end());
      for (int32_t x : q) sum += l.exp_of_gap[static_cast<size_t>(mx - x)];
      (2 * sum + l.exp_of_gap[0] >= (int64_t{1} << 53) ? by_exp : by_div)++;
      std::vector<int8_t> want(q.size()), got(q.size());
      l.row(q.data(), nullptr, n, want.data());
      avx2::lis_row(l, q.data(), nullptr, n, got.data());
      ASSERT_EQ(got, want) << "big table, bits " << bits << " trial " << trial;
    }
    EXPECT_GT(by_exp, 10);
    if (top_log2 == 48) {
      EXPECT_GT(by_div, 10);
    }
  }
}

// lis_rows against LogIntSoftmax::row row by row: row lengths below four (row by row), 4..9
// (four-lane groups spanning two rows), 16, 17, 128, 197 and 300 (blocks of 4096 / n rows, so
// several blocks for 128 rows), row counts 1..130, masks shared by the rows (one all-masked), and
// a large table mixing rows for row_by_exp with rows for the divisions in one block.
TEST(Avx2Attention, LisRowsMatchPlainRowByRow) {
  const PlainReference plain_reference;
  std::mt19937 rng(59);
  for (int top_log2 : {0, 48, 54})
    for (int bits : {4, 8}) {
      const bool big = top_log2 > 0;
      const LogIntSoftmax l = lis_for(0.03, bits, top_log2);
      for (int n : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 23, 32, 33, 50, 128, 197, 300})
        for (int n_rows : {1, 3, 17, 64, 65, 130})
          for (int masked : {0, 1, 2}) {
            if (top_log2 == 54 && n > 128) continue;  // 2Σ would pass 2^63
            const int spread = big ? 1 + static_cast<int>(rng() % 30) : 256;
            std::vector<int32_t> q = lis_scores(rng, static_cast<size_t>(n_rows) * n, spread, big ? 0 : -128);
            if (big)  // every other row flat: its sum is largest
              for (int t = 0; t < n_rows; t += 2) std::fill(q.begin() + static_cast<long>(t) * n, q.begin() + static_cast<long>(t + 1) * n, 5);
            std::vector<uint8_t> valid(static_cast<size_t>(n), 1);
            if (masked == 1)
              for (auto& x : valid) x = rng() % 3 != 0;
            if (masked == 2) std::fill(valid.begin(), valid.end(), 0);
            const uint8_t* mask = masked ? valid.data() : nullptr;
            std::vector<int8_t> want(q.size() + 8, 99), got(want);
            for (int t = 0; t < n_rows; ++t) l.row(q.data() + static_cast<size_t>(t) * n, mask, n, want.data() + static_cast<size_t>(t) * n);
            avx2::lis_rows(l, q.data(), mask, n_rows, n, got.data());
            ASSERT_EQ(got, want) << (big ? "big table " : "") << "bits " << bits << " n " << n << " rows " << n_rows << " masked " << masked;
          }
    }
}
