// The exact AVX2 u8·s8→s32 GEMM (src/runtime/arch/x86/gemm_avx2.h) against gemm_u8s8_plain, bit
// for bit: random and extreme codes over many shapes (tails of the 16-column panels, of the
// row tiles, odd K, several K blocks), the largest accumulators K allows, and threaded runs.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "runtime/arch/x86/gemm_avx2.h"
#include "runtime/int_kernels.h"

using namespace qtx::rt;

namespace {

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Codes with the ends of the range over-represented (1 in 8 each), where saturation and sign
// errors would show.
template <typename T>
std::vector<T> codes(size_t n, int lo, int hi, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(lo, hi), pick(0, 7);
  std::vector<T> v(n);
  for (auto& x : v) {
    const int p = pick(rng);
    x = static_cast<T>(p == 0 ? lo : p == 1 ? hi : d(rng));
  }
  return v;
}

// Runs the AVX2 GEMM (into a C pre-filled with garbage, so unwritten outputs show) and the
// reference; true when every output matches.
::testing::AssertionResult matches(const std::vector<uint8_t>& A, const std::vector<int8_t>& W, int M, int N, int K) {
  std::vector<int32_t> want(static_cast<size_t>(M) * N), got(want.size(), 0x5a5a5a5a);
  gemm_u8s8_plain(A.data(), 0, W.data(), want.data(), M, N, K);
  const avx2::PackedWeights pw = avx2::PackedWeights::pack(W.data(), N, K);
  avx2::gemm_u8s8_exact(pw, A.data(), M, got.data());
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i])
      return ::testing::AssertionFailure() << "M=" << M << " N=" << N << " K=" << K << " at (" << i / N << ", " << i % N
                                           << "): " << got[i] << " != " << want[i];
  return ::testing::AssertionSuccess();
}

struct Threads {  // sets the OpenMP thread count, restores it on the way out
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

const std::vector<int> kMs = {1, 2, 3, 7, 17, 64, 100, 1088};
const std::vector<int> kNs = {1, 3, 16, 17, 160, 192, 640};
const std::vector<int> kKs = {1, 3, 16, 17, 160, 192, 640, 768};

}  // namespace

TEST(Avx2Gemm, RandomCodesMatchReferenceOverShapes) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  Threads one(1);
  std::mt19937 rng(1);
  // Every (M, N, K) of the lists up to 2 M multiply-adds (390 shapes), 8-bit and 4-bit weights.
  int shapes = 0;
  for (int M : kMs)
    for (int N : kNs)
      for (int K : kKs) {
        if (static_cast<double>(M) * N * K > 2e6) continue;
        const bool four_bit = (shapes++ % 3) == 2;
        auto A = codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, rng);
        auto W = codes<int8_t>(static_cast<size_t>(N) * K, four_bit ? -8 : -128, four_bit ? 7 : 127, rng);
        ASSERT_TRUE(matches(A, W, M, N, K));
      }
  EXPECT_GT(shapes, 300);
}

TEST(Avx2Gemm, LargeAndKBlockedShapesMatchReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  Threads one(1);
  std::mt19937 rng(2);
  // Whole ViT layers (several row blocks), and K over one block of pairs: even and odd K, a
  // block boundary falling inside an odd K's rows, BERT-base's fc2 width; K = 0 (zeros).
  for (auto [M, N, K] : std::vector<std::tuple<int, int, int>>{{1088, 192, 160}, {1088, 17, 640}, {100, 640, 768}, {7, 33, 769},
                                                               {13, 40, 385}, {5, 19, 1537}, {9, 24, 3072}, {97, 3, 2049}, {3, 5, 0}}) {
    auto A = codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, rng);
    auto W = codes<int8_t>(static_cast<size_t>(N) * K, -128, 127, rng);
    ASSERT_TRUE(matches(A, W, M, N, K));
  }
}

// A = 255 with W = −128 or 127 everywhere: every vpmaddubsw pair sum would saturate. Also
// alternating signs (pair sums cancel), zero activations, and a column of each kind.
TEST(Avx2Gemm, SaturatingExtremesMatchReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  Threads one(1);
  for (auto [M, N, K] : std::vector<std::tuple<int, int, int>>{{1, 1, 1}, {3, 17, 3}, {17, 160, 160}, {64, 192, 768}, {7, 640, 17}, {100, 16, 641}}) {
    const size_t na = static_cast<size_t>(M) * K, nw = static_cast<size_t>(N) * K;
    for (int8_t w : {int8_t{-128}, int8_t{127}}) {
      ASSERT_TRUE(matches(std::vector<uint8_t>(na, 255), std::vector<int8_t>(nw, w), M, N, K));
      ASSERT_TRUE(matches(std::vector<uint8_t>(na, 0), std::vector<int8_t>(nw, w), M, N, K));
    }
    std::vector<int8_t> alt(nw), cols(nw);
    for (size_t i = 0; i < nw; ++i) {
      alt[i] = (i % 2) ? int8_t{127} : int8_t{-128};
      cols[i] = (i / K) % 3 == 0 ? int8_t{-128} : (i / K) % 3 == 1 ? int8_t{127} : int8_t{0};
    }
    ASSERT_TRUE(matches(std::vector<uint8_t>(na, 255), alt, M, N, K));
    ASSERT_TRUE(matches(std::vector<uint8_t>(na, 255), cols, M, N, K));
  }
}

// The largest K whose sums always fit int32 (255·128·65793 < 2^31): C = −2147483520 and
// 255·127·65793 exactly, through many K blocks.
TEST(Avx2Gemm, LargestAccumulatorsAreExact) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  Threads one(1);
  const int M = 2, N = 3, K = 65793;
  std::vector<uint8_t> A(static_cast<size_t>(M) * K, 255);
  std::vector<int8_t> W(static_cast<size_t>(N) * K, -128);
  for (int k = 0; k < K; ++k) W[static_cast<size_t>(K) + k] = 127;  // channel 1: the largest positive sum
  std::vector<int32_t> C(static_cast<size_t>(M) * N);
  avx2::gemm_u8s8_exact(avx2::PackedWeights::pack(W.data(), N, K), A.data(), M, C.data());
  for (int m = 0; m < M; ++m) {
    EXPECT_EQ(C[static_cast<size_t>(m) * N], -2147483520);
    EXPECT_EQ(C[static_cast<size_t>(m) * N + 1], 255 * 127 * K);
    EXPECT_EQ(C[static_cast<size_t>(m) * N + 2], -2147483520);
  }
  ASSERT_TRUE(matches(A, W, M, N, K));
}

// Threaded: row blocks (1088 rows), column blocks (few rows, many panels), thread counts that
// divide neither, and calls from inside a parallel region (each thread alone, own scratch).
TEST(Avx2Gemm, ThreadedRunsMatchReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(3);
  for (int threads : {2, 3, 4}) {
    Threads t(threads);
    for (auto [M, N, K] : std::vector<std::tuple<int, int, int>>{{1088, 160, 160}, {17, 640, 768}, {100, 640, 192}, {3, 3072, 768}}) {
      auto A = codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, rng);
      auto W = codes<int8_t>(static_cast<size_t>(N) * K, -128, 127, rng);
      ASSERT_TRUE(matches(A, W, M, N, K)) << threads << " threads";
    }
  }
  Threads t(2);
  const int M = 64, N = 192, K = 768;
  auto A = codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, rng);
  auto W = codes<int8_t>(static_cast<size_t>(N) * K, -128, 127, rng);
  std::vector<int32_t> want(static_cast<size_t>(M) * N);
  gemm_u8s8_plain(A.data(), 0, W.data(), want.data(), M, N, K);
  const avx2::PackedWeights pw = avx2::PackedWeights::pack(W.data(), N, K);
  std::vector<std::vector<int32_t>> got(4, std::vector<int32_t>(want.size(), -1));
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < 4; ++i) avx2::gemm_u8s8_exact(pw, A.data(), M, got[static_cast<size_t>(i)].data());
  for (const auto& g : got) EXPECT_EQ(g, want);
}
