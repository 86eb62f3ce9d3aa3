#include "tasks/runtime_task.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include "formats/error.h"
#include "formats/finite.h"
#include "quant/quant_model.h"
#include "runtime/gemm.h"
#include "runtime/profile.h"
#include "tasks/labeled_data.h"

namespace qtx {

std::vector<float> int_logits(rt::IntModel& model, const ModelInput& in) {
  const ModelConfig& cfg = model.config();
  std::vector<float> logits;
  if (in.pixel_values.defined()) {
    at::Tensor x = in.pixel_values.to(at::kFloat).contiguous();
    // The runtime reads channels × image_size² floats per image from a bare pointer.
    const std::vector<int64_t> want = {x.size(0), cfg.num_channels, cfg.image_size, cfg.image_size};
    if (x.dim() != 4 || x.sizes().vec() != want)
      fail("integer runtime", "images of " + std::to_string(x.numel()) + " floats in " + std::to_string(x.dim()) + " dimensions for a model that takes [N, " + std::to_string(cfg.num_channels) + ", " +
                                  std::to_string(cfg.image_size) + ", " + std::to_string(cfg.image_size) + "]");
    logits = model.classify_images(x.data_ptr<float>(), static_cast<int>(x.size(0)));
  } else {
    at::Tensor ids = in.input_ids.to(at::kInt).contiguous();
    at::Tensor mask = in.attention_mask.defined() ? in.attention_mask.to(at::kInt).contiguous() : at::ones_like(ids);
    logits = model.classify_tokens(ids.data_ptr<int32_t>(), mask.data_ptr<int32_t>(), static_cast<int>(ids.size(0)),
                                   static_cast<int>(ids.size(1)));
  }
  check_finite_logits(logits.data(), logits.size(), cfg.num_labels(), 0, "integer runtime");
  return logits;
}

EvalResult evaluate_int(rt::IntModel& model, const LabeledData& data, int batch_size, const ProgressFn& progress) {
  EvalResult r;
  const int n = data.size(), L = model.config().num_labels();
  double secs = 0;
  for (int s = 0; s < n; s += batch_size) {
    std::vector<int> idx;
    for (int i = s; i < std::min(n, s + batch_size); ++i) idx.push_back(i);
    ModelInput in = data.batch(idx);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<float> logits = int_logits(model, in);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t b = 0; b < idx.size(); ++b) {
      const float* row = logits.data() + b * static_cast<size_t>(L);
      const int pred = static_cast<int>(std::max_element(row, row + L) - row);
      r.predictions.push_back(pred);
      r.correct += pred == data.label(idx[b]);
      ++r.samples;
    }
    if (progress) progress(std::min(n, s + batch_size), n);
  }
  r.seconds = secs;
  return r;
}

namespace {
// The same examples with float64 pixels, for a float64 simulation.
class Float64Data : public LabeledData {
 public:
  explicit Float64Data(const LabeledData& d) : d_(d) {}
  int size() const override { return d_.size(); }
  int label(int i) const override { return d_.label(i); }
  ModelInput batch(const std::vector<int>& idx) const override {
    ModelInput in = d_.batch(idx);
    if (in.pixel_values.defined()) in.pixel_values = in.pixel_values.to(at::kDouble);
    return in;
  }
  std::string describe() const override { return d_.describe(); }

 private:
  const LabeledData& d_;
};
}  // namespace

ParityResult parity(const std::string& qdir, const LabeledData& data, int batch_size, bool float64,
                    const ProgressFn& progress) {
  ParityResult p;
  {
    auto fake = QuantizedModel::load(qdir);
    if (float64) {
      fake->model().to(at::kDouble);
      p.fake = evaluate(fake->model(), Float64Data(data), batch_size, progress);
    } else {
      p.fake = evaluate(fake->model(), data, batch_size, progress);
    }
  }
  auto model = rt::load_int_model(qdir);
  p.integer = evaluate_int(*model, data, batch_size, progress);
  for (size_t i = 0; i < p.fake.predictions.size(); ++i) p.agree += p.fake.predictions[i] == p.integer.predictions[i];
  return p;
}

namespace {
// Each row's attended tokens repeated to fill `T` positions, all attended.
ModelInput fill_tokens(const ModelInput& in, int T) {
  at::Tensor ids = in.input_ids.to(at::kLong).contiguous(), mask = in.attention_mask.to(at::kLong).contiguous();
  const int64_t B = ids.size(0);
  at::Tensor out = at::empty({B, T}, at::kLong);
  auto src = ids.accessor<int64_t, 2>(), m = mask.accessor<int64_t, 2>();
  auto dst = out.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = 0;
    while (n < ids.size(1) && m[b][n]) ++n;  // attended tokens come first (padding at the end)
    n = std::max<int64_t>(n, 1);
    for (int t = 0; t < T; ++t) dst[b][t] = src[b][t % n];
  }
  ModelInput r;
  r.input_ids = out;
  r.attention_mask = at::ones({B, T}, at::kLong);
  return r;
}
}  // namespace

std::vector<BenchRow> bench(const std::string& float_dir, const std::string& qdir, const std::vector<int>& batches,
                            const std::vector<int>& threads, int repeats, int seq_len) {
  auto fp = load_model(float_dir);
  fp->eval();
  auto im = rt::load_int_model(qdir), im_all_rows = rt::load_int_model(qdir);
  im_all_rows->set_cls_only_last_layer(false);
  const ModelConfig& cfg = im->config();
  auto data = open_labeled_data(cfg.model_type == "vit" ? "fmnist" : "austen6", "test", 0, qdir, cfg);
  torch::NoGradGuard ng;
  std::vector<BenchRow> rows;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  for (int t : threads)
    for (int b : batches) {
      set_threads(t);
      rt::set_threads(t);
      std::vector<int> idx;
      for (int i = 0; i < b; ++i) idx.push_back(i % data->size());
      ModelInput in = data->batch(idx);
      if (in.input_ids.defined() && seq_len > 0) {
        if (seq_len > cfg.max_position_embeddings)
          fail("bench", "--seq-len " + std::to_string(seq_len) + " exceeds max_position_embeddings " + std::to_string(cfg.max_position_embeddings));
        in = fill_tokens(in, seq_len);
      }
      std::vector<double> tf, ti, ta;
      for (int r = -2; r < repeats; ++r) {  // two warm-up rounds
        auto t0 = std::chrono::steady_clock::now();
        fp->logits(in);
        auto t1 = std::chrono::steady_clock::now();
        int_logits(*im, in);
        auto t2 = std::chrono::steady_clock::now();
        int_logits(*im_all_rows, in);
        auto t3 = std::chrono::steady_clock::now();
        if (r < 0) continue;
        tf.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        ti.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        ta.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
      }
      BenchRow row;
      row.batch = b;
      row.threads = t;
      row.fp32_ms = median(tf);
      row.int_ms = median(ti);
      row.int_all_rows_ms = median(ta);
      std::vector<double> ratio;
      for (size_t i = 0; i < tf.size(); ++i) ratio.push_back(ti[i] > 0 ? tf[i] / ti[i] : 0);
      std::sort(ratio.begin(), ratio.end());
      row.speedup_q1 = ratio[ratio.size() / 4];
      row.speedup_q3 = ratio[(3 * ratio.size()) / 4];
      // Profiled integer passes for the op shares: at least 5 and at least half a second of them
      // (one 20 ms pass gave shares that moved by several points from run to run).
      rt::profile_ops(true);
      const auto p0 = std::chrono::steady_clock::now();
      double elapsed = 0;
      for (int r = 0; r < 5 || elapsed < 0.5; ++r) {
        int_logits(*im, in);
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
      }
      row.profile = rt::op_profile();
      row.profiled_seconds = elapsed;
      rt::profile_ops(false);
      rows.push_back(row);
    }
  return rows;
}

}  // namespace qtx
