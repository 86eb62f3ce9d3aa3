// The integer runtime driven over labelled data: evaluation, parity with the fake-quant
// simulation of the same artifact, and the side-by-side speed benchmark against libtorch FP32.
#pragma once
#include <string>
#include <vector>

#include "eval/evaluate.h"
#include "runtime/int_model.h"
#include "runtime/profile.h"

namespace qtx {

// Logits of the integer model for a batch built by LabeledData (images or tokens).
std::vector<float> int_logits(rt::IntModel& model, const ModelInput& in);

EvalResult evaluate_int(rt::IntModel& model, const LabeledData& data, int batch_size, const ProgressFn& progress = {});

struct ParityResult {
  EvalResult fake, integer;
  int agree = 0;
  double agreement() const { return fake.samples ? 100.0 * agree / fake.samples : 0.0; }
};
// float64: run the fake-quant simulation in double precision. In float32 its GEMMs' rounding
// (≈1e-6 relative) moves values across quantization boundaries the integer runtime computes
// exactly; float64 shows the integer arithmetic itself (docs/RUNTIME.md).
ParityResult parity(const std::string& qdir, const LabeledData& data, int batch_size, bool float64,
                    const ProgressFn& progress = {});

// Side-by-side speed of libtorch FP32 (the float model) and the integer runtime (the quantized
// folder) on the same inputs and thread count: medians of `repeats` timed forwards each, the
// engines alternating so machine noise hits both (the integer one twice: by default, and with
// every row of the last layer). Text models: every sample is `seq_len`
// attended tokens (its passage's wordpieces repeated to fill them; 0 = the passages as they are).
struct BenchRow {
  int batch = 0, threads = 0;
  double fp32_ms = 0, int_ms = 0;  // median latency of one forward of the whole batch
  // The integer runtime with every row of the last layer (IntModel::set_cls_only_last_layer):
  // the same work as libtorch, which shows how much of the speed-up is the int8 arithmetic.
  double int_all_rows_ms = 0;
  // Quartiles of the per-repeat speed-up, FP32 ms / integer ms of the same repeat (the engines
  // run back to back in each): how far the machine's noise moves the ratio.
  double speedup_q1 = 0, speedup_q3 = 0;
  // Extra integer passes with the runtime's op profiler on (the timers add a little to each):
  // wall seconds per op class, and of all those passes.
  rt::OpProfile profile;
  double profiled_seconds = 0;
  double speedup() const { return int_ms > 0 ? fp32_ms / int_ms : 0; }
  double speedup_all_rows() const { return int_all_rows_ms > 0 ? fp32_ms / int_all_rows_ms : 0; }
  double share(rt::OpClass c) const { return profile.share(c, profiled_seconds); }
  // Softmax, LayerNorm, activation, requantization, embedding and untimed glue: all but the
  // linear GEMMs and the attention matmuls.
  double non_gemm_share() const {
    return 1 - share(rt::OpClass::LinearGemm) - share(rt::OpClass::AttentionMatmul);
  }
  double gemm_gops() const {
    const double s = profile.seconds[static_cast<size_t>(rt::OpClass::LinearGemm)];
    return s > 0 ? profile.gemm_ops / s / 1e9 : 0;
  }
};
std::vector<BenchRow> bench(const std::string& float_dir, const std::string& qdir, const std::vector<int>& batches,
                            const std::vector<int>& threads, int repeats, int seq_len = 128);

}  // namespace qtx
