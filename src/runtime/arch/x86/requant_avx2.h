// AVX2 forms (8 int32 lanes per __m256i, no AVX-512) of the requantization kernels, for CPUs
// without AVX-512, where the members' plain loops run (GCC turns their int64 products into
// three-multiply emulations). Each function gives exactly what the member's plain loop gives, bit
// for bit, for every struct make() builds; inputs outside the vector forms' preconditions (noted
// below) take the members' plain loops (row_plain, requant_to_codes_plain), so the results never depend on the path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "runtime/int_kernels.h"

namespace qtx::rt::avx2 {


// ChannelRequant::rows (placed = true: the float placement where r.placement.on) or
// ChannelRequant::rows_integer (placed = false); the codes are the same. Reads m, bias (tails),
// add_even_odd, lanes and placement as make() sets them. Threads as the member (parallel_for over rows).
void channel_requant_rows(const ChannelRequant& r, const int32_t* acc, int M, uint8_t* out, bool placed);
// ChannelRequant::rows32.
void channel_requant_rows32(const ChannelRequant& r, const int32_t* acc, int M, int32_t* out);
// ResidualRequant::rows (placed = true) or rows_integer (placed = false).
void residual_requant_rows(const ResidualRequant& r, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed);
// qtx::rt::requant_to_codes. Threads as it (parallel_range).
void requant_to_codes(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out);

}  // namespace qtx::rt::avx2
