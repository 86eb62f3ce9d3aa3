// AVX2 forms of the attention kernels (Q·Kᵀ, A·V by powers of two, Log-Int-Softmax), for CPUs
// without AVX-512: each gives the plain form's results bit for bit (tests/test_avx2_attention.cpp).
// Free functions taking the same arguments as the kernels they stand for, to be picked at run
// time; none of them calls back into qtx::rt's dispatching entry points.
#pragma once
#include <cstdint>

#include "runtime/int_kernels.h"

namespace qtx::rt::avx2 {

// qtx::rt::qk_scores: S[t, j] = Σ_d (q[t,d] − zq)(k[j,d] − zk), the centred operands as int16
// (truncated, as the plain form casts them). Any Tq, T, dh ≥ 1.
void qk_scores(const uint8_t* q, int32_t zq, const uint8_t* k, int32_t zk, int Tq, int T, int dh, int ld, int32_t* S);

// qtx::rt::av_log2: ctx[t, d] = Σ_j (v[j,d] − zv) · 2^(kmax − code[t,j]) mod 2^32 over codes in
// [0, kmax] (and kmax − code < 32, where the plain form's shift is defined). Any zv, T, Tq, dh;
// throws std::invalid_argument for dh > 1024, as the plain form does.
void av_log2(const int8_t* codes, const uint8_t* v, int32_t zv, int Tq, int T, int dh, int ld, int kmax, int32_t* ctx, int ldc);

// LogIntSoftmax::row and LogIntSoftmax::rows (same preconditions: valid scores within
// l.range of their row's maximum). Rows whose 2Σ + e may reach 2^53 go to l.row_by_exp.
void lis_row(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int n, int8_t* codes);
void lis_rows(const LogIntSoftmax& l, const int32_t* q, const uint8_t* valid, int rows, int n, int8_t* codes);

}  // namespace qtx::rt::avx2
