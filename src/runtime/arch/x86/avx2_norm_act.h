// AVX2 forms (x86-64-v3: AVX2, FMA, BMI2) of LayerNorm, its PTF tables, the GELU/tanh table and
// the code → code table, for CPUs without AVX-512 — where the member functions run their plain
// loops. Each gives the plain loop's codes bit for bit (tests/test_avx2_norm_act.cpp); the
// dispatch table (kernels_avx2.cpp) picks them at run time. Callers time them (OpTimer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"

namespace qtx::rt::avx2 {

// IntLayerNorm::row_sums: Σx and Σx² in int64, exact for any int32 x.
void layernorm_row_sums(const IntLayerNorm& n, const int32_t* x, int64_t* sum, int64_t* sq);

// IntLayerNorm::row_output (the vectorised form): the float placement where n.placed (lanes
// near a rounding boundary by the integer formula), else the integer formula, 8 channels a
// vector. Preconditions, as the AVX-512 form's: R = n.row_factor(sum, sq) of the same row and
// |C·x_c − Σx| < 2^31 (true for x = (code − z) << α, α ≤ 8, C ≤ 4096). Output ranges outside
// 0..255 (never made by QParams of 8-bit codes) take the plain loop.
void layernorm_row_output(const IntLayerNorm& n, const int32_t* x, int64_t sum, int64_t R, uint8_t* out);

// IntLayerNorm::row_centred: the two above around row_factor.
void layernorm_row_centred(const IntLayerNorm& n, const int32_t* x, uint8_t* out);

// IntLayerNormSite::centre_row: x_c = centred[α_c·256 + h_c] by 8-lane gathers, Σx and Σx² from
// the same registers.
void layernorm_site_centre_row(const IntLayerNormSite& s, const uint8_t* h_row, int32_t* x, int64_t* sum, int64_t* sq);

// IntElementwise::rows: the polynomial placement where e.poly.on (lanes near a rounding boundary,
// and accumulators of 2^24 or more unless the weights rule them out, by the table's scalar steps
// after each row), else elementwise_rows_by_table. The process-wide switch
// set_activation_polynomial(false) is the caller's to honour (call elementwise_rows_by_table).
void elementwise_rows(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out);

// IntElementwise::rows_by_table: the grid index in int64 lanes, the cell by one 8-lane gather.
void elementwise_rows_by_table(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out);

// apply_table (t empty: a copy; else 256 entries, throws std::logic_error otherwise): 32 codes
// at a time, the table as 16 sub-tables of 16 bytes (vpshufb on the low nibble), picked by the
// high nibble's four bits through a tree of 15 byte blends. in == out is allowed.
void apply_table(const std::vector<uint8_t>& t, const uint8_t* in, size_t n, uint8_t* out);
// Its vector part on in[begin, end) (256-entry table): returns the first code not done.
size_t apply_table_range(const uint8_t* t, const uint8_t* in, size_t begin, size_t end, uint8_t* out);

}  // namespace qtx::rt::avx2
