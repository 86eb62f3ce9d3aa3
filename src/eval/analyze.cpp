#include "eval/analyze.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>

#include "quant/quant_model.h"
#include "tasks/labeled_data.h"

namespace qtx {
namespace {

// Keeps each site's output of one forward pass (attached last, so it sees quantized outputs).
struct Capture : SiteHook {
  std::vector<at::Tensor> out;
  explicit Capture(size_t n) : out(n) {}
  at::Tensor output(const OpSite& s, const at::Tensor& y) override {
    out[static_cast<size_t>(s.id)] = y.detach().to(at::kDouble);
    return y;
  }
};

struct Sums {
  double dot = 0, fp2 = 0, q2 = 0, err2 = 0;
};

}  // namespace

std::vector<SiteError> analyze_sites(QuantizedModel& qm, const LabeledData& data, int limit, int batch_size) {
  TransformerModel& m = qm.model();
  const size_t n_sites = m.sites().sites().size();
  auto cap = std::make_shared<Capture>(n_sites);
  for (size_t i = 0; i < n_sites; ++i) m.sites().attach(static_cast<int>(i), cap);
  std::vector<Sums> sums(n_sites);
  const int n = limit > 0 ? std::min(limit, data.size()) : data.size();
  const QuantMode mode = qm.mode();
  torch::NoGradGuard ng;
  for (int start = 0; start < n; start += batch_size) {
    std::vector<int> idx;
    for (int i = start; i < std::min(n, start + batch_size); ++i) idx.push_back(i);
    ModelInput in = data.batch(idx);
    qm.set_mode(QuantMode::Float);
    m.logits(in);
    std::vector<at::Tensor> fp = cap->out;
    qm.set_mode(QuantMode::FakeQuant);
    m.logits(in);
    for (size_t s = 0; s < n_sites; ++s) {
      if (!fp[s].defined() || !cap->out[s].defined()) continue;
      const at::Tensor &a = fp[s], &b = cap->out[s];
      sums[s].dot += (a * b).sum().item<double>();
      sums[s].fp2 += (a * a).sum().item<double>();
      sums[s].q2 += (b * b).sum().item<double>();
      sums[s].err2 += (a - b).pow(2).sum().item<double>();
    }
  }
  m.sites().detach(cap.get());
  qm.set_mode(mode);
  std::vector<SiteError> out;
  for (size_t s = 0; s < n_sites; ++s) {
    const OpSite& site = m.sites().site(static_cast<int>(s));
    SiteError e;
    e.site = site.name;
    e.kind = site_kind_name(site.kind);
    e.cosine = sums[s].dot / std::sqrt(std::max(1e-300, sums[s].fp2 * sums[s].q2));
    e.sqnr_db = sums[s].err2 > 0 ? 10 * std::log10(sums[s].fp2 / sums[s].err2) : INFINITY;
    out.push_back(e);
  }
  return out;
}

}  // namespace qtx
