#include "runtime/gemm.h"

#include <omp.h>


#include <dnnl.hpp>
#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

#include "formats/error.h"
#include "runtime/arch/x86/gemm_avx2.h"
#include "runtime/cpu_isa.h"
#include "runtime/int_kernels.h"
#include "runtime/parallel.h"
#include "runtime/profile.h"

namespace qtx::rt {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {
// Below this many multiply-adds a GEMM runs in one thread (see run_untimed).
constexpr double kMinParallelMacs = 4.0e6;

// oneDNN's own instruction-set cap, from QTX_MAX_ISA; it can be set only before oneDNN's first
// primitive, so it is set with the engine and holds for the process.
dnnl::cpu_isa onednn_cap(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return dnnl::cpu_isa::sse41;  // oneDNN is not called at this level
    case Isa::Avx2: return dnnl::cpu_isa::avx2;
    case Isa::Avx512: return dnnl::cpu_isa::avx512_core;
    case Isa::Avx512Vnni: return dnnl::cpu_isa::all;
  }
  return dnnl::cpu_isa::all;
}

// One CPU engine for the process and one stream per thread: creating them per call cost
// microseconds per GEMM, which shows at batch 1.
const dnnl::engine& cpu_engine() {
  static const dnnl::engine eng = [] {
    if (max_isa_from_env() < cpu_isa()) dnnl::set_max_cpu_isa(onednn_cap(max_isa_from_env()));
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return eng;
}

// Whether oneDNN multiplies u8 by s8 with VNNI (vpdpbusd: exact int32 sums). Without it, it
// uses vpmaddubsw, whose int16 pair sums saturate unless every |w| ≤ 64 (255 · 64 · 2 < 2^15).
bool onednn_has_vnni() {
  static const bool vnni = [] {
    cpu_engine();  // the cap first
    constexpr unsigned kVnniBits = (dnnl_cpu_isa_avx512_core_vnni ^ dnnl_cpu_isa_avx512_core) | (dnnl_cpu_isa_avx2_vnni ^ dnnl_cpu_isa_avx2);
    return (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & kVnniBits) != 0;
  }();
  return vnni;
}

const char* onednn_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}
dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}
}  // namespace

struct Int8Gemm::Dnnl {
  const dnnl::engine& eng = cpu_engine();
  // One primitive per row count M and thread count (fixed per model, batch size and setting), each with the
  // weight in the layout that primitive wants; most M share one layout, reordered once.
  struct Plan {
    dnnl::matmul prim;
    memory::desc src, dst;
    std::shared_ptr<memory> w;
  };
  // Keyed by (M, threads): oneDNN splits the work among the threads it sees when the primitive
  // is made, so a plan made for one thread runs a two-thread call on one core's partition.
  std::map<std::pair<int, int>, Plan> plans;
  std::vector<std::pair<memory::desc, std::shared_ptr<memory>>> packed;
  std::mutex mu;
};

Int8Gemm::Int8Gemm(const int8_t* w, int N, int K, Kernels kernels)
    : N_(N), K_(K), kernels_(kernels), w_(w, w + static_cast<size_t>(N) * K), wsum_(static_cast<size_t>(N), 0) {
  for (int n = 0; n < N; ++n) {
    int64_t abs_sum = 0;
    for (int k = 0; k < K; ++k) {
      const int v = w[static_cast<size_t>(n) * K + k];
      wsum_[static_cast<size_t>(n)] += v;
      abs_sum += std::abs(v);
      max_abs_w_ = std::max(max_abs_w_, std::abs(v));
    }
    max_abs_row_sum_ = std::max(max_abs_row_sum_, abs_sum);
  }
  if (kernels_ == Kernels::Fast) dnnl_ = std::make_unique<Dnnl>();
}

Int8Gemm::~Int8Gemm() = default;

void Int8Gemm::run(const uint8_t* A, int M, int32_t za, int32_t* C) const {
  OpTimer timer(OpClass::LinearGemm);
  if (profiling_ops()) add_gemm_ops(2.0 * M * N_ * K_);
  run_untimed(A, M, za, C);
}

Int8Gemm::Path Int8Gemm::path() const {
  const Isa isa = active_isa();
  if (kernels_ == Kernels::Reference || isa == Isa::Scalar) return Path::Reference;
  // The in-process cap (set_max_isa) counts too, so that a test capped at avx2 on a VNNI machine
  // runs the exact kernel an AVX2-only CPU runs.
  if (max_abs_w_ <= 64 || (onednn_has_vnni() && isa >= Isa::Avx512Vnni)) return Path::OneDnn;
  return Path::Exact;
}

void Int8Gemm::run_untimed(const uint8_t* A, int M, int32_t za, int32_t* C) const {
  switch (path()) {
    case Path::Reference: return gemm_u8s8_plain(A, za, w_.data(), C, M, N_, K_);
    case Path::Exact: return run_exact(A, M, za, C);
    case Path::OneDnn: break;
  }
  Dnnl& d = *dnnl_;
  // Small products run in this thread alone, plan and execution alike: splitting ~1 M
  // multiply-adds over threads costs more in synchronisation than it saves (ViT at batch 1 on
  // two threads was slower than on one).
  struct OneThread {  // restores the thread count on every way out
    int threads = omp_get_max_threads();
    bool on = false;
    ~OneThread() {
      if (on) omp_set_num_threads(threads);
    }
  } one;
  if (one.threads > 1 && static_cast<double>(M) * N_ * K_ < kMinParallelMacs) {
    one.on = true;
    omp_set_num_threads(1);
  }
  Dnnl::Plan* plan;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    const std::pair<int, int> key(M, omp_get_max_threads());
    auto it = d.plans.find(key);
    if (it == d.plans.end()) {
      memory::desc src({M, K_}, dt::u8, tag::ab), dst({M, N_}, dt::s32, tag::ab);
      memory::desc wany({K_, N_}, dt::s8, tag::any);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wany, dst), d.eng);
      Dnnl::Plan p{dnnl::matmul(pd), src, dst, nullptr};
      for (auto& [md, mem] : d.packed)
        if (md == pd.weights_desc()) p.w = mem;
      if (!p.w) {  // reorder the [N, K] row-major weight (= [K, N] in layout "ba") once
        dnnl::stream s(d.eng);
        memory user({{K_, N_}, dt::s8, tag::ba}, d.eng, const_cast<int8_t*>(w_.data()));
        p.w = std::make_shared<memory>(pd.weights_desc(), d.eng);
        dnnl::reorder(user, *p.w).execute(s, user, *p.w);
        s.wait();
        d.packed.emplace_back(pd.weights_desc(), p.w);
      }
      it = d.plans.emplace(key, std::move(p)).first;
    }
    plan = &it->second;
  }
  dnnl::stream& s = thread_stream();
  memory src(plan->src, d.eng, const_cast<uint8_t*>(A)), dst(plan->dst, d.eng, C);
  plan->prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *plan->w}, {DNNL_ARG_DST, dst}});
  s.wait();
  subtract_zero_point_term(M, za, C);
}

void Int8Gemm::run_exact(const uint8_t* A, int M, int32_t za, int32_t* C) const {
  // Packed on first use (twice the int8 weight's size): machines with VNNI never need it.
  std::call_once(exact_once_, [&] { exact_ = std::make_unique<avx2::PackedWeights>(avx2::PackedWeights::pack(w_.data(), N_, K_)); });
  avx2::gemm_u8s8_exact(*exact_, A, M, C);
  subtract_zero_point_term(M, za, C);
}

void Int8Gemm::subtract_zero_point_term(int M, int32_t za, int32_t* C) const {
  if (za != 0) {
    const int N = N_;
    const int32_t* __restrict ws = wsum_.data();  // a local: C's stores may alias the member
    parallel_for(M, static_cast<size_t>(M) * N, [=](int m) {  // by value: C's stores may alias a captured reference
      int32_t* __restrict c = C + static_cast<size_t>(m) * N;
      for (int n = 0; n < N; ++n) c[n] -= za * ws[n];
    });
  }
}

std::string isa_summary() {
  const char* cap = std::getenv("QTX_MAX_ISA");
  std::string gemm;
  if (active_isa() == Isa::Scalar)
    gemm = "the plain loop";
  else if (onednn_has_vnni() && active_isa() >= Isa::Avx512Vnni)
    gemm = std::string("oneDNN ") + (cpu_engine(), onednn_isa_name());
  else
    gemm = std::string("oneDNN ") + (cpu_engine(), onednn_isa_name()) + " where every |w| <= 64, else the exact AVX2 int16 kernel";
  return std::string("kernels ") + isa_name(active_isa()) + " (CPU " + isa_name(cpu_isa()) + ", QTX_MAX_ISA " + (cap && *cap ? cap : "unset") +
         "), int8 GEMM " + gemm;
}

void set_threads(int n) {
  if (n > kMaxThreads) fail("--threads", std::to_string(n) + " is more than the " + std::to_string(kMaxThreads) + " threads qtx allows");
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace qtx::rt
