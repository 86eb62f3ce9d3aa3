#include "calib/interval_search.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "calib/similarity.h"
#include "calib/site_capture.h"
#include "formats/error.h"
#include "formats/site_pattern.h"
#include "quant/quant_model.h"

namespace qtx {

namespace {

enum class UnitKind { Linear, Patch, QK, AV };

// One searched layer: the site, its "input" side x and "weight" side w (for the attention
// matmuls: Q and K, or the probabilities and V), and every point switched on once it is done.
struct Unit {
  UnitKind kind = UnitKind::Linear;
  int site = -1;
  std::string name;
  int layer = -1;
  QuantPoint* x = nullptr;
  QuantPoint* w = nullptr;
  std::vector<QuantPoint*> points;
  at::Tensor weight, bias;  // Linear/Patch: weight as [out, in] (patch: C·p·p inputs); bias may be undefined
  int64_t patch = 0;
  int inputs() const { return kind == UnitKind::QK || kind == UnitKind::AV ? 2 : 1; }
};

// One calibration batch as the searched layer sees it.
struct Block {
  at::Tensor x, w;    // inputs from the quantized prefix, not yet quantized by this layer (w: matmuls only)
  at::Tensor ref;     // output of the FP network at this layer, [B, ...]
  at::Tensor mask;    // broadcastable to ref, 1 = real token; undefined = all valid
  at::Tensor keys;    // Q·Kᵀ: [B, K] real keys; undefined = all
  at::Tensor pairs;   // Q·Kᵀ: key pairs of the ranking loss
};

bool searchable(const QuantPoint* p) {
  if (!p) return false;
  const QuantSpec& s = p->quantizer->spec();
  return s.scheme == Scheme::Uniform && s.symmetric && s.granularity == Granularity::Tensor;
}

// Quantizer::fake_quant's arithmetic for one value at scale s: float v / s, rounded half away
// from zero as sign·floor(|v| + 0.5), clamped, times s. floor(|v| + 0.5) is a truncating int
// conversion (vectorises without SSE4.1); |v| is capped first, far above any code range, so the
// result is the same after the clamp.
inline float fq_value(float x, float s, float lo, float hi) {
  const float v = x / s;
  const float r = static_cast<float>(static_cast<int32_t>(std::min(std::fabs(v), 1048576.0f) + 0.5f));
  return std::min(hi, std::max(lo, v < 0 ? -r : r)) * s;
}

// x fake-quantized at each candidate scale: [C, ...x]. One plain pass (a chain of tensor ops
// over C copies of x costs several times more).
at::Tensor fq_candidates(const at::Tensor& x_in, const at::Tensor& scales, const QuantSpec& spec) {
  at::Tensor x = x_in.to(at::kFloat).contiguous(), sc = scales.to(at::kFloat).contiguous();
  const int64_t n = x.numel(), C = sc.numel();
  std::vector<int64_t> shape = x.sizes().vec();
  shape.insert(shape.begin(), C);
  at::Tensor out = at::empty(shape, at::kFloat);
  const float* px = x.data_ptr<float>();
  const float* ps = sc.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const float lo = static_cast<float>(spec.qmin()), hi = static_cast<float>(spec.qmax());
  at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float s = ps[c];
      float* o = po + c * n;
      for (int64_t i = 0; i < n; ++i) o[i] = fq_value(px[i], s, lo, hi);
    }
  });
  return out;
}

// Σ over the rows of x [rows, k] of each row fake-quantized at each candidate scale, each row
// weighted by mask [rows] (undefined = 1): [C, k] double. fq_candidates followed by a sum,
// without the [C, rows, k] tensor in between.
at::Tensor fq_candidate_row_sums(const at::Tensor& x_in, const at::Tensor& mask_in, const at::Tensor& scales,
                                 const QuantSpec& spec) {
  at::Tensor x = x_in.to(at::kFloat).contiguous(), sc = scales.to(at::kFloat).contiguous();
  at::Tensor m = mask_in.defined() ? mask_in.to(at::kFloat).contiguous() : at::Tensor();
  const int64_t rows = x.size(0), k = x.size(1), C = sc.numel();
  at::Tensor out = at::zeros({C, k}, at::kDouble);
  const float* px = x.data_ptr<float>();
  const float* pm = m.defined() ? m.data_ptr<float>() : nullptr;
  const float* ps = sc.data_ptr<float>();
  double* po = out.data_ptr<double>();
  const float lo = static_cast<float>(spec.qmin()), hi = static_cast<float>(spec.qmax());
  at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t c = c0; c < c1; ++c) {
      const float s = ps[c];
      double* o = po + c * k;
      for (int64_t r = 0; r < rows; ++r) {
        if (pm && pm[r] == 0) continue;
        const float* xr = px + r * k;
        for (int64_t i = 0; i < k; ++i) row[i] = fq_value(xr[i], s, lo, hi);
        const double w = pm ? pm[r] : 1.0;
        for (int64_t i = 0; i < k; ++i) o[i] += w * row[i];
      }
    }
  });
  return out;
}

// One side with a leading candidate dim: [C, ...] at candidate scales, else [1, ...] as the
// point currently quantizes it (or float without a point).
at::Tensor side(const QuantPoint* p, const at::Tensor& t, const at::Tensor* cands) {
  if (cands) return fq_candidates(t, *cands, p->quantizer->spec());
  if (!p) return t.unsqueeze(0);
  return p->quantizer->fake_quant(t).unsqueeze(0);
}

// a [C, B, H, R, k] candidate stack as [B, H, C·R, k] (candidates folded into the rows), so
// each (sample, head) is one GEMM for all candidates instead of C small ones.
at::Tensor fold_rows(const at::Tensor& t) {
  return t.permute({1, 2, 0, 3, 4}).reshape({t.size(1), t.size(2), t.size(0) * t.size(3), t.size(4)});
}
// [B, H, C·R, k] back to [C, B, H, R, k].
at::Tensor unfold_rows(const at::Tensor& y, int64_t C) {
  return y.view({y.size(0), y.size(1), C, y.size(2) / C, y.size(3)}).permute({2, 0, 1, 3, 4});
}
// [C, B, H, T, d] as [B, H, T, C·d] (candidates folded into the columns) and back.
at::Tensor fold_cols(const at::Tensor& t) {
  return t.permute({1, 2, 3, 0, 4}).reshape({t.size(1), t.size(2), t.size(3), t.size(0) * t.size(4)});
}
at::Tensor unfold_cols(const at::Tensor& y, int64_t C) {
  return y.view({y.size(0), y.size(1), y.size(2), C, y.size(3) / C}).permute({3, 0, 1, 2, 4});
}

// The layer's output for candidate-batched sides: xs [Cx, ...], ws [Cw, ...] with Cx or Cw
// equal to 1 → [C, B, ...].
at::Tensor forward(const Unit& u, const at::Tensor& xs, const at::Tensor& ws) {
  const int64_t C = std::max(xs.size(0), ws.size(0));
  switch (u.kind) {
    case UnitKind::Linear:
    case UnitKind::Patch: {
      std::vector<int64_t> out_shape = xs.sizes().vec();
      out_shape[0] = C;
      out_shape.back() = ws.size(1);
      at::Tensor y = ws.size(0) == 1 ? at::matmul(xs.reshape({-1, xs.size(-1)}), ws[0].t())
                                     : at::matmul(xs.reshape({xs.size(0), -1, xs.size(-1)}), ws.transpose(1, 2));
      if (u.bias.defined()) y = y + u.bias;
      return y.view(out_shape);
    }
    case UnitKind::QK: {
      const double scale = 1.0 / std::sqrt(static_cast<double>(xs.size(-1)));
      if (ws.size(0) > 1) return unfold_cols(at::matmul(xs[0], fold_rows(ws).transpose(-1, -2)) * scale, C);
      if (xs.size(0) > 1) return unfold_rows(at::matmul(fold_rows(xs), ws[0].transpose(-1, -2)) * scale, C);
      return (at::matmul(xs[0], ws[0].transpose(-1, -2)) * scale).unsqueeze(0);
    }
    case UnitKind::AV:
      if (ws.size(0) > 1) return unfold_cols(at::matmul(xs[0], fold_cols(ws)), C);
      if (xs.size(0) > 1) return unfold_rows(at::matmul(fold_rows(xs), ws[0]), C);
      return at::matmul(xs[0], ws[0]).unsqueeze(0);
  }
  return {};
}

// [B, C, H, W] image → [B, patches, C·p·p] rows, in the order of a [out, C, p, p] weight.
at::Tensor unfold_patches(const at::Tensor& img, int64_t p) {
  const int64_t B = img.size(0), C = img.size(1), h = img.size(2) / p, w = img.size(3) / p;
  return img.view({B, C, h, p, w, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, h * w, C * p * p});
}

std::vector<Unit> find_units(QuantizedModel& qm) {
  TransformerModel& m = qm.model();
  std::map<std::string, at::Tensor> params(m.hf_parameters().begin(), m.hf_parameters().end());
  std::vector<Unit> units;
  for (const auto& site : m.sites().sites()) {
    Unit u;
    u.site = site.id;
    u.name = site.name;
    u.layer = site.layer;
    if (site.kind == SiteKind::Linear) {
      u.kind = name_ends_with(site.name, "patch_embeddings.projection") ? UnitKind::Patch : UnitKind::Linear;
      u.x = qm.find(site.name, Slot::Input0);
      u.w = qm.find(site.name, Slot::Weight);
      if (!u.x && !u.w) continue;
      at::Tensor w = params.at(site.name + ".weight").detach();
      if (u.kind == UnitKind::Patch) u.patch = w.size(-1);
      u.weight = w.reshape({w.size(0), -1});
      auto b = params.find(site.name + ".bias");
      if (b != params.end()) u.bias = b->second.detach();
    } else if (site.kind == SiteKind::MatMul) {
      const bool qk = name_ends_with(site.name, "matmul_qk");
      u.kind = qk ? UnitKind::QK : UnitKind::AV;
      u.w = qm.find(site.name, Slot::Input1);
      u.x = qk ? qm.find(site.name, Slot::Input0)
               : qm.find(site.name.substr(0, site.name.size() - 9) + "softmax", Slot::Output);
      if (!u.x && !u.w) continue;
    } else {
      continue;
    }
    for (auto& p : qm.points())
      if (p.site == site.id || &p == u.x) u.points.push_back(&p);
    units.push_back(std::move(u));
  }
  return units;
}

// Masks of one batch for a layer's output (BERT padding); undefined when every token is real.
void set_masks(const Unit& u, const ModelInput& in, Block* b) {
  if (!in.attention_mask.defined() || in.attention_mask.min().item<int64_t>() != 0) return;
  at::Tensor v = in.attention_mask.to(at::kFloat);  // [B, T]
  switch (u.kind) {
    case UnitKind::Linear:
      if (b->x.dim() == 3 && b->x.size(1) == v.size(1)) b->mask = v.unsqueeze(-1);
      break;
    case UnitKind::Patch: break;
    case UnitKind::QK:
      b->mask = v.unsqueeze(1).unsqueeze(-1) * v.unsqueeze(1).unsqueeze(1);
      b->keys = v;
      break;
    case UnitKind::AV: b->mask = v.unsqueeze(1).unsqueeze(-1); break;
  }
}

class Search {
 public:
  Search(const Unit& u, std::vector<Block>& blocks, const IntervalSearchOptions& o)
      : u_(u), blocks_(blocks), o_(o), bias0_(u.bias.defined() ? u.bias.clone() : at::Tensor()) {}

  // Objective of each candidate scale for one side, the other side as currently quantized.
  at::Tensor evaluate(bool weight_side, const at::Tensor& cands) {
    const int64_t C = cands.numel();
    // Each candidate scored with its own bias correction: its mean error per output channel on
    // the scored batches (a first pass), subtracted before the similarity (a second pass).
    at::Tensor shift = corrects_in_search() ? candidate_errors(weight_side, cands) : at::Tensor();
    at::Tensor g_sum = at::zeros({C}, at::kDouble), r_sum = at::zeros({C}, at::kDouble);
    double samples = 0, pairs = 0;
    const bool rank = u_.kind == UnitKind::QK && o_.ranking && o_.gamma != 0;
    for (auto& b : blocks_) {
      if (!b.ref.defined()) continue;  // outside the search subset
      for_candidates(b, weight_side, cands, [&](int64_t c0, const at::Tensor& cc, at::Tensor y) {
        if (shift.defined()) {
          std::vector<int64_t> shape(y.dim(), 1);
          shape[0] = cc.numel();
          shape.back() = y.size(-1);
          y = y - shift.slice(0, c0, c0 + cc.numel()).view(shape);
        }
        at::Tensor g = o_.objective == SearchObjective::Pearson ? pearson_per_sample(b.ref, y, b.mask)
                                                                 : cosine_per_sample(b.ref, y, b.mask);
        g_sum.slice(0, c0, c0 + cc.numel()) += g.sum(1);
        if (rank) {
          auto [s, n] = ranking_hinge(b.ref, y, b.pairs, b.keys, o_.theta);
          r_sum.slice(0, c0, c0 + cc.numel()) += s;
          if (c0 == 0) pairs += n;
        }
      });
      samples += static_cast<double>(b.ref.size(0));
    }
    at::Tensor obj = g_sum / std::max(1.0, samples);
    if (rank && pairs > 0) obj = obj - o_.gamma * r_sum / pairs;
    return obj;
  }

  // Whether this layer's bias is corrected (a linear layer or the patch projection with a bias).
  bool corrects_bias() const {
    return o_.bias_correction && u_.bias.defined() && (u_.kind == UnitKind::Linear || u_.kind == UnitKind::Patch);
  }
  bool corrects_in_search() const { return corrects_bias() && o_.correct_in_search; }

  // The layer's output for each chunk of candidates of one side on one block: fn(c0, chunk, y).
  template <typename Fn>
  void for_candidates(const Block& b, bool weight_side, const at::Tensor& cands, Fn fn) {
    const int64_t C = cands.numel();
    const at::Tensor& wt = u_.weight.defined() ? u_.weight : b.w;
    at::Tensor fixed = weight_side ? side(u_.x, b.x, nullptr) : side(u_.w, wt, nullptr);
    const int64_t per = std::max(b.ref.numel(), (weight_side ? wt : b.x).numel());
    const int64_t step = std::max<int64_t>(1, std::min<int64_t>(C, o_.chunk_elements / std::max<int64_t>(1, per)));
    for (int64_t c0 = 0; c0 < C; c0 += step) {
      at::Tensor cc = cands.slice(0, c0, std::min(C, c0 + step));
      fn(c0, cc, weight_side ? forward(u_, fixed, side(u_.w, wt, &cc)) : forward(u_, side(u_.x, b.x, &cc), fixed));
    }
  }

  // Mean of Ô − O per candidate and output channel over the scored batches, O the float layer on
  // the same inputs (correct_bias's error, for every candidate at once): [C, out] float. The
  // layer is linear, so the mean output is the mean input row times the weight: E[Ô − O] =
  // E[x̂]·Ŵᵀ − E[x]·Wᵀ (the bias is in both). That costs one quantization of the candidate side,
  // not a second pass of C GEMMs over the tokens.
  at::Tensor candidate_errors(bool weight_side, const at::Tensor& cands) {
    const int64_t in = u_.weight.size(1);
    at::Tensor sum_x = at::zeros({in}, at::kDouble), sum_xq = at::zeros({weight_side ? 1 : cands.numel(), in}, at::kDouble);
    double rows = 0;
    for (auto& b : blocks_) {
      if (!b.ref.defined()) continue;
      at::Tensor x = b.x.reshape({-1, in});
      // Linear masks are [B, T, 1]: one weight per input row.
      at::Tensor m = b.mask.defined() ? b.mask.reshape({-1}) : at::Tensor();
      at::Tensor md = m.defined() ? m.to(at::kDouble).unsqueeze(1) : at::ones({x.size(0), 1}, at::kDouble);
      sum_x += (x.to(at::kDouble) * md).sum(0);
      if (weight_side)  // the fixed input quantized in b.x's own shape (its quantizer may be per axis)
        sum_xq[0] += (side(u_.x, b.x, nullptr)[0].reshape({-1, in}).to(at::kDouble) * md).sum(0);
      else
        sum_xq += fq_candidate_row_sums(x, m, cands, u_.x->quantizer->spec());
      rows += md.sum().item<double>();
    }
    rows = std::max(1.0, rows);
    at::Tensor yf = at::matmul(u_.weight.to(at::kDouble), sum_x / rows);  // [out]
    if (!weight_side)  // [C, in] · Ŵᵀ
      return (at::matmul(sum_xq / rows, side(u_.w, u_.weight, nullptr)[0].to(at::kDouble).t()) - yf).to(at::kFloat);
    // Ŵ_c · E[x̂] for each candidate weight, in chunks of candidates (C copies of a large weight
    // would not fit): [c, out, in] · [in] → [c, out].
    const int64_t C = cands.numel();
    const int64_t step = std::max<int64_t>(1, std::min<int64_t>(C, o_.chunk_elements / std::max<int64_t>(1, u_.weight.numel())));
    at::Tensor mean_xq = sum_xq[0] / rows, yq = at::empty({C, u_.weight.size(0)}, at::kDouble);
    for (int64_t c0 = 0; c0 < C; c0 += step) {
      at::Tensor cc = cands.slice(0, c0, std::min(C, c0 + step));
      yq.slice(0, c0, c0 + cc.numel()).copy_(at::matmul(side(u_.w, u_.weight, &cc).to(at::kDouble), mean_xq));
    }
    return (yq - yf).to(at::kFloat);
  }

  // Alternating search; returns the objective at the chosen intervals.
  double run(double* w_ratio, double* x_ratio, double* init) {
    const bool sw = searchable(u_.w), sx = searchable(u_.x);
    if (!sw && !sx) return *init = 0;  // nothing to search here (e.g. per-channel weights only)
    const double w0 = sw ? u_.w->quantizer->scale.item<double>() : 0, x0 = sx ? u_.x->quantizer->scale.item<double>() : 0;
    *init = sw ? evaluate(true, at::full({1}, w0, at::kFloat)).item<double>()
               : evaluate(false, at::full({1}, x0, at::kFloat)).item<double>();
    double best = *init;
    for (int r = 0; r < o_.rounds; ++r) {
      // The paper corrects the bias after each search iteration: a later round scores its
      // candidates with the previous round's correction in the output. (With correct_in_search
      // every candidate already carries its own; the caller makes the final correction.)
      if (r > 0 && corrects_bias() && !o_.correct_in_search) correct_bias();
      for (int s = 0; s < 2; ++s) {
        const bool wside = s == 0;
        if (!(wside ? sw : sx)) continue;
        const double d0 = wside ? w0 : x0;
        at::Tensor cands = at::linspace(o_.alpha * d0, o_.beta * d0, o_.candidates, at::kDouble).to(at::kFloat);
        at::Tensor obj = evaluate(wside, cands);
        const int64_t k = obj.argmax().item<int64_t>();  // first of equal maxima
        best = obj[k].item<double>();
        QuantPoint* p = wside ? u_.w : u_.x;
        p->quantizer->scale = cands.slice(0, k, k + 1).clone();
        *(wside ? w_ratio : x_ratio) = cands[k].item<double>() / d0;
      }
    }
    return best;
  }

  // Sets the bias to its value before the search minus E[Ô − O] per output channel, with O the
  // float layer on the same inputs (methods.md §1). The error does not depend on the bias (it is
  // in both outputs), so correcting again after another round replaces the earlier correction.
  void correct_bias() {
    const int64_t out = u_.weight.size(0);
    at::Tensor err = at::zeros({out}, at::kDouble), cnt = at::zeros({out}, at::kDouble);
    for (auto& b : blocks_) {
      at::Tensor yq = forward(u_, side(u_.x, b.x, nullptr), side(u_.w, u_.weight, nullptr))[0];
      add_errors(yq, forward(u_, b.x.unsqueeze(0), u_.weight.unsqueeze(0))[0], b.mask, err, cnt);
    }
    u_.bias.copy_(bias0_ - (err / cnt.clamp_min(1)).to(u_.bias.scalar_type()));
  }

  // Adds the masked per-channel sums of yq − yf ([..., out]) to err and the real tokens to cnt
  // (both [out] double, updated in place).
  static void add_errors(const at::Tensor& yq, const at::Tensor& yf, const at::Tensor& mask, at::Tensor err, at::Tensor cnt) {
    const int64_t out = yq.size(-1);
    at::Tensor d = (yq - yf).to(at::kDouble);
    at::Tensor m = mask.defined() ? mask.to(at::kDouble).expand_as(d) : at::ones_like(d);
    err.add_((d * m).reshape({-1, out}).sum(0));
    cnt.add_(m.reshape({-1, out}).sum(0));
  }

 private:
  const Unit& u_;
  std::vector<Block>& blocks_;
  const IntervalSearchOptions& o_;
  const at::Tensor bias0_;  // the bias before any correction
};

// Exchanges the values of two tensors of one shape in place.
void swap_values(at::Tensor& a, at::Tensor& b) {
  at::Tensor t = a.clone();
  a.copy_(b);
  b.copy_(t);
}

// Tokens a batch feeds the encoder: real wordpieces, or patches + CLS per image.
int64_t tokens_in(const ModelInput& in, const ModelConfig& cfg) {
  if (in.input_ids.defined())
    return in.attention_mask.defined() ? in.attention_mask.sum().item<int64_t>() : in.input_ids.numel();
  const int64_t side = cfg.image_size / std::max<int64_t>(1, cfg.patch_size);
  return in.batch_size() * (side * side + 1);
}

}  // namespace

SearchedLayer search_linear(const at::Tensor& x, const at::Tensor& ref, const at::Tensor& weight, const at::Tensor& bias,
                            QuantPoint* wq, QuantPoint* xq, const IntervalSearchOptions& o, const at::Tensor& mask) {
  torch::NoGradGuard ng;
  Unit u;
  u.name = "layer";
  u.x = xq;
  u.w = wq;
  u.weight = weight;
  u.bias = bias;
  std::vector<Block> blocks(1);
  blocks[0].x = x;
  blocks[0].ref = ref;
  blocks[0].mask = mask;
  SearchedLayer r;
  Search s(u, blocks, o);
  r.objective_best = s.run(&r.w_ratio, &r.x_ratio, &r.objective_init);
  if (s.corrects_bias()) {
    s.correct_bias();
    r.bias_corrected = true;
  }
  return r;
}

IntervalSearchReport interval_search(QuantizedModel& qm, const std::vector<ModelInput>& batches,
                                     const IntervalSearchOptions& o) {
  if (o.candidates < 1 || o.rounds < 1 || !(o.alpha > 0) || !(o.beta >= o.alpha))
    fail("interval search", "needs candidates ≥ 1, rounds ≥ 1 and 0 < alpha ≤ beta");
  torch::NoGradGuard ng;
  qm.model().eval();
  const auto t_all = std::chrono::steady_clock::now();
  std::vector<Unit> units = find_units(qm);
  bool any = false;
  for (const auto& u : units) any = any || searchable(u.x) || searchable(u.w);
  if (!any)
    fail("interval search", "recipe " + qm.recipe().name +
                                " has no per-tensor signed symmetric quantizers to search (use a sym-* recipe, docs/CALIBRATION.md)");
  // Points of searched layers start off and are switched on layer by layer; the rest stay on.
  for (auto& u : units)
    for (auto* p : u.points) p->enabled = false;
  IntervalSearchReport report;
  // The first whole batches holding search_tokens tokens: candidates are scored on these.
  std::vector<ModelInput> scored;
  int64_t n_scored = 0;
  for (const auto& b : batches) {
    if (o.search_tokens > 0 && n_scored >= o.search_tokens) break;
    scored.push_back(b);
    n_scored += tokens_in(b, qm.model().config());
  }
  std::vector<std::pair<at::Tensor, at::Tensor>> corrected;  // (model's bias, the other value)
  size_t next = 0;
  while (next < units.size()) {
    // FP references of one encoder layer (or one layer outside the encoder) in one forward pass.
    size_t end = next + 1;
    while (end < units.size() && units[next].layer >= 0 && units[end].layer == units[next].layer) ++end;
    std::vector<CaptureRequest> reqs;
    for (size_t i = next; i < end; ++i) reqs.push_back({units[i].site, units[i].inputs(), false});
    // The target is the FP network: the biases corrected so far go back to their FP values
    // while the references are captured (they share storage with the model's parameters).
    for (auto& [bias, other] : corrected) swap_values(bias, other);
    qm.set_mode(QuantMode::Float);
    auto fp = capture_sites(qm.model(), scored, reqs);
    for (auto& [bias, other] : corrected) swap_values(bias, other);
    std::vector<std::vector<at::Tensor>> refs(end - next);
    for (size_t i = next; i < end; ++i) {
      const Unit& u = units[i];
      for (auto& c : fp[i - next]) {
        at::Tensor x = u.kind == UnitKind::Patch ? unfold_patches(c.in0, u.patch) : c.in0;
        at::Tensor w = u.weight.defined() ? u.weight : c.in1;
        refs[i - next].push_back(forward(u, x.unsqueeze(0), w.unsqueeze(0))[0]);
        c = Captured{};
      }
    }
    fp.clear();
    qm.set_mode(QuantMode::FakeQuant);
    for (size_t i = next; i < end; ++i) {
      Unit& u = units[i];
      const auto t0 = std::chrono::steady_clock::now();
      auto q = capture_sites(qm.model(), batches, {{u.site, u.inputs(), false}});
      std::vector<Block> blocks(batches.size());
      for (size_t b = 0; b < batches.size(); ++b) {
        Block& bl = blocks[b];
        bl.x = u.kind == UnitKind::Patch ? unfold_patches(q[0][b].in0, u.patch) : q[0][b].in0;
        bl.w = q[0][b].in1;
        set_masks(u, batches[b], &bl);
        if (b >= scored.size()) continue;
        bl.ref = std::move(refs[i - next][b]);
        if (u.kind == UnitKind::QK)
          bl.pairs = key_pairs(bl.ref.numel() / bl.ref.size(-1), bl.ref.size(-1), o.rank_pairs, o.seed + b);
      }
      q.clear();
      if (o.on_references) {
        std::vector<at::Tensor> layer_refs;
        for (const auto& bl : blocks)
          if (bl.ref.defined()) layer_refs.push_back(bl.ref);
        o.on_references(u.name, layer_refs);
      }
      SearchedLayer r;
      r.site = u.name;
      Search s(u, blocks, o);
      r.objective_best = s.run(&r.w_ratio, &r.x_ratio, &r.objective_init);
      if (s.corrects_bias()) {
        corrected.emplace_back(u.bias, u.bias.clone());  // the FP bias, before the correction
        s.correct_bias();
        r.bias_corrected = true;
      }
      for (auto* p : u.points) p->enabled = true;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (o.verbose)
        std::fprintf(stderr, "[search] %3zu/%zu %-52s Δw ×%.3f Δx ×%.3f  objective %.5f -> %.5f%s  %.1fs\n", i + 1,
                     units.size(), u.name.c_str(), r.w_ratio, r.x_ratio, r.objective_init, r.objective_best,
                     r.bias_corrected ? "  bias corrected" : "", r.seconds);
      report.layers.push_back(r);
    }
    next = end;
  }
  for (auto& p : qm.points()) p.enabled = true;
  qm.set_mode(QuantMode::FakeQuant);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  return report;
}

}  // namespace qtx
