// int8 GEMM of the integer runtime: C[M,N] (s32) = Σ_k (A[m,k] − za) · W[n,k], A u8, W s8.
// The fast path is oneDNN's matmul with the weight reordered into its blocked layout once, at
// load; the activation zero point is folded as −za · Σ_k W[n,k] (precomputed), so the primitive
// is a plain u8·s8→s32 product. oneDNN's product is exact only with VNNI or weights within ±64
// (without VNNI it multiplies by vpmaddubsw, whose int16 pair sums saturate): elsewhere an exact
// int16 kernel runs. The reference path is gemm_u8s8_plain (int_kernels.h), which QTX_MAX_ISA=scalar
// selects too.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace qtx::rt {
namespace avx2 {
struct PackedWeights;
}

enum class Kernels { Fast, Reference };

class Int8Gemm {
 public:
  Int8Gemm(const int8_t* w, int N, int K, Kernels kernels);  // w row-major [N, K]
  ~Int8Gemm();
  Int8Gemm(const Int8Gemm&) = delete;
  Int8Gemm& operator=(const Int8Gemm&) = delete;
  int N() const { return N_; }
  int K() const { return K_; }
  void run(const uint8_t* A, int M, int32_t za, int32_t* C) const;
  // Σ_k W[n,k] per output channel: callers that fold −za · Σ_k W[n,k] into a later per-channel
  // bias run with za = 0 and skip the correction pass over C.
  const std::vector<int32_t>& weight_sums() const { return wsum_; }
  // max_n Σ_k |W[n,k]|: with u8 inputs every accumulator lies within ±255 times it.
  int64_t max_abs_row_sum() const { return max_abs_row_sum_; }
  // Which kernel a call makes now (it depends on the active instruction set).
  enum class Path { OneDnn, Exact, Reference };
  Path path() const;

 private:
  void run_untimed(const uint8_t* A, int M, int32_t za, int32_t* C) const;
  void run_exact(const uint8_t* A, int M, int32_t za, int32_t* C) const;
  void subtract_zero_point_term(int M, int32_t za, int32_t* C) const;
  int N_, K_;
  Kernels kernels_;
  std::vector<int8_t> w_;       // reference path (and the source of reorders)
  std::vector<int32_t> wsum_;   // Σ_k W[n,k]
  int64_t max_abs_row_sum_ = 0;
  int max_abs_w_ = 0;           // max |W[n,k]|
  struct Dnnl;
  std::unique_ptr<Dnnl> dnnl_;
  mutable std::once_flag exact_once_;
  mutable std::unique_ptr<avx2::PackedWeights> exact_;  // the exact int16 kernel's weight (run_exact)
};

// The most threads any qtx command takes (--threads): beyond it libgomp's per-thread stacks and
// team set-up fail or stall (100000 threads crashed qtx_run and hung qtx eval), and no CPU this
// runs on has more cores.
constexpr int kMaxThreads = 1024;

// Threads of the runtime (OpenMP, shared with oneDNN); n <= 0 leaves the default; n > kMaxThreads throws.
void set_threads(int n);

}  // namespace qtx::rt
