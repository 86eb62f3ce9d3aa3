#include "runtime/arch/x86/avx2_norm_act.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "runtime/parallel.h"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "the runtime is compiled for x86-64-v3 (CMakeLists.txt)"
#endif
#include <immintrin.h>

namespace qtx::rt::avx2 {
namespace {

// 8 int32 lanes stored as 8 bytes, saturated to 0..255 by the packs (so also the clamp of
// codes placed by float where the range is 0..255).
inline void store8(uint8_t* p, __m256i v) {
  const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
}

// 32 int32 lanes (a: channels 0–7, …, d: 24–31) as 32 bytes, saturated to 0..255: the packs work
// within 128-bit lanes, so one dword permute puts the four-byte groups back in order.
inline void store32(uint8_t* p, __m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// The low (or high) dwords of int64 lanes a (channels 0–3) and b (4–7) as 8 int32 in order.
inline __m256i low_dwords(__m256i a, __m256i b) {
  const __m256 v = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_permute4x64_epi64(_mm256_castps_si256(v), _MM_SHUFFLE(3, 1, 2, 0));
}
inline __m256i high_dwords(__m256i a, __m256i b) {
  const __m256 v = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), _MM_SHUFFLE(3, 1, 3, 1));
  return _mm256_permute4x64_epi64(_mm256_castps_si256(v), _MM_SHUFFLE(3, 1, 2, 0));
}

// ⌊v / 2^s⌋ of int64 lanes (AVX2 has no 64-bit arithmetic shift): the logical shift of v, or of
// ~v for negative lanes, inverted back.
inline __m256i sra64(__m256i v, __m128i s) {
  const __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
  return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(v, neg), s), neg);
}
inline __m256i clamp64(__m256i v, __m256i lo, __m256i hi) {
  v = _mm256_blendv_epi8(v, lo, _mm256_cmpgt_epi64(lo, v));
  return _mm256_blendv_epi8(v, hi, _mm256_cmpgt_epi64(v, hi));
}
// a + b wrapping as the vector lanes do (only int32's extremes in long rows get past int64).
inline int64_t wrap_add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
inline int64_t hsum64(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return wrap_add(_mm_cvtsi128_si64(s), _mm_extract_epi64(s, 1));
}

// y's nearest integer as int32 lanes, and the lanes whose y lies within the margin of k + ½
// (|y − round(y)| > near_tie = ½ − margin): y − round(y) is exact in float32.
inline __m256i round_unless_near_tie(__m256 y, __m256 near_tie, __m256* open) {
  const __m256 r = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(y, r));
  *open = _mm256_cmp_ps(frac, near_tie, _CMP_GT_OQ);
  return _mm256_cvttps_epi32(r);  // r is integral: exact
}

// IntLayerNorm's output step on 8 channels, the integer formula:
// t = ⌊(d·R + 2^31) / 2^32⌋, code = clamp(⌊(t·g_c + b_c) / 2^s⌋ + zo). d·R as d·R_lo + (d·R_hi)·2^31
// with R_lo < 2^31 and R_hi = R / 2^31 < 2^26 (two 32×32 → 64 multiplies, vpmuldq; the sum is
// exact in int64 as |d·R| ≤ √C·2^56); t (|t| < 2^31) is the high half of that sum.
// kHigh (s ≥ 32, the clamp bounds minus zo in int32): ⌊q / 2^s⌋ = ⌊⌊q / 2^32⌋ / 2^(s−32)⌋ from q's
// high halves by one 32-bit shift; else a 64-bit shift and clamp.
struct LnOutput {
  const int64_t* g;
  const int64_t* b;
  __m256i n_v, sum_v, r_lo, r_hi, r31, lo64, hi64, z64, lo32, hi32, z32;
  __m128i s64, s32;

  LnOutput(const IntLayerNorm& n, int64_t sum, int64_t R)
      : g(n.gain.data()),
        b(n.bias.data()),
        n_v(_mm256_set1_epi32(n.C)),
        sum_v(_mm256_set1_epi32(static_cast<int32_t>(sum))),
        r_lo(_mm256_set1_epi64x(R & 0x7fffffff)),
        r_hi(_mm256_set1_epi64x(R >> 31)),
        r31(_mm256_set1_epi64x(int64_t{1} << 31)),
        lo64(_mm256_set1_epi64x(n.qmin)),
        hi64(_mm256_set1_epi64x(n.qmax)),
        z64(_mm256_set1_epi64x(n.zo)),
        lo32(_mm256_set1_epi32(static_cast<int32_t>(int64_t{n.qmin} - n.zo))),
        hi32(_mm256_set1_epi32(static_cast<int32_t>(int64_t{n.qmax} - n.zo))),
        z32(_mm256_set1_epi32(n.zo)),
        s64(_mm_cvtsi32_si128(n.shift + 24)),
        s32(_mm_cvtsi32_si128(n.shift + 24 - 32)) {}

  __m256i d8(const int32_t* x) const {
    return _mm256_sub_epi32(_mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), n_v), sum_v);
  }
  __m256i q4(__m128i d, int c) const {
    const __m256i d4 = _mm256_cvtepi32_epi64(d);
    __m256i p = _mm256_add_epi64(_mm256_mul_epi32(d4, r_lo), r31);
    p = _mm256_add_epi64(p, _mm256_slli_epi64(_mm256_mul_epi32(d4, r_hi), 31));
    const __m256i t = _mm256_srli_epi64(p, 32);  // vpmuldq reads the low half: t
    return _mm256_add_epi64(_mm256_mul_epi32(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + c))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c)));
  }
  template <bool kHigh>
  __m256i integer8(__m256i d, int c) const {
    const __m256i q0 = q4(_mm256_castsi256_si128(d), c), q1 = q4(_mm256_extracti128_si256(d, 1), c + 4);
    if constexpr (kHigh) {
      const __m256i v = _mm256_sra_epi32(high_dwords(q0, q1), s32);
      return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, lo32), hi32), z32);
    } else {
      const auto fin = [&](__m256i q) { return clamp64(_mm256_add_epi64(sra64(q, s64), z64), lo64, hi64); };
      return low_dwords(fin(q0), fin(q1));
    }
  }
};

template <bool kHigh, bool kPlaced>
void layernorm_output_loop(const IntLayerNorm& n, const int32_t* x, int64_t sum, int64_t R, uint8_t* out) {
  const int C = n.C;
  const LnOutput L(n, sum, R);
  const float* __restrict gf = n.gain_f.data();
  const float* __restrict bf = n.bias_f.data();
  const __m256 R_f = _mm256_set1_ps(static_cast<float>(R)), near_tie = _mm256_set1_ps(0.5f - n.tie_margin);
  const __m256i qlo = _mm256_set1_epi32(n.qmin), qhi = _mm256_set1_epi32(n.qmax);
  const bool full = n.qmin == 0 && n.qmax == 255;  // the packs' saturation is the clamp
  const auto eight = [&](int c) __attribute__((always_inline)) {
    const __m256i d = L.d8(x + c);
    if constexpr (!kPlaced) {
      return L.integer8<kHigh>(d, c);
    } else {  // as the AVX-512 form: a vector with a lane near a boundary takes the integer steps there
      const __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(R_f, _mm256_loadu_ps(gf + c)), _mm256_loadu_ps(bf + c));
      __m256 open;
      __m256i code = round_unless_near_tie(y, near_tie, &open);
      if (!full) code = _mm256_min_epi32(_mm256_max_epi32(code, qlo), qhi);
      if (__builtin_expect(_mm256_movemask_ps(open) != 0, 0))
        code = _mm256_blendv_epi8(code, L.integer8<kHigh>(d, c), _mm256_castps_si256(open));
      return code;
    }
  };
  int c = 0;
  for (; c + 32 <= C; c += 32) store32(out + c, eight(c), eight(c + 8), eight(c + 16), eight(c + 24));
  for (; c + 8 <= C; c += 8) store8(out + c, eight(c));
  // The plain loop's steps for the last channels.
  const int64_t nn = C, zout = n.zo, lo = n.qmin, hi = n.qmax;
  const int s = n.shift + 24;
  for (; c < C; ++c) {
    const int64_t d = nn * x[c] - sum;
    const int64_t t = (d * R + (int64_t{1} << 31)) >> 32;
    const int64_t qo = ((t * n.gain[static_cast<size_t>(c)] + n.bias[static_cast<size_t>(c)]) >> s) + zout;
    out[c] = static_cast<uint8_t>(qo < lo ? lo : (qo > hi ? hi : qo));
  }
}

// IntElementwise's table steps (TableSteps in int_blocks.cpp): the accumulator's fine-grid index
// by the ChannelRequant formula, then its cell's code.
inline uint8_t table_code(const IntElementwise& e, int32_t acc, int c) {
  const ChannelRequant& r = e.to_grid;
  const int64_t v = ((static_cast<int64_t>(acc) * r.m[static_cast<size_t>(c)] + r.bias[static_cast<size_t>(c)] +
                      (int64_t{1} << (r.shift - 1))) >> r.shift) + r.zo;
  return e.code_at(static_cast<int32_t>(v < 0 ? 0 : (v > r.qmax ? r.qmax : v)));
}

// The same on 8 channels: the index in int64 lanes (acc · m_c + bias_c + half, shifted, clamped
// to the grid), the cell by one 8-lane gather. kHigh: shift ≥ 32 (the high halves, one 32-bit
// shift, the clamp in int32); else a 64-bit shift and clamp (the usual case: the fine grid's
// shift is below 32).
struct TableSteps8 {
  const int32_t* m;
  const int64_t* bias;
  const int* cell;
  __m256i half, zo64, top64, zero, lo32, hi32, zo32, cell_mask, low16, low8;
  __m128i sh64, sh32, cb;

  explicit TableSteps8(const IntElementwise& e)
      : m(e.to_grid.m.data()),
        bias(e.to_grid.bias.data()),
        cell(reinterpret_cast<const int*>(e.packed.data())),
        half(_mm256_set1_epi64x(int64_t{1} << (e.to_grid.shift - 1))),
        zo64(_mm256_set1_epi64x(e.to_grid.zo)),
        top64(_mm256_set1_epi64x(e.to_grid.qmax)),
        zero(_mm256_setzero_si256()),
        lo32(_mm256_set1_epi32(-e.to_grid.zo)),
        hi32(_mm256_set1_epi32(e.to_grid.qmax - e.to_grid.zo)),
        zo32(_mm256_set1_epi32(e.to_grid.zo)),
        cell_mask(_mm256_set1_epi32((1 << e.cell_bits) - 1)),
        low16(_mm256_set1_epi32(0xffff)),
        low8(_mm256_set1_epi32(0xff)),
        sh64(_mm_cvtsi32_si128(e.to_grid.shift)),
        sh32(_mm_cvtsi32_si128(e.to_grid.shift - 32)),
        cb(_mm_cvtsi32_si128(e.cell_bits)) {}
  // The clamp bounds minus zo in int32 (the kHigh form's condition, with shift ≥ 32).
  static bool high_form(const IntElementwise& e) {
    return e.to_grid.shift >= 32 && int64_t{e.to_grid.qmax} - e.to_grid.zo <= INT32_MAX && -int64_t{e.to_grid.zo} >= INT32_MIN;
  }

  __m256i p4(__m128i a, __m128i mm, int c) const {
    return _mm256_add_epi64(_mm256_mul_epi32(_mm256_cvtepi32_epi64(a), _mm256_cvtepi32_epi64(mm)),
                            _mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + c)), half));
  }
  template <bool kHigh>
  __m256i codes8(const int32_t* a, int c) const {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
    const __m256i mv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + c));
    const __m256i p0 = p4(_mm256_castsi256_si128(av), _mm256_castsi256_si128(mv), c);
    const __m256i p1 = p4(_mm256_extracti128_si256(av, 1), _mm256_extracti128_si256(mv, 1), c + 4);
    __m256i g;
    if constexpr (kHigh) {
      g = _mm256_sra_epi32(high_dwords(p0, p1), sh32);
      g = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(g, lo32), hi32), zo32);
    } else {
      const auto fin = [&](__m256i p) { return clamp64(_mm256_add_epi64(sra64(p, sh64), zo64), zero, top64); };
      g = low_dwords(fin(p0), fin(p1));
    }
    const __m256i cv = _mm256_i32gather_epi32(cell, _mm256_srl_epi32(g, cb), 4);
    const __m256i before = _mm256_cmpgt_epi32(_mm256_and_si256(cv, low16), _mm256_and_si256(g, cell_mask));
    return _mm256_blendv_epi8(_mm256_srli_epi32(cv, 24), _mm256_and_si256(_mm256_srli_epi32(cv, 16), low8), before);
  }
};

template <bool kHigh>
void table_rows(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out) {
  const int n = e.to_grid.N;
  const TableSteps8 T(e);
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const int32_t* a = acc + static_cast<size_t>(i) * n;
    uint8_t* o = out + static_cast<size_t>(i) * n;
    int c = 0;
    for (; c + 32 <= n; c += 32)
      store32(o + c, T.codes8<kHigh>(a, c), T.codes8<kHigh>(a, c + 8), T.codes8<kHigh>(a, c + 16), T.codes8<kHigh>(a, c + 24));
    for (; c + 8 <= n; c += 8) store8(o + c, T.codes8<kHigh>(a, c));
    for (; c < n; ++c) o[c] = table_code(e, a[c], c);
  });
}

constexpr int kMaxRowVectors = 8192;  // rows of up to 65536 channels: the near-tie masks fit on the stack

// IntElementwise::PolyGuess on 8 lanes: u = acc · scale_c + bias_c clamped, its segment round(u)
// and s = u − round(u), the segment's four coefficients each from its 32 by four vpermps (the
// segment's low three bits) and a tree of blends (bits 3 and 4), Horner's fma in s, then the
// code where y is not near a rounding boundary — the same float operations as the AVX-512 loop.
template <bool kCheckAcc, bool kFull>
void poly_rows(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out) {
  const int n = e.to_grid.N;
  const IntElementwise::PolyGuess& P = e.poly;
  constexpr int kD = IntElementwise::PolyGuess::kDegree;
  static_assert(IntElementwise::PolyGuess::kSegments == 32, "four registers of 8 segments per coefficient");
  __m256 coef[kD + 1][4];
  for (int j = 0; j <= kD; ++j)
    for (int k = 0; k < 4; ++k) coef[j][k] = _mm256_loadu_ps(P.coef[static_cast<size_t>(j)].data() + 8 * k);
  const float* sc = P.scale.data();
  const float* bi = P.bias.data();
  const __m256 u_min = _mm256_set1_ps(P.u_min), u_max = _mm256_set1_ps(P.u_max), near_tie = _mm256_set1_ps(0.5f - P.tie_margin);
  const __m256i exact_max = _mm256_set1_epi32((1 << 24) - 1), qlo = _mm256_set1_epi32(P.qmin), qhi = _mm256_set1_epi32(P.qmax);
  parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
    const int32_t* a = acc + static_cast<size_t>(i) * n;
    uint8_t* o = out + static_cast<size_t>(i) * n;
    alignas(8) uint8_t open_lanes[kMaxRowVectors];  // per vector of the row: lanes the table must give
    const auto eight = [&](int c) __attribute__((always_inline)) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c));
      __m256 u = _mm256_fmadd_ps(_mm256_cvtepi32_ps(av), _mm256_loadu_ps(sc + c), _mm256_loadu_ps(bi + c));
      u = _mm256_min_ps(_mm256_max_ps(u, u_min), u_max);
      const __m256 r = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i sg = _mm256_cvttps_epi32(r);
      const __m256 s = _mm256_sub_ps(u, r);  // exact
      const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(sg, 28)), bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(sg, 27));
      const auto pick = [&](int j) __attribute__((always_inline)) {
        const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(coef[j][0], sg), _mm256_permutevar8x32_ps(coef[j][1], sg), bit3);
        const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(coef[j][2], sg), _mm256_permutevar8x32_ps(coef[j][3], sg), bit3);
        return _mm256_blendv_ps(lo, hi, bit4);
      };
      __m256 y = pick(kD);
      for (int j = kD - 1; j >= 0; --j) y = _mm256_fmadd_ps(y, s, pick(j));
      __m256 open;
      __m256i code = round_unless_near_tie(y, near_tie, &open);
      int mask = _mm256_movemask_ps(open);
      if constexpr (kCheckAcc) {  // |acc| ≥ 2^24 (not exact in float32; |INT32_MIN| as unsigned)
        const __m256i ab = _mm256_abs_epi32(av);
        mask |= ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_min_epu32(ab, exact_max), ab))) & 0xff;
      }
      if constexpr (!kFull) code = _mm256_min_epi32(_mm256_max_epi32(code, qlo), qhi);
      // Noted without a branch and fixed after the row, as the AVX-512 loop does.
      open_lanes[c / 8] = static_cast<uint8_t>(mask);
      return code;
    };
    int c = 0;
    for (; c + 32 <= n; c += 32) store32(o + c, eight(c), eight(c + 8), eight(c + 16), eight(c + 24));
    for (; c + 8 <= n; c += 8) store8(o + c, eight(c));
    // Eight vectors' masks a word; ~1 lane in the vectors that have any: the table's scalar steps.
    const int nv = c / 8;
    int v = 0;
    for (; v + 8 <= nv; v += 8) {
      uint64_t w;
      std::memcpy(&w, open_lanes + v, sizeof w);
      for (; w != 0; w &= w - 1) {
        const int t = 8 * v + __builtin_ctzll(w);
        o[t] = table_code(e, a[t], t);
      }
    }
    for (; v < nv; ++v)
      for (unsigned w = open_lanes[v]; w != 0; w &= w - 1) {
        const int t = 8 * v + __builtin_ctz(w);
        o[t] = table_code(e, a[t], t);
      }
    for (; c < n; ++c) o[c] = table_code(e, a[c], c);
  });
}

}  // namespace

void layernorm_row_sums(const IntLayerNorm& n, const int32_t* x, int64_t* sum_out, int64_t* sq_out) {
  const int C = n.C;
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, q0 = s0, q1 = s0;
  int c = 0;
  for (; c + 8 <= C; c += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + c));
    s0 = _mm256_add_epi64(s0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
    s1 = _mm256_add_epi64(s1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    const __m256i odd = _mm256_srli_epi64(v, 32);
    q0 = _mm256_add_epi64(q0, _mm256_mul_epi32(v, v));  // even lanes' squares
    q1 = _mm256_add_epi64(q1, _mm256_mul_epi32(odd, odd));
  }
  int64_t sum = hsum64(_mm256_add_epi64(s0, s1)), sq = hsum64(_mm256_add_epi64(q0, q1));
  for (; c < C; ++c) {
    sum = wrap_add(sum, x[c]);
    sq = wrap_add(sq, static_cast<int64_t>(x[c]) * x[c]);
  }
  *sum_out = sum;
  *sq_out = sq;
}

void layernorm_row_output(const IntLayerNorm& n, const int32_t* x, int64_t sum, int64_t R, uint8_t* out) {
  if (n.qmin < 0 || n.qmax > 255) return n.row_output(x, sum, R, out, false);  // codes wrap as uint8: the plain loop
  const int s = n.shift + 24;
  const bool high = s >= 32 && int64_t{n.qmin} - n.zo >= INT32_MIN && int64_t{n.qmax} - n.zo <= INT32_MAX;
  if (high) {
    if (n.placed) layernorm_output_loop<true, true>(n, x, sum, R, out);
    else layernorm_output_loop<true, false>(n, x, sum, R, out);
  } else {
    if (n.placed) layernorm_output_loop<false, true>(n, x, sum, R, out);
    else layernorm_output_loop<false, false>(n, x, sum, R, out);
  }
}

void layernorm_row_centred(const IntLayerNorm& n, const int32_t* x, uint8_t* out) {
  int64_t sum = 0, sq = 0;
  layernorm_row_sums(n, x, &sum, &sq);
  layernorm_row_output(n, x, sum, n.row_factor(sum, sq), out);
}

void layernorm_site_centre_row(const IntLayerNormSite& s, const uint8_t* h_row, int32_t* x, int64_t* sum_out, int64_t* sq_out) {
  const int C = s.C;
  const int* tab = s.centred.data();
  const int32_t* base = s.table_base.data();  // α_c · 256
  // Σx in int32 lanes where no lane can overflow: |x| ≤ max(|z|, |255 − z|) · 2^K (the table's
  // codes lie in 0..255), C/8 + 1 of them per lane; else in int64 lanes.
  const int64_t x_max = std::max<int64_t>(std::abs(int64_t{s.z}), std::abs(255 - int64_t{s.z})) << std::min(s.K, 31);
  const bool sum32 = s.K <= 16 && (int64_t{C} / 8 + 1) * x_max < (int64_t{1} << 31);
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, q0 = s0, q1 = s0;
  int c = 0;
  const auto eight = [&](int at) __attribute__((always_inline)) {
    const __m256i idx = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + at)),
                                         _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h_row + at))));
    const __m256i v = _mm256_i32gather_epi32(tab, idx, 4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + at), v);
    const __m256i odd = _mm256_srli_epi64(v, 32);
    q0 = _mm256_add_epi64(q0, _mm256_mul_epi32(v, v));
    q1 = _mm256_add_epi64(q1, _mm256_mul_epi32(odd, odd));
    return v;
  };
  if (sum32) {
    for (; c + 8 <= C; c += 8) s0 = _mm256_add_epi32(s0, eight(c));
    s0 = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(s0)), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s0, 1)));
  } else {
    for (; c + 8 <= C; c += 8) {
      const __m256i v = eight(c);
      s0 = _mm256_add_epi64(s0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
      s1 = _mm256_add_epi64(s1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    }
  }
  int64_t sum = hsum64(_mm256_add_epi64(s0, s1)), sq = hsum64(_mm256_add_epi64(q0, q1));
  for (; c < C; ++c) {
    x[c] = tab[base[c] + h_row[c]];
    sum = wrap_add(sum, x[c]);
    sq = wrap_add(sq, static_cast<int64_t>(x[c]) * x[c]);
  }
  *sum_out = sum;
  *sq_out = sq;
}

void elementwise_rows(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out) {
  const IntElementwise::PolyGuess& P = e.poly;
  if (!P.on || e.to_grid.N > 8 * kMaxRowVectors) return elementwise_rows_by_table(e, acc, M, out);
  const bool check = !P.acc_below_2_24, full = P.qmin == 0 && P.qmax == 255;
  if (check) {
    if (full) poly_rows<true, true>(e, acc, M, out);
    else poly_rows<true, false>(e, acc, M, out);
  } else {
    if (full) poly_rows<false, true>(e, acc, M, out);
    else poly_rows<false, false>(e, acc, M, out);
  }
}

void elementwise_rows_by_table(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out) {
  if (TableSteps8::high_form(e)) table_rows<true>(e, acc, M, out);
  else table_rows<false>(e, acc, M, out);
}

size_t apply_table_range(const uint8_t* tab, const uint8_t* in, size_t begin, size_t end, uint8_t* out) {
  // Sub-table k (entries 16k..16k+15) in both 128-bit lanes, for vpshufb.
  __m256i sub[16];
  for (int k = 0; k < 16; ++k) sub[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tab + 16 * k)));
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  size_t i = begin;
  for (; i + 32 <= end; i += 32) {
    const __m256i code = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m256i idx = _mm256_and_si256(code, low4);  // bit 7 clear: vpshufb never zeroes
    // vpblendvb reads each byte's top bit: code << 3, << 2, << 1 (16-bit shifts; only each
    // byte's own top bit matters) put bits 4, 5, 6 there, and bit 7 is there already.
    const __m256i b4 = _mm256_slli_epi16(code, 3), b5 = _mm256_slli_epi16(code, 2), b6 = _mm256_slli_epi16(code, 1);
    __m256i l2[4];
    for (int q = 0; q < 4; ++q) {
      const __m256i a0 = _mm256_blendv_epi8(_mm256_shuffle_epi8(sub[4 * q], idx), _mm256_shuffle_epi8(sub[4 * q + 1], idx), b4);
      const __m256i a1 = _mm256_blendv_epi8(_mm256_shuffle_epi8(sub[4 * q + 2], idx), _mm256_shuffle_epi8(sub[4 * q + 3], idx), b4);
      l2[q] = _mm256_blendv_epi8(a0, a1, b5);
    }
    const __m256i r = _mm256_blendv_epi8(_mm256_blendv_epi8(l2[0], l2[1], b6), _mm256_blendv_epi8(l2[2], l2[3], b6), code);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), r);  // each code read before its byte is written
  }
  return i;
}

void apply_table(const std::vector<uint8_t>& t, const uint8_t* in, size_t n, uint8_t* out) {
  if (t.empty()) {
    if (in != out) std::copy(in, in + n, out);
    return;
  }
  if (t.size() != 256) throw std::logic_error("apply_table: a code table has 256 entries");
  const uint8_t* tab = t.data();
  parallel_range(n, [=](size_t begin, size_t end) {
    const size_t i = apply_table_range(tab, in, begin, end, out);
    apply_table_plain(tab, in + i, end - i, out + i);
  });
}

}  // namespace qtx::rt::avx2
