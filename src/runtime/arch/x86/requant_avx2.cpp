#include "runtime/arch/x86/requant_avx2.h"

#include <climits>
#include <type_traits>

#include "runtime/parallel.h"
#include "runtime/simd.h"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "the runtime is compiled for x86-64-v3 (CMakeLists.txt)"
#endif
#include <immintrin.h>

namespace qtx::rt::avx2 {
namespace {

// The vector forms' common preconditions: a shift of 1..62 (make() guarantees it), qmin ≤ qmax
// (the plain clamp tests the low bound first; min/max would not agree for qmin > qmax) and both
// bounds minus the zero point within int32 (the clamp is done in int32 lanes; make() checks).
[[maybe_unused]] bool bounds_ok(int shift, int32_t zo, int32_t qmin, int32_t qmax) {
  return shift >= 1 && shift <= 62 && qmin <= qmax && static_cast<int64_t>(qmin) - zo >= INT32_MIN &&
         static_cast<int64_t>(qmax) - zo <= INT32_MAX;
}

}  // namespace


namespace {
using simd::Lanes;

inline __m256i load8(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// The int64 addends of 8 channels as the even channels (0, 2, 4, 6) and the odd ones (1, 3, 5,
// 7), the lanes _mm256_mul_epi32 multiplies (it reads the low int32 of each 64-bit lane).
struct Adds {
  __m256i even, odd;
};

// Where 8 channels' addends lie in add_even_odd. A full group of 16 channels holds its 8 even
// then its 8 odd channels (AVX-512's layout), so channels g + 8h .. g + 8h + 7 (h = 0, 1) find
// their even addends at g + 4h and the odd ones 8 further: two plain loads. Tail channels are in
// order and take two unpacks and two permutes. Loaded only when asked (the placement needs
// them only for the rare lanes near a tie).
struct AddsAt {
  const int64_t* p;
  bool ordered;
  __attribute__((always_inline)) Adds load() const {
    if (!ordered) return {load8(p), load8(p + 8)};
    const __m256i lo = load8(p), hi = load8(p + 4);  // channels 0..3, 4..7
    return {_mm256_permute4x64_epi64(_mm256_unpacklo_epi64(lo, hi), 0xD8),   // 0 4 2 6 → 0 2 4 6
            _mm256_permute4x64_epi64(_mm256_unpackhi_epi64(lo, hi), 0xD8)};  // 1 5 3 7 → 1 3 5 7
  }
};

// clamp(((a·m + add) >> shift) + zero, lo, hi) on 8 int32 lanes (simd::Requant16's three forms
// with AVX2's instructions): the products by two vpmuldq, then
// - HighHalves (shift ≥ 32): the high halves of the int64 sums, gathered by one blend, shifted
//   arithmetically by shift − 32;
// - Fitting (every sum within 2^(31+shift)): even lanes shifted right by shift, odd lanes left by
//   32 − shift, whose low/high halves are ⌊x / 2^shift⌋ (bits shift..shift+31 of x either way);
// - Clamped64 (neither): AVX2 has no int64 arithmetic shift or min/max, so the sums are first
//   clamped in int64 (vpcmpgtq, blends) to [lo'·2^s, (hi'+1)·2^s − 1] (lo', hi': the bounds minus
//   the zero point), where ⌊x / 2^s⌋ is already clamped to [lo', hi'] and fits int32, then shifted
//   as Fitting.
template <Lanes L>
class Requant8 {
 public:
  Requant8(int shift, int64_t zero, int64_t lo, int64_t hi)
      : lo32_(_mm256_set1_epi32(static_cast<int32_t>(lo - zero))),
        hi32_(_mm256_set1_epi32(static_cast<int32_t>(hi - zero))),
        zero_(_mm256_set1_epi32(static_cast<int32_t>(zero))),
        lo64_(_mm256_set1_epi64x(L == Lanes::Clamped64 ? (lo - zero) * (int64_t{1} << shift) : 0)),
        hi64_(_mm256_set1_epi64x(L == Lanes::Clamped64 ? (hi - zero + 1) * (int64_t{1} << shift) - 1 : 0)),
        right_(_mm_cvtsi32_si128(L == Lanes::HighHalves ? shift - 32 : shift)),
        left_(_mm_cvtsi32_si128(32 - shift)) {}

  __attribute__((always_inline)) __m256i operator()(__m256i a, __m256i m, const Adds& add) const {
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a, m), add.even);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(m, 32)), add.odd);
    if constexpr (L == Lanes::HighHalves) {
      const __m256i v = _mm256_sra_epi32(_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA), right_);
      return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, lo32_), hi32_), zero_);
    } else {
      if constexpr (L == Lanes::Clamped64) {
        pe = clamp64(pe);
        po = clamp64(po);
      }
      const __m256i v = _mm256_blend_epi32(_mm256_srl_epi64(pe, right_), _mm256_sll_epi64(po, left_), 0xAA);
      if constexpr (L == Lanes::Clamped64) return _mm256_add_epi32(v, zero_);
      return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, lo32_), hi32_), zero_);
    }
  }

 private:
  __m256i clamp64(__m256i x) const {
    x = _mm256_blendv_epi8(x, hi64_, _mm256_cmpgt_epi64(x, hi64_));
    return _mm256_blendv_epi8(x, lo64_, _mm256_cmpgt_epi64(lo64_, x));
  }
  __m256i lo32_, hi32_, zero_, lo64_, hi64_;
  __m128i right_, left_;
};

// The form for a struct: HighHalves whenever shift ≥ 32 (exact for any sum); below, Fitting only
// where make() found every sum in range, else Clamped64 (exact for any sum).
Lanes form_for(int shift, Lanes lanes) {
  if (shift >= 32) return Lanes::HighHalves;
  return lanes == Lanes::Fitting ? Lanes::Fitting : Lanes::Clamped64;
}

// One instantiation of a loop per form / per flag, chosen once per call.
template <typename F>
void with_form(Lanes form, F&& f) {
  switch (form) {
    case Lanes::HighHalves: f(std::integral_constant<Lanes, Lanes::HighHalves>{}); break;
    case Lanes::Fitting: f(std::integral_constant<Lanes, Lanes::Fitting>{}); break;
    case Lanes::Clamped64: f(std::integral_constant<Lanes, Lanes::Clamped64>{}); break;
  }
}
template <typename F>
void with_flag(bool on, F&& f) {
  if (on)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// 8, 16 or 32 int32 lanes holding values 0..255 stored as bytes in order. The saturating packs
// work within 128-bit halves, so 32 lanes come out as dwords a0-3 b0-3 c0-3 d0-3 a4-7 … and one
// dword permute restores the order.
inline __m128i words8(__m256i v) { return _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); }
inline void store8(uint8_t* p, __m256i a) { _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(words8(a), words8(a))); }
inline void store16(uint8_t* p, __m256i a, __m256i b) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(words8(a), words8(b)));
}
inline void store32(uint8_t* p, __m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// One row from channel 0 on: eight(at, AddsAt) gives the 8 int32 lanes of channels at..at+7
// (clamped to the output's bounds); the full groups of 16 first (32 channels per store), then
// one group of 8 among the tail channels. Returns the first channel not written (the caller's
// scalar tail). Trunc: codes outside 0..255 (qmin < 0 or qmax > 255) are stored as the plain
// loop's static_cast<uint8_t> does, by their low byte, which the packs would saturate instead.
template <bool Trunc, typename Eight>
__attribute__((always_inline)) inline int row_bytes(uint8_t* o, const int64_t* e, int n, const Eight& eight) {
  const int n16 = n & ~15;
  const __m256i low_byte = _mm256_set1_epi32(0xFF);
  const auto v = [&](int at, const AddsAt& ad) __attribute__((always_inline)) {
    const __m256i x = eight(at, ad);
    if constexpr (Trunc) return _mm256_and_si256(x, low_byte);
    return x;
  };
  int c = 0;
  for (; c + 32 <= n16; c += 32)
    store32(o + c, v(c, {e + c, false}), v(c + 8, {e + c + 4, false}), v(c + 16, {e + c + 16, false}), v(c + 24, {e + c + 20, false}));
  if (c < n16) {
    store16(o + c, v(c, {e + c, false}), v(c + 8, {e + c + 4, false}));
    c += 16;
  }
  if (c + 8 <= n) {
    store8(o + c, v(c, {e + c, true}));
    c += 8;
  }
  return c;
}

// row_bytes for the float placement (codes within 0..255): place(at, &open) gives 8 channels'
// placed codes and the lanes near a tie (or with a large accumulator), which take exact(at,
// AddsAt) (the integer formula) instead, a branch per 8 channels (a lane is open a few times in
// a million). One branch per 32 channels was ~12 % slower: four vectors' codes held across it
// spill AVX2's 16 registers.
template <typename Place, typename Exact>
__attribute__((always_inline)) inline int row_bytes_placed(uint8_t* o, const int64_t* e, int n, const Place& place, const Exact& exact) {
  const auto eight = [&](int at, const AddsAt& ad) __attribute__((always_inline)) {
    __m256 open;
    const __m256i v = place(at, &open);
    if (__builtin_expect(_mm256_movemask_ps(open) != 0, 0)) return _mm256_blendv_epi8(v, exact(at, ad), _mm256_castps_si256(open));
    return v;
  };
  return row_bytes<false>(o, e, n, eight);
}

template <typename Eight>
__attribute__((always_inline)) inline int row_ints(int32_t* o, const int64_t* e, int n, const Eight& eight) {
  const int n16 = n & ~15;
  int c = 0;
  for (; c < n16; c += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), eight(c, {e + c, false}));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c + 8), eight(c + 8, {e + c + 4, false}));
  }
  if (c + 8 <= n) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), eight(c, {e + c, true}));
    c += 8;
  }
  return c;
}

// The float placement's test, as simd::round_unless_near_tie with AVX2's instructions: y rounded
// to the nearest integer (in float), and the lanes where |y − round(y)| > near_tie (the
// difference is exact in float32). The code is round(y) clamped in float to [lo, hi] before the
// conversion, so that a y beyond int32 (a large multiplier) still clamps to the right end.
struct Placer {
  __m256 near_tie, sign, lo, hi;
  __m256i big, neg_big;  // ±(2^24 − 1): accumulators beyond are not exact in float32
  Placer(float tie_margin, int32_t qmin, int32_t qmax)
      : near_tie(_mm256_set1_ps(0.5f - tie_margin)),
        sign(_mm256_set1_ps(-0.0f)),
        lo(_mm256_set1_ps(static_cast<float>(qmin))),
        hi(_mm256_set1_ps(static_cast<float>(qmax))),
        big(_mm256_set1_epi32((1 << 24) - 1)),
        neg_big(_mm256_set1_epi32(-((1 << 24) - 1))) {}
  template <bool CheckAcc>
  __attribute__((always_inline)) __m256i code(__m256 y, __m256i acc, __m256* open) const {
    const __m256 r = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    *open = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(y, r)), near_tie, _CMP_GT_OQ);
    if constexpr (CheckAcc)
      *open = _mm256_or_ps(*open, _mm256_castsi256_ps(_mm256_or_si256(_mm256_cmpgt_epi32(acc, big), _mm256_cmpgt_epi32(neg_big, acc))));
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  }
};

template <typename Out>
void channel_vector(const ChannelRequant& r, const int32_t* acc, int M, Out* out, bool placed) {
  const int n = r.N, br = r.bias_rows, sh = r.shift;
  const int64_t z = r.zo, lo = r.qmin, hi = r.qmax;
  const int32_t* mm = r.m.data();
  const int64_t* eo = r.add_even_odd.data();
  const RequantPlacement& pl = r.placement;
  const size_t nb = static_cast<size_t>(br) * n;
  if constexpr (std::is_same_v<Out, uint8_t>) {
    if (placed && pl.on && pl.m.size() >= static_cast<size_t>(n) && pl.b.size() >= nb) {
      const float* pm = pl.m.data();
      const float* pb_all = pl.b.data();
      const Placer place(pl.tie_margin, r.qmin, r.qmax);  // placement_for: 0 ≤ qmin, qmax ≤ 255
      with_form(form_for(sh, r.lanes), [&](auto L) {
        with_flag(pl.check_acc, [&](auto check_acc) {
          const Requant8<decltype(L)::value> rq(sh, z, lo, hi);
          parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
            // Constants and pointers as locals of the row: the byte stores may alias anything
            // reachable from the closure, which made every vector reload them.
            const Placer pc = place;
            const Requant8<decltype(L)::value> q = rq;
            const int32_t* a = acc + static_cast<size_t>(i) * n;
            const size_t brow = static_cast<size_t>(i % br) * n;
            const float* pb = pb_all + brow;
            const float* pmr = pm;
            const int32_t* mr = mm;
            const auto place8 = [&](int at, __m256* open) __attribute__((always_inline)) {
              const __m256i av = load8(a + at);
              return pc.code<decltype(check_acc)::value>(
                  _mm256_fmadd_ps(_mm256_cvtepi32_ps(av), _mm256_loadu_ps(pmr + at), _mm256_loadu_ps(pb + at)), av, open);
            };
            const auto exact8 = [&](int at, const AddsAt& ad) { return q(load8(a + at), load8(mr + at), ad.load()); };
            uint8_t* o = out + static_cast<size_t>(i) * n;
            r.row_plain(a, i, row_bytes_placed(o, eo + brow, n, place8, exact8), o);
          });
        });
      });
      return;
    }
  }
  with_form(form_for(sh, r.lanes), [&](auto L) {
    with_flag(std::is_same_v<Out, uint8_t> && (lo < 0 || hi > 255), [&](auto trunc) {
      const Requant8<decltype(L)::value> rq(sh, z, lo, hi);
      parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
        const Requant8<decltype(L)::value> q = rq;  // locals of the row, as above
        const int32_t* a = acc + static_cast<size_t>(i) * n;
        const int64_t* e = eo + static_cast<size_t>(i % br) * n;
        const int32_t* mr = mm;
        const auto eight = [&](int at, const AddsAt& ad) __attribute__((always_inline)) {
          return q(load8(a + at), load8(mr + at), ad.load());
        };
        Out* o = out + static_cast<size_t>(i) * n;
        int c;
        if constexpr (std::is_same_v<Out, uint8_t>)
          c = row_bytes<decltype(trunc)::value>(o, e, n, eight);
        else
          c = row_ints(o, e, n, eight);
        r.row_plain(a, i, c, o);
      });
    });
  });
}

void residual_vector(const ResidualRequant& r, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) {
  const int n = r.N, sh = r.shift;
  const int64_t z = r.zo, lo = r.qmin, hi = r.qmax;
  const int32_t* ma = r.ma.data();
  const int64_t* e = r.add_even_odd.data();
  // (h − zh)·mb as h·mb − zh·mb: h (0..255) times mb (int32, checked) is one vpmuldq per half,
  // and −zh·mb one int64 constant, so no zero point can overflow an int32 lane.
  const int64_t mb = r.mb, k = -static_cast<int64_t>(r.zh) * r.mb;
  const auto residual = [](const uint8_t* hr, int at, Adds s, __m256i mbv, __m256i kv) __attribute__((always_inline)) {
    const __m256i hv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(hr + at)));
    s.even = _mm256_add_epi64(s.even, _mm256_add_epi64(_mm256_mul_epi32(hv, mbv), kv));
    s.odd = _mm256_add_epi64(s.odd, _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(hv, 32), mbv), kv));
    return s;
  };
  const RequantPlacement& pl = r.placement;
  if (placed && pl.on && pl.m.size() >= static_cast<size_t>(n) && pl.b.size() >= static_cast<size_t>(n)) {
    const float* pm = pl.m.data();
    const float* pb = pl.b.data();
    const __m256 mh = _mm256_set1_ps(pl.mh);
    const Placer place(pl.tie_margin, r.qmin, r.qmax);
    with_form(form_for(sh, r.lanes), [&](auto L) {
      with_flag(pl.check_acc, [&](auto check_acc) {
        const Requant8<decltype(L)::value> rq(sh, z, lo, hi);
        parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
          const Placer pc = place;  // locals of the row, as in channel_vector
          const Requant8<decltype(L)::value> q = rq;
          const __m256 mhr = mh;
          const float *pmr = pm, *pbr = pb;
          const int32_t* mar = ma;
          const int64_t mb_ = mb, k_ = k;
          const size_t off = static_cast<size_t>(i) * n;
          const int32_t* a = acc + off;
          const uint8_t* hr = h + off;
          const auto place8 = [&](int at, __m256* open) __attribute__((always_inline)) {
            const __m256i av = load8(a + at);
            const __m256i hv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(hr + at)));
            const __m256 inner = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hv), mhr, _mm256_loadu_ps(pbr + at));
            return pc.code<decltype(check_acc)::value>(_mm256_fmadd_ps(_mm256_cvtepi32_ps(av), _mm256_loadu_ps(pmr + at), inner), av, open);
          };
          const auto exact8 = [&](int at, const AddsAt& ad) {
            return q(load8(a + at), load8(mar + at), residual(hr, at, ad.load(), _mm256_set1_epi64x(mb_), _mm256_set1_epi64x(k_)));
          };
          uint8_t* o = out + off;
          r.row_plain(a, hr, row_bytes_placed(o, e, n, place8, exact8), o);
        });
      });
    });
    return;
  }
  with_form(form_for(sh, r.lanes), [&](auto L) {
    with_flag(lo < 0 || hi > 255, [&](auto trunc) {
      const Requant8<decltype(L)::value> rq(sh, z, lo, hi);
      parallel_for(M, static_cast<size_t>(M) * n, [&](int i) {
        const Requant8<decltype(L)::value> q = rq;  // locals of the row, as in channel_vector
        const __m256i mbv = _mm256_set1_epi64x(mb), kv = _mm256_set1_epi64x(k);
        const int32_t* mar = ma;
        const int64_t* er = e;
        const size_t off = static_cast<size_t>(i) * n;
        const int32_t* a = acc + off;
        const uint8_t* hr = h + off;
        const auto eight = [&](int at, const AddsAt& ad) __attribute__((always_inline)) {
          return q(load8(a + at), load8(mar + at), residual(hr, at, ad.load(), mbv, kv));
        };
        uint8_t* o = out + off;
        r.row_plain(a, hr, row_bytes<decltype(trunc)::value>(o, er, n, eight), o);
      });
    });
  });
}

// round_shift(x·m, shift) (half away from zero) on 8 int32 lanes, then clamped and offset:
// |x|·m + half as two vpmuludq halves (|INT32_MIN| read as the unsigned 2^31), m < 2^31.
// - Wide (shift ≥ 32 as simd::RoundShift16, or m < 2^shift, e.g. from_real's shift 31 for
//   multipliers in [½, 1)): below 32, m and half scaled by 2^(32 − shift) (m still below 2^32,
//   the sum below 2^64), so the shift is at least 32 either way: the high halves gathered by one
//   blend and shifted logically by shift − 32. The magnitude is at most 2^31, reached only
//   for x = INT32_MIN, whose negation wraps to INT32_MIN itself.
// - otherwise: each int64 half shifted logically by shift and capped at 2^31 − 1 in int64 (the
//   magnitude reaches 2^61), then the low halves gathered. A capped lane lies beyond both
//   bounds' distance from zero (callers keep lo − zero > INT32_MIN), so the clamp ends the same.
// x's sign put back by vpsignd (its zero lanes are zero already).
template <bool Wide>
class RoundShift8 {
 public:
  RoundShift8(int64_t m, int shift, int32_t lo, int32_t hi, int32_t add)
      : m_(_mm256_set1_epi64x(m << up(shift))),
        half_(_mm256_set1_epi64x(int64_t{1} << (shift + up(shift) - 1))),
        cap_(_mm256_set1_epi64x(INT32_MAX)),
        lo_(_mm256_set1_epi32(lo)),
        hi_(_mm256_set1_epi32(hi)),
        add_(_mm256_set1_epi32(add)),
        shift_(_mm_cvtsi32_si128(Wide ? shift + up(shift) - 32 : shift)) {}
  __attribute__((always_inline)) __m256i operator()(__m256i x) const {
    const __m256i a = _mm256_abs_epi32(x);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epu32(a, m_), half_);
    __m256i po = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), m_), half_);
    __m256i q;
    if constexpr (Wide) {
      q = _mm256_srl_epi32(_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA), shift_);
    } else {
      pe = _mm256_srl_epi64(pe, shift_);
      po = _mm256_srl_epi64(po, shift_);
      pe = _mm256_blendv_epi8(pe, cap_, _mm256_cmpgt_epi64(pe, cap_));
      po = _mm256_blendv_epi8(po, cap_, _mm256_cmpgt_epi64(po, cap_));
      q = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    }
    q = _mm256_sign_epi32(q, x);
    return _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo_), hi_), add_);
  }

 private:
  static int up(int shift) { return Wide && shift < 32 ? 32 - shift : 0; }
  __m256i m_, half_, cap_, lo_, hi_, add_;
  __m128i shift_;
};

}  // namespace

void channel_requant_rows(const ChannelRequant& r, const int32_t* acc, int M, uint8_t* out, bool placed) {
  const size_t nb = static_cast<size_t>(r.bias_rows) * static_cast<size_t>(r.N);
  if (r.N > 0 && r.bias_rows >= 1 && bounds_ok(r.shift, r.zo, r.qmin, r.qmax) && r.m.size() >= static_cast<size_t>(r.N) &&
      r.bias.size() >= nb && r.add_even_odd.size() >= nb)
    return channel_vector(r, acc, M, out, placed);
  for (int i = 0; i < M; ++i) r.row_plain(acc + static_cast<size_t>(i) * r.N, i, 0, out + static_cast<size_t>(i) * r.N);
}

void channel_requant_rows32(const ChannelRequant& r, const int32_t* acc, int M, int32_t* out) {
  const size_t nb = static_cast<size_t>(r.bias_rows) * static_cast<size_t>(r.N);
  if (r.N > 0 && r.bias_rows >= 1 && bounds_ok(r.shift, r.zo, r.qmin, r.qmax) && r.m.size() >= static_cast<size_t>(r.N) &&
      r.bias.size() >= nb && r.add_even_odd.size() >= nb)
    return channel_vector(r, acc, M, out, false);
  for (int i = 0; i < M; ++i) r.row_plain(acc + static_cast<size_t>(i) * r.N, i, 0, out + static_cast<size_t>(i) * r.N);
}

void residual_requant_rows(const ResidualRequant& r, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) {
  const size_t n = static_cast<size_t>(r.N);
  if (r.N > 0 && bounds_ok(r.shift, r.zo, r.qmin, r.qmax) && r.mb >= INT32_MIN && r.mb <= INT32_MAX && r.ma.size() >= n &&
      r.bias.size() >= n && r.add_even_odd.size() >= n)
    return residual_vector(r, acc, h, M, out, placed);
  for (int i = 0; i < M; ++i) r.row_plain(acc + i * n, h + i * n, 0, out + i * n);
}

void requant_to_codes(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out) {
  const int sh = r.shift;
  const int64_t lo = static_cast<int64_t>(o.qmin) - o.zero, hi = static_cast<int64_t>(o.qmax) - o.zero;
  const bool vector = sh >= 1 && sh <= 62 && r.m >= 0 && o.qmin <= o.qmax && lo > INT32_MIN && hi <= INT32_MAX;
  if (!vector || n == 0) return requant_to_codes_plain(in, 0, n, r, o, out);
  with_flag(sh >= 32 || r.m < (int64_t{1} << sh), [&](auto wide) {
    with_flag(o.qmin < 0 || o.qmax > 255, [&](auto trunc) {
      const RoundShift8<decltype(wide)::value> rs(r.m, sh, static_cast<int32_t>(lo), static_cast<int32_t>(hi), o.zero);
      parallel_range(n, [&](size_t begin, size_t end) {
        const RoundShift8<decltype(wide)::value> q = rs;  // locals (the byte stores may alias the closure)
        const int32_t* src = in;
        uint8_t* dst = out;
        const __m256i low_byte = _mm256_set1_epi32(0xFF);
        const auto v = [&](size_t at) __attribute__((always_inline)) {
          const __m256i x = q(load8(src + at));
          if constexpr (decltype(trunc)::value) return _mm256_and_si256(x, low_byte);
          return x;
        };
        size_t i = begin;
        for (; i + 32 <= end; i += 32) store32(dst + i, v(i), v(i + 8), v(i + 16), v(i + 24));
        for (; i + 8 <= end; i += 8) store8(dst + i, v(i));
        requant_to_codes_plain(in, i, end, r, o, out);
      });
    });
  });
}


}  // namespace qtx::rt::avx2
