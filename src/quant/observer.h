// Observers: collect statistics of a tensor over the calibration set and calibrate a
// Quantizer from them. One registry; a new observer is one class and one entry.
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "quant/quantizer.h"

namespace qtx {

class Observer {
 public:
  explicit Observer(const QuantSpec& spec);
  virtual ~Observer() = default;
  void observe(const at::Tensor& x);
  // Sets the quantizer's parameters from what was observed. Throws if nothing was.
  void calibrate(Quantizer& q);
  int64_t seen() const { return seen_; }

 protected:
  // Per-channel (or [1]) range of everything observed; subclasses pick their clipping.
  virtual std::pair<at::Tensor, at::Tensor> range() = 0;
  virtual bool wants_samples() const { return false; }
  // One batch's range per row of rows_by_channel: its min and max unless overridden.
  virtual std::pair<at::Tensor, at::Tensor> batch_range(const at::Tensor& rows) const;
  // Whether batch ranges are merged by an exponential moving average with spec.ema_momentum
  // (FQ-ViT's EMA observers) rather than by a running min / max.
  virtual bool averages_batches() const { return false; }
  // [C, x.numel()/C] view of x with channels (or groups) in rows; [1, numel] per tensor.
  at::Tensor rows_by_channel(const at::Tensor& x) const;
  const QuantSpec spec_;
  at::Tensor lo_, hi_;       // running range per row of rows_by_channel (min / max, or EMA)
  at::Tensor samples_;       // [C, n] decimated sample, when wanted (percentile, OMSE, PTF)
  int64_t seen_ = 0;

 private:
  void keep_sample(const at::Tensor& r);
  int64_t stride_ = 1;
};

using ObserverFactory = std::function<std::unique_ptr<Observer>(const QuantSpec&)>;
const std::map<std::string, ObserverFactory>& observer_registry();
std::unique_ptr<Observer> make_observer(const QuantSpec& spec);

}  // namespace qtx
