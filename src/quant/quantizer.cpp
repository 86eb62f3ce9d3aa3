#include "quant/quantizer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "formats/error.h"

namespace qtx {

at::Tensor round_half_away(const at::Tensor& x) { return at::sign(x) * at::floor(at::abs(x) + 0.5); }

namespace {
// Straight-through rounding: forward rounds, backward passes the gradient unchanged.
at::Tensor round_ste(const at::Tensor& x) { return x + (round_half_away(x) - x).detach(); }
// LSQ gradient scaling: forward value unchanged, gradient multiplied by g.
at::Tensor grad_scale(const at::Tensor& s, double g) { return (s - s * g).detach() + s * g; }
}  // namespace

Quantizer::Quantizer(QuantSpec spec) : spec_(std::move(spec)) { spec_.validate("quantizer"); }

at::Tensor Quantizer::expand(const at::Tensor& p, const at::Tensor& x) const {
  if (p.numel() == 1) return p.reshape({});
  const int64_t ax = spec_.scheme == Scheme::Ptf ? x.dim() - 1 : (spec_.axis < 0 ? spec_.axis + x.dim() : spec_.axis);
  if (ax < 0 || ax >= x.dim()) fail("quantizer", "channel axis " + std::to_string(spec_.axis) + " is outside a " +
                                                     std::to_string(x.dim()) + "-d tensor");
  const int64_t C = x.size(ax);
  at::Tensor v = p;
  if (p.numel() != C) {
    if (C % p.numel() != 0)
      fail("quantizer", std::to_string(p.numel()) + " groups do not divide " + std::to_string(C) + " channels");
    v = p.repeat_interleave(C / p.numel());
  }
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[static_cast<size_t>(ax)] = C;
  return v.view(shape);
}

void Quantizer::set_range(const at::Tensor& lo_in, const at::Tensor& hi_in) {
  at::Tensor lo = lo_in.to(at::kFloat).flatten(), hi = hi_in.to(at::kFloat).flatten();
  const double levels = std::pow(2.0, spec_.bits) - 1;
  if (spec_.symmetric) {
    at::Tensor m = at::maximum(lo.abs(), hi.abs());
    scale = (m / (levels / 2)).clamp_min(1e-8);
    zero_point = at::zeros_like(scale);
  } else {
    lo = at::clamp_max(lo, 0);
    hi = at::clamp_min(hi, 0);
    scale = ((hi - lo) / levels).clamp_min(1e-8);
    zero_point = at::clamp(spec_.qmin() - round_half_away(lo / scale), spec_.qmin(), spec_.qmax());
  }
  alpha = at::Tensor();
}

void Quantizer::set_ptf(const at::Tensor& lo_c, const at::Tensor& hi_c, const at::Tensor& rows) {
  const int K = spec_.ptf_k;
  const double levels = std::pow(2.0, spec_.bits) - 1;
  const double lo = std::min(0.0f, lo_c.min().item<float>()), hi = std::max(0.0f, hi_c.max().item<float>());
  const double s8 = std::max((hi - lo) / levels, 1e-8);
  const double z = std::min<double>(spec_.qmax(), std::max<double>(spec_.qmin(), spec_.qmin() - std::round(lo / s8)));
  const double base = s8 / std::pow(2.0, K);
  // L2 error of each channel at each α, accumulated over the sample rows.
  at::Tensor x = rows.to(at::kFloat);
  std::vector<at::Tensor> errs;
  for (int a = 0; a <= K; ++a) {
    const double s = base * std::pow(2.0, a);
    at::Tensor q = at::clamp(round_half_away(x / s) + z, spec_.qmin(), spec_.qmax());
    errs.push_back(((q - z) * s - x).pow(2).sum(0));
  }
  alpha = at::stack(errs).argmin(0).to(at::kFloat);  // ties -> the smaller α (finer scale)
  scale = at::full({1}, base, at::kFloat);
  zero_point = at::full({1}, z, at::kFloat);
}

void Quantizer::set_log2() {
  scale = at::ones({1}, at::kFloat);
  zero_point = at::zeros({1}, at::kFloat);
  alpha = at::Tensor();
}

void Quantizer::set_learnable(bool on) {
  if (!ready()) fail("quantizer", "set_learnable before calibration");
  learnable_ = on;
  scale = scale.detach().requires_grad_(on);
}

at::Tensor Quantizer::full_scale(const at::Tensor& x) const {
  at::Tensor s = expand(scale, x);
  if (spec_.scheme == Scheme::Ptf) s = s * at::pow(2.0, expand(alpha, x)).to(x.device());
  return s.to(x.device());
}

at::Tensor Quantizer::quantize(const at::Tensor& x) const {
  if (!ready()) fail("quantizer", "used before calibration");
  if (spec_.scheme == Scheme::Log2) {
    // Codes q = round(-log2(x / s)); -1 marks "zero" (x ≤ 0 or below the smallest level).
    at::Tensor r = round_half_away(-at::log2(x / scale.item<float>()));
    at::Tensor q = at::clamp(r, 0, spec_.qmax());
    return at::where((x > 0) & (r <= spec_.qmax()), q, at::full_like(q, -1));
  }
  at::Tensor z = expand(zero_point, x).to(x.device());
  return at::clamp(round_half_away(x / full_scale(x)) + z, spec_.qmin(), spec_.qmax());
}

at::Tensor Quantizer::dequantize(const at::Tensor& q) const {
  if (spec_.scheme == Scheme::Log2)
    return at::where(q >= 0, at::pow(2.0, -q) * scale.item<float>(), at::zeros_like(q));
  at::Tensor z = expand(zero_point, q).to(q.device());
  return (q - z) * full_scale(q);
}

at::Tensor Quantizer::fake_quant(const at::Tensor& x) const {
  if (!learnable_ || spec_.scheme != Scheme::Uniform) return dequantize(quantize(x));
  const double g = 1.0 / std::sqrt(static_cast<double>(x.numel()) * std::max(1, spec_.qmax()));
  at::Tensor s = expand(grad_scale(scale, g), x).to(x.device());
  at::Tensor z = expand(zero_point, x).to(x.device());
  // Clamp before rounding, as LSQ does: values past the range get the gradient ±Q w.r.t. s.
  at::Tensor q = round_ste(at::clamp(x / s + z, spec_.qmin(), spec_.qmax()));
  return (q - z) * s;
}

at::Tensor int_exp(const at::Tensor& q, double s, double* out_scale) {
  // I-BERT: x = −ln2·z + p with p ∈ (−ln2, 0], exp(p) ≈ a·(p + b/a)·p + c/a evaluated on
  // integers, then a right shift by z. I-BERT floors ln2/s to an integer, which at coarse score
  // scales misplaces every octave (16 % error at x = −14 for s = 0.01); qtx first refines the
  // integer grid by 2^R (an exact left shift) so ln2/s' ≥ 2^16 — see docs/RECIPES.md.
  constexpr double kA = 0.35815147, kB = 0.96963238 / 0.35815147, kC = 1.0 / 0.35815147;
  constexpr int kN = 30;
  const int R = std::max(0, static_cast<int>(std::ceil(std::log2(65536.0 * s / std::log(2.0)))));
  const double sr = s / std::pow(2.0, R);
  at::Tensor x = q.to(at::kDouble) * std::pow(2.0, R);
  const double x0 = std::floor(-0.6931471805599453 / sr);
  x = at::clamp_min(x, kN * x0);
  at::Tensor z = at::floor(x / x0);
  at::Tensor p = x - x0 * z;
  const double b = std::floor(kB / sr), c = std::floor(kC / (sr * sr));
  at::Tensor e = (p + b) * p + c;
  if (out_scale) *out_scale = kA * sr * sr;
  return at::floor(e / at::pow(2.0, z));  // e >> z
}

at::Tensor log_int_softmax_codes(const at::Tensor& exp_vals, const at::Tensor& valid, int bits) {
  at::Tensor e = at::where(valid, exp_vals, at::zeros_like(exp_vals));
  at::Tensor sum = e.sum(-1, true);
  // FQ-ViT's code: round the ratio, then round its log2 at 1.5·2^k (not √2·2^k).
  at::Tensor r = at::floor(sum / e + 0.5);
  at::Tensor k = at::floor(at::log2(r));
  k = at::where(r - at::pow(2.0, k) >= at::pow(2.0, k - 1), k + 1, k);
  const double top = std::pow(2.0, bits);
  at::Tensor bad = (~valid) | (e <= 0) | (k >= top);
  return at::where(bad, at::full_like(k, -1), k);
}

}  // namespace qtx
