// The AVX-512 kernels of the integer runtime. This one file is compiled twice (CMakeLists.txt):
// for x86-64-v4 (AVX-512 F, CD, BW, DQ, VL; QTX_ARCH_NS = avx512) and for x86-64-v4 + VNNI +
// VBMI (avx512_vnni), each object in its own namespace, its table handed out only where the CPU
// has that level (kernel_table.h). Each kernel computes exactly what the plain loop it replaces
// (in int_kernels.cpp / int_blocks.cpp) computes; tests compare them at every level.
// No std:: container or algorithm is instantiated here: an out-of-line copy compiled with these
// flags could be the one the linker keeps for generic code (scratch memory: thread_scratch).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/parallel.h"
#include "runtime/elementwise_steps.h"
#include "runtime/simd.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__) || !defined(__AVX512VL__)
#error "kernels_avx512.cpp is compiled with the AVX-512 flags of its level (CMakeLists.txt)"
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512VBMI__)
#define QTX_VNNI 1
#endif

namespace qtx::rt {
namespace QTX_ARCH_NS {
namespace {

// 128-bit lane j of v. The intrinsic takes only a constant lane (clang checks it before unrolling
// a loop over j); the switch folds away once the loop is unrolled.
[[maybe_unused]] inline __m128i extract_i32x4(__m512i v, int j) {
  switch (j) {
    case 0: return _mm512_extracti32x4_epi32(v, 0);
    case 1: return _mm512_extracti32x4_epi32(v, 1);
    case 2: return _mm512_extracti32x4_epi32(v, 2);
    default: return _mm512_extracti32x4_epi32(v, 3);
  }
}

// ---- Log-Int-Softmax ----

// The codes of r = ⌊(2Σ + e) / 2e⌋ for eight e (LogIntSoftmax::row's scalar loop gives the
// reasoning): k from r's exponent and first mantissa bit, -1 where e ≤ 0 or k ≥ top; stored for
// the lanes in `in`.
inline void lis_codes8(__m512i ev, __m512d two_sum, __m512i top, __mmask8 in, int8_t* codes) {
  const __m512d ed = _mm512_cvtepi64_pd(ev);
  const __m512d r = _mm512_roundscale_pd(_mm512_div_pd(_mm512_add_pd(two_sum, ed), _mm512_add_pd(ed, ed)),
                                         _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512i b = _mm512_castpd_si512(r);
  const __m512i k = _mm512_add_epi64(_mm512_sub_epi64(_mm512_srli_epi64(b, 52), _mm512_set1_epi64(1023)),
                                     _mm512_and_si512(_mm512_srli_epi64(b, 51), _mm512_set1_epi64(1)));
  const __mmask8 dropped = _mm512_cmple_epi64_mask(ev, _mm512_setzero_si512()) | _mm512_cmpge_epi64_mask(k, top);
  _mm512_mask_cvtepi64_storeu_epi8(codes, in, _mm512_mask_blend_epi64(dropped, k, _mm512_set1_epi64(-1)));
}

// Rows of 8..32 scores in phases over the whole block — maxima, i-exp gathers and sums row by
// row into a dense buffer, then one flat pass of divisions eight at a time — so that no row waits
// on the latencies of the one before it.
bool lis_rows(const LogIntSoftmax& L, const int32_t* q, const uint8_t* valid, int n_rows, int n, int8_t* codes) {
  if (!(n >= 8 && n <= 32 && n_rows <= 64)) return false;
  alignas(64) int64_t E[64 * 32 + 8];  // dense: row t's exps at t·n (+ 8: the last masked load's reach)
  alignas(64) double two_sum[64];
  uint64_t exact_rows = 0;              // rows whose 2Σ + e may reach 2^53: row_by_exp afterwards
  const long long* tab = reinterpret_cast<const long long*>(L.exp_of_gap.data());
  const __mmask16 in0 = static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
  const __mmask16 in1 = static_cast<__mmask16>(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
  __mmask16 live0 = in0, live1 = in1;
  if (valid) {
    const __mmask32 in = static_cast<__mmask32>(in0 | static_cast<uint32_t>(in1) << 16);
    const __mmask32 ok = _mm256_mask_test_epi8_mask(in, _mm256_maskz_loadu_epi8(in, valid), _mm256_set1_epi8(-1));
    live0 = static_cast<__mmask16>(ok);
    live1 = static_cast<__mmask16>(ok >> 16);
  }
  const __m512i low = _mm512_set1_epi32(std::numeric_limits<int32_t>::min());
  for (int t = 0; t < n_rows; ++t) {
    const int32_t* qt = q + static_cast<size_t>(t) * n;
    const __m512i q0 = _mm512_mask_loadu_epi32(low, live0, qt), q1 = _mm512_mask_loadu_epi32(low, live1, qt + 16);
    const __m512i mx = _mm512_set1_epi32(_mm512_reduce_max_epi32(_mm512_max_epi32(q0, q1)));
    const __m512i g0 = _mm512_sub_epi32(mx, q0), g1 = _mm512_sub_epi32(mx, q1);  // gaps (not read where not live)
    const __m512i e0 = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live0), _mm512_castsi512_si256(g0), tab, 8);
    const __m512i e1 = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live0 >> 8), _mm512_extracti64x4_epi64(g0, 1), tab, 8);
    __m512i e2 = _mm512_setzero_si512(), e3 = _mm512_setzero_si512();
    if (live1) e2 = _mm512_mask_i32gather_epi64(e2, static_cast<__mmask8>(live1), _mm512_castsi512_si256(g1), tab, 8);
    if (live1 >> 8) e3 = _mm512_mask_i32gather_epi64(e3, static_cast<__mmask8>(live1 >> 8), _mm512_extracti64x4_epi64(g1, 1), tab, 8);
    int64_t* Et = E + static_cast<size_t>(t) * n;
    _mm512_storeu_si512(Et, e0);
    _mm512_mask_storeu_epi64(Et + 8, static_cast<__mmask8>(in0 >> 8), e1);
    _mm512_mask_storeu_epi64(Et + 16, static_cast<__mmask8>(in1), e2);
    _mm512_mask_storeu_epi64(Et + 24, static_cast<__mmask8>(in1 >> 8), e3);
    const int64_t sum = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(e0, e1), _mm512_add_epi64(e2, e3)));
    two_sum[t] = 2.0 * static_cast<double>(sum);
    if (2 * sum + L.exp_of_gap[0] >= (int64_t{1} << 53)) exact_rows |= uint64_t{1} << t;
  }
  // Eight exps at a time over all rows; n ≥ 8, so eight span at most two rows: row r's 2Σ up
  // to lane `edge`, row r + 1's after it.
  const __m512i top = _mm512_set1_epi64(int64_t{1} << L.bits);
  const int total = n_rows * n;
  int r = 0, row_end = n;  // the row of element i, and where it ends
  for (int i = 0; i < total; i += 8) {
    const __mmask8 in = static_cast<__mmask8>(total - i >= 8 ? 0xff : (1u << (total - i)) - 1);
    const int edge = row_end - i;  // lanes before the next row
    __m512d ts = _mm512_set1_pd(two_sum[r]);
    if (edge < 8) ts = _mm512_mask_blend_pd(static_cast<__mmask8>(0xffu << edge), ts, _mm512_set1_pd(two_sum[r + 1 < n_rows ? r + 1 : n_rows - 1]));
    lis_codes8(_mm512_maskz_loadu_epi64(in, E + i), ts, top, in, codes + i);
    if (edge <= 8) {
      ++r;
      row_end += n;
    }
  }
  for (int t = 0; exact_rows; ++t, exact_rows >>= 1)
    if (exact_rows & 1) L.row_by_exp(q + static_cast<size_t>(t) * n, valid, n, codes + static_cast<size_t>(t) * n);
  return true;
}

// i-exp of the gaps by two 8-lane gathers per 16 scores, the sum in vector lanes (the scalar
// loop, which GCC leaves scalar when tuning for AMD, had been half of the row).
int lis_exps(const LogIntSoftmax& L, const int32_t* q, const uint8_t* valid, int n, int32_t mx, int64_t* e, int64_t* sum) {
  const long long* tab = reinterpret_cast<const long long*>(L.exp_of_gap.data());
  const __m512i mxv = _mm512_set1_epi32(mx);
  __m512i acc = _mm512_setzero_si512();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i gap = _mm512_sub_epi32(mxv, _mm512_loadu_si512(q + i));
    __mmask16 live = 0xffff;
    if (valid) live = _mm_test_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(valid + i)), _mm_set1_epi8(-1));
    const __m512i lo = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live), _mm512_castsi512_si256(gap), tab, 8);
    const __m512i hi = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>(live >> 8), _mm512_extracti64x4_epi64(gap, 1), tab, 8);
    _mm512_storeu_si512(e + i, lo);
    _mm512_storeu_si512(e + i + 8, hi);
    acc = _mm512_add_epi64(acc, _mm512_add_epi64(lo, hi));
  }
  *sum += _mm512_reduce_add_epi64(acc);
  return i;
}

// The codes eight lanes at a time (GCC leaves the loop scalar): the same double operations,
// which IEEE makes exact per lane, then the same exponent and mantissa bits.
int lis_codes(const int64_t* e, int n, double two_sum, int64_t top, int8_t* codes) {
  const __m512d ts = _mm512_set1_pd(two_sum);
  const __m512i top_v = _mm512_set1_epi64(top);
  for (int i = 0; i < n; i += 8) {
    const __mmask8 in = static_cast<__mmask8>(n - i >= 8 ? 0xff : (1u << (n - i)) - 1);
    lis_codes8(_mm512_maskz_loadu_epi64(in, e + i), ts, top_v, in, codes + i);
  }
  return n;
}

// ---- LayerNorm ----

// IntLayerNorm::row_output's integer steps; t (|t| ≤ 2^24·√C < 2^31) and γ/s_out (< 2^30) are
// int32, so t·g is one 32×32→64 multiply. d = C·x − Σx is int32 too (|d| < 2^26).
int layernorm_output(const IntLayerNorm& L, const int32_t* x_in, int64_t sum, int64_t R, uint8_t* out_in) {
  const int n = L.C;
  const int32_t* __restrict x = x_in;
  uint8_t* __restrict out = out_in;
  const int64_t* __restrict g = L.gain.data();
  const int64_t* __restrict b = L.bias.data();
  const int s = L.shift + 24;
  const int64_t zout = L.zo, lo = L.qmin, hi = L.qmax;
  int c = 0;
  const __m512i n_v = _mm512_set1_epi32(n), sum_v = _mm512_set1_epi32(static_cast<int32_t>(sum)), R_v = _mm512_set1_epi64(R),
                r31 = _mm512_set1_epi64(int64_t{1} << 31), z_v = _mm512_set1_epi64(zout), lo_v = _mm512_set1_epi64(lo),
                hi_v = _mm512_set1_epi64(hi);
  const __m128i s_v = _mm_cvtsi32_si128(s);
  auto eight = [&](__m256i d, const int64_t* g8, const int64_t* b8) {
    const __m512i t = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mullo_epi64(_mm512_cvtepi32_epi64(d), R_v), r31), 32);
    __m512i q = _mm512_add_epi64(_mm512_mul_epi32(t, _mm512_loadu_si512(g8)), _mm512_loadu_si512(b8));
    q = _mm512_add_epi64(_mm512_sra_epi64(q, s_v), z_v);
    return _mm512_cvtepi64_epi32(_mm512_min_epi64(_mm512_max_epi64(q, lo_v), hi_v));
  };
  if (s >= 32 && zout - lo >= INT32_MIN && hi - zout <= INT32_MAX) {
    // Even and odd lanes apart (no widening or narrowing across lanes): d's halves sign-extended
    // in place, γ and β already split so at load, and ⌊q / 2^s⌋ from the high halves of q
    // gathered by one blend and one 32-bit shift (⌊q/2^s⌋ = ⌊⌊q/2^32⌋/2^(s−32)⌋).
    const int64_t* __restrict ge = L.gain_even_odd.data();
    const int64_t* __restrict be = L.bias_even_odd.data();
    const __m512i lo32 = _mm512_set1_epi32(static_cast<int32_t>(lo - zout)), hi32 = _mm512_set1_epi32(static_cast<int32_t>(hi - zout)),
                  z32 = _mm512_set1_epi32(static_cast<int32_t>(zout));
    const __m128i s32 = _mm_cvtsi32_si128(s - 32);
    auto half = [&](__m512i d64, const int64_t* g8, const int64_t* b8) {
      const __m512i t = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mullo_epi64(d64, R_v), r31), 32);
      return _mm512_add_epi64(_mm512_mul_epi32(t, _mm512_loadu_si512(g8)), _mm512_loadu_si512(b8));
    };
    auto integer16 = [&](__m512i d, int at) __attribute__((always_inline)) {
      const __m512i qe = half(_mm512_srai_epi64(_mm512_slli_epi64(d, 32), 32), ge + at, be + at);
      const __m512i qo = half(_mm512_srai_epi64(d, 32), ge + at + 8, be + at + 8);
      const __m512i v = simd::floor_shift_high_halves(qe, qo, s32);
      return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo32), hi32), z32);
    };
    const float* __restrict gf = L.gain_f.data();
    const float* __restrict bf = L.bias_f.data();
    const __m512 R_f = _mm512_set1_ps(static_cast<float>(R)), near_tie = _mm512_set1_ps(0.5f - L.tie_margin);
    const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
    const bool full = lo == 0 && hi == 255;
    simd::with_flag(L.placed, [&](auto by_float) {
      auto sixteen = [&](int at) __attribute__((always_inline)) {
        const __m512i d = _mm512_sub_epi32(_mm512_mullo_epi32(_mm512_loadu_si512(x + at), n_v), sum_v);
        if constexpr (!decltype(by_float)::value) {
          return integer16(d, at);
        } else {  // the float placement; a vector's lanes near a boundary by the integer steps
          const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(R_f, _mm512_loadu_ps(gf + at)), _mm512_loadu_ps(bf + at));
          __mmask16 open;
          __m512i code = simd::round_unless_near_tie(y, near_tie, &open);
          if (!full) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
          if (__builtin_expect(open != 0, 0)) code = _mm512_mask_blend_epi32(open, code, integer16(d, at));
          return code;
        }
      };
      c = full && decltype(by_float)::value ? simd::store_codes_clamped(out, c, n, sixteen)
                                            : simd::store_code_vectors(out, c, n, lo >= 0 && hi <= 255, sixteen);
    });
  }
  for (; c + 16 <= n; c += 16) {
    const __m512i d = _mm512_sub_epi32(_mm512_mullo_epi32(_mm512_loadu_si512(x + c), n_v), sum_v);
    const __m256i q0 = eight(_mm512_castsi512_si256(d), g + c, b + c), q1 = eight(_mm512_extracti64x4_epi64(d, 1), g + c + 8, b + c + 8);
    simd::store_lanes(out + c, _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1));
  }
  return c;
}

// IntLayerNormSite::centre_row: residual codes → (PTF code − z) << α per channel.
int layernorm_centre(const IntLayerNormSite& S, const uint8_t* h_row, int32_t* x_out, int64_t* sum_out, int64_t* sq_out,
                     bool* summed) {
  const uint8_t* __restrict r = h_row;
  int32_t* __restrict x = x_out;
  const int C = S.C;
  int c = 0;
  *summed = false;
#if defined(QTX_VNNI)
  const int K = S.K;
  const int32_t z = S.norm.z;
  // 64 channels at a time: each α's 256-byte table as two 128-byte permutes (vpermt2b) on the
  // codes' low 7 bits, picked by bit 7 and then by the channel's α; (code − z) << α after.
  {
    const int* __restrict al = S.alpha.data();
    const uint8_t* __restrict gt = S.grid.data();
    const uint64_t* __restrict am = S.alpha_masks.data();
    const auto table_codes = [&](int blk) {
      const __m512i code = _mm512_loadu_si512(r + c);
      const __mmask64 upper = _mm512_movepi8_mask(code);
      __m512i v = _mm512_setzero_si512();
      for (int k = 0; k <= K; ++k) {
        const uint64_t has_k = am[static_cast<size_t>(blk) * (K + 1) + k];
        if (has_k == 0) continue;  // no channel of this block has α = k (vit-fmnist: α = 0 nowhere)
        const uint8_t* t = gt + static_cast<size_t>(k) * 256;
        const __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(t), code, _mm512_loadu_si512(t + 64));
        const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(t + 128), code, _mm512_loadu_si512(t + 192));
        v = _mm512_mask_blend_epi8(has_k, v, _mm512_mask_blend_epi8(upper, lo, hi));
      }
      return v;
    };
    if (S.int16_sums && C % 64 == 0) {
      // x in int16 (|x| < 2^15, checked at load), Σx and Σx² by vpdpwssd in int32 lanes (each
      // below 2^31, checked at load), x widened to int32 for the output step.
      const int16_t* __restrict a16 = S.alpha16.data();
      const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(z)), ones = _mm512_set1_epi16(1);
      __m512i s1 = _mm512_setzero_si512(), s2 = _mm512_setzero_si512();
      for (int blk = 0; c + 64 <= C; c += 64, ++blk) {
        const __m512i v = table_codes(blk);
        for (int half = 0; half < 2; ++half) {
          const __m512i g = _mm512_cvtepu8_epi16(half ? _mm512_extracti64x4_epi64(v, 1) : _mm512_extracti64x4_epi64(v, 0));
          const __m512i x16 = _mm512_sllv_epi16(_mm512_sub_epi16(g, z16), _mm512_loadu_si512(a16 + c + 32 * half));
          s1 = _mm512_dpwssd_epi32(s1, x16, ones);
          s2 = _mm512_dpwssd_epi32(s2, x16, x16);
          _mm512_storeu_si512(x + c + 32 * half, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(x16)));
          _mm512_storeu_si512(x + c + 32 * half + 16, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(x16, 1)));
        }
      }
      *sum_out = _mm512_reduce_add_epi32(s1);
      *sq_out = _mm512_reduce_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(s2))) +
                _mm512_reduce_add_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s2, 1)));
      *summed = true;
      return c;
    }
    const __m512i zv = _mm512_set1_epi32(z);
    for (int blk = 0; c + 64 <= C; c += 64, ++blk) {
      const __m512i v = table_codes(blk);
      for (int j = 0; j < 4; ++j) {
        const __m512i g = _mm512_cvtepu8_epi32(extract_i32x4(v, j));
        _mm512_storeu_si512(x + c + 16 * j, _mm512_sllv_epi32(_mm512_sub_epi32(g, zv), _mm512_loadu_si512(al + c + 16 * j)));
      }
    }
  }
#endif
  const int32_t* __restrict tab = S.centred.data();
  const int32_t* __restrict base = S.table_base.data();  // α_c · 256
  for (; c + 16 <= C; c += 16) {
    const __m512i idx = _mm512_add_epi32(_mm512_loadu_si512(base + c),
                                         _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + c))));
    _mm512_storeu_si512(x + c, _mm512_i32gather_epi32(idx, tab, 4));
  }
  return c;
}

// ---- Requantization ----

// requant_to_codes: simd::RoundShift16 where it applies (the clamp bounds minus the zero point
// in int32), the plain loop for the tails and the rest.
void requant_codes(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out) {
  const int64_t lo = static_cast<int64_t>(o.qmin) - o.zero, hi = static_cast<int64_t>(o.qmax) - o.zero;
  const bool wide = simd::round_shift_vectors_handle(r.m, r.shift) && lo >= INT32_MIN && hi <= INT32_MAX;
  parallel_range(n, [&](size_t begin, size_t end) {
    const int32_t* __restrict src = in;
    uint8_t* __restrict dst = out;
    size_t i = begin;
    if (wide) {
      const simd::RoundShift16 rs(r.m, r.shift, static_cast<int32_t>(lo), static_cast<int32_t>(hi), o.zero);
      for (; i + 16 <= end; i += 16) simd::store_lanes(dst + i, rs(_mm512_loadu_si512(src + i)));
    }
    requant_to_codes_plain(in, i, end, r, o, out);
  });
}

size_t round_shift_inplace(int32_t* x, size_t n, int64_t m, int shift, int32_t lo, int32_t hi) {
  const simd::RoundShift16 rs(m, shift, lo, hi, 0);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_si512(x + i, rs(_mm512_loadu_si512(x + i)));
  return i;
}

// ChannelRequant's integer formula on one row, 16 channels at a time (simd::Requant16).
template <typename Out>
int channel_row_t(const ChannelRequant& q, const int32_t* a_in, size_t brow, Out* o_in) {
  const int32_t* __restrict a = a_in;
  Out* __restrict o = o_in;
  const int32_t* __restrict mm = q.m.data();
  const int64_t* __restrict e = q.add_even_odd.data() + brow;
  const int n = q.N;
  int c = 0;
  simd::with_lanes(q.lanes, [&](auto L) {
    const simd::Requant16<decltype(L)::value> rq(q.shift, q.zo, q.qmin, q.qmax);
    auto sixteen = [&](int at) {
      return rq(_mm512_loadu_si512(a + at), _mm512_loadu_si512(mm + at), _mm512_loadu_si512(e + at), _mm512_loadu_si512(e + at + 8));
    };
    if constexpr (std::is_same_v<Out, uint8_t>) {
      c = simd::store_code_vectors(o, c, n, q.qmin >= 0 && q.qmax <= 255, sixteen);  // store_64_codes saturates to 0..255
    } else {
      for (; c + 16 <= n; c += 16) simd::store_lanes(o + c, sixteen(c));
    }
  });
  return c;
}
// ChannelRequant by the integer formula, all rows: the vector part of each row, then its tail.
template <typename Out>
void channel_rows_integer(const ChannelRequant& q, const int32_t* acc, int M, Out* out) {
  const int n = q.N;
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const int32_t* a = acc + static_cast<size_t>(i) * n;
    Out* o = out + static_cast<size_t>(i) * n;
    const int c = channel_row_t(q, a, static_cast<size_t>(i % q.bias_rows) * n, o);
    if (c < n) q.row_plain(a, i, c, o);
  });
}
void channel_rows32(const ChannelRequant& q, const int32_t* acc, int M, int32_t* out) { channel_rows_integer(q, acc, M, out); }

void channel_rows_placed(const ChannelRequant& q, const int32_t* acc, int M, uint8_t* out) {
  // Every choice and constant once per call, outside the row loop (rows of 192 channels are
  // twelve vectors: setting up per row had cost as much as a sixth of the kernel).
  const int n = q.N, br = q.bias_rows, sh = q.shift;
  const int64_t z = q.zo, lo = q.qmin, hi = q.qmax;
  const int32_t* __restrict mm = q.m.data();
  const int64_t* __restrict eo = q.add_even_odd.data();
  const float* __restrict pm = q.placement.m.data();
  const float* __restrict pb_all = q.placement.b.data();
  const __m512 near_tie = _mm512_set1_ps(0.5f - q.placement.tie_margin);
  const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
  const __m512i exact_max = _mm512_set1_epi32((1 << 24) - 1);
  simd::with_lanes(q.lanes, [&](auto L) {
  simd::with_flag(q.placement.check_acc, [&](auto check_acc) {
  simd::with_flag(lo == 0 && hi == 255, [&](auto full) {  // store_codes_clamped clamps to exactly 0..255
    const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
    parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
      const int32_t* __restrict a = acc + static_cast<size_t>(i) * n;
      const size_t brow = static_cast<size_t>(i % br) * n;
      const int64_t* __restrict e = eo + brow;
      const float* __restrict pb = pb_all + brow;
      uint8_t* __restrict o = out + static_cast<size_t>(i) * n;
      const auto placed16 = [&](int at) __attribute__((always_inline)) {
        const __m512i av = _mm512_loadu_si512(a + at);
        __mmask16 open;
        __m512i code = simd::round_unless_near_tie(
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(pm + at), _mm512_loadu_ps(pb + at)), near_tie, &open);
        if constexpr (decltype(check_acc)::value) open |= _mm512_cmpgt_epu32_mask(_mm512_abs_epi32(av), exact_max);
        if constexpr (!decltype(full)::value) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
        if (__builtin_expect(open != 0, 0))  // rare: a branch, so the integer form is not computed for every vector
          code = _mm512_mask_blend_epi32(open, code, rq(av, _mm512_loadu_si512(mm + at), _mm512_loadu_si512(e + at), _mm512_loadu_si512(e + at + 8)));
        return code;
      };
      const int c = simd::store_codes_clamped(o, 0, n, placed16);
      if (c < n) q.row_plain(a, i, c, o);  // the tail (no call where a row is whole vectors)
    });
  });
  });
  });
}

void channel_rows(const ChannelRequant& q, const int32_t* acc, int M, uint8_t* out, bool placed) {
  if (placed) return channel_rows_placed(q, acc, M, out);
  channel_rows_integer(q, acc, M, out);
}

int residual_row(const ResidualRequant& q, const int32_t* a_in, const uint8_t* h_in, uint8_t* o_in) {
  const int32_t* __restrict a = a_in;
  const uint8_t* __restrict hr = h_in;
  uint8_t* __restrict o = o_in;
  const int32_t* __restrict ma = q.ma.data();
  const int64_t* __restrict e = q.add_even_odd.data();
  const int n = q.N;
  int c = 0;
  simd::with_lanes(q.lanes, [&](auto L) {
    const simd::Requant16<decltype(L)::value> rq(q.shift, q.zo, q.qmin, q.qmax);
    // mb < 2^31 and h − zh are int32, so each half of the residual's term is one vpmuldq.
    const __m512i mh_v = _mm512_set1_epi64(q.mb), zr_v = _mm512_set1_epi32(q.zh);
    auto sixteen = [&](int at) {
      const __m512i hc = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hr + at))), zr_v);
      const __m512i add_e = _mm512_add_epi64(_mm512_loadu_si512(e + at), _mm512_mul_epi32(hc, mh_v));
      const __m512i add_o = _mm512_add_epi64(_mm512_loadu_si512(e + at + 8), _mm512_mul_epi32(_mm512_srli_epi64(hc, 32), mh_v));
      return rq(_mm512_loadu_si512(a + at), _mm512_loadu_si512(ma + at), add_e, add_o);
    };
    c = simd::store_code_vectors(o, c, n, q.qmin >= 0 && q.qmax <= 255, sixteen);  // store_64_codes saturates to 0..255
  });
  return c;
}

void residual_rows_placed(const ResidualRequant& q, const int32_t* acc, const uint8_t* h, int M, uint8_t* out) {
  // As channel_rows_placed: choices and constants once per call.
  const int n = q.N, sh = q.shift;
  const int64_t z = q.zo, lo = q.qmin, hi = q.qmax, mh = q.mb, zr = q.zh;
  const int32_t* __restrict ma_ = q.ma.data();
  const int64_t* __restrict e = q.add_even_odd.data();
  const float* __restrict pm = q.placement.m.data();
  const float* __restrict pb = q.placement.b.data();
  const __m512 mh_f = _mm512_set1_ps(q.placement.mh), near_tie = _mm512_set1_ps(0.5f - q.placement.tie_margin);
  const __m512i qlo = _mm512_set1_epi32(static_cast<int32_t>(lo)), qhi = _mm512_set1_epi32(static_cast<int32_t>(hi));
  const __m512i exact_max = _mm512_set1_epi32((1 << 24) - 1);
  const __m512i mh_v = _mm512_set1_epi64(mh), zr_v = _mm512_set1_epi32(static_cast<int32_t>(zr));
  simd::with_lanes(q.lanes, [&](auto L) {
  simd::with_flag(q.placement.check_acc, [&](auto check_acc) {
  simd::with_flag(lo == 0 && hi == 255, [&](auto full) {
    const simd::Requant16<decltype(L)::value> rq(sh, z, lo, hi);
    parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
      const size_t off = static_cast<size_t>(i) * n;
      const int32_t* __restrict a = acc + off;
      const uint8_t* __restrict hr = h + off;
      uint8_t* __restrict o = out + off;
      const auto placed16 = [&](int at) __attribute__((always_inline)) {
        const __m512i av = _mm512_loadu_si512(a + at);
        const __m512i hc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hr + at)));
        const __m512 inner = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hc), mh_f, _mm512_loadu_ps(pb + at));
        __mmask16 open;
        __m512i code = simd::round_unless_near_tie(_mm512_fmadd_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(pm + at), inner), near_tie, &open);
        if constexpr (decltype(check_acc)::value) open |= _mm512_cmpgt_epu32_mask(_mm512_abs_epi32(av), exact_max);
        if constexpr (!decltype(full)::value) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
        if (__builtin_expect(open != 0, 0)) {  // rare: the integer form (residual_row's) for this vector
          const __m512i hz = _mm512_sub_epi32(hc, zr_v);
          const __m512i add_e = _mm512_add_epi64(_mm512_loadu_si512(e + at), _mm512_mul_epi32(hz, mh_v));
          const __m512i add_o = _mm512_add_epi64(_mm512_loadu_si512(e + at + 8), _mm512_mul_epi32(_mm512_srli_epi64(hz, 32), mh_v));
          code = _mm512_mask_blend_epi32(open, code, rq(av, _mm512_loadu_si512(ma_ + at), add_e, add_o));
        }
        return code;
      };
      const int c = simd::store_codes_clamped(o, 0, n, placed16);
      if (c < n) q.row_plain(a, hr, c, o);
    });
  });
  });
  });
}

// ---- Attention with AVX512-VNNI: Q·Kᵀ and A·V ----
#if defined(QTX_VNNI)
// r[i] (sixteen rows of sixteen dwords) becomes its transpose: r[g][i] = old r[i][g].
inline void transpose_16x16_epi32(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8)
    for (int k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_i32x4(r[i + k], r[i + 4 + k], 0x88);
      t[i + 4 + k] = _mm512_shuffle_i32x4(r[i + k], r[i + 4 + k], 0xdd);
    }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_i32x4(t[k], t[k + 8], 0xdd);
  }
}

// The packing one key and one dimension at a time (head sizes that are not a multiple of 64).
void qk_pack_plain(const uint8_t* k, int32_t zq, int32_t zk, const uint8_t* q, int Tq, int T, int G, int dh, int ld,
                   uint32_t* kp, int32_t* key_term, int32_t* query_term) {
  const int JB = (T + 15) / 16;
  for (int j = T; j < JB * 16; ++j) {  // keys past T: zero (their scores are not stored)
    key_term[static_cast<size_t>(j)] = 0;
    for (int g = 0; g < G; ++g) kp[static_cast<size_t>(j / 16) * G * 16 + static_cast<size_t>(g) * 16 + j % 16] = 0;
  }
  for (int j = 0; j < T; ++j) {
    const uint8_t* kr = k + static_cast<size_t>(j) * ld;
    uint32_t* dst = kp + static_cast<size_t>(j / 16) * G * 16 + j % 16;
    int32_t sum = 0;
    for (int g = 0; g < G; ++g) {
      uint32_t w;
      std::memcpy(&w, kr + 4 * g, 4);
      dst[static_cast<size_t>(g) * 16] = w ^ 0x80808080u;
    }
    for (int d = 0; d < dh; ++d) sum += kr[d] - 128;
    key_term[static_cast<size_t>(j)] = -zq * sum;
  }
  for (int t = 0; t < Tq; ++t) {
    int32_t sum = 0;
    for (int d = 0; d < dh; ++d) sum += q[static_cast<size_t>(t) * ld + d] - zq;
    query_term[static_cast<size_t>(t)] = (128 - zk) * sum;
  }
}

// The products on the packed keys, four queries per pass: S[t, j] for the first T keys (packed
// in kp), S's rows ldS apart.
void qk_scores_packed(const uint8_t* q, int Tq, int T, int G, int ld, const uint32_t* kp,
                      const int32_t* key_term, const int32_t* query_term, int32_t* S, int ldS) {
  const int JB = (T + 15) / 16;
  auto bcast = [&](int t, int g) {
    uint32_t w;
    std::memcpy(&w, q + static_cast<size_t>(t) * ld + 4 * g, 4);
    return _mm512_set1_epi32(static_cast<int32_t>(w));
  };
  for (int jb = 0; jb < JB; ++jb) {
    const uint32_t* kb = kp + static_cast<size_t>(jb) * G * 16;
    const __m512i kt = _mm512_loadu_si512(key_term + static_cast<size_t>(jb) * 16);
    const __mmask16 m = T - jb * 16 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (T - jb * 16)) - 1);
    int t = 0;
    for (; t + 4 <= Tq; t += 4) {
      __m512i a0 = kt, a1 = kt, a2 = kt, a3 = kt;
      for (int g = 0; g < G; ++g) {
        const __m512i kv = _mm512_loadu_si512(kb + static_cast<size_t>(g) * 16);
        a0 = _mm512_dpbusd_epi32(a0, bcast(t, g), kv);
        a1 = _mm512_dpbusd_epi32(a1, bcast(t + 1, g), kv);
        a2 = _mm512_dpbusd_epi32(a2, bcast(t + 2, g), kv);
        a3 = _mm512_dpbusd_epi32(a3, bcast(t + 3, g), kv);
      }
      const __m512i acc[4] = {a0, a1, a2, a3};
      for (int r = 0; r < 4; ++r)
        _mm512_mask_storeu_epi32(S + static_cast<size_t>(t + r) * ldS + jb * 16, m,
                                 _mm512_add_epi32(acc[r], _mm512_set1_epi32(query_term[static_cast<size_t>(t + r)])));
    }
    for (; t < Tq; ++t) {
      __m512i a = kt;
      for (int g = 0; g < G; ++g) a = _mm512_dpbusd_epi32(a, bcast(t, g), _mm512_loadu_si512(kb + static_cast<size_t>(g) * 16));
      _mm512_mask_storeu_epi32(S + static_cast<size_t>(t) * ldS + jb * 16, m,
                               _mm512_add_epi32(a, _mm512_set1_epi32(query_term[static_cast<size_t>(t)])));
    }
  }
}

// Keys j0..T−1 (a few past the last whole block of sixteen) against every query, by one vpdpbusd
// per query and 64 dimensions and a horizontal sum of sixteen queries at a time (a transpose and
// adds) — instead of a packed block of sixteen keys mostly empty (vit-fmnist: 17 = 16 + 1 keys).
void qk_leftover_keys(const uint8_t* q, int32_t zq, const uint8_t* k, int Tq, int T, int j0, int dh, int ld,
                      const int32_t* query_term, int32_t* S) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), ones = _mm512_set1_epi8(1);
  for (int j = j0; j < T; ++j) {
    const uint8_t* kr = k + static_cast<size_t>(j) * ld;
    __m512i kf[16];  // dh ≤ 1024
    __m512i ksum = _mm512_setzero_si512();
    const int nd = dh / 64;
    for (int c = 0; c < nd; ++c) {
      kf[c] = _mm512_xor_si512(_mm512_loadu_si512(kr + 64 * c), flip);
      ksum = _mm512_dpbusd_epi32(ksum, ones, kf[c]);
    }
    const int32_t key_term = -zq * _mm512_reduce_add_epi32(ksum);
    auto dot = [&](int t) {
      const uint8_t* qr = q + static_cast<size_t>(t) * ld;
      __m512i a = _mm512_setzero_si512();
      for (int c = 0; c < nd; ++c) a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(qr + 64 * c), kf[c]);
      return a;
    };
    int t = 0;
    for (; t + 16 <= Tq; t += 16) {
      __m512i a[16];
      for (int i = 0; i < 16; ++i) a[i] = dot(t + i);
      transpose_16x16_epi32(a);
      __m512i sum = _mm512_add_epi32(_mm512_loadu_si512(query_term + t), _mm512_set1_epi32(key_term));
      for (int i = 0; i < 16; ++i) sum = _mm512_add_epi32(sum, a[i]);
      alignas(64) int32_t out[16];
      _mm512_store_si512(out, sum);
      for (int i = 0; i < 16; ++i) S[static_cast<size_t>(t + i) * T + j] = out[i];
    }
    for (; t < Tq; ++t) S[static_cast<size_t>(t) * T + j] = _mm512_reduce_add_epi32(dot(t)) + key_term + query_term[static_cast<size_t>(t)];
  }
}

// With AVX512-VNNI: vpdpbusd multiplies four u8 (q) by four s8 and adds them into each int32
// lane. K' = k − 128 is s8 (k ^ 0x80), packed as [T/16][dh/4][16 keys][4 dims]; then
// Σ_d (q − zq)(k − zk) = Σ_d q·K' − zq·Σ_d K' + (128 − zk)·Σ_d (q − zq), the last two terms
// one number per key and per query. Sixteen keys per vector, four queries per pass.
void qk_scores_vnni(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  // A last block of at most four keys goes by qk_leftover_keys (dh a multiple of 64, ≥ 16 queries).
  const int leftover = dh % 64 == 0 && dh <= 1024 && Tq >= 16 && T % 16 <= 4 ? T % 16 : 0;
  const int Tp = T - leftover;  // keys in packed blocks
  const int G = dh / 4, JB = (Tp + 15) / 16;
  uint32_t* kp = static_cast<uint32_t*>(thread_scratch(0, sizeof(uint32_t) * JB * G * 16));
  int32_t* key_term = static_cast<int32_t*>(thread_scratch(1, sizeof(int32_t) * JB * 16));
  int32_t* query_term = static_cast<int32_t*>(thread_scratch(2, sizeof(int32_t) * Tq));
  if (G % 16 == 0) {
    // The packing by 16 × 16 dword transposes (sixteen keys' rows of 64 bytes in, sixteen words
    // of four dimensions for sixteen keys out), the key sums Σ_d (k − 128) by vpdpbusd with
    // ones, the query sums by byte sums: the scalar packing had been a third of this kernel.
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), ones = _mm512_set1_epi8(1);
    for (int jb = 0; jb < JB; ++jb) {
      __m512i sums = _mm512_setzero_si512();
      for (int gt = 0; gt < G / 16; ++gt) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) {
          const int j = jb * 16 + i;
          r[i] = j < Tp ? _mm512_xor_si512(_mm512_loadu_si512(k + static_cast<size_t>(j) * ld + 64 * gt), flip) : _mm512_setzero_si512();
        }
        transpose_16x16_epi32(r);
        for (int g = 0; g < 16; ++g) {
          _mm512_storeu_si512(kp + (static_cast<size_t>(jb) * G + 16 * gt + g) * 16, r[g]);
          sums = _mm512_dpbusd_epi32(sums, ones, r[g]);
        }
      }
      // Keys past Tp were zero rows, so their sums (and terms) are 0.
      _mm512_storeu_si512(key_term + static_cast<size_t>(jb) * 16, _mm512_mullo_epi32(sums, _mm512_set1_epi32(-zq)));
    }
    for (int t = 0; t < Tq; ++t) {
      const uint8_t* qr = q + static_cast<size_t>(t) * ld;
      __m512i bytes = _mm512_setzero_si512();
      for (int d = 0; d < dh; d += 64) bytes = _mm512_add_epi64(bytes, _mm512_sad_epu8(_mm512_loadu_si512(qr + d), _mm512_setzero_si512()));
      const int32_t sum = static_cast<int32_t>(_mm512_reduce_add_epi64(bytes)) - zq * dh;
      query_term[static_cast<size_t>(t)] = (128 - zk) * sum;
    }
  } else {
    qk_pack_plain(k, zq, zk, q, Tq, Tp, G, dh, ld, kp, key_term, query_term);
  }
  qk_scores_packed(q, Tq, Tp, G, ld, kp, key_term, query_term, S, T);
  if (leftover) qk_leftover_keys(q, zq, k, Tq, T, Tp, dh, ld, query_term, S);
}
// kAvQueries queries' weights (rows r[] of a plane) against the key groups in `live`, each V load
// used by all of them. NB: the number of 16-wide blocks as a constant (so the inner loop unrolls),
// or 0 to take nb. Two queries (eight accumulators): four are no faster in the microbenchmark
// (with V held in registers) and would skip fewer key groups, whose liveness is per pass.
constexpr int kAvQueries = 2;
template <int NB>
[[gnu::always_inline]] inline void av_rows_accumulate(const int* live, int nlive, const uint8_t* const (&r)[kAvQueries],
                                                      const uint32_t* vbase, int dh, int nb, __m512i (&acc)[kAvQueries][4]) {
  const int n_blocks = NB > 0 ? NB : nb;
  for (int l = 0; l < nlive; ++l) {
    const int g = live[l];
    __m512i w[kAvQueries];
    for (int u = 0; u < kAvQueries; ++u) {
      uint32_t x;
      std::memcpy(&x, r[u] + 4 * g, 4);
      w[u] = _mm512_set1_epi32(static_cast<int32_t>(x));
    }
    const uint32_t* vr = vbase + static_cast<size_t>(g) * dh;
    for (int i = 0; i < n_blocks; ++i) {
      __m512i vv = _mm512_loadu_si512(vr + 16 * i);
      // Held in a register: GCC would fold the load into every query's vpdpbusd, loading V
      // once per query instead of once per pass.
      asm("" : "+v"(vv));
      for (int u = 0; u < kAvQueries; ++u) acc[u][i] = _mm512_dpbusd_epi32(acc[u][i], w[u], vv);
    }
  }
}

// V for vpdpbusd: vp[g·dh + d] holds dimension d of keys 4g..4g+3, one byte each, as v − 128
// in s8 (dh a multiple of 16; keys past T zero). 64 dimensions at a time: byte and word unpacks
// leave 128-bit lane L of word vector k with dimensions 16L + 4k..+3, and a 4 × 4 transpose of
// the lanes puts them in order; then 16 at a time in one 128-bit lane.
void interleave_values(const uint8_t* v, int ld, int T, int G, int dh, uint32_t* vp) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int g = 0; g < G; ++g) {
    const uint8_t* rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = 4 * g + i < T ? v + static_cast<size_t>(4 * g + i) * ld : nullptr;
    uint32_t* out = vp + static_cast<size_t>(g) * dh;
    int d = 0;
    for (; d + 64 <= dh; d += 64) {
      __m512i r[4];
      for (int i = 0; i < 4; ++i) r[i] = rows[i] ? _mm512_xor_si512(_mm512_loadu_si512(rows[i] + d), flip) : _mm512_setzero_si512();
      const __m512i lo01 = _mm512_unpacklo_epi8(r[0], r[1]), lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
      const __m512i hi01 = _mm512_unpackhi_epi8(r[0], r[1]), hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
      const __m512i w0 = _mm512_unpacklo_epi16(lo01, lo23), w1 = _mm512_unpackhi_epi16(lo01, lo23);
      const __m512i w2 = _mm512_unpacklo_epi16(hi01, hi23), w3 = _mm512_unpackhi_epi16(hi01, hi23);
      const __m512i t0 = _mm512_shuffle_i32x4(w0, w1, 0x44), t1 = _mm512_shuffle_i32x4(w0, w1, 0xee);
      const __m512i t2 = _mm512_shuffle_i32x4(w2, w3, 0x44), t3 = _mm512_shuffle_i32x4(w2, w3, 0xee);
      _mm512_storeu_si512(out + d, _mm512_shuffle_i32x4(t0, t2, 0x88));
      _mm512_storeu_si512(out + d + 16, _mm512_shuffle_i32x4(t0, t2, 0xdd));
      _mm512_storeu_si512(out + d + 32, _mm512_shuffle_i32x4(t1, t3, 0x88));
      _mm512_storeu_si512(out + d + 48, _mm512_shuffle_i32x4(t1, t3, 0xdd));
    }
    for (; d < dh; d += 16) {
      __m128i r[4];
      for (int i = 0; i < 4; ++i)
        r[i] = rows[i] ? _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + d)), _mm512_castsi512_si128(flip))
                       : _mm_setzero_si128();
      const __m128i lo01 = _mm_unpacklo_epi8(r[0], r[1]), lo23 = _mm_unpacklo_epi8(r[2], r[3]);
      const __m128i hi01 = _mm_unpackhi_epi8(r[0], r[1]), hi23 = _mm_unpackhi_epi8(r[2], r[3]);
      __m128i* o = reinterpret_cast<__m128i*>(out + d);
      _mm_storeu_si128(o, _mm_unpacklo_epi16(lo01, lo23));
      _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(lo01, lo23));
      _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(hi01, hi23));
      _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(hi01, hi23));
    }
  }
}

// A·V with AVX512-VNNI. The weight 2^(kmax − code) of a key is split by its exponent e into
// byte planes: plane p holds 2^(e − 8p) where ⌊e/8⌋ = p, 0 elsewhere, so each plane is u8 and
// Σ_j 2^e·(v_j − z) = Σ_p 2^(8p)·Σ_j plane_p[j]·(v_j − 128) + (128 − z)·Σ_j 2^e — vpdpbusd
// products with V − 128 as s8, plus one term per query. Arithmetic is mod 2^32 like the
// shifting loop's, so the two agree bit for bit.
void av_log2_vnni(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  const int TJ = (T + 3) & ~3, G = TJ / 4, DB = dh / 16, planes = kmax / 8 + 1;
  uint8_t* P = static_cast<uint8_t*>(thread_scratch(0, static_cast<size_t>(planes) * Tq * TJ));  // [planes][Tq][TJ]
  uint32_t* vp = static_cast<uint32_t*>(thread_scratch(1, sizeof(uint32_t) * G * dh));  // [G][dh]: four keys' v − 128 per dimension
  int32_t* weight_sum = static_cast<int32_t*>(thread_scratch(2, sizeof(int32_t) * Tq));
  interleave_values(v, ld, T, G, dh, vp);
  const uint32_t km = static_cast<uint32_t>(kmax);
#if defined(__AVX512VBMI__)
  // Sixty-four codes at a time: each plane's byte of a code by one vpermb from a 64-entry table
  // (codes outside [0, kmax], as unsigned bytes above kmax, masked to 0), the weight sum by
  // byte sums of the planes.
  __m512i tab[3];
  for (int p = 0; p < planes; ++p) {
    alignas(64) uint8_t b[64];
    for (uint32_t c = 0; c < 64; ++c) {
      const uint32_t e = km - c;
      b[c] = static_cast<uint8_t>(c <= km && (e >> 3) == static_cast<uint32_t>(p) ? 1u << (e & 7) : 0u);
    }
    tab[p] = _mm512_load_si512(b);
  }
  const __m512i km_v = _mm512_set1_epi8(static_cast<char>(kmax));
  for (int t = 0; t < Tq; ++t) {
    const int8_t* ct = codes + static_cast<size_t>(t) * T;
    uint64_t sum = 0;
    for (int j = 0; j < TJ; j += 64) {
      const __mmask64 in_row = T - j >= 64 ? ~__mmask64{0} : (__mmask64{1} << (T - j)) - 1;
      const __mmask64 in_plane = TJ - j >= 64 ? ~__mmask64{0} : (__mmask64{1} << (TJ - j)) - 1;
      const __m512i c = _mm512_maskz_loadu_epi8(in_row, ct + j);
      const __mmask64 valid = _mm512_mask_cmple_epu8_mask(in_row, c, km_v);
      for (int p = 0; p < planes; ++p) {
        const __m512i w = _mm512_maskz_permutexvar_epi8(valid, c, tab[p]);
        _mm512_mask_storeu_epi8(P + (static_cast<size_t>(p) * Tq + t) * TJ + j, in_plane, w);
        sum += static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_sad_epu8(w, _mm512_setzero_si512()))) << (8 * p);
      }
    }
    weight_sum[t] = static_cast<int32_t>(static_cast<uint32_t>(sum) * static_cast<uint32_t>(128 - zv));
  }
#else
  for (int t = 0; t < Tq; ++t) {
    const int8_t* __restrict ct = codes + static_cast<size_t>(t) * T;
    for (int p = 0; p < planes; ++p) {
      uint8_t* __restrict row = P + (static_cast<size_t>(p) * Tq + t) * TJ;
      const uint32_t pp = static_cast<uint32_t>(p);
      for (int j = 0; j < T; ++j) {
        const uint32_t e = km - static_cast<uint32_t>(static_cast<int32_t>(ct[j]));  // > kmax when the code is out of range
        row[j] = static_cast<uint8_t>(e <= km && (e >> 3) == pp ? 1u << (e & 7) : 0u);
      }
      for (int j = T; j < TJ; ++j) row[j] = 0;
    }
    uint32_t sum = 0;
    for (int j = 0; j < T; ++j) {
      const uint32_t e = km - static_cast<uint32_t>(static_cast<int32_t>(ct[j]));
      sum += e <= km ? 1u << e : 0u;
    }
    weight_sum[t] = static_cast<int32_t>(sum * static_cast<uint32_t>(128 - zv));
  }
#endif
  // kAvQueries queries per pass share each load of V; groups of four keys whose weights are zero
  // for all of them in a plane (plane 0 holds only probabilities below
  // 2^(8−kmax)) are left out of that plane's loop. Each plane's sums are added into ctx, which
  // starts at the weight-sum term.
  int* live = static_cast<int*>(thread_scratch(3, sizeof(int) * (G + 16)));  // + one vector: the compressing stores write whole vectors
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int t0 = 0; t0 < Tq; t0 += kAvQueries) {
    const int nt = std::min(kAvQueries, Tq - t0);
    for (int d0 = 0; d0 < DB; d0 += 4) {  // four 16-wide blocks of the head per pass
      const int nb = std::min(4, DB - d0);
      for (int u = 0; u < nt; ++u)
        for (int i = 0; i < nb; ++i)
          _mm512_storeu_si512(ctx + static_cast<size_t>(t0 + u) * ldc + (d0 + i) * 16, _mm512_set1_epi32(weight_sum[t0 + u]));
      for (int p = 0; p < planes; ++p) {
        const uint8_t* r[kAvQueries];  // rows past Tq repeat the last one (their sums are not stored)
        for (int u = 0; u < kAvQueries; ++u) r[u] = P + (static_cast<size_t>(p) * Tq + t0 + std::min(u, nt - 1)) * TJ;
        int nlive = 0;
        for (int g = 0; g < G; g += 16) {  // sixteen groups a vector: their indices where any weight word is non-zero
          const __mmask16 in = G - g >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (G - g)) - 1);
          __m512i w = _mm512_maskz_loadu_epi32(in, r[0] + 4 * g);
          for (int u = 1; u < kAvQueries; ++u) w = _mm512_or_si512(w, _mm512_maskz_loadu_epi32(in, r[u] + 4 * g));
          const __mmask16 m = _mm512_test_epi32_mask(w, w);
          _mm512_storeu_si512(live + nlive, _mm512_maskz_compress_epi32(m, _mm512_add_epi32(iota, _mm512_set1_epi32(g))));
          nlive += __builtin_popcount(m);
        }
        if (nlive == 0) continue;
        __m512i acc[kAvQueries][4];
        for (auto& row : acc)
          for (auto& x : row) x = _mm512_setzero_si512();
        const uint32_t* vbase = vp + static_cast<size_t>(d0) * 16;
        if (nb == 4)
          av_rows_accumulate<4>(live, nlive, r, vbase, dh, nb, acc);
        else
          av_rows_accumulate<0>(live, nlive, r, vbase, dh, nb, acc);
        for (int u = 0; u < nt; ++u)
          for (int i = 0; i < nb; ++i) {
            int32_t* o = ctx + static_cast<size_t>(t0 + u) * ldc + (d0 + i) * 16;
            _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), _mm512_slli_epi32(acc[u][i], static_cast<unsigned>(8 * p))));
          }
      }
    }
  }
}

#if defined(__AVX512VBMI__) && defined(__AVX512VL__)
// A·V for short rows (T ≤ 32: vit-fmnist's 17 tokens), the byte planes of av_log2_vnni with its
// setup cut to what 32 keys need: buffers on the stack, a query's planes by one 32-byte vpermb
// each, its weight sum Σ 2^e by vpdpbusd against ones (every lane gets the sum, no horizontal
// add), and no skipping of empty key groups (at 17 tokens 90 % of the weights are non-zero).
constexpr int kShortKeys = 32, kShortMaxDh = 256;

inline __m512i weight_word(const uint8_t* plane_row, int g) {
  uint32_t x;
  std::memcpy(&x, plane_row + 4 * g, 4);
  return _mm512_set1_epi32(static_cast<int32_t>(x));
}

// NB 16-wide blocks of one query's output from `base` (its weight-sum term): Σ_p 2^(8p)·Σ_g
// plane_p · V over the key groups.
template <int NB>
[[gnu::always_inline]] inline void av_short_blocks(const uint8_t (*P)[kShortKeys], int planes, int G, const uint32_t* vb, int dh,
                                                   __m512i base, int32_t* o) {
  __m512i out[NB];
  for (auto& x : out) x = base;
  for (int p = 0; p < planes; ++p) {
    __m512i acc[NB];
    for (auto& x : acc) x = _mm512_setzero_si512();
    for (int g = 0; g < G; ++g) {
      const __m512i w = weight_word(P[p], g);
      const uint32_t* vr = vb + static_cast<size_t>(g) * dh;
      for (int i = 0; i < NB; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], w, _mm512_loadu_si512(vr + 16 * i));
    }
    for (int i = 0; i < NB; ++i) out[i] = _mm512_add_epi32(out[i], _mm512_slli_epi32(acc[i], static_cast<unsigned>(8 * p)));
  }
  for (int i = 0; i < NB; ++i) _mm512_storeu_si512(o + 16 * i, out[i]);
}

void av_log2_short(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  const int G = (T + 3) / 4, DB = dh / 16, planes = kmax / 8 + 1;
  alignas(64) uint32_t vp[kShortKeys / 4 * kShortMaxDh];
  interleave_values(v, ld, T, G, dh, vp);
  const uint32_t km = static_cast<uint32_t>(kmax);
  __m256i tab[3];  // plane p's byte of each code 0..31 (2^(e − 8p) where ⌊e/8⌋ = p, e = kmax − code)
  for (int p = 0; p < planes; ++p) {
    alignas(32) uint8_t b[32];
    for (uint32_t c = 0; c < 32; ++c) {
      const uint32_t e = km - c;
      b[c] = static_cast<uint8_t>(c <= km && (e >> 3) == static_cast<uint32_t>(p) ? 1u << (e & 7) : 0u);
    }
    tab[p] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
  }
  const __m256i km_v = _mm256_set1_epi8(static_cast<char>(kmax));
  const __mmask32 in_row = T >= 32 ? ~__mmask32{0} : (__mmask32{1} << T) - 1;
  const __m512i ones = _mm512_set1_epi8(1), zero_term = _mm512_set1_epi32(128 - zv);
  alignas(32) uint8_t P[3][kShortKeys];
  for (int t = 0; t < Tq; ++t) {
    // Codes outside [0, kmax] (as unsigned bytes: above kmax) weigh 0; keys past T are 0 too.
    const __m256i c = _mm256_maskz_loadu_epi8(in_row, codes + static_cast<size_t>(t) * T);
    const __mmask32 valid = _mm256_mask_cmple_epu8_mask(in_row, c, km_v);
    __m512i base = _mm512_setzero_si512();
    for (int p = 0; p < planes; ++p) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(P[p]), _mm256_maskz_permutexvar_epi8(valid, c, tab[p]));
      __m512i sum = _mm512_setzero_si512();
      for (int g = 0; g < G; ++g) sum = _mm512_dpbusd_epi32(sum, weight_word(P[p], g), ones);
      base = _mm512_add_epi32(base, _mm512_slli_epi32(sum, static_cast<unsigned>(8 * p)));
    }
    base = _mm512_mullo_epi32(base, zero_term);
    int32_t* o = ctx + static_cast<size_t>(t) * ldc;
    int d0 = 0;
    for (; d0 + 4 <= DB; d0 += 4) av_short_blocks<4>(P, planes, G, vp + 16 * d0, dh, base, o + 16 * d0);
    for (; d0 < DB; ++d0) av_short_blocks<1>(P, planes, G, vp + 16 * d0, dh, base, o + 16 * d0);
  }
}
#endif

bool qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  // Below two vectors of keys the scalar packing cost more than it saved (17 tokens were slower);
  // with the transposes (dh a multiple of 64) 17 tokens take half the time of the plain loops
  // (BM_QkScores/17). Fewer than 8 queries (a last layer's CLS row) take the plain loops.
  if (!(dh % 4 == 0 && (T >= 32 || (dh % 64 == 0 && T >= 16)) && Tq >= 8)) return false;
  qk_scores_vnni(q, zq, k, zk, Tq, T, dh, ld, S);
  return true;
}

bool av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  if (short_attention_rows() && dh % 16 == 0 && dh <= kShortMaxDh && T <= kShortKeys && kmax <= 23) {
    av_log2_short(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc);
    return true;
  }
  if (dh % 16 == 0 && T >= 32 && Tq >= 8 && kmax <= 23) {
    av_log2_vnni(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc);
    return true;
  }
  return false;
}
#endif

void residual_rows(const ResidualRequant& q, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) {
  if (placed) return residual_rows_placed(q, acc, h, M, out);
  const int n = q.N;
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const size_t off = static_cast<size_t>(i) * n;
    const int c = residual_row(q, acc + off, h + off, out + off);
    if (c < n) q.row_plain(acc + off, h + off, c, out + off);
  });
}

// ---- Elementwise functions by table (GELU, tanh) and code tables ----

// IntElementwise::rows by its polynomial placement: each value placed by a piecewise cubic on
// segment coordinates (docs/RUNTIME.md, "Float placement"); lanes near a rounding boundary noted
// per vector without a branch and given the table's code after the row.
bool elementwise_poly(const IntElementwise& E, const int32_t* acc, int M, uint8_t* out) {
  constexpr int kMaxRowVectors = 4096;  // rows of up to 65536 channels (the fix list below fits on the stack)
  if (E.to_grid.N > 16 * kMaxRowVectors) return false;
  // Every choice and constant once per call, outside the row loop.
  const int n = E.to_grid.N;
  const TableSteps table(E);
  const float* __restrict sc = E.poly.scale.data();
  const float* __restrict bi = E.poly.bias.data();
  const IntElementwise::PolyGuess& P = E.poly;
  const __m512 u_min = _mm512_set1_ps(P.u_min), u_max = _mm512_set1_ps(P.u_max);
  const __m512 near_tie = _mm512_set1_ps(0.5f - P.tie_margin);
  const __m512i exact_max = _mm512_set1_epi32((1 << 24) - 1);
  const __m512i qlo = _mm512_set1_epi32(P.qmin), qhi = _mm512_set1_epi32(P.qmax);
  // Each coefficient's 32 segments in two registers, for one vpermt2ps.
  constexpr int kD = IntElementwise::PolyGuess::kDegree;
  static_assert(IntElementwise::PolyGuess::kSegments == 32, "the loop below takes a segment's coefficients by vpermt2ps from two registers");
  __m512 c_lo[kD + 1], c_hi[kD + 1];
  for (int j = 0; j <= kD; ++j) {
    c_lo[j] = _mm512_loadu_ps(P.coef[static_cast<size_t>(j)].data());
    c_hi[j] = _mm512_loadu_ps(P.coef[static_cast<size_t>(j)].data() + 16);
  }
  simd::with_lanes(E.to_grid.lanes, [&](auto L) {
  simd::with_flag(!P.acc_below_2_24, [&](auto check_acc) {
  simd::with_flag(P.qmin == 0 && P.qmax == 255, [&](auto full) {  // store_codes_clamped clamps to exactly 0..255
    const simd::Requant16<decltype(L)::value> to_index(table.shift, table.zo, 0, table.top);
    parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
      const int32_t* __restrict a = acc + static_cast<size_t>(i) * n;
      uint8_t* __restrict o = out + static_cast<size_t>(i) * n;
      alignas(8) __mmask16 open_lanes[kMaxRowVectors];  // per vector of the row: lanes the table must give
      const auto sixteen = [&](int ch) __attribute__((always_inline)) {
        const __m512i av = _mm512_loadu_si512(a + ch);
        __m512 u = _mm512_fmadd_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(sc + ch), _mm512_loadu_ps(bi + ch));
        u = _mm512_min_ps(_mm512_max_ps(u, u_min), u_max);
        constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        const __m512i sg = _mm512_cvt_roundps_epi32(u, kNearest);
        const __m512 s = _mm512_reduce_ps(u, kNearest);  // u − round(u), exact
        __m512 y = _mm512_permutex2var_ps(c_lo[kD], sg, c_hi[kD]);
        for (int j = kD - 1; j >= 0; --j) y = _mm512_fmadd_ps(y, s, _mm512_permutex2var_ps(c_lo[j], sg, c_hi[j]));
        __mmask16 open;  // lanes near a rounding boundary are left to the table
        __m512i code = simd::round_unless_near_tie(y, near_tie, &open);
        if constexpr (decltype(check_acc)::value) open |= _mm512_cmpgt_epu32_mask(_mm512_abs_epi32(av), exact_max);
        if constexpr (!decltype(full)::value) code = _mm512_min_epi32(_mm512_max_epi32(code, qlo), qhi);
        // Noted without a branch, fixed after the row: ~3 % of vectors have such a lane, and a
        // mispredicted branch here flushed the work of every vector in flight.
        open_lanes[ch / 16] = open;
        return code;
      };
      const int c = simd::store_codes_clamped(o, 0, n, sixteen);
      // Four vectors' lanes a word; ~1 lane per vector that has any: the table's scalar steps.
      for (int w = 0; w < c / 64; ++w) {
        uint64_t m;
        std::memcpy(&m, open_lanes + 4 * w, sizeof m);
        for (; m != 0; m &= m - 1) {
          const int t = 64 * w + __builtin_ctzll(m);
          o[t] = table.code(a[t], t);
        }
      }
      for (int v = c / 64 * 4; v < c / 16; ++v)
        for (unsigned m = open_lanes[v]; m != 0; m &= m - 1) {
          const int t = 16 * v + __builtin_ctz(m);
          o[t] = table.code(a[t], t);
        }
      for (int t = c; t < n; ++t) o[t] = table.code(a[t], t);
    });
  });
  });
  });
  return true;
}

// IntElementwise::rows_by_table on one row: the grid index by simd::Requant16, the cells by one
// gather (GCC emits no gathers when tuning for AMD CPUs).
int elementwise_table_row(const IntElementwise& E, const int32_t* a, uint8_t* o) {
  const TableSteps table(E);
  const int n = E.to_grid.N;
  int c = 0;
  simd::with_lanes(E.to_grid.lanes, [&](auto L) {
    const simd::Requant16<decltype(L)::value> to_index(table.shift, table.zo, 0, table.top);
    for (; c + 16 <= n; c += 16) simd::store_lanes(o + c, table.codes16(to_index, a, c));
  });
  return c;
}

#if defined(QTX_VNNI)
// 64 codes at a time: the table as two 128-byte permutes (vpermt2b) on the codes' low 7 bits,
// picked by bit 7 (the scalar loop: one dependent load per code, ~25× slower).
size_t code_table(const uint8_t* t, const uint8_t* src, size_t begin, size_t end, uint8_t* dst) {
  const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64), t2 = _mm512_loadu_si512(t + 128),
                t3 = _mm512_loadu_si512(t + 192);
  size_t i = begin;
  for (; i + 64 <= end; i += 64) {
    const __m512i code = _mm512_loadu_si512(src + i);
    const __m512i lo = _mm512_permutex2var_epi8(t0, code, t1), hi = _mm512_permutex2var_epi8(t2, code, t3);
    _mm512_storeu_si512(dst + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(code), lo, hi));
  }
  return i;
}
#endif

}  // namespace
}  // namespace QTX_ARCH_NS

const KernelTable& QTX_ARCH_TABLE() {
  static const KernelTable table = [] {
    KernelTable k;
#if defined(QTX_VNNI)
    k.isa = Isa::Avx512Vnni;
    k.qk_scores = QTX_ARCH_NS::qk_scores;
    k.av_log2 = QTX_ARCH_NS::av_log2;
    k.code_table = QTX_ARCH_NS::code_table;
#else
    k.isa = Isa::Avx512;
#endif
    k.lis_rows = QTX_ARCH_NS::lis_rows;
    k.lis_exps = QTX_ARCH_NS::lis_exps;
    k.lis_codes = QTX_ARCH_NS::lis_codes;
    k.layernorm_output = QTX_ARCH_NS::layernorm_output;
    k.layernorm_centre = QTX_ARCH_NS::layernorm_centre;
    k.requant_codes = QTX_ARCH_NS::requant_codes;
    k.round_shift_inplace = QTX_ARCH_NS::round_shift_inplace;
    k.channel_rows = QTX_ARCH_NS::channel_rows;
    k.channel_rows32 = QTX_ARCH_NS::channel_rows32;
    k.residual_rows = QTX_ARCH_NS::residual_rows;
    k.elementwise_poly = QTX_ARCH_NS::elementwise_poly;
    k.elementwise_table_row = QTX_ARCH_NS::elementwise_table_row;
    return k;
  }();
  return table;
}

}  // namespace qtx::rt
