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
// per lane as two halves), in int64 as the scalar loops do; results as 16 int32.
class Requant16 {
 public:
  Requant16(int shift, int64_t zero, int64_t lo, int64_t hi)
      : half_(_mm512_set1_epi64(shift > 0 ? int64_t{1} << (shift - 1) : 0)),
        zero_(_mm512_set1_epi64(zero)),
        lo_(_mm512_set1_epi64(lo)),
        hi_(_mm512_set1_epi64(hi)),
        shift_(_mm_cvtsi32_si128(shift)) {}

  __m512i operator()(__m512i a, __m512i m, __m512i add_lo, __m512i add_hi) const {
    const __m512i r0 = eight(_mm512_castsi512_si256(a), _mm512_castsi512_si256(m), add_lo);
    const __m512i r1 = eight(_mm512_extracti64x4_epi64(a, 1), _mm512_extracti64x4_epi64(m, 1), add_hi);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(r0)), _mm512_cvtepi64_epi32(r1), 1);
  }

 private:
  __m512i eight(__m256i a, __m256i m, __m512i add) const {
    __m512i v = _mm512_mul_epi32(_mm512_cvtepi32_epi64(a), _mm512_cvtepi32_epi64(m));
    v = _mm512_add_epi64(_mm512_add_epi64(v, add), half_);
    v = _mm512_add_epi64(_mm512_sra_epi64(v, shift_), zero_);
    return _mm512_min_epi64(_mm512_max_epi64(v, lo_), hi_);
  }
  __m512i half_, zero_, lo_, hi_;
  __m128i shift_;
};

// 16 int32 lanes stored as 16 uint8 (values already in 0..255) or as they are.
inline void store_lanes(uint8_t* p, __m512i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v)); }
inline void store_lanes(int32_t* p, __m512i v) { _mm512_storeu_si512(p, v); }

}  // namespace qtx::rt::simd
#endif
