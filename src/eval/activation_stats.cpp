#include "eval/activation_stats.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

#include "formats/hf_config.h"
#include "models/model.h"
#include "report/svg.h"
#include "tasks/labeled_data.h"

namespace qtx {

double LayerNormRanges::spread() const {
  std::vector<float> r(lo.size());
  for (size_t i = 0; i < lo.size(); ++i) r[i] = hi[i] - lo[i];
  if (r.empty()) return 0;
  std::vector<float> s = r;
  std::nth_element(s.begin(), s.begin() + static_cast<long>(s.size() / 2), s.end());
  const float med = s[s.size() / 2];
  return med > 0 ? *std::max_element(r.begin(), r.end()) / med : 0;
}

namespace {

struct StatsHook : SiteHook {
  ActivationStats* st;
  std::map<int, size_t> ln_index;
  std::vector<at::Tensor> lo, hi;
  at::Tensor input(const OpSite& s, int slot, const at::Tensor& x) override {
    if (s.kind != SiteKind::LayerNorm || slot != 0) return x;
    at::Tensor r = x.detach().to(at::kCPU, at::kFloat).reshape({-1, x.size(-1)});
    auto [it, fresh] = ln_index.emplace(s.id, lo.size());
    at::Tensor l = std::get<0>(r.min(0)), h = std::get<0>(r.max(0));
    if (fresh) {
      lo.push_back(l);
      hi.push_back(h);
      st->layernorm_inputs.push_back({s.name, {}, {}});
    } else {
      lo[it->second] = at::minimum(lo[it->second], l);
      hi[it->second] = at::maximum(hi[it->second], h);
    }
    return x;
  }
  at::Tensor output(const OpSite& s, const at::Tensor& y) override {
    if (s.kind != SiteKind::Softmax) return y;
    at::Tensor p = y.detach().to(at::kCPU, at::kDouble).flatten();
    at::Tensor k = at::floor(-at::log2(p.clamp_min(1e-300))).clamp(0, ActivationStats::kBins - 1).to(at::kLong);
    at::Tensor counts = at::bincount(k, {}, ActivationStats::kBins).to(at::kDouble);
    for (int i = 0; i < ActivationStats::kBins; ++i) st->attn_log2_bins[static_cast<size_t>(i)] += counts[i].item<double>();
    st->attn_total += static_cast<double>(p.numel());
    return y;
  }
};

}  // namespace

ActivationStats collect_activation_stats(TransformerModel& model, const LabeledData& data, const std::vector<int>& indices,
                                         int batch_size) {
  ActivationStats st;
  auto hook = std::make_shared<StatsHook>();
  hook->st = &st;
  for (const auto& s : model.sites().sites())
    if (s.kind == SiteKind::LayerNorm || s.kind == SiteKind::Softmax) model.sites().attach(s.id, hook);
  torch::NoGradGuard ng;
  model.eval();
  const int n = static_cast<int>(indices.size());
  for (int start = 0; start < n; start += batch_size) {
    std::vector<int> idx(indices.begin() + start, indices.begin() + std::min(n, start + batch_size));
    model.logits(data.batch(idx));
  }
  model.sites().detach(hook.get());
  for (size_t i = 0; i < st.layernorm_inputs.size(); ++i) {
    at::Tensor l = hook->lo[i].contiguous(), h = hook->hi[i].contiguous();
    st.layernorm_inputs[i].lo.assign(l.data_ptr<float>(), l.data_ptr<float>() + l.numel());
    st.layernorm_inputs[i].hi.assign(h.data_ptr<float>(), h.data_ptr<float>() + h.numel());
  }
  return st;
}

void write_activation_report(const ActivationStats& s, const std::string& model_name, const std::string& dir) {
  make_dirs(dir);
  if (!s.layernorm_inputs.empty()) {
    const auto& worst = *std::max_element(s.layernorm_inputs.begin(), s.layernorm_inputs.end(),
                                          [](const auto& a, const auto& b) { return a.spread() < b.spread(); });
    char title[256];
    std::snprintf(title, sizeof title, "%s: per-channel range of the input of %s (widest / median = %.1fx)",
                  model_name.c_str(), worst.site.c_str(), worst.spread());
    write_text_file(dir + "/ln_input_ranges.svg", svg_channel_ranges(title, worst.lo, worst.hi));
  }
  std::vector<std::string> labels;
  for (int k = 0; k < ActivationStats::kBins; ++k)
    labels.push_back(k == ActivationStats::kBins - 1 ? "<=2^-" + std::to_string(k) : "2^-" + std::to_string(k));
  std::vector<double> share(s.attn_log2_bins);
  for (double& v : share) v = s.attn_total > 0 ? 100.0 * v / s.attn_total : 0;
  write_text_file(dir + "/attention_log2_hist.svg",
                  svg_histogram(model_name + ": attention probabilities by log2 bin (p in (2^-(k+1), 2^-k])", labels,
                                share, false, "% of probabilities"));
  std::string md = "| LayerNorm input | channels | min | max | widest / median channel range |\n| --- | --- | --- | --- | --- |\n";
  for (const auto& l : s.layernorm_inputs) {
    char row[512];
    std::snprintf(row, sizeof row, "| %s | %zu | %.3g | %.3g | %.1f |\n", l.site.c_str(), l.lo.size(),
                  *std::min_element(l.lo.begin(), l.lo.end()), *std::max_element(l.hi.begin(), l.hi.end()), l.spread());
    md += row;
  }
  md += "\n| attention probability bin | share % |\n| --- | --- |\n";
  for (int k = 0; k < ActivationStats::kBins; ++k) {
    char row[128];
    std::snprintf(row, sizeof row, "| %s | %.2f |\n", labels[static_cast<size_t>(k)].c_str(), share[static_cast<size_t>(k)]);
    md += row;
  }
  write_text_file(dir + "/activation_stats.md", md);
}

}  // namespace qtx
