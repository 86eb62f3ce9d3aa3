// Fake quantizers (libtorch). Parameters are tensors so a search can overwrite them, a
// calibration can freeze them, and reconstruction (MREM) can learn them with LSQ gradients.
// Rounding everywhere is half away from zero, the rule the integer runtime uses.
#pragma once
#include <ATen/core/Tensor.h>

#include "quant/recipe.h"

namespace qtx {

at::Tensor round_half_away(const at::Tensor& x);

class Quantizer {
 public:
  explicit Quantizer(QuantSpec spec);
  const QuantSpec& spec() const { return spec_; }

  // Per-tensor: [1]; per-channel: [C]; per-group: [G]. PTF: scale/zero_point [1], alpha [C].
  at::Tensor scale, zero_point, alpha;
  bool ready() const { return scale.defined(); }

  // Range → scale and zero point (asymmetric ranges are widened to include 0; symmetric
  // scale = max|x| / ((2^b − 1) / 2), FQ-ViT's convention). lo/hi shaped like `scale`.
  void set_range(const at::Tensor& lo, const at::Tensor& hi);
  // PTF: layer-wise range over all channels, then α_c ∈ {0..K} per channel minimising the L2
  // error on `rows` ([N, C] samples of the input). Zero point from the 8-bit scale s₈ (the
  // authors' code; the paper uses the base scale) — see docs/RECIPES.md.
  void set_ptf(const at::Tensor& lo_c, const at::Tensor& hi_c, const at::Tensor& rows);
  void set_log2();  // attention probabilities: scale 1, levels 2^-q, q ∈ [0, 2^b − 1], and 0

  // LSQ: the scale becomes a learnable leaf with gradient scale 1/sqrt(numel · qmax).
  void set_learnable(bool on);
  bool learnable() const { return learnable_; }

  // x̂ = dequant(quant(x)), STE when learnable. A frozen uniform/PTF quantizer on a CPU float
  // tensor without gradient takes one fused pass (fake_quant_fused), bit-identical to the tensor
  // operations (fake_quant_tensor_ops), which serve every other case and as its reference.
  at::Tensor fake_quant(const at::Tensor& x) const;
  at::Tensor fake_quant_tensor_ops(const at::Tensor& x) const;
  at::Tensor fake_quant_fused(const at::Tensor& x) const;
  bool fused_applies(const at::Tensor& x) const;
  at::Tensor quantize(const at::Tensor& x) const;    // integer codes (float tensor holding integers)
  at::Tensor dequantize(const at::Tensor& q) const;
  // Scale broadcast to x's shape (per-channel/group/PTF expanded); PTF includes 2^α.
  at::Tensor full_scale(const at::Tensor& x) const;

 private:
  at::Tensor expand(const at::Tensor& p, const at::Tensor& x) const;
  QuantSpec spec_;
  bool learnable_ = false;
};

// I-BERT's integer exponential on integer scores q ≤ 0 at scale s: returns exp values as
// integers (a double tensor) at the scale written to *out_scale (common to all entries, so it
// cancels in the softmax ratios).
at::Tensor int_exp(const at::Tensor& q, double s, double* out_scale = nullptr);
// Log-Int-Softmax codes: q = round(log2(Σexp / exp)) over the last dim for entries where `valid`;
// invalid (masked) entries and q ≥ 2^bits map to "zero" (returned as -1).
at::Tensor log_int_softmax_codes(const at::Tensor& exp_vals, const at::Tensor& valid, int bits);
// Log-Int-Softmax as the fake-quant model applies it: float scores (the Q·Kᵀ output, already
// fake-quantized at scale s) → probabilities 2^-q, 0 where dropped or where `valid` is false;
// rows along the last dim. A fused CPU pass; other devices (and autograd) take the tensor
// operations of log_int_softmax_probs_reference, which it matches bit for bit.
at::Tensor log_int_softmax_probs(const at::Tensor& scores, const at::Tensor& valid, double s, int bits);
at::Tensor log_int_softmax_probs_reference(const at::Tensor& scores, const at::Tensor& valid, double s, int bits);

}  // namespace qtx
