// Where a forward's time goes, by class of operation: the oneDNN linear GEMMs, the attention
// matmuls (Q·Kᵀ and A·V, integer kernels of our own), and the rest — softmax, LayerNorm,
// activation tables, requantization, embedding. Off by default; while off each timed region
// costs one relaxed atomic load. `qtx bench` and `qtx_run --profile` turn it on.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace qtx::rt {

enum class OpClass : int {
  LinearGemm,       // Int8Gemm::run (oneDNN u8·s8)
  AttentionMatmul,  // Q·Kᵀ scores and A·V by shifts
  Softmax,          // Log-Int-Softmax (or the float softmax of hybrid recipes)
  LayerNorm,        // integer LayerNorm sites, PTF tables included
  Activation,       // GELU / tanh by table
  Requant,          // accumulators → codes, residual adds, code → code tables
  Embedding,        // patch / token embedding assembly
  kCount
};
constexpr int kOpClasses = static_cast<int>(OpClass::kCount);
const char* op_class_name(OpClass c);

struct OpProfile {
  std::array<double, kOpClasses> seconds{};  // wall seconds per class
  double gemm_ops = 0;                      // 2·M·N·K summed over the linear GEMMs
  double timed() const;                     // Σ seconds
  // Fractions of `wall` seconds (the forwards the profile covers): one class, and what no timer saw.
  double share(OpClass c, double wall) const { return wall > 0 ? seconds[static_cast<size_t>(c)] / wall : 0; }
  double untimed(double wall) const { return wall > 0 ? 1 - timed() / wall : 0; }
};

void profile_ops(bool on);  // also resets the totals
bool profiling_ops();
OpProfile op_profile();
void add_op_time(OpClass c, double seconds);
void add_gemm_ops(double ops);

// Times its scope as one class (wall time of the calling thread: put it around whole
// kernels, parallel regions included, never inside them).
class OpTimer {
 public:
  explicit OpTimer(OpClass c) : c_(c), on_(profiling_ops()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() { stop(); }
  // Ends the timing before the scope does.
  void stop() {
    if (on_) add_op_time(c_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
    on_ = false;
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  OpClass c_;
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

// f() timed as class c.
template <typename F>
void timed(OpClass c, F&& f) {
  OpTimer timer(c);
  f();
}

// A parallel region that fuses several classes per iteration (attention: Q·Kᵀ, requant,
// softmax, A·V per sequence and head). Each iteration marks its laps; the region's wall time is
// then shared among the classes in proportion to the time all threads spent in each.
class FusedOpRegion {
 public:
  FusedOpRegion() : on_(profiling_ops()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~FusedOpRegion() { end(); }
  // Attributes the wall time so far (the scope's end does it otherwise); later laps are ignored.
  void end();
  FusedOpRegion(const FusedOpRegion&) = delete;
  FusedOpRegion& operator=(const FusedOpRegion&) = delete;

  // One iteration's stopwatch: lap(c) charges the time since the previous lap (or the start) to c.
  class Laps {
   public:
    explicit Laps(FusedOpRegion& r) : r_(r) {
      if (r_.on_) last_ = std::chrono::steady_clock::now();
    }
    void lap(OpClass c) {
      if (!r_.on_ || r_.ended_) return;
      const auto now = std::chrono::steady_clock::now();
      r_.ns_[static_cast<size_t>(c)] += std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_).count();
      last_ = now;
    }

   private:
    FusedOpRegion& r_;
    std::chrono::steady_clock::time_point last_;
  };

 private:
  bool on_, ended_ = false;
  std::chrono::steady_clock::time_point t0_;
  std::array<std::atomic<int64_t>, kOpClasses> ns_{};
};

}  // namespace qtx::rt
