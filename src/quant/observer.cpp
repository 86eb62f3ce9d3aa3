#include "quant/observer.h"

#include <ATen/ATen.h>

#include "formats/error.h"

namespace qtx {
namespace {
// Values kept per channel row for percentile/OMSE/PTF; the sample is decimated (every 2nd,
// then every 4th, … value) once it grows past twice this, so it stays deterministic.
constexpr int64_t kSampleCap = 1 << 18;
constexpr int64_t kPtfRowCap = 1 << 14;  // PTF keeps whole rows (tokens × channels)
}  // namespace

Observer::Observer(const QuantSpec& spec) : spec_(spec) {}

at::Tensor Observer::rows_by_channel(const at::Tensor& x) const {
  at::Tensor f = x.detach().to(at::kCPU, at::kFloat);
  if (spec_.scheme == Scheme::Ptf) return f.reshape({-1, f.size(-1)}).t();  // [C, tokens]
  if (spec_.granularity == Granularity::Tensor) return f.reshape({1, -1});
  const int64_t ax = spec_.axis < 0 ? spec_.axis + f.dim() : spec_.axis;
  at::Tensor m = f.movedim(ax, 0);
  const int64_t C = m.size(0);
  const int64_t rows = spec_.granularity == Granularity::Group ? spec_.groups : C;
  if (C % rows != 0) fail("observer", std::to_string(rows) + " groups do not divide " + std::to_string(C) + " channels");
  return m.reshape({rows, -1});
}

std::pair<at::Tensor, at::Tensor> Observer::batch_range(const at::Tensor& rows) const {
  return {std::get<0>(rows.min(1)), std::get<0>(rows.max(1))};
}

void Observer::observe(const at::Tensor& x) {
  at::Tensor r = rows_by_channel(x);
  if (r.numel() == 0) return;
  if (!at::isfinite(r).all().item<bool>()) fail("calibration", "NaN or Inf in a calibration activation");
  auto [batch_lo, batch_hi] = batch_range(r);
  if (!lo_.defined()) {
    lo_ = batch_lo.clone();
    hi_ = batch_hi.clone();
  } else if (averages_batches()) {
    lo_ = spec_.ema_momentum * lo_ + (1 - spec_.ema_momentum) * batch_lo;
    hi_ = spec_.ema_momentum * hi_ + (1 - spec_.ema_momentum) * batch_hi;
  } else {
    lo_ = at::minimum(lo_, batch_lo);
    hi_ = at::maximum(hi_, batch_hi);
  }
  ++seen_;
  if (wants_samples() || spec_.scheme == Scheme::Ptf) keep_sample(r);
}

void Observer::keep_sample(const at::Tensor& r) {
  const int64_t cap = spec_.scheme == Scheme::Ptf ? kPtfRowCap : kSampleCap;
  at::Tensor add = r.slice(1, 0, r.size(1), stride_);
  samples_ = samples_.defined() ? at::cat({samples_, add}, 1) : add.contiguous();
  while (samples_.size(1) > 2 * cap) {
    samples_ = samples_.slice(1, 0, samples_.size(1), 2).contiguous();
    stride_ *= 2;
  }
}

void Observer::calibrate(Quantizer& q) {
  if (spec_.scheme == Scheme::Log2) {
    q.set_log2();
    return;
  }
  if (!lo_.defined()) fail("calibration", "an observer saw no data (is the calibration set empty?)");
  if (spec_.scheme == Scheme::Ptf) {
    q.set_ptf(lo_, hi_, samples_.t());
    return;
  }
  auto [lo, hi] = range();
  q.set_range(lo, hi);
}

namespace {

class MinMaxObserver : public Observer {
 public:
  using Observer::Observer;
  std::pair<at::Tensor, at::Tensor> range() override { return {lo_, hi_}; }
};

// FQ-ViT's EMA observer: each batch's min / max, averaged over batches (momentum 0.99 by
// default, FQ-ViT's σ = 0.01).
class EmaMinMaxObserver : public MinMaxObserver {
 public:
  using MinMaxObserver::MinMaxObserver;
  bool averages_batches() const override { return true; }
};

// FQ-ViT's percentile observer: each batch's `percentile`-th quantile (and the lower tail for the
// minimum) of each row, linearly interpolated as torch.quantile does, averaged over batches by
// EMA. FQ-ViT uses the 99.999th quantile and σ = 0.01 (the percentile-ema-w8a8 recipe).
class PercentileEmaObserver : public MinMaxObserver {
 public:
  using MinMaxObserver::MinMaxObserver;
  bool averages_batches() const override { return true; }
  std::pair<at::Tensor, at::Tensor> batch_range(const at::Tensor& rows) const override {
    at::Tensor sorted = std::get<0>(rows.to(at::kDouble).sort(1));
    const int64_t n = sorted.size(1);
    const double p = spec_.percentile / 100.0;
    auto quantile = [&](double q) {
      const double pos = q * static_cast<double>(n - 1);
      const int64_t below = std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(pos)));
      const int64_t above = std::min<int64_t>(n - 1, below + 1);
      const double frac = pos - static_cast<double>(below);
      return (sorted.select(1, below) + frac * (sorted.select(1, above) - sorted.select(1, below))).to(at::kFloat);
    };
    return {quantile(1 - p), quantile(p)};
  }
};

// Percentile of each row of the sample (lower tail for the minimum).
class PercentileObserver : public Observer {
 public:
  using Observer::Observer;
  bool wants_samples() const override { return true; }
  std::pair<at::Tensor, at::Tensor> range() override {
    at::Tensor sorted = std::get<0>(samples_.sort(1));
    const int64_t n = sorted.size(1);
    const double p = spec_.percentile / 100.0;
    const int64_t hi_i = std::min<int64_t>(n - 1, static_cast<int64_t>(std::ceil(p * (n - 1))));
    const int64_t lo_i = std::max<int64_t>(0, static_cast<int64_t>(std::floor((1 - p) * (n - 1))));
    return {sorted.select(1, lo_i).clone(), sorted.select(1, hi_i).clone()};
  }
};

// OMSE: shrink the MinMax range in 1 % steps (down to 10 %) and keep, per row, the clip that
// minimises the quantization MSE on the sample.
class OmseObserver : public Observer {
 public:
  using Observer::Observer;
  bool wants_samples() const override { return true; }
  std::pair<at::Tensor, at::Tensor> range() override {
    at::Tensor best_err, best_lo = lo_.clone(), best_hi = hi_.clone();
    for (int i = 0; i < 90; ++i) {
      const double f = 1.0 - 0.01 * i;
      at::Tensor lo = lo_ * f, hi = hi_ * f;
      Quantizer q(spec_);
      q.set_range(lo, hi);
      // Evaluate row-wise: the quantizer's channels are the sample's rows.
      at::Tensor s = q.scale.view({-1, 1}), z = q.zero_point.view({-1, 1});
      at::Tensor xq = at::clamp(round_half_away(samples_ / s) + z, spec_.qmin(), spec_.qmax());
      at::Tensor err = ((xq - z) * s - samples_).pow(2).mean(1);
      if (!best_err.defined()) {
        best_err = err;
        continue;
      }
      at::Tensor better = err < best_err;
      best_err = at::where(better, err, best_err);
      best_lo = at::where(better, lo, best_lo);
      best_hi = at::where(better, hi, best_hi);
    }
    return {best_lo, best_hi};
  }
};

template <typename T>
ObserverFactory factory() {
  return [](const QuantSpec& s) { return std::unique_ptr<Observer>(new T(s)); };
}

}  // namespace

const std::map<std::string, ObserverFactory>& observer_registry() {
  static const std::map<std::string, ObserverFactory> k = {
      {"minmax", factory<MinMaxObserver>()},
      {"ema", factory<EmaMinMaxObserver>()},
      {"percentile", factory<PercentileObserver>()},
      {"percentile-ema", factory<PercentileEmaObserver>()},
      {"omse", factory<OmseObserver>()},
  };
  return k;
}

std::unique_ptr<Observer> make_observer(const QuantSpec& spec) {
  auto it = observer_registry().find(spec.observer);
  if (it == observer_registry().end()) fail("recipe", "unknown observer '" + spec.observer + "'");
  return it->second(spec);
}

}  // namespace qtx
