// AVX-512 forms of the runtime's requantization step, for the loops GCC does not vectorise well
// on its own (it multiplies int32 by int32 as int64 × int64, vpmullq, where vpmuldq suffices).
// Each computes exactly what the scalar loop beside it computes. The plain helpers at the top are
// for every file (kernels call them at load); the vector part exists only in files compiled with
// AVX-512 (arch/x86/), inside their own namespace QTX_ARCH_NS, so that two such files compiled
// with different flags never share an out-of-line copy of these inline functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace qtx::rt::simd {

// How the int64 sums a·m + add become int32 lanes (chosen once per kernel at load, from the
// shift and the largest |a·m + add| the kernel can meet):
// - HighHalves (shift ≥ 32): ⌊x / 2^s⌋ = ⌊⌊x / 2^32⌋ / 2^(s−32)⌋ — the high halves of the sums,
//   gathered by one blend, then one 32-bit shift; any int64 x.
// - Fitting (shift < 32, every |x| < 2^(31+s), so ⌊x / 2^s⌋ fits in int32): even lanes shifted
//   right by s, odd lanes left by 32 − s, whose high halves are then ⌊x / 2^s⌋.
// - Clamped64 (neither): shifted and clamped in int64, then narrowed.
// The first two clamp in int32; all three give the scalar loops' values.
enum class Lanes { HighHalves, Fitting, Clamped64 };

// Whether RoundShift16 (and its AVX2 twin) takes multiplier m and this shift.
inline bool round_shift_vectors_handle(int64_t m, int shift) { return m >= 0 && m < (int64_t{1} << 31) && shift >= 32 && shift <= 62; }

inline Lanes lanes_for(int shift, long double max_abs_sum) {
  if (shift >= 32) return Lanes::HighHalves;
  return max_abs_sum < std::ldexp(1.0L, 31 + shift) ? Lanes::Fitting : Lanes::Clamped64;
}

// The addends of 16 consecutive lanes reordered for Requant16: [even lanes | odd lanes].
inline void split_even_odd(const int64_t* in16, int64_t* out16) {
  for (int j = 0; j < 8; ++j) {
    out16[j] = in16[2 * j];
    out16[8 + j] = in16[2 * j + 1];
  }
}

}  // namespace qtx::rt::simd

#if defined(__AVX512F__) && defined(QTX_ARCH_FILE)
#include <immintrin.h>

// GCC 12 reports its own intrinsics' undefined-vector placeholders as (maybe-)uninitialized where
// they are inlined (a known false positive); silenced for the files that include this header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace qtx::rt::simd {
inline namespace QTX_ARCH_NS {

// ⌊x / 2^s⌋, s ≥ 32, of int64 lanes held as `even` (lanes 0, 2, …, 14) and `odd` (1, 3, …, 15),
// as 16 int32 lanes: ⌊x/2^s⌋ = ⌊⌊x/2^32⌋/2^(s−32)⌋, and ⌊x/2^32⌋ is the high half of each lane —
// one blend gathers them, one 32-bit shift finishes. s_minus_32 as _mm_cvtsi32_si128(s − 32).
inline __m512i floor_shift_high_halves(__m512i even, __m512i odd, __m128i s_minus_32) {
  return _mm512_sra_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd), s_minus_32);
}

// clamp(((a·m + add) >> shift) + zero, lo, hi) on 16 int32 lanes (a, m int32), the int64
// addends given for the even lanes (0, 2, …, 14) and the odd lanes (1, 3, …, 15) apart — callers
// store them that way at load, with the rounding half folded in — so that each half is one
// vpmuldq (it reads the low int32 of each 64-bit lane) and one add, with no cross-lane shuffle.
// The clamp is to [lo − zero, hi − zero] before the zero point is added in 32 bits (callers keep
// both bounds within int32: ChannelRequant::make checks).
template <Lanes L>
class Requant16 {
 public:
  Requant16(int shift, int64_t zero, int64_t lo, int64_t hi)
      : lo64_(_mm512_set1_epi64(lo - zero)),
        hi64_(_mm512_set1_epi64(hi - zero)),
        lo32_(_mm512_set1_epi32(static_cast<int32_t>(lo - zero))),
        hi32_(_mm512_set1_epi32(static_cast<int32_t>(hi - zero))),
        zero_(_mm512_set1_epi32(static_cast<int32_t>(zero))),
        right_(_mm_cvtsi32_si128(L == Lanes::HighHalves ? shift - 32 : shift)),
        left_(_mm_cvtsi32_si128(32 - shift)) {}

  __m512i operator()(__m512i a, __m512i m, __m512i add_even, __m512i add_odd) const {
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(a, m), add_even);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(m, 32)), add_odd);
    if constexpr (L == Lanes::Clamped64) {
      const __m512i ve = _mm512_min_epi64(_mm512_max_epi64(_mm512_sra_epi64(pe, right_), lo64_), hi64_);
      const __m512i vo = _mm512_min_epi64(_mm512_max_epi64(_mm512_sra_epi64(po, right_), lo64_), hi64_);
      return _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, ve, _mm512_slli_epi64(vo, 32)), zero_);
    } else {
      const __m512i v = L == Lanes::HighHalves ? floor_shift_high_halves(pe, po, right_)
                                               : _mm512_mask_blend_epi32(0xAAAA, _mm512_sra_epi64(pe, right_), _mm512_sll_epi64(po, left_));
      return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo32_), hi32_), zero_);
    }
  }

 private:
  __m512i lo64_, hi64_, lo32_, hi32_, zero_;
  __m128i right_, left_;
};

// Calls f(std::integral_constant<Lanes, L>{}) with L = lanes: one instantiation of a kernel's
// loop per form, the choice made once per call rather than per vector.
template <typename F>
void with_lanes(Lanes lanes, F&& f) {
  switch (lanes) {
    case Lanes::HighHalves: f(std::integral_constant<Lanes, Lanes::HighHalves>{}); break;
    case Lanes::Fitting: f(std::integral_constant<Lanes, Lanes::Fitting>{}); break;
    case Lanes::Clamped64: f(std::integral_constant<Lanes, Lanes::Clamped64>{}); break;
  }
}

// Calls f(std::true_type{}) or f(std::false_type{}): a kernel's loop compiled with and without
// one step, the choice made once per call.
template <typename F>
void with_flag(bool on, F&& f) {
  if (on)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// clamp(round_shift(x · m, shift), lo, hi) + add on 16 int32 lanes — round_shift rounds half
// away from zero — for 0 ≤ m < 2^31 and 32 ≤ shift ≤ 62 (callers check; lo, hi, add and the
// results int32): |x|·m + half as two vpmuludq halves (|INT32_MIN| read as the unsigned 2^31),
// their high halves gathered by one blend and shifted by shift − 32
// (⌊y/2^s⌋ = ⌊⌊y/2^32⌋/2^(s−32)⌋), then x's sign put back.
class RoundShift16 {
 public:
  static bool handles(int64_t m, int shift) { return round_shift_vectors_handle(m, shift); }
  RoundShift16(int64_t m, int shift, int32_t lo, int32_t hi, int32_t add)
      : m_(_mm512_set1_epi64(m)),
        half_(_mm512_set1_epi64(int64_t{1} << (shift - 1))),
        lo_(_mm512_set1_epi32(lo)),
        hi_(_mm512_set1_epi32(hi)),
        add_(_mm512_set1_epi32(add)),
        shift_(_mm_cvtsi32_si128(shift - 32)) {}
  __m512i operator()(__m512i x) const {
    const __m512i a = _mm512_abs_epi32(x), zero = _mm512_setzero_si512();
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epu32(a, m_), half_);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(a, 32), m_), half_);
    __m512i q = _mm512_srl_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po), shift_);
    q = _mm512_mask_sub_epi32(q, _mm512_cmplt_epi32_mask(x, zero), zero, q);
    return _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo_), hi_), add_);
  }

 private:
  __m512i m_, half_, lo_, hi_, add_;
  __m128i shift_;
};

// 64 int32 lanes, every value in 0..255, stored as 64 uint8 in order: two saturating packs to
// int16 and one to uint8 (each within 128-bit lanes, so lane L holds dwords L of a, b, c, d),
// then one dword permute — four in-lane operations where four vpmovdb were eight.
inline void store_64_codes(uint8_t* p, __m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_storeu_si512(p, _mm512_permutexvar_epi32(order, bytes));
}

// 16 int32 lanes stored as 16 uint8 (values already in 0..255) or as they are.
inline void store_lanes(uint8_t* p, __m512i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v)); }
inline void store_lanes(int32_t* p, __m512i v) { _mm512_storeu_si512(p, v); }

// A row's codes from channel c on: sixteen(at) gives the 16 int32 lanes of channels at..at+15;
// with `bytes` (every value in 0..255) 64 at a time first (store_64_codes), then 16 at a time.
// Returns the first channel not written, where the caller's scalar tail starts.
// Always inlined: as a call of its own it receives the caller's lambda by address, and every
// byte store (which may alias anything) makes it reload the lambda's constants from memory.
template <typename Sixteen>
__attribute__((always_inline)) inline int store_code_vectors(uint8_t* o, int c, int n, bool bytes, const Sixteen& sixteen) {
  if (bytes)
    for (; c + 64 <= n; c += 64) store_64_codes(o + c, sixteen(c), sixteen(c + 16), sixteen(c + 32), sixteen(c + 48));
  for (; c + 16 <= n; c += 16) store_lanes(o + c, sixteen(c));
  return c;
}

// Codes of lanes not yet clamped to a byte: 64 at a time by store_64_codes (whose saturating
// packs clamp to 0..255), then 16 at a time clamped to 0..255 first. Returns the first channel
// not written. Always inlined, as store_code_vectors.
template <typename Sixteen>
__attribute__((always_inline)) inline int store_codes_clamped(uint8_t* o, int c, int n, const Sixteen& sixteen) {
  for (; c + 64 <= n; c += 64) store_64_codes(o + c, sixteen(c), sixteen(c + 16), sixteen(c + 32), sixteen(c + 48));
  const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(255);
  for (; c + 16 <= n; c += 16) store_lanes(o + c, _mm512_min_epi32(_mm512_max_epi32(sixteen(c), zero), top));
  return c;
}

#if defined(__AVX512DQ__)
// The float placements (IntElementwise::PolyGuess, RequantPlacement): y rounded to the nearest
// integer as int32 lanes, and in *open the lanes whose y lies within a margin of k + ½
// (near_tie = ½ − margin), where that rounding is not certain — y − round(y) by one vreduceps.
inline __m512i round_unless_near_tie(__m512 y, __m512 near_tie, __mmask16* open) {
  const __m512 frac = _mm512_reduce_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  *open = _mm512_cmp_ps_mask(_mm512_abs_ps(frac), near_tie, _CMP_GT_OQ);
  return _mm512_cvtps_epi32(y);
}
#endif

}  // namespace QTX_ARCH_NS
}  // namespace qtx::rt::simd
#endif
