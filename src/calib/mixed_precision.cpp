#include "calib/mixed_precision.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "calib/knapsack.h"
#include "calib/site_capture.h"
#include "formats/error.h"
#include "formats/site_pattern.h"
#include "quant/quant_model.h"
#include "report/svg.h"

namespace qtx {

std::string sensitivity_on_name(SensitivityOn on) {
  switch (on) {
    case SensitivityOn::ModuleOutput: return "module-output";
    case SensitivityOn::ModelOutput: return "model-output";
    default: return "paper";
  }
}

std::vector<PrecisionModule> precision_modules(const TransformerModel& model, SensitivityOn on) {
  const bool msa_output = on == SensitivityOn::ModuleOutput;
  std::map<std::pair<int, bool>, PrecisionModule> by;
  std::map<std::string, int64_t> numel;
  for (const auto& [name, t] : model.hf_parameters()) numel[name] = t.numel();
  for (const auto& s : model.sites().sites()) {
    if (s.layer < 0) continue;
    const bool attn = s.name.find(".attention.") != std::string::npos;
    // MSA: projections, both matmuls and the softmax; MLP: its two linear layers.
    if (!(attn ? (s.kind == SiteKind::Linear || s.kind == SiteKind::MatMul || s.kind == SiteKind::Softmax)
               : s.kind == SiteKind::Linear))
      continue;
    PrecisionModule& m = by[{s.layer, attn}];
    m.layer = s.layer;
    m.attention = attn;
    m.name = "encoder.layer." + std::to_string(s.layer) + (attn ? ".msa" : ".mlp");
    m.sites.push_back(s.id);
    if (s.kind == SiteKind::Linear) {
      m.weight_params += numel.at(s.name + ".weight");
      if (!attn || msa_output) m.y_site = s.id;  // the module's last linear layer: its output feature
    }
    if (s.kind == SiteKind::Softmax && !msa_output) {
      m.y_site = s.id;
      m.y_attention_map = true;
    }
  }
  std::vector<PrecisionModule> out;
  for (auto& [k, m] : by) out.push_back(std::move(m));
  if (on == SensitivityOn::ModelOutput) {
    // The classifier's logits are what every module is measured on (one row per sample, whose
    // nuclear norm is its Euclidean norm). Not "the last linear site": BERT checkpoints may also
    // carry an MLM head, which the classification forward pass never reaches.
    const int classifier = model.has_classifier() ? model.sites().find("classifier") : -1;
    if (classifier < 0) fail("mixed precision", "measuring on the model's output needs a classification head ('classifier')");
    for (auto& m : out) {
      m.y_site = classifier;
      m.y_attention_map = false;
    }
  }
  return out;
}

at::Tensor nuclear_norms(const at::Tensor& x) { return at::linalg_svdvals(x.to(at::kDouble)).sum(-1); }

namespace {

const std::vector<Role>& module_roles(bool weights_only) {
  static const std::vector<Role> w = {Role::LinearWeight};
  static const std::vector<Role> all = {Role::LinearWeight, Role::LinearInput, Role::QkInput, Role::SoftmaxOutput,
                                        Role::AvInput};
  return weights_only ? w : all;
}

// Y of a module as per-sample matrices with padded tokens zeroed: MSA [B, H, T, T], MLP [B, T, C],
// the model's output [B, 1, C].
at::Tensor masked_y(const at::Tensor& y, const ModelInput& in, bool attention) {
  if (y.dim() == 2) return y.to(at::kDouble).unsqueeze(1);
  if (!in.attention_mask.defined()) return y.to(at::kDouble);
  at::Tensor v = in.attention_mask.to(at::kDouble);
  at::Tensor yd = y.to(at::kDouble);
  if (attention) return yd * v.unsqueeze(1).unsqueeze(-1) * v.unsqueeze(1).unsqueeze(1);
  return yd.dim() == 3 ? yd * v.unsqueeze(-1) : yd;
}

}  // namespace

Recipe recipe_with_module_bits(const Recipe& base, const TransformerModel& model,
                               const std::vector<PrecisionModule>& modules, const std::vector<int>& bits,
                               bool weights_only) {
  Recipe r = base;
  for (size_t i = 0; i < modules.size(); ++i)
    for (int sid : modules[i].sites) {
      const OpSite& s = model.sites().site(sid);
      for (auto [slot, role] : site_roles(s)) {
        const auto& roles = module_roles(weights_only);
        QuantSpec spec;
        if (std::find(roles.begin(), roles.end(), role) == roles.end() || !base.spec_for(role, s.name, &spec)) continue;
        if (spec.scheme == Scheme::Log2) continue;  // log2 probabilities keep their own bits
        RecipeOverride o;
        o.pattern = s.name;
        o.role = role;
        o.fields = {{"bits", bits[i]}};
        r.overrides.push_back(o);
      }
    }
  return r;
}

MixedPrecisionPlan plan_mixed_precision(const std::shared_ptr<TransformerModel>& model, const Recipe& base,
                                        const std::vector<ModelInput>& batches, const MixedPrecisionOptions& o) {
  if (o.bits.empty()) fail("mixed precision", "no candidate bit-widths");
  for (int b : o.bits)
    if (b < 2 || b > 8) fail("mixed precision", "candidate bit-width " + std::to_string(b) + " is outside 2..8");
  if ((o.avg_bits > 0) == (o.target_bytes > 0)) fail("mixed precision", "give exactly one of a target size and an average bit-width");
  torch::NoGradGuard ng;
  const auto t_start = std::chrono::steady_clock::now();
  MixedPrecisionPlan p;
  p.modules = precision_modules(*model, o.sensitivity_on);
  p.sensitivity_on = o.sensitivity_on;
  p.bits = o.bits;
  p.omega.assign(p.modules.size(), std::vector<double>(o.bits.size(), 0.0));
  std::set<int> module_sites;
  for (const auto& m : p.modules) module_sites.insert(m.sites.begin(), m.sites.end());
  std::vector<CaptureRequest> reqs;
  for (const auto& m : p.modules) reqs.push_back({m.y_site, 0, true});
  std::vector<std::vector<at::Tensor>> y_fp(p.modules.size());
  std::vector<std::vector<at::Tensor>> nuc(p.modules.size());
  int64_t all_params = 0;
  for (size_t k = 0; k < o.bits.size(); ++k) {
    const int b = o.bits[k];
    QuantizedModel qm(model, recipe_with_module_bits(base, *model, p.modules, std::vector<int>(p.modules.size(), b),
                                                     o.weights_only));
    qm.calibrate(batches);
    if (k == 0) {
      for (const auto& pt : qm.points())
        if (pt.slot == Slot::Weight && pt.role == Role::LinearWeight) {
          const int64_t n = model->param(pt.site_name + ".weight").numel();
          all_params += n;
          if (!module_sites.count(pt.site)) p.fixed_bytes += (n * pt.quantizer->spec().bits + 7) / 8;
        }
      qm.set_mode(QuantMode::Float);
      auto cap = capture_sites(*model, batches, reqs);
      for (size_t i = 0; i < p.modules.size(); ++i)
        for (size_t bi = 0; bi < batches.size(); ++bi) {
          at::Tensor y = masked_y(cap[i][bi].out, batches[bi], p.modules[i].y_attention_map);
          at::Tensor n = nuclear_norms(y);
          nuc[i].push_back(p.modules[i].y_attention_map ? n.sum(-1) : n);  // per sample (heads summed)
          y_fp[i].push_back(y);
        }
    }
    qm.set_mode(QuantMode::FakeQuant);
    for (size_t i = 0; i < p.modules.size(); ++i) {
      const std::set<int> mine(p.modules[i].sites.begin(), p.modules[i].sites.end());
      for (auto& pt : qm.points()) pt.enabled = mine.count(pt.site) > 0;
      auto cap = capture_sites(*model, batches, {reqs[i]});
      double omega = 0;
      for (size_t bi = 0; bi < batches.size(); ++bi) {
        at::Tensor d = masked_y(cap[0][bi].out, batches[bi], p.modules[i].y_attention_map) - y_fp[i][bi];
        omega += (nuc[i][bi] * d.pow(2).flatten(1).sum(-1)).sum().item<double>();
      }
      p.omega[i][k] = omega;
    }
    for (auto& pt : qm.points()) pt.enabled = true;
    std::fprintf(stderr, "[mixed] sensitivity at %d bits measured for %zu modules (%.1f s so far)\n", b, p.modules.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  }
  // Knapsack over modules: cost in weight bits, budget what the target leaves after fixed layers.
  std::vector<std::vector<int64_t>> cost(p.modules.size());
  for (size_t i = 0; i < p.modules.size(); ++i)
    for (int b : o.bits) cost[i].push_back(p.modules[i].weight_params * b);
  const int64_t target = o.target_bytes > 0 ? o.target_bytes : static_cast<int64_t>(all_params * o.avg_bits / 8.0);
  p.budget_bytes = target;
  KnapsackSolution s = solve_knapsack(cost, p.omega, (target - p.fixed_bytes) * 8);
  if (!s.feasible) {
    int64_t least = p.fixed_bytes;
    for (size_t i = 0; i < p.modules.size(); ++i) least += *std::min_element(cost[i].begin(), cost[i].end()) / 8;
    fail("mixed precision", "target of " + std::to_string(target) + " bytes is below the smallest choice (" +
                                std::to_string(least) + " bytes with every module at its fewest bits)");
  }
  for (size_t i = 0; i < p.modules.size(); ++i) p.chosen.push_back(o.bits[static_cast<size_t>(s.option[i])]);
  p.chosen_bytes = p.fixed_bytes + s.cost / 8;
  p.chosen_omega = s.value;
  for (auto [c, v] : knapsack_frontier(cost, p.omega)) p.frontier.emplace_back(p.fixed_bytes + c / 8, v);
  p.recipe = recipe_with_module_bits(base, *model, p.modules, p.chosen, o.weights_only);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "-mp%lld", static_cast<long long>(p.chosen_bytes));
  p.recipe.name = base.name + suffix;
  p.recipe.description = base.description + "; mixed precision by nuclear-norm sensitivity (Liu et al.)";
  if (o.sensitivity_on != SensitivityOn::Paper)
    p.recipe.description += ", measured on " + sensitivity_on_name(o.sensitivity_on);
  return p;
}

std::string plan_table(const MixedPrecisionPlan& p) {
  std::string s = "module                     weights";
  char buf[256];
  for (int b : p.bits) {
    std::snprintf(buf, sizeof buf, "   Omega(%d)", b);
    s += buf;
  }
  s += "  bits\n";
  for (size_t i = 0; i < p.modules.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%-26s %7lld", p.modules[i].name.c_str(), static_cast<long long>(p.modules[i].weight_params));
    s += buf;
    for (double w : p.omega[i]) {
      std::snprintf(buf, sizeof buf, " %10.4g", w);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "  %4d\n", p.chosen[i]);
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "budget %lld bytes of linear weights (%lld fixed outside the modules); chosen %lld bytes, sum Omega %.6g\n",
                static_cast<long long>(p.budget_bytes), static_cast<long long>(p.fixed_bytes),
                static_cast<long long>(p.chosen_bytes), p.chosen_omega);
  s += buf;
  s += "Pareto frontier (bytes, least sum Omega):\n";
  for (auto [c, v] : p.frontier) {
    std::snprintf(buf, sizeof buf, "  %10lld  %.6g\n", static_cast<long long>(c), v);
    s += buf;
  }
  return s;
}

nlohmann::json plan_json(const MixedPrecisionPlan& p) {
  nlohmann::json j;
  j["sensitivity_on"] = sensitivity_on_name(p.sensitivity_on);
  j["candidate_bits"] = p.bits;
  j["budget_bytes"] = p.budget_bytes;
  j["fixed_bytes"] = p.fixed_bytes;
  j["chosen_bytes"] = p.chosen_bytes;
  j["chosen_omega"] = p.chosen_omega;
  for (size_t i = 0; i < p.modules.size(); ++i)
    j["modules"].push_back({{"name", p.modules[i].name}, {"weight_params", p.modules[i].weight_params},
                            {"omega", p.omega[i]}, {"bits", p.chosen[i]}});
  for (auto [c, v] : p.frontier) j["frontier"].push_back({c, v});
  return j;
}

std::string plan_svg(const MixedPrecisionPlan& p, const std::string& title) {
  Series front{"Pareto frontier", {}, {}, true}, uniform{"uniform bits", {}, {}, false}, chosen{"chosen", {}, {}, false};
  for (auto [c, v] : p.frontier) {
    front.x.push_back(c / 1e6);
    front.y.push_back(std::log10(std::max(v, 1e-300)));
  }
  for (size_t k = 0; k < p.bits.size(); ++k) {
    double bytes = static_cast<double>(p.fixed_bytes), om = 0;
    for (size_t i = 0; i < p.modules.size(); ++i) {
      bytes += p.modules[i].weight_params * p.bits[k] / 8.0;
      om += p.omega[i][k];
    }
    uniform.x.push_back(bytes / 1e6);
    uniform.y.push_back(std::log10(std::max(om, 1e-300)));
  }
  chosen.x.push_back(p.chosen_bytes / 1e6);
  chosen.y.push_back(std::log10(std::max(p.chosen_omega, 1e-300)));
  return svg_xy(title, "linear weights (MB)", "log10 sum Omega", {front, uniform, chosen});
}

}  // namespace qtx
