#include "quant/quantizer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdint>

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

namespace {
// One element of dequantize(quantize(x)): the float operations of the tensor form, in its order
// (x / s, sign · ⌊|·| + ½⌋, + z, clamp, − z, · s), so the result is bit for bit the same. Written
// as selects without branches so that GCC vectorises the loops (floor as vroundps where the
// build targets this CPU; see CMakeLists.txt).
inline float fake_quant_one(float x, float s, float z, float lo, float hi) {
  const float v = x / s;
  float r = std::floor(std::fabs(v) + 0.5f);
  r = v < 0 ? -r : r;
  float q = r + z;
  q = q < lo ? lo : q;
  q = q > hi ? hi : q;
  return (q - z) * s;
}
}  // namespace

bool Quantizer::fused_applies(const at::Tensor& x) const {
  return !learnable_ && spec_.scheme != Scheme::Log2 && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
         !(x.requires_grad() && c10::GradMode::is_enabled());
}

at::Tensor Quantizer::fake_quant_fused(const at::Tensor& x_in) const {
  if (!ready()) fail("quantizer", "used before calibration");
  const at::Tensor x = x_in.contiguous();
  // Per-channel scale and zero point as C floats along the channel axis (C = 1: per tensor).
  const at::Tensor sc = full_scale(x).to(at::kFloat).contiguous(), zc = expand(zero_point, x).to(at::kFloat).contiguous();
  const int64_t C = sc.numel();
  if (zc.numel() != C && zc.numel() != 1) fail("quantizer", "zero point and scale differ in shape");
  int64_t ax = x.dim() - 1;
  if (C > 1)
    for (int64_t d = 0; d < x.dim(); ++d)
      if (sc.size(d) != 1) ax = d;
  int64_t inner = 1;
  if (C > 1)
    for (int64_t d = ax + 1; d < x.dim(); ++d) inner *= x.size(d);
  else
    inner = x.numel();
  at::Tensor out = at::empty_like(x);
  const float* __restrict xp = x.data_ptr<float>();
  float* __restrict op = out.data_ptr<float>();
  const float* sp = sc.data_ptr<float>();
  std::vector<float> zv(static_cast<size_t>(C), zc.data_ptr<float>()[0]);
  if (zc.numel() == C) std::copy(zc.data_ptr<float>(), zc.data_ptr<float>() + C, zv.begin());
  const float* zp = zv.data();
  const float lo = static_cast<float>(spec_.qmin()), hi = static_cast<float>(spec_.qmax());
  const int64_t n = x.numel();
  if (n == 0) return out;
  if (C > 1 && inner == 1) {  // channels last: rows of C, the channel arrays vectorise
    const int64_t rows = n / C;
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / C), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* __restrict xr = xp + r * C;
        float* __restrict orow = op + r * C;
        for (int64_t c = 0; c < C; ++c) orow[c] = fake_quant_one(xr[c], sp[c], zp[c], lo, hi);
      }
    });
  } else {  // runs of `inner` values share one scale and zero point
    const int64_t blocks = n / inner;
    at::parallel_for(0, blocks, std::max<int64_t>(1, 16384 / inner), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t c = k % C;
        const float s = sp[c], z = zp[c];
        const float* __restrict xr = xp + k * inner;
        float* __restrict orow = op + k * inner;
        for (int64_t j = 0; j < inner; ++j) orow[j] = fake_quant_one(xr[j], s, z, lo, hi);
      }
    });
  }
  return out;
}

at::Tensor Quantizer::fake_quant(const at::Tensor& x) const {
  if (fused_applies(x)) return fake_quant_fused(x);
  return fake_quant_tensor_ops(x);
}

at::Tensor Quantizer::fake_quant_tensor_ops(const at::Tensor& x) const {
  if (!learnable_ || spec_.scheme != Scheme::Uniform) return dequantize(quantize(x));
  const double g = 1.0 / std::sqrt(static_cast<double>(x.numel()) * std::max(1, spec_.qmax()));
  at::Tensor s = expand(grad_scale(scale, g), x).to(x.device());
  at::Tensor z = expand(zero_point, x).to(x.device());
  // Clamp before rounding, as LSQ does: values past the range get the gradient ±Q w.r.t. s.
  at::Tensor q = round_ste(at::clamp(x / s + z, spec_.qmin(), spec_.qmax()));
  return (q - z) * s;
}

namespace {
// I-BERT: x = −ln2·z + p with p ∈ (−ln2, 0], exp(p) ≈ a·(p + b/a)·p + c/a evaluated on
// integers, then a right shift by z. I-BERT floors ln2/s to an integer, which at coarse score
// scales misplaces every octave (16 % error at x = −14 for s = 0.01); qtx first refines the
// integer grid by 2^R (an exact left shift) so ln2/s' ≥ 2^16 — see docs/RECIPES.md.
struct IntExp {
  static constexpr double kA = 0.35815147, kB = 0.96963238 / 0.35815147, kC = 1.0 / 0.35815147;
  static constexpr int kN = 30;
  double refine, x0, b, c, scale;
  explicit IntExp(double s) {
    const int R = std::max(0, static_cast<int>(std::ceil(std::log2(65536.0 * s / std::log(2.0)))));
    const double sr = s / std::pow(2.0, R);
    refine = std::pow(2.0, R);
    x0 = std::floor(-0.6931471805599453 / sr);
    b = std::floor(kB / sr);
    c = std::floor(kC / (sr * sr));
    scale = kA * sr * sr;
  }
  // One integer score q ≤ 0 (a double holding an integer): the same operations as the tensor form.
  double operator()(double q) const {
    const double x = std::max(q * refine, kN * x0);
    const double z = std::floor(x / x0);
    const double p = x - x0 * z;
    const double e = (p + b) * p + c;  // a positive integer below 2^53: the shift is exact
    return static_cast<double>(static_cast<int64_t>(e) >> static_cast<int>(z));
  }
};
}  // namespace

at::Tensor int_exp(const at::Tensor& q, double s, double* out_scale) {
  const IntExp ie(s);
  at::Tensor x = at::clamp_min(q.to(at::kDouble) * ie.refine, IntExp::kN * ie.x0);
  at::Tensor z = at::floor(x / ie.x0);
  at::Tensor p = x - ie.x0 * z;
  at::Tensor e = (p + ie.b) * p + ie.c;
  if (out_scale) *out_scale = ie.scale;
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

at::Tensor log_int_softmax_probs_reference(const at::Tensor& scores, const at::Tensor& valid, double s, int bits) {
  at::Tensor q = round_half_away(scores.to(at::kDouble) / s);
  at::Tensor neg = at::full_like(q, -1e300);
  at::Tensor mx = std::get<0>(at::where(valid, q, neg).max(-1, true));
  at::Tensor e = int_exp(at::where(valid, q - mx, at::zeros_like(q)), s);
  at::Tensor k = log_int_softmax_codes(e, valid, bits);
  return at::where(k >= 0, at::pow(2.0, -k), at::zeros_like(k)).to(scores.scalar_type());
}

at::Tensor log_int_softmax_probs(const at::Tensor& scores, const at::Tensor& valid, double s, int bits) {
  if (!scores.device().is_cpu() || scores.scalar_type() != at::kFloat || scores.dim() == 0 ||
      (scores.requires_grad() && c10::GradMode::is_enabled()))
    return log_int_softmax_probs_reference(scores, valid, s, bits);
  // One pass per row, in double, with the reference's operations: integer scores, row max over
  // the valid entries, i-exp, the exact integer sum, r = ⌊Σ/e + ½⌋, k = ⌊log2 r⌋ rounded up
  // from 1.5·2^k (frexp's mantissa ≥ 0.75, the same test without a log), probability 2^−k.
  const at::Tensor x = scores.contiguous();
  const at::Tensor v = valid.to(at::kBool).contiguous();
  const int64_t L = x.size(-1), rows = L == 0 ? 0 : x.numel() / L;
  at::Tensor out = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const bool* vp = v.data_ptr<bool>();
  float* op = out.data_ptr<float>();
  const IntExp ie(s);
  const double top = std::pow(2.0, bits);
  at::parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
    std::vector<double> ex(static_cast<size_t>(L));
    for (int64_t r = b; r < e; ++r) {
      const float* xr = xp + r * L;
      const bool* vr = vp + r * L;
      float* orow = op + r * L;
      double mx = -1e300;
      for (int64_t i = 0; i < L; ++i) {
        const double y = static_cast<double>(xr[i]) / s;
        const double q = y < 0 ? -std::floor(-y + 0.5) : std::floor(y + 0.5);
        ex[static_cast<size_t>(i)] = q;
        if (vr[i] && q > mx) mx = q;
      }
      double sum = 0;
      for (int64_t i = 0; i < L; ++i) {
        double& t = ex[static_cast<size_t>(i)];
        t = vr[i] ? ie(t - mx) : 0.0;
        sum += t;
      }
      for (int64_t i = 0; i < L; ++i) {
        const double t = ex[static_cast<size_t>(i)];
        float p = 0;
        if (vr[i] && t > 0) {
          int ex2 = 0;
          const double m = std::frexp(std::floor(sum / t + 0.5), &ex2);
          const int k = ex2 - 1 + (m >= 0.75);
          if (k < top) p = static_cast<float>(std::ldexp(1.0, -k));
        }
        orow[i] = p;
      }
    }
  });
  return out;
}

}  // namespace qtx
