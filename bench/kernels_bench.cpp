// Google Benchmark microbenchmarks of the integer runtime's kernels (no libtorch): the oneDNN
// int8 GEMM against the plain C++ reference and on a large shape (the machine's int8 peak),
// and every non-GEMM kernel on vit-fmnist's shapes (17 tokens, hidden 192, MLP 768, 3 heads).
// Run: ./build/qtx_kernel_bench [--benchmark_filter=Gemm] ; OMP_NUM_THREADS sets the threads.
#include <benchmark/benchmark.h>

#include <dnnl.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#ifdef QTX_HAVE_OPENBLAS
#include <cblas.h>
extern "C" char* openblas_get_corename();
#endif

#include "runtime/arch/x86/attention_avx2.h"
#include "runtime/arch/x86/avx2_norm_act.h"
#include "runtime/arch/x86/gemm_avx2.h"
#include "runtime/arch/x86/requant_avx2.h"
#include "runtime/cpu_isa.h"
#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"

using namespace qtx::rt;

namespace {

// The member-function benchmarks run the active level's kernels (QTX_MAX_ISA caps it: =scalar
// for the plain loops, =avx2 for an AVX2-only CPU's). The *Avx2 ones run the AVX2 forms on the
// same data whatever the level (those that go through a member cap the kernels at avx2 for the
// benchmark).
struct IsaScope {
  explicit IsaScope(Isa isa) { set_max_isa(isa); }
  ~IsaScope() { set_max_isa(Isa::Avx512Vnni); }  // back to the CPU's (and QTX_MAX_ISA's) level
};

template <typename T>
std::vector<T> random_codes(size_t n, int lo, int hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

// C[M, N] = A[M, K] · W[N, K]ᵀ; counters in GOPS (2·M·N·K per run).
void gemm(benchmark::State& st, Kernels k) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1)), K = static_cast<int>(st.range(2));
  auto A = random_codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, 1);
  auto W = random_codes<int8_t>(static_cast<size_t>(N) * K, -127, 127, 2);
  std::vector<int32_t> C(static_cast<size_t>(M) * N);
  Int8Gemm g(W.data(), N, K, k);
  // Zero point 0, as in the models (they fold −za·Σw into a bias); one untimed call first, so
  // the primitive's creation and the weight reorder stay out of the timing.
  g.run(A.data(), M, 0, C.data());
  for (auto _ : st) {
    g.run(A.data(), M, 0, C.data());
    benchmark::DoNotOptimize(C.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
void BM_GemmOneDnn(benchmark::State& st) { gemm(st, Kernels::Fast); }
void BM_GemmReference(benchmark::State& st) { gemm(st, Kernels::Reference); }

// The same product in fp32 through oneDNN (weights reordered once, like the int8 path): the
// int8 : fp32 GEMM ratio this machine reaches today, the ceiling of any int8 speed-up.
void BM_GemmOneDnnF32(benchmark::State& st) {
  using dnnl::memory;
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1)), K = static_cast<int>(st.range(2));
  std::vector<float> A(static_cast<size_t>(M) * K), W(static_cast<size_t>(N) * K), C(static_cast<size_t>(M) * N);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& x : A) x = d(rng);
  for (auto& x : W) x = d(rng);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  memory::desc src({M, K}, memory::data_type::f32, memory::format_tag::ab), dst({M, N}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc wany({K, N}, memory::data_type::f32, memory::format_tag::any);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wany, dst), eng);
  dnnl::matmul prim(pd);
  memory user({{K, N}, memory::data_type::f32, memory::format_tag::ba}, eng, W.data()), w(pd.weights_desc(), eng);
  dnnl::reorder(user, w).execute(s, user, w);
  memory a(src, eng, A.data()), c(dst, eng, C.data());
  auto run = [&] {
    prim.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, c}});
    s.wait();
  };
  run();
  for (auto _ : st) {
    run();
    benchmark::DoNotOptimize(C.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
}

// Batch 64 of vit-fmnist: 64·17 rows through Q/K/V/O (192→192), fc1 (192→768), fc2 (768→192);
// batch 32 × 128 tokens of bert-austen: 4096 rows through Q/K/V/O (256→256), fc1 (256→1024), fc2
// (1024→256); the MLPs' row blocks (rows_in_cache): 160 rows of vit-fmnist, 128 of bert-austen.
BENCHMARK(BM_GemmOneDnn)->Args({17, 192, 192})->Args({160, 768, 192})->Args({160, 192, 768})->Args({128, 1024, 256})->Args({128, 256, 1024})->Args({1088, 192, 192})->Args({1088, 768, 192})->Args({1088, 192, 768})
    ->Args({4096, 256, 256})->Args({4096, 1024, 256})->Args({4096, 256, 1024})
    ->Args({2048, 2048, 2048})->Args({1024, 1024, 1024})->Args({2048, 1024, 512})->Args({1024, 2048, 768})->Args({4096, 768, 768})->Args({4096, 192, 768})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GemmOneDnnF32)->Args({1088, 192, 192})->Args({1088, 768, 192})->Args({1088, 192, 768})->Args({2048, 2048, 2048})
    ->Args({4096, 768, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GemmReference)->Args({17, 192, 192})->Args({1088, 192, 192})->Unit(benchmark::kMicrosecond)->UseRealTime();

// The exact AVX2 GEMM (no VNNI: vpmaddwd on int16-widened operands) against its FP32 baseline,
// OpenBLAS sgemm (what libtorch runs), and oneDNN's int8 matmul (inexact on AVX2 for 8-bit
// weights: vpmaddubsw saturates), on small-ViT and BERT-base shapes. The AVX2-only comparison:
// OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 ./build/qtx_kernel_bench
//   --benchmark_filter='Gemm(Avx2Exact|OpenBlasF32|OneDnn|Reference)/'
void ExactGemmShapes(benchmark::internal::Benchmark* b) {
  // Small ViT at batch 64 (1088 rows; QKV 480, O 160, fc1 640, fc2 160→640 in), at batch 1, BERT-base at batch 1.
  for (auto s : std::vector<std::vector<int64_t>>{{1088, 480, 160}, {1088, 160, 160}, {1088, 640, 160}, {1088, 160, 640},
                                                  {17, 480, 160}, {128, 768, 768}, {128, 3072, 768}, {128, 768, 3072}})
    b->Args(s);
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void BM_GemmAvx2Exact(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1)), K = static_cast<int>(st.range(2));
  auto A = random_codes<uint8_t>(static_cast<size_t>(M) * K, 0, 255, 1);
  auto W = random_codes<int8_t>(static_cast<size_t>(N) * K, -128, 127, 2);
  std::vector<int32_t> C(static_cast<size_t>(M) * N);
  const avx2::PackedWeights pw = avx2::PackedWeights::pack(W.data(), N, K);
  avx2::gemm_u8s8_exact(pw, A.data(), M, C.data());
  for (auto _ : st) {
    avx2::gemm_u8s8_exact(pw, A.data(), M, C.data());
    benchmark::DoNotOptimize(C.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmAvx2Exact)->Apply(ExactGemmShapes);
BENCHMARK(BM_GemmOneDnn)->Apply(ExactGemmShapes);
BENCHMARK(BM_GemmReference)->Args({17, 480, 160})->Args({1088, 160, 160})->Args({128, 768, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();

#ifdef QTX_HAVE_OPENBLAS
// y = x · Wᵀ in fp32 as torch.nn.Linear calls it (row-major x [M, K], W [N, K]); the label names
// OpenBLAS's kernels (OPENBLAS_CORETYPE picks them at load).
void BM_GemmOpenBlasF32(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1)), K = static_cast<int>(st.range(2));
  std::vector<float> A(static_cast<size_t>(M) * K), W(static_cast<size_t>(N) * K), C(static_cast<size_t>(M) * N);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& x : A) x = d(rng);
  for (auto& x : W) x = d(rng);
  auto run = [&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, C.data(), N); };
  run();
  for (auto _ : st) {
    run();
    benchmark::DoNotOptimize(C.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
  st.SetLabel(openblas_get_corename());
}
BENCHMARK(BM_GemmOpenBlasF32)->Apply(ExactGemmShapes);
#endif

// Accumulators → codes per channel; the third argument: 1 the float placement (where AVX-512 has
// it), 0 the integer formula alone. Accumulators spread over the code range, as a layer's are.
// avx2: the AVX2 forms (src/runtime/arch/x86/requant_avx2.h), the float placement where asked.
void channel_requant(benchmark::State& st, bool avx2) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1));
  const bool placed = st.range(2) != 0;
  ChannelRequant r = ChannelRequant::make(std::vector<double>(static_cast<size_t>(N), 1e-4),
                                          std::vector<double>(static_cast<size_t>(N), 0.01), 1, 0.02, 128, 0, 255);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -26000, 26000, 3);
  std::vector<uint8_t> out(acc.size());
  for (auto _ : st) {
    if (avx2)
      avx2::channel_requant_rows(r, acc.data(), M, out.data(), placed);
    else if (placed)
      r.rows(acc.data(), M, out.data());
    else
      r.rows_integer(acc.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
void BM_ChannelRequant(benchmark::State& st) { channel_requant(st, false); }
void BM_ChannelRequantAvx2(benchmark::State& st) { channel_requant(st, true); }
// vit-fmnist (hidden 192, MLP 768, 1088 rows at batch 64), a hidden 160 (groups of 16 and a
// 32-wide tail), BERT-base at 128 tokens (hidden 768, MLP 3072).
#define CHANNEL_REQUANT_SHAPES                                                                                   \
  Args({64, 768, 1})->Args({1088, 192, 1})->Args({1088, 192, 0})->Args({1088, 768, 1})->Args({1088, 768, 0})  \
      ->Args({1088, 160, 1})->Args({1088, 160, 0})->Args({128, 768, 1})->Args({128, 768, 0})->Args({128, 3072, 1}) \
      ->Args({128, 3072, 0})->Unit(benchmark::kMicrosecond)
BENCHMARK(BM_ChannelRequant)->CHANNEL_REQUANT_SHAPES;
BENCHMARK(BM_ChannelRequantAvx2)->CHANNEL_REQUANT_SHAPES;

// The same into int32 grid indices (rows32: the GELU table's input); the third argument 1: an
// output step 2e-5 (multiplier 5, shift 27: simd::Lanes::Clamped64) instead of 0.02 (shift 37:
// HighHalves).
void channel_requant32(benchmark::State& st, bool avx2) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1));
  ChannelRequant r = ChannelRequant::make(std::vector<double>(static_cast<size_t>(N), 1e-4),
                                          std::vector<double>(static_cast<size_t>(N), 0.01), 1, st.range(2) ? 2e-5 : 0.02, 128, 0, 255);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -26000, 26000, 3);
  std::vector<int32_t> out(acc.size());
  for (auto _ : st) {
    if (avx2)
      avx2::channel_requant_rows32(r, acc.data(), M, out.data());
    else
      r.rows32(acc.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
void BM_ChannelRequant32(benchmark::State& st) { channel_requant32(st, false); }
void BM_ChannelRequant32Avx2(benchmark::State& st) { channel_requant32(st, true); }
BENCHMARK(BM_ChannelRequant32)->Args({1088, 768, 0})->Args({128, 3072, 0})->Args({1088, 768, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ChannelRequant32Avx2)->Args({1088, 768, 0})->Args({128, 3072, 0})->Args({1088, 768, 1})->Unit(benchmark::kMicrosecond);

// A code → code table over one LayerNorm output of bert-austen at 32 × 128 tokens (4096 × 256):
// apply_table (byte permutes; threads as OMP_NUM_THREADS allows, bench.sh sets 1) and the plain
// loop it replaces (one thread).
void BM_CodeTable(benchmark::State& st) {
  const bool plain = st.range(0) != 0;
  const std::vector<uint8_t> t = table_between(QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255});
  auto in = random_codes<uint8_t>(size_t{4096} * 256, 0, 255, 7);
  std::vector<uint8_t> out(in.size());
  for (auto _ : st) {
    if (plain) apply_table_plain(t.data(), in.data(), in.size(), out.data());
    else apply_table(t, in.data(), in.size(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(in.size()));
}
BENCHMARK(BM_CodeTable)->ArgName("plain")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// The same table and codes through avx2::apply_table (vpshufb sub-tables), against BM_CodeTable/plain:1.
void BM_CodeTableAvx2(benchmark::State& st) {
  const std::vector<uint8_t> t = table_between(QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255});
  auto in = random_codes<uint8_t>(size_t{4096} * 256, 0, 255, 7);
  std::vector<uint8_t> out(in.size());
  for (auto _ : st) {
    avx2::apply_table(t, in.data(), in.size(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(in.size()));
}
BENCHMARK(BM_CodeTableAvx2)->Unit(benchmark::kMicrosecond);

// One multiplier for a whole tensor (the attention context into the output projection's input
// grid): vit-fmnist at batch 64, 1088 rows of 192. Multiplier 0.013 (shift 37); Shift31: 0.7.
void tensor_requant(benchmark::State& st, double multiplier, bool avx2) {
  const size_t n = static_cast<size_t>(st.range(0)) * 192;
  const Requant r = Requant::from_real(multiplier);
  const QParams o{1.0, 128, 0, 255};
  auto in = random_codes<int32_t>(n, -20000, 20000, 9);
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    if (avx2)
      avx2::requant_to_codes(in.data(), n, r, o, out.data());
    else
      requant_to_codes(in.data(), n, r, o, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
}
void BM_TensorRequant(benchmark::State& st) { tensor_requant(st, 0.013, false); }
void BM_TensorRequantAvx2(benchmark::State& st) { tensor_requant(st, 0.013, true); }
void BM_TensorRequantShift31(benchmark::State& st) { tensor_requant(st, 0.7, false); }
void BM_TensorRequantShift31Avx2(benchmark::State& st) { tensor_requant(st, 0.7, true); }
BENCHMARK(BM_TensorRequant)->Arg(1088)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TensorRequantAvx2)->Arg(1088)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TensorRequantShift31)->Arg(1088)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TensorRequantShift31Avx2)->Arg(1088)->Unit(benchmark::kMicrosecond);

// The residual add's requantization: rows of N (192: vit-fmnist at batch 64; Bert: 768 at 128
// tokens); the second argument 1 the float placement, 0 the integer formula alone.
void residual_requant(benchmark::State& st, int N, bool avx2) {
  const int M = static_cast<int>(st.range(0));
  const bool placed = st.range(1) != 0;
  QParams h{0.05, 128, 0, 255}, o{0.06, 120, 0, 255};
  ResidualRequant r = ResidualRequant::make(std::vector<double>(N, 1e-4), std::vector<double>(N, 0.01), h, o);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -40000, 40000, 4);
  auto hc = random_codes<uint8_t>(acc.size(), 0, 255, 5);
  std::vector<uint8_t> out(acc.size());
  for (auto _ : st) {
    if (avx2)
      avx2::residual_requant_rows(r, acc.data(), hc.data(), M, out.data(), placed);
    else if (placed)
      r.rows(acc.data(), hc.data(), M, out.data());
    else
      r.rows_integer(acc.data(), hc.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
void BM_ResidualRequant(benchmark::State& st) { residual_requant(st, 192, false); }
void BM_ResidualRequantAvx2(benchmark::State& st) { residual_requant(st, 192, true); }
void BM_ResidualRequantBert(benchmark::State& st) { residual_requant(st, 768, false); }
void BM_ResidualRequantBertAvx2(benchmark::State& st) { residual_requant(st, 768, true); }
BENCHMARK(BM_ResidualRequant)->Args({1088, 1})->Args({1088, 0})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualRequantAvx2)->Args({1088, 1})->Args({1088, 0})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualRequantBert)->Args({128, 1})->Args({128, 0})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResidualRequantBertAvx2)->Args({128, 1})->Args({128, 0})->Unit(benchmark::kMicrosecond);

void BM_IntLayerNormRows(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), C = 192;
  std::vector<int> alpha = random_codes<int>(C, 0, 3, 6);
  std::vector<float> gamma(C, 1.1f), beta(C, 0.05f);
  IntLayerNorm ln = IntLayerNorm::make(120, alpha, gamma, beta, QParams{0.03, 128, 0, 255});
  auto q = random_codes<uint8_t>(static_cast<size_t>(M) * C, 0, 255, 7);
  std::vector<uint8_t> out(q.size());
  for (auto _ : st) {
    for (int m = 0; m < M; ++m) ln.row(q.data() + static_cast<size_t>(m) * C, out.data() + static_cast<size_t>(m) * C);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * C);
}
BENCHMARK(BM_IntLayerNormRows)->Arg(1088)->Unit(benchmark::kMicrosecond);

// The whole LayerNorm site on residual codes (vit-fmnist: 1088 rows of 192, PTF K = 3): the
// byte tables to x, the sums, the rows' square roots and reciprocals in blocks, the outputs.
void BM_IntLayerNormSiteRows(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), C = 192, K = 3;
  std::vector<int> alpha = random_codes<int>(C, 0, K, 6);
  std::vector<float> gamma(C, 1.1f), beta(C, 0.05f);
  const IntLayerNormSite site = IntLayerNormSite::make(alpha, K, QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255}, gamma,
                                                       beta, QParams{0.03, 128, 0, 255});
  auto h = random_codes<uint8_t>(static_cast<size_t>(M) * C, 0, 255, 7);
  std::vector<uint8_t> out(h.size());
  for (auto _ : st) {
    site.rows(h.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * C);
}
BENCHMARK(BM_IntLayerNormSiteRows)->Arg(1088)->Unit(benchmark::kMicrosecond);

// The member forms (the active level's kernels) against the AVX2 forms
// (avx2 = 1) on the same data: args rows, channels, avx2. vit-fmnist 1088 × 192 (and a hidden
// size of 160), BERT-base-like 8 × 128 tokens × 768. PTF K = 3.
void BM_LayerNormSiteAvx2(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1)), K = 3;
  const bool avx2 = st.range(2) != 0;
  std::unique_ptr<IsaScope> isa;  // IntLayerNormSite::rows: the active level's kernels, or the AVX2 ones
  if (avx2) isa = std::make_unique<IsaScope>(Isa::Avx2);
  std::vector<int> alpha = random_codes<int>(C, 0, K, 6);
  std::vector<float> gamma(C, 1.1f), beta(C, 0.05f);
  const IntLayerNormSite site = IntLayerNormSite::make(alpha, K, QParams{0.05, 131, 0, 255}, QParams{0.011, 97, 0, 255}, gamma,
                                                       beta, QParams{0.03, 128, 0, 255});
  auto h = random_codes<uint8_t>(static_cast<size_t>(M) * C, 0, 255, 7);
  std::vector<uint8_t> out(h.size());
  for (auto _ : st) {
    site.rows(h.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * C);
}
BENCHMARK(BM_LayerNormSiteAvx2)->ArgNames({"M", "C", "avx2"})->Args({1088, 192, 0})->Args({1088, 192, 1})->Args({1088, 160, 0})
    ->Args({1088, 160, 1})->Args({1024, 768, 0})->Args({1024, 768, 1})->Unit(benchmark::kMicrosecond);

// IntLayerNorm's row on centred values (sums, reciprocal, output): row_centred against
// avx2::layernorm_row_centred; placed = 0 forces the integer output formula in both.
void BM_LayerNormRowAvx2(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), C = static_cast<int>(st.range(1));
  const bool avx2 = st.range(2) != 0;
  std::vector<int> alpha = random_codes<int>(C, 0, 3, 6);
  std::vector<float> gamma(C, 1.1f), beta(C, 0.05f);
  IntLayerNorm ln = IntLayerNorm::make(120, alpha, gamma, beta, QParams{0.03, 128, 0, 255});
  ln.placed = st.range(3) != 0;
  auto q = random_codes<int32_t>(static_cast<size_t>(M) * C, 0, 255, 7);
  for (size_t i = 0; i < q.size(); ++i) q[i] = (q[i] - 120) * (1 << alpha[i % static_cast<size_t>(C)]);
  std::vector<uint8_t> out(q.size());
  for (auto _ : st) {
    for (int m = 0; m < M; ++m) {
      const size_t at = static_cast<size_t>(m) * C;
      if (avx2) avx2::layernorm_row_centred(ln, q.data() + at, out.data() + at);
      else ln.row_centred(q.data() + at, out.data() + at);
    }
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * C);
}
BENCHMARK(BM_LayerNormRowAvx2)->ArgNames({"M", "C", "avx2", "placed"})->Args({1088, 192, 0, 1})->Args({1088, 192, 1, 1})
    ->Args({1088, 192, 0, 0})->Args({1088, 192, 1, 0})->Args({1024, 768, 0, 1})->Args({1024, 768, 1, 1})->Unit(benchmark::kMicrosecond);

// One head's attention over a batch: scores, Log-Int-Softmax rows, A·V by shifts. Args = tokens
// and softmax bits: 17/4 (vit-fmnist 8/8/4, batch 64) or 128/8 (bert-austen 8/8/8, batch 8).
void attention_head_bench(benchmark::State& st, bool avx2) {
  const int T = static_cast<int>(st.range(0)), bits = static_cast<int>(st.range(1)), dh = 64, ld = 256, B = T > 64 ? 8 : 64;
  auto q = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 8);
  auto k = random_codes<uint8_t>(q.size(), 0, 255, 9);
  auto v = random_codes<uint8_t>(q.size(), 0, 255, 10);
  std::vector<int32_t> S(static_cast<size_t>(T) * T), ctx(static_cast<size_t>(T) * dh);
  std::vector<int8_t> codes(S.size());
  LogIntSoftmax lis = LogIntSoftmax::make(IntExp::for_scale(0.05), 255, bits);
  for (auto _ : st) {
    for (int b = 0; b < B; ++b) {
      (avx2 ? avx2::qk_scores : qk_scores)(q.data(), 128, k.data(), 128, T, T, dh, ld, S.data());
      for (auto& x : S) x = std::max(-128, std::min(127, x >> 10));  // one 8-bit range, as after requantization
      if (avx2)
        avx2::lis_rows(lis, S.data(), nullptr, T, T, codes.data());
      else
        lis.rows(S.data(), nullptr, T, T, codes.data());
      (avx2 ? avx2::av_log2 : av_log2)(codes.data(), v.data(), 128, T, T, dh, ld, std::min((1 << bits) - 1, 20), ctx.data(), dh);
    }
    benchmark::DoNotOptimize(ctx.data());
  }
  st.SetItemsProcessed(st.iterations() * B);
}
void BM_AttentionHead(benchmark::State& st) { attention_head_bench(st, false); }
void BM_AttentionHeadAvx2(benchmark::State& st) { attention_head_bench(st, true); }
BENCHMARK(BM_AttentionHead)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionHeadAvx2)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);

// The two attention matmuls alone, one head of T tokens, dh = 64: GOPS = 2·T·T·dh per second.
// The *Avx2 cases: the AVX2 forms (src/runtime/arch/x86/attention_avx2.cpp) on the same data.
void qk_scores_bench(benchmark::State& st, bool avx2) {
  const int T = static_cast<int>(st.range(0)), dh = 64, ld = 256;
  auto q = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 8);
  auto k = random_codes<uint8_t>(q.size(), 0, 255, 9);
  std::vector<int32_t> S(static_cast<size_t>(T) * T);
  for (auto _ : st) {
    (avx2 ? avx2::qk_scores : qk_scores)(q.data(), 128, k.data(), 120, T, T, dh, ld, S.data());
    benchmark::DoNotOptimize(S.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * T * T * dh, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_QkScores(benchmark::State& st) { qk_scores_bench(st, false); }
void BM_QkScoresAvx2(benchmark::State& st) { qk_scores_bench(st, true); }
BENCHMARK(BM_QkScores)->Arg(17)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_QkScoresAvx2)->Arg(17)->Arg(128)->Unit(benchmark::kMicrosecond);

void av_log2_bench(benchmark::State& st, bool avx2) {
  const int T = static_cast<int>(st.range(0)), kmax = static_cast<int>(st.range(1)), dh = 64, ld = 256;
  auto v = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 10);
  auto codes = random_codes<int8_t>(static_cast<size_t>(T) * T, -1, kmax, 12);
  std::vector<int32_t> ctx(static_cast<size_t>(T) * dh);
  for (auto _ : st) {
    (avx2 ? avx2::av_log2 : av_log2)(codes.data(), v.data(), 128, T, T, dh, ld, kmax, ctx.data(), dh);
    benchmark::DoNotOptimize(ctx.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * T * T * dh, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_AvLog2(benchmark::State& st) { av_log2_bench(st, false); }
void BM_AvLog2Avx2(benchmark::State& st) { av_log2_bench(st, true); }
BENCHMARK(BM_AvLog2)->Args({17, 15})->Args({128, 15})->Args({128, 20})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AvLog2Avx2)->Args({17, 15})->Args({128, 15})->Args({128, 20})->Unit(benchmark::kMicrosecond);

// Log-Int-Softmax alone on 64 rows of 8-bit scores, one row() call a row, or one rows() call for
// all of them as the attention calls it per head (rows of 8..32 scores in phases over the
// block; 128 row by row). Args = row length, bits.
void log_int_softmax_bench(benchmark::State& st, bool block, bool avx2) {
  const int n = static_cast<int>(st.range(0)), bits = static_cast<int>(st.range(1)), rows = 64;
  auto S = random_codes<int32_t>(static_cast<size_t>(rows) * n, -128, 127, 11);
  std::vector<int8_t> codes(S.size());
  LogIntSoftmax lis = LogIntSoftmax::make(IntExp::for_scale(0.05), 255, bits);
  for (auto _ : st) {
    if (block && avx2)
      avx2::lis_rows(lis, S.data(), nullptr, rows, n, codes.data());
    else if (block)
      lis.rows(S.data(), nullptr, rows, n, codes.data());
    else if (avx2)
      for (int r = 0; r < rows; ++r) avx2::lis_row(lis, S.data() + static_cast<size_t>(r) * n, nullptr, n, codes.data() + static_cast<size_t>(r) * n);
    else
      for (int r = 0; r < rows; ++r) lis.row(S.data() + static_cast<size_t>(r) * n, nullptr, n, codes.data() + static_cast<size_t>(r) * n);
    benchmark::DoNotOptimize(codes.data());
  }
  st.SetItemsProcessed(st.iterations() * rows * n);
}
void BM_LogIntSoftmaxRow(benchmark::State& st) { log_int_softmax_bench(st, false, false); }
void BM_LogIntSoftmaxRows(benchmark::State& st) { log_int_softmax_bench(st, true, false); }
void BM_LogIntSoftmaxRowAvx2(benchmark::State& st) { log_int_softmax_bench(st, false, true); }
void BM_LogIntSoftmaxRowsAvx2(benchmark::State& st) { log_int_softmax_bench(st, true, true); }
BENCHMARK(BM_LogIntSoftmaxRow)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LogIntSoftmaxRows)->Args({17, 4})->Args({128, 4})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LogIntSoftmaxRowAvx2)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LogIntSoftmaxRowsAvx2)->Args({17, 4})->Args({128, 4})->Unit(benchmark::kMicrosecond);

// GELU by table on fc1's accumulators (vit-fmnist batch 64: 1088 rows of 768; bert-austen's MLP
// row block: 128 rows of 1024).
void BM_IntElementwiseGelu(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1));
  IntLinear fc1;
  fc1.N = N;
  fc1.acc_scale.assign(N, 2e-5);
  fc1.bias.assign(N, 0.01);
  const QParams out{0.02, 10, 0, 255};
  IntElementwise gelu = IntElementwise::make(fc1, activation_fn("gelu"), out, -8.0, 5.0);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -200000, 200000, 12);
  std::vector<uint8_t> codes(acc.size());
  for (auto _ : st) {
    gelu.rows(acc.data(), M, codes.data());
    benchmark::DoNotOptimize(codes.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
BENCHMARK(BM_IntElementwiseGelu)->Args({64, 768})->Args({1088, 768})->Args({128, 1024})->Unit(benchmark::kMicrosecond);

// The same data through IntElementwise::rows (form 0: the active level's kernels), avx2::elementwise_rows (1: the polynomial placement) and
// avx2::elementwise_rows_by_table (2: the gathers). vit-fmnist's MLP 1088 × 768 (and 640), BERT's
// 128 × 3072.
void BM_ElementwiseGeluAvx2(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1)), form = static_cast<int>(st.range(2));
  IntLinear fc1;
  fc1.N = N;
  fc1.acc_scale.assign(N, 2e-5);
  fc1.bias.assign(N, 0.01);
  const QParams out{0.02, 10, 0, 255};
  IntElementwise gelu = IntElementwise::make(fc1, activation_fn("gelu"), out, -8.0, 5.0);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -200000, 200000, 12);
  std::vector<uint8_t> codes(acc.size());
  for (auto _ : st) {
    if (form == 0) gelu.rows(acc.data(), M, codes.data());
    else if (form == 1) avx2::elementwise_rows(gelu, acc.data(), M, codes.data());
    else avx2::elementwise_rows_by_table(gelu, acc.data(), M, codes.data());
    benchmark::DoNotOptimize(codes.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
BENCHMARK(BM_ElementwiseGeluAvx2)->ArgNames({"M", "N", "form"})->Args({1088, 768, 0})->Args({1088, 768, 1})->Args({1088, 768, 2})
    ->Args({1088, 640, 0})->Args({1088, 640, 1})->Args({128, 3072, 0})->Args({128, 3072, 1})->Args({128, 3072, 2})
    ->Unit(benchmark::kMicrosecond);

// Integer square root on LayerNorm-sized arguments (C²·var with ~48 significant bits): once per row.
void BM_Isqrt(benchmark::State& st) {
  std::mt19937_64 rng(13);
  std::vector<uint64_t> v(4096);
  for (auto& x : v) x = rng() >> 16;
  uint64_t sum = 0;
  for (auto _ : st) {
    for (uint64_t x : v) sum += isqrt(x);
    benchmark::DoNotOptimize(sum);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(v.size()));
}
BENCHMARK(BM_Isqrt);

void BM_IntExp(benchmark::State& st) {
  IntExp ie = IntExp::for_scale(0.002);
  auto q = random_codes<int32_t>(4096, -20000, 0, 11);
  int64_t sum = 0;
  for (auto _ : st) {
    for (int32_t x : q) sum += ie(x);
    benchmark::DoNotOptimize(sum);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(q.size()));
}
BENCHMARK(BM_IntExp);

}  // namespace

BENCHMARK_MAIN();
