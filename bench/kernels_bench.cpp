// Google Benchmark microbenchmarks of the integer runtime's kernels (no libtorch): the oneDNN
// int8 GEMM against the plain C++ reference and on a large shape (the machine's int8 peak),
// and every non-GEMM kernel on vit-fmnist's shapes (17 tokens, hidden 192, MLP 768, 3 heads).
// Run: ./build/qtx_kernel_bench [--benchmark_filter=Gemm] ; OMP_NUM_THREADS sets the threads.
#include <benchmark/benchmark.h>

#include <dnnl.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"

using namespace qtx::rt;

namespace {

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

// Accumulators → codes per channel; the third argument: 1 the float placement (where AVX-512 has
// it), 0 the integer formula alone. Accumulators spread over the code range, as a layer's are.
void BM_ChannelRequant(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = static_cast<int>(st.range(1));
  const bool placed = st.range(2) != 0;
  ChannelRequant r = ChannelRequant::make(std::vector<double>(static_cast<size_t>(N), 1e-4),
                                          std::vector<double>(static_cast<size_t>(N), 0.01), 1, 0.02, 128, 0, 255);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -26000, 26000, 3);
  std::vector<uint8_t> out(acc.size());
  for (auto _ : st) {
    if (placed)
      r.rows(acc.data(), M, out.data());
    else
      r.rows_integer(acc.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
BENCHMARK(BM_ChannelRequant)->Args({64, 768, 1})->Args({1088, 192, 1})->Args({1088, 192, 0})->Args({1088, 768, 1})->Unit(benchmark::kMicrosecond);

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

// One multiplier for a whole tensor (the attention context into the output projection's input
// grid): vit-fmnist at batch 64, 1088 rows of 192.
void BM_TensorRequant(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0)) * 192;
  const Requant r = Requant::from_real(0.013);
  const QParams o{1.0, 128, 0, 255};
  auto in = random_codes<int32_t>(n, -20000, 20000, 9);
  std::vector<uint8_t> out(n);
  for (auto _ : st) {
    requant_to_codes(in.data(), n, r, o, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_TensorRequant)->Arg(1088)->Unit(benchmark::kMicrosecond);

void BM_ResidualRequant(benchmark::State& st) {
  const int M = static_cast<int>(st.range(0)), N = 192;
  const bool placed = st.range(1) != 0;
  QParams h{0.05, 128, 0, 255}, o{0.06, 120, 0, 255};
  ResidualRequant r = ResidualRequant::make(std::vector<double>(N, 1e-4), std::vector<double>(N, 0.01), h, o);
  auto acc = random_codes<int32_t>(static_cast<size_t>(M) * N, -40000, 40000, 4);
  auto hc = random_codes<uint8_t>(acc.size(), 0, 255, 5);
  std::vector<uint8_t> out(acc.size());
  for (auto _ : st) {
    if (placed)
      r.rows(acc.data(), hc.data(), M, out.data());
    else
      r.rows_integer(acc.data(), hc.data(), M, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * M * N);
}
BENCHMARK(BM_ResidualRequant)->Args({1088, 1})->Args({1088, 0})->Unit(benchmark::kMicrosecond);

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

// One head's attention over a batch: scores, Log-Int-Softmax rows, A·V by shifts. Args = tokens
// and softmax bits: 17/4 (vit-fmnist 8/8/4, batch 64) or 128/8 (bert-austen 8/8/8, batch 8).
void BM_AttentionHead(benchmark::State& st) {
  const int T = static_cast<int>(st.range(0)), bits = static_cast<int>(st.range(1)), dh = 64, ld = 256, B = T > 64 ? 8 : 64;
  auto q = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 8);
  auto k = random_codes<uint8_t>(q.size(), 0, 255, 9);
  auto v = random_codes<uint8_t>(q.size(), 0, 255, 10);
  std::vector<int32_t> S(static_cast<size_t>(T) * T), ctx(static_cast<size_t>(T) * dh);
  std::vector<int8_t> codes(S.size());
  LogIntSoftmax lis = LogIntSoftmax::make(IntExp::for_scale(0.05), 255, bits);
  for (auto _ : st) {
    for (int b = 0; b < B; ++b) {
      qk_scores(q.data(), 128, k.data(), 128, T, T, dh, ld, S.data());
      for (auto& x : S) x = std::max(-128, std::min(127, x >> 10));  // one 8-bit range, as after requantization
      lis.rows(S.data(), nullptr, T, T, codes.data());
      av_log2(codes.data(), v.data(), 128, T, T, dh, ld, std::min((1 << bits) - 1, 20), ctx.data(), dh);
    }
    benchmark::DoNotOptimize(ctx.data());
  }
  st.SetItemsProcessed(st.iterations() * B);
}
BENCHMARK(BM_AttentionHead)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);

// The two attention matmuls alone, one head of T tokens, dh = 64: GOPS = 2·T·T·dh per second.
void BM_QkScores(benchmark::State& st) {
  const int T = static_cast<int>(st.range(0)), dh = 64, ld = 256;
  auto q = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 8);
  auto k = random_codes<uint8_t>(q.size(), 0, 255, 9);
  std::vector<int32_t> S(static_cast<size_t>(T) * T);
  for (auto _ : st) {
    qk_scores(q.data(), 128, k.data(), 120, T, T, dh, ld, S.data());
    benchmark::DoNotOptimize(S.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * T * T * dh, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_QkScores)->Arg(17)->Arg(128)->Unit(benchmark::kMicrosecond);

void BM_AvLog2(benchmark::State& st) {
  const int T = static_cast<int>(st.range(0)), kmax = static_cast<int>(st.range(1)), dh = 64, ld = 256;
  auto v = random_codes<uint8_t>(static_cast<size_t>(T) * ld, 0, 255, 10);
  auto codes = random_codes<int8_t>(static_cast<size_t>(T) * T, -1, kmax, 12);
  std::vector<int32_t> ctx(static_cast<size_t>(T) * dh);
  for (auto _ : st) {
    av_log2(codes.data(), v.data(), 128, T, T, dh, ld, kmax, ctx.data(), dh);
    benchmark::DoNotOptimize(ctx.data());
  }
  st.counters["GOPS"] = benchmark::Counter(2.0 * T * T * dh, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AvLog2)->Args({17, 15})->Args({128, 15})->Args({128, 20})->Unit(benchmark::kMicrosecond);

// Log-Int-Softmax alone on 64 rows of 8-bit scores, one row() call a row, or one rows() call for
// all of them as the attention calls it per head (rows of 8..32 scores in phases over the
// block; 128 row by row). Args = row length, bits.
void log_int_softmax_bench(benchmark::State& st, bool block) {
  const int n = static_cast<int>(st.range(0)), bits = static_cast<int>(st.range(1)), rows = 64;
  auto S = random_codes<int32_t>(static_cast<size_t>(rows) * n, -128, 127, 11);
  std::vector<int8_t> codes(S.size());
  LogIntSoftmax lis = LogIntSoftmax::make(IntExp::for_scale(0.05), 255, bits);
  for (auto _ : st) {
    if (block)
      lis.rows(S.data(), nullptr, rows, n, codes.data());
    else
      for (int r = 0; r < rows; ++r) lis.row(S.data() + static_cast<size_t>(r) * n, nullptr, n, codes.data() + static_cast<size_t>(r) * n);
    benchmark::DoNotOptimize(codes.data());
  }
  st.SetItemsProcessed(st.iterations() * rows * n);
}
void BM_LogIntSoftmaxRow(benchmark::State& st) { log_int_softmax_bench(st, false); }
void BM_LogIntSoftmaxRows(benchmark::State& st) { log_int_softmax_bench(st, true); }
BENCHMARK(BM_LogIntSoftmaxRow)->Args({17, 4})->Args({128, 4})->Args({128, 8})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LogIntSoftmaxRows)->Args({17, 4})->Args({128, 4})->Unit(benchmark::kMicrosecond);

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
