// The AVX2 kernels of the integer runtime, as the dispatch table's entries (kernel_table.h).
// x86-64-v3 is the build's baseline, so these files need no flags of their own; each kernel
// computes exactly what the plain loop it replaces computes (tests/test_kernel_isas.cpp).
#include "runtime/arch/x86/attention_avx2.h"
#include "runtime/arch/x86/avx2_norm_act.h"
#include "runtime/arch/x86/requant_avx2.h"
#include "runtime/kernel_table.h"

namespace qtx::rt {
namespace {

int layernorm_output(const IntLayerNorm& n, const int32_t* x, int64_t sum, int64_t R, uint8_t* out) {
  avx2::layernorm_row_output(n, x, sum, R, out);
  return n.C;
}

int layernorm_centre(const IntLayerNormSite& s, const uint8_t* h, int32_t* x, int64_t* sum, int64_t* sq, bool* summed) {
  avx2::layernorm_site_centre_row(s, h, x, sum, sq);
  *summed = true;
  return s.C;
}

bool elementwise_poly(const IntElementwise& e, const int32_t* acc, int M, uint8_t* out) {
  avx2::elementwise_rows(e, acc, M, out);
  return true;
}

int elementwise_table_row(const IntElementwise& e, const int32_t* acc, uint8_t* out) {
  avx2::elementwise_rows_by_table(e, acc, 1, out);
  return e.to_grid.N;
}

// The requantizations by the integer formula: on AVX2 their float placement measured no faster
// (1088 × 192: 48 µs placed, 38 µs integer; the codes are the same).
void channel_rows(const ChannelRequant& r, const int32_t* acc, int M, uint8_t* out, bool) {
  avx2::channel_requant_rows(r, acc, M, out, false);
}
void residual_rows(const ResidualRequant& r, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool) {
  avx2::residual_requant_rows(r, acc, h, M, out, false);
}

bool qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) {
  avx2::qk_scores(q, zq, k, zk, Tq, T, dh, ld, S);
  return true;
}

// Short rows only: from ~64 keys GCC's own vectorisation of the plain loop was as fast or faster
// (BM_AvLog2/128: 28.5 µs plain, 30.4 µs AVX2; /17: 0.79 and 0.64).
bool av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc) {
  if (T > 32) return false;
  avx2::av_log2(codes, v, zv, Tq, T, dh, ld, kmax, ctx, ldc);
  return true;
}

bool lis_rows(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int rows, int n, int8_t* codes) {
  avx2::lis_rows(l, q, valid, rows, n, codes);
  return true;
}

}  // namespace

const KernelTable& kernel_table_avx2() {
  static const KernelTable table = [] {
    KernelTable k;
    k.isa = Isa::Avx2;
    k.layernorm_output = layernorm_output;
    k.layernorm_centre = layernorm_centre;
    k.elementwise_poly = elementwise_poly;
    k.elementwise_table_row = elementwise_table_row;
    k.code_table = avx2::apply_table_range;
    k.channel_rows = channel_rows;
    k.channel_rows32 = avx2::channel_requant_rows32;
    k.residual_rows = residual_rows;
    k.requant_codes = avx2::requant_to_codes;
    k.qk_scores = qk_scores;
    k.av_log2 = av_log2;
    k.lis_row = avx2::lis_row;
    k.lis_rows = lis_rows;
    return k;
  }();
  return table;
}

}  // namespace qtx::rt
