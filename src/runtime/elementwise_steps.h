// IntElementwise's table steps (accumulator → fine-grid index → cell code), shared by the plain
// loops (int_blocks.cpp) and the per-ISA files. Inside an inline namespace named for the
// instruction set each file is compiled for (QTX_ARCH_NS, "base" in generic files), so that files
// compiled with different flags never share an out-of-line copy.
#pragma once
#include <cstdint>

#include "runtime/int_blocks.h"
#include "runtime/simd.h"

#ifndef QTX_ARCH_NS
#define QTX_ARCH_NS base
#define QTX_ARCH_NS_DEFAULTED
#endif

namespace qtx::rt {
inline namespace QTX_ARCH_NS {

// An IntElementwise's table steps as its loops take them: an accumulator's index on the fine
// grid (ChannelRequant's formula, `to_grid`), then its cell's code — one value at a time, or 16
// with AVX-512 (the grid index by simd::Requant16, the cells by one gather).
struct TableSteps {
  const int32_t* __restrict m;
  const int64_t* __restrict bias;
  const int64_t* __restrict add_even_odd;
  const uint32_t* __restrict cell;
  int shift, cell_bits;
  int64_t half, zo, top;
  explicit TableSteps(const IntElementwise& e)
      : m(e.to_grid.m.data()), bias(e.to_grid.bias.data()), add_even_odd(e.to_grid.add_even_odd.data()), cell(e.packed.data()),
        shift(e.to_grid.shift), cell_bits(e.cell_bits), half(int64_t{1} << (e.to_grid.shift - 1)), zo(e.to_grid.zo), top(e.to_grid.qmax) {}
  uint8_t code(int32_t acc, int c) const {
    const int64_t v = ((static_cast<int64_t>(acc) * m[c] + bias[c] + half) >> shift) + zo;
    const auto g = static_cast<uint32_t>(v < 0 ? 0 : (v > top ? top : v));
    const uint32_t cv = cell[g >> cell_bits];
    return static_cast<uint8_t>((g & ((1u << cell_bits) - 1)) < (cv & 0xffffu) ? cv >> 16 : cv >> 24);
  }
#if defined(__AVX512F__) && defined(QTX_ARCH_FILE)
  template <simd::Lanes L>
  __m512i codes16(const simd::Requant16<L>& to_index, const int32_t* a, int c) const {
    const __m512i g = to_index(_mm512_loadu_si512(a + c), _mm512_loadu_si512(m + c), _mm512_loadu_si512(add_even_odd + c),
                               _mm512_loadu_si512(add_even_odd + c + 8));
    const __m512i cv = _mm512_i32gather_epi32(_mm512_srl_epi32(g, _mm_cvtsi32_si128(cell_bits)), cell, 4);
    const __mmask16 before = _mm512_cmplt_epu32_mask(_mm512_and_si512(g, _mm512_set1_epi32((1 << cell_bits) - 1)),
                                                     _mm512_and_si512(cv, _mm512_set1_epi32(0xffff)));
    return _mm512_mask_blend_epi32(before, _mm512_srli_epi32(cv, 24), _mm512_and_si512(_mm512_srli_epi32(cv, 16), _mm512_set1_epi32(0xff)));
  }
#endif
};

}  // namespace QTX_ARCH_NS
}  // namespace qtx::rt

#ifdef QTX_ARCH_NS_DEFAULTED
#undef QTX_ARCH_NS
#undef QTX_ARCH_NS_DEFAULTED
#endif
