// The runtime's kernels for one instruction set, picked at run time (cpu_isa.h). Each entry is a
// fast form of one kernel in int_kernels / int_blocks; a null entry means that level has none and
// the plain loop runs. An entry either does the whole job (void, or bool: false = not handled,
// e.g. a shape it does not cover) or a prefix, returning where it stopped, and the caller's
// plain loop does the rest — so each scalar tail is written once. The tables live in
// arch/x86/kernels_*.cpp, each file compiled with its own instruction-set flags.
// Naming: a kernel's plain loop — its reference twin, what QTX_MAX_ISA=scalar runs and what the
// tests compare every fast form with — is `<kernel>_plain` (gemm_u8s8_plain,
// requant_to_codes_plain, apply_table_plain) or a `*_plain` member (rows_plain, row_plain).
#pragma once
#include <cstddef>
#include <cstdint>

#include "runtime/cpu_isa.h"

namespace qtx::rt {

struct LogIntSoftmax;
struct Requant;
struct QParams;
struct IntLayerNorm;
struct ChannelRequant;
struct ResidualRequant;
struct IntLayerNormSite;
struct IntElementwise;

struct KernelTable {
  Isa isa = Isa::Scalar;

  // LogIntSoftmax::rows for short rows (phased over the block); false: not handled.
  bool (*lis_rows)(const LogIntSoftmax&, const int32_t* q, const uint8_t* valid, int rows, int n, int8_t* codes) = nullptr;
  // LogIntSoftmax::row, whole (used before the two prefix entries below where set).
  void (*lis_row)(const LogIntSoftmax&, const int32_t* q, const uint8_t* valid, int n, int8_t* codes) = nullptr;
  // LogIntSoftmax::row's i-exp of each gap from the row maximum mx into e, returning how many
  // entries it did and adding their exps to *sum.
  int (*lis_exps)(const LogIntSoftmax&, const int32_t* q, const uint8_t* valid, int n, int32_t mx, int64_t* e, int64_t* sum) = nullptr;
  // LogIntSoftmax::row's codes from the exps (2Σ + e < 2^53): returns how many it did.
  int (*lis_codes)(const int64_t* e, int n, double two_sum, int64_t top, int8_t* codes) = nullptr;

  // IntLayerNorm::row_output: returns the first channel not written.
  int (*layernorm_output)(const IntLayerNorm&, const int32_t* x, int64_t sum, int64_t R, uint8_t* out) = nullptr;
  // IntLayerNormSite::centre_row: x from the residual codes; when it also summed them it sets
  // *sum, *sq and returns C with *summed true. Returns the first channel not written.
  int (*layernorm_centre)(const IntLayerNormSite&, const uint8_t* h, int32_t* x, int64_t* sum, int64_t* sq, bool* summed) = nullptr;

  // clamp(round_shift(x·m, shift), lo, hi) (half away from zero), 32 ≤ shift ≤ 62, 0 ≤ m < 2^31,
  // on x[0, n) in place (the attention scores): returns the first value not done.
  size_t (*round_shift_inplace)(int32_t* x, size_t n, int64_t m, int shift, int32_t lo, int32_t hi) = nullptr;

  // The requantizations, whole calls: ChannelRequant::rows / rows_integer (placed: the member's
  // choice, the float placement where its placement is on; any form that gives the integer
  // formula's codes may serve), rows32, ResidualRequant's, and requant_to_codes.
  void (*channel_rows)(const ChannelRequant&, const int32_t* acc, int M, uint8_t* out, bool placed) = nullptr;
  void (*channel_rows32)(const ChannelRequant&, const int32_t* acc, int M, int32_t* out) = nullptr;
  void (*residual_rows)(const ResidualRequant&, const int32_t* acc, const uint8_t* h, int M, uint8_t* out, bool placed) = nullptr;
  void (*requant_codes)(const int32_t* in, size_t n, const Requant& r, const QParams& o, uint8_t* out) = nullptr;

  // qk_scores and av_log2 (int_kernels.h); false: not handled (shape).
  bool (*qk_scores)(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S) = nullptr;
  bool (*av_log2)(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx,
                  int ldc) = nullptr;

  // IntElementwise::rows by its polynomial placement (poly.on); false: not handled.
  bool (*elementwise_poly)(const IntElementwise&, const int32_t* acc, int M, uint8_t* out) = nullptr;
  // IntElementwise::rows_by_table, one row: first channel not done.
  int (*elementwise_table_row)(const IntElementwise&, const int32_t* acc, uint8_t* out) = nullptr;
  // A 256-entry code table on in[begin, end) (may be in place): first not done.
  size_t (*code_table)(const uint8_t* table, const uint8_t* in, size_t begin, size_t end, uint8_t* out) = nullptr;
};

// The table of the active level (active_isa()), and of any level (entries the CPU cannot run
// must not be called: use runnable_isas()).
const KernelTable& active_kernels();
const KernelTable& kernels_for(Isa isa);

// Per-thread scratch memory for the per-ISA kernels, which must not grow std::vectors themselves
// (an out-of-line copy compiled with AVX-512 flags could be the one the linker keeps for generic
// code): `slot` 0..7, at least `bytes`, 64-byte aligned, kept between calls.
void* thread_scratch(int slot, size_t bytes);

// Defined in the per-ISA files.
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();
const KernelTable& kernel_table_avx512_vnni();

}  // namespace qtx::rt
