#include "runtime/profile.h"

#include <mutex>

namespace qtx::rt {

namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
OpProfile g_profile;
}  // namespace

const char* op_class_name(OpClass c) {
  switch (c) {
    case OpClass::LinearGemm: return "linear GEMMs";
    case OpClass::AttentionMatmul: return "attention matmuls";
    case OpClass::Softmax: return "softmax";
    case OpClass::LayerNorm: return "LayerNorm";
    case OpClass::Activation: return "activation";
    case OpClass::Requant: return "requantization";
    case OpClass::Embedding: return "embedding";
    case OpClass::kCount: break;
  }
  return "?";
}

double OpProfile::timed() const {
  double s = 0;
  for (double v : seconds) s += v;
  return s;
}

void profile_ops(bool on) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_profile = {};
  g_on.store(on, std::memory_order_relaxed);
}

bool profiling_ops() { return g_on.load(std::memory_order_relaxed); }

OpProfile op_profile() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_profile;
}

void add_op_time(OpClass c, double seconds) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_profile.seconds[static_cast<size_t>(c)] += seconds;
}

void add_gemm_ops(double ops) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_profile.gemm_ops += ops;
}

void FusedOpRegion::end() {
  if (!on_ || ended_) return;
  ended_ = true;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  double total = 0;
  for (const auto& v : ns_) total += static_cast<double>(v.load());
  if (total <= 0) return;
  std::lock_guard<std::mutex> lock(g_mu);
  for (size_t c = 0; c < ns_.size(); ++c) g_profile.seconds[c] += wall * static_cast<double>(ns_[c].load()) / total;
}

}  // namespace qtx::rt
