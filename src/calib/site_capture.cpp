#include "calib/site_capture.h"

#include <torch/torch.h>

#include <memory>

#include "formats/error.h"

namespace qtx {

namespace {

struct StopForward {};

struct CaptureState {
  int remaining = 0;
};

class CaptureHook : public SiteHook {
 public:
  CaptureHook(std::shared_ptr<CaptureState> st, CaptureRequest req) : st_(std::move(st)), req_(req) {}
  Captured got;
  at::Tensor input(const OpSite&, int slot, const at::Tensor& x) override {
    if (slot < req_.inputs) {
      at::Tensor& dst = slot == 0 ? got.in0 : got.in1;
      if (!dst.defined()) take(dst, x);
    }
    return x;
  }
  at::Tensor output(const OpSite&, const at::Tensor& y) override {
    if (req_.output && !got.out.defined()) take(got.out, y);
    return y;
  }

 private:
  void take(at::Tensor& dst, const at::Tensor& x) {
    dst = x.detach().clone();
    if (--st_->remaining == 0) throw StopForward{};
  }
  std::shared_ptr<CaptureState> st_;
  CaptureRequest req_;
};

}  // namespace

std::vector<std::vector<Captured>> capture_sites(TransformerModel& model, const std::vector<ModelInput>& batches,
                                                 const std::vector<CaptureRequest>& requests) {
  torch::NoGradGuard ng;
  SiteTable& table = model.sites();
  auto st = std::make_shared<CaptureState>();
  std::vector<std::shared_ptr<CaptureHook>> hooks;
  int per_batch = 0;
  for (const auto& r : requests) {
    hooks.push_back(std::make_shared<CaptureHook>(st, r));
    table.attach(r.site, hooks.back());
    per_batch += r.inputs + (r.output ? 1 : 0);
  }
  std::vector<std::vector<Captured>> out(requests.size());
  try {
    for (const auto& b : batches) {
      for (auto& h : hooks) h->got = Captured{};
      st->remaining = per_batch;
      bool stopped = false;
      try {
        model.logits(b);
      } catch (const StopForward&) {
        stopped = true;
      }
      if (!stopped && per_batch > 0)
        fail("calibration", "the forward pass did not reach op site '" + table.site(requests.front().site).name + "'");
      for (size_t r = 0; r < hooks.size(); ++r) out[r].push_back(std::move(hooks[r]->got));
    }
  } catch (...) {
    for (auto& h : hooks) table.detach(h.get());
    throw;
  }
  for (auto& h : hooks) table.detach(h.get());
  return out;
}

}  // namespace qtx
