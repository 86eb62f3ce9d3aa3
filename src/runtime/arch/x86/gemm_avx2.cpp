#include "runtime/arch/x86/gemm_avx2.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/parallel.h"

namespace qtx::rt::avx2 {

namespace {

constexpr int kNv = PackedWeights::kPanel / 8;  // ymm words of int32 lanes per panel row
// Rows per micro-tile: 4 × 2 ymm accumulators. Larger tiles (6 × 16, 4 × 24, 12 accumulators)
// measured no faster: 16 multiply-adds per vpmaddwd plus one vpaddd each already fill the
// vector pipes, and they spill under GCC.
constexpr int kMr = 4;
constexpr int kMaxKcPairs = 192;  // K pairs per block: a panel's slice (kc·kPanel·4 = 12 KiB) stays in L1
constexpr int kMaxMc = 96;        // rows per block: the widened block (mc·kc·4 ≤ 72 KiB) stays in L2
constexpr double kMinParallelMacs = 4.0e6;  // as Int8Gemm::run_untimed

int32_t* alloc_aligned(size_t words) {
  void* p = std::aligned_alloc(64, std::max<size_t>(64, (words * sizeof(int32_t) + 63) / 64 * 64));
  if (!p) throw std::bad_alloc();
  return static_cast<int32_t*>(p);
}

// Rows [m0, m0 + rows) of A, bytes [2·q0, 2·q1) ∩ [0, K), widened to int16 pairs in dst (row
// stride ld words); a pair past K (odd K) gets a zero high half.
void widen_block(const uint8_t* A, int K, int m0, int rows, int q0, int q1, int32_t* dst, int ld) {
  const int k0 = 2 * q0, k1 = std::min(K, 2 * q1), n = k1 - k0;
  for (int r = 0; r < rows; ++r) {
    const uint8_t* src = A + static_cast<size_t>(m0 + r) * K + k0;
    auto* out = reinterpret_cast<int16_t*>(dst + static_cast<size_t>(r) * ld);
    int k = 0;
    for (; k + 16 <= n; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k),
                          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
    for (; k < n; ++k) out[k] = src[k];
    if (n & 1) out[n] = 0;
  }
}

// Stores (or adds into c) one ymm of accumulators; only the first `left` of its 8 columns exist.
inline void put(int32_t* dst, __m256i s, int left, bool add) {
  if (left >= 8) {
    if (add) s = _mm256_add_epi32(s, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dst)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), s);
  } else if (left > 0) {  // the last panel's columns past N are neither read nor written
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (add) s = _mm256_add_epi32(s, _mm256_maskload_epi32(dst, mask));
    _mm256_maskstore_epi32(dst, mask, s);
  }
}

// One micro-tile: rows × kPanel outputs over `pairs` K pairs. a: the widened rows (stride lda
// words); w: the panel's slice; c: the outputs (stride ldc), of which the first `cols` exist;
// add: accumulate into c (a later K block) instead of storing.
template <int R>
inline void tile(const int32_t* a, size_t lda, const int32_t* w, int pairs, int32_t* c, size_t ldc, int cols, bool add) {
  static_assert(kNv == 2 && R <= 4, "named accumulators: 4 rows × 2 ymm");
  // Named accumulators, not an array: GCC keeps them in registers (with -fno-tree-pre, see
  // CMakeLists.txt, it also stops copying each one every iteration).
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const int32_t* a0 = a;
  const int32_t* a1 = a + (R > 1 ? lda : 0);  // rows past R are never read
  const int32_t* a2 = a + (R > 2 ? 2 * lda : 0);
  const int32_t* a3 = a + (R > 3 ? 3 * lda : 0);
  for (int q = 0; q < pairs; ++q) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + q * 16));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + q * 16 + 8));
    __m256i x = _mm256_set1_epi32(a0[q]);
    c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, b0));
    c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, b1));
    if constexpr (R > 1) {
      x = _mm256_set1_epi32(a1[q]);
      c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, b0));
      c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, b1));
    }
    if constexpr (R > 2) {
      x = _mm256_set1_epi32(a2[q]);
      c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x, b0));
      c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x, b1));
    }
    if constexpr (R > 3) {
      x = _mm256_set1_epi32(a3[q]);
      c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x, b0));
      c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x, b1));
    }
  }
  put(c, c00, cols, add);
  put(c + 8, c01, cols - 8, add);
  if constexpr (R > 1) { put(c + ldc, c10, cols, add); put(c + ldc + 8, c11, cols - 8, add); }
  if constexpr (R > 2) { put(c + 2 * ldc, c20, cols, add); put(c + 2 * ldc + 8, c21, cols - 8, add); }
  if constexpr (R > 3) { put(c + 3 * ldc, c30, cols, add); put(c + 3 * ldc + 8, c31, cols - 8, add); }
}

template <int R>
void tile_rows(int rows, const int32_t* a, size_t lda, const int32_t* w, int pairs, int32_t* c, size_t ldc, int cols, bool add) {
  if constexpr (R > 1) {
    if (rows < R) return tile_rows<R - 1>(rows, a, lda, w, pairs, c, ldc, cols, add);
  }
  tile<R>(a, lda, w, pairs, c, ldc, cols, add);
}

}  // namespace

void PackedWeights::Free::operator()(int32_t* p) const { std::free(p); }

PackedWeights PackedWeights::pack(const int8_t* w, int N, int K) {
  PackedWeights p;
  p.N = N;
  p.K = K;
  p.pairs = (K + 1) / 2;
  p.panels = (N + kPanel - 1) / kPanel;
  const size_t words = static_cast<size_t>(p.panels) * p.pairs * kPanel;
  p.data.reset(alloc_aligned(words));
  int32_t* d = p.data.get();
  for (int pn = 0; pn < p.panels; ++pn)
    for (int q = 0; q < p.pairs; ++q)
      for (int j = 0; j < kPanel; ++j) {
        const int n = pn * kPanel + j, k = 2 * q;
        int16_t lo = 0, hi = 0;
        if (n < N) {
          lo = w[static_cast<size_t>(n) * K + k];
          if (k + 1 < K) hi = w[static_cast<size_t>(n) * K + k + 1];
        }
        d[(static_cast<size_t>(pn) * p.pairs + q) * kPanel + j] =
            static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
      }
  return p;
}

void gemm_u8s8_exact(const PackedWeights& pw, const uint8_t* A, int M, int32_t* C) {
  const int N = pw.N, K = pw.K;
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    std::memset(C, 0, static_cast<size_t>(M) * N * sizeof(int32_t));
    return;
  }
  // K blocks of equal size (in pairs), so no block is a sliver.
  const int kblocks = (pw.pairs + kMaxKcPairs - 1) / kMaxKcPairs;
  const int kc = (pw.pairs + kblocks - 1) / kblocks;
  const double macs = static_cast<double>(M) * N * K;
  const int threads = macs >= kMinParallelMacs && !omp_in_parallel() ? omp_get_max_threads() : 1;
  // Row blocks (a multiple of the threads when there are enough rows), then column blocks of
  // whole panels when there are too few row blocks for the threads.
  int mblocks = (M + kMaxMc - 1) / kMaxMc;
  if (threads > 1 && mblocks >= threads) mblocks = (mblocks + threads - 1) / threads * threads;
  int mc = (M + mblocks - 1) / mblocks;
  mc = std::min(M, (mc + kMr - 1) / kMr * kMr);
  mblocks = (M + mc - 1) / mc;
  int nblocks = 1;
  if (threads > mblocks) nblocks = std::min(pw.panels, (threads + mblocks - 1) / mblocks);
  const int pc = (pw.panels + nblocks - 1) / nblocks;
  nblocks = (pw.panels + pc - 1) / pc;

  const auto body = [&pw, A, C, M, N, K, kc, mc, pc, mblocks](int t) {
    const int mb = t % mblocks, nb = t / mblocks;
    const int m0 = mb * mc, rows = std::min(mc, M - m0);
    const int p0 = nb * pc, p1 = std::min(pw.panels, p0 + pc);
    const int ld = kc;
    thread_local std::unique_ptr<int32_t[], PackedWeights::Free> scratch;
    thread_local size_t scratch_words = 0;
    const size_t need = static_cast<size_t>(mc) * ld;
    if (scratch_words < need) {
      scratch.reset(alloc_aligned(need));
      scratch_words = need;
    }
    int32_t* a = scratch.get();
    for (int q0 = 0; q0 < pw.pairs; q0 += kc) {
      const int q1 = std::min(pw.pairs, q0 + kc), qn = q1 - q0;
      widen_block(A, K, m0, rows, q0, q1, a, ld);
      for (int p = p0; p < p1; ++p) {
        const int32_t* w = pw.panel(p) + static_cast<size_t>(q0) * PackedWeights::kPanel;
        const int n0 = p * PackedWeights::kPanel, cols = std::min(PackedWeights::kPanel, N - n0);
        for (int r = 0; r < rows; r += kMr)
          tile_rows<kMr>(std::min(kMr, rows - r), a + static_cast<size_t>(r) * ld, ld, w, qn,
                         C + static_cast<size_t>(m0 + r) * N + n0, N, cols, q0 > 0);
      }
    }
  };
  parallel_for(mblocks * nblocks, threads > 1 ? static_cast<size_t>(macs) : 0, body);
}

}  // namespace qtx::rt::avx2
