// AVX-512 forms of the runtime's requantization step, for the loops GCC does not vectorise well
// on its own (it multiplies int32 by int32 as int64 × int64, vpmullq, where vpmuldq suffices).
// Each computes exactly what the scalar loop beside it computes; where AVX-512 is not compiled
// in, only the scalar loops exist.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

// GCC 12 reports its own intrinsics' undefined-vector placeholders as maybe-uninitialized where
// they are inlined (a known false positive); silenced for the files that include this header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace qtx::rt::simd {

// clamp(((a·m + add + half) >> shift) + zero, lo, hi) on 16 int32 lanes (a, m int32; add int64
// per lane as two halves: lanes 0–7, 8–15), in int64 as the scalar loops do; results as 16 int32.
// The even and odd lanes are multiplied in place (vpmuldq reads the low half of each 64-bit
// lane) and blended back, instead of widening both operands and narrowing the results: fewer
// cross-lane shuffles, which are what limited the widening form. The clamp is to [lo − zero,
// hi − zero] before the zero point is added in 32 bits: the same value, one add fewer (callers
// keep both bounds within int32: ChannelRequant::make checks).
class Requant16 {
 public:
  Requant16(int shift, int64_t zero, int64_t lo, int64_t hi)
      : half_(_mm512_set1_epi64(shift > 0 ? int64_t{1} << (shift - 1) : 0)),
        lo_(_mm512_set1_epi64(lo - zero)),
        hi_(_mm512_set1_epi64(hi - zero)),
        even_(_mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14)),
        odd_(_mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15)),
        zero_(_mm512_set1_epi32(static_cast<int32_t>(zero))),
        shift_(_mm_cvtsi32_si128(shift)) {}

  __m512i operator()(__m512i a, __m512i m, __m512i add_lo, __m512i add_hi) const {
    const __m512i pe = _mm512_mul_epi32(a, m);
    const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(m, 32));
    const __m512i ve = finish(pe, _mm512_permutex2var_epi64(add_lo, even_, add_hi));
    const __m512i vo = finish(po, _mm512_permutex2var_epi64(add_lo, odd_, add_hi));
    return _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, ve, _mm512_slli_epi64(vo, 32)), zero_);
  }

 private:
  __m512i finish(__m512i p, __m512i add) const {
    const __m512i v = _mm512_sra_epi64(_mm512_add_epi64(_mm512_add_epi64(p, add), half_), shift_);
    return _mm512_min_epi64(_mm512_max_epi64(v, lo_), hi_);
  }
  __m512i half_, lo_, hi_, even_, odd_, zero_;
  __m128i shift_;
};

// 16 int32 lanes stored as 16 uint8 (values already in 0..255) or as they are.
inline void store_lanes(uint8_t* p, __m512i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v)); }
inline void store_lanes(int32_t* p, __m512i v) { _mm512_storeu_si512(p, v); }

}  // namespace qtx::rt::simd
#endif
