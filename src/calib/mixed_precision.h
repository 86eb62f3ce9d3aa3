// Liu et al.'s mixed precision (methods.md §1): every MSA module and every MLP module gets one
// bit-width for all its ops; module i's sensitivity at b bits is
//   Ω_i(b) = Σ_n ‖Y_n‖_* · ‖Ŷ_n(b) − Y_n‖²_F
// over calibration samples n, with Y the attention map (MSA) or the output feature (MLP) (or, as
// options, every module's own output feature or the model's output), Ŷ the same with only module
// i quantized at b bits (MinMax intervals). Bits are then chosen to
// minimise ΣΩ under a weight-size budget by an exact multiple-choice knapsack.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "quant/recipe.h"

namespace qtx {

struct PrecisionModule {
  std::string name;                 // "encoder.layer.3.msa" / "encoder.layer.3.mlp"
  bool attention = false;
  int layer = -1;
  std::vector<int> sites;           // op sites whose quantizers follow the module's bit-width
  int y_site = -1;                  // softmax (MSA: its output is the attention map) or fc2 (MLP)
  bool y_attention_map = false;     // Y is [B, heads, T, T] (else [B, T, C] features)
  int64_t weight_params = 0;        // linear weights inside the module
};

// What Y, the output a module's sensitivity is measured on, is.
enum class SensitivityOn {
  Paper,         // Liu et al.: an MSA module's attention map, an MLP module's output feature
  ModuleOutput,  // [option] every module's own output feature (MSA: its output projection's)
  ModelOutput,   // [option] the model's output (the classifier's logits), for every module
};
std::string sensitivity_on_name(SensitivityOn on);  // "paper" | "module-output" | "model-output"

std::vector<PrecisionModule> precision_modules(const TransformerModel& model, SensitivityOn on = SensitivityOn::Paper);

// Sum of singular values of each trailing matrix of x ([..., R, C]) — the nuclear norm.
at::Tensor nuclear_norms(const at::Tensor& x);

struct MixedPrecisionOptions {
  std::vector<int> bits = {4, 5, 6, 7, 8};   // candidate bit-widths
  bool weights_only = false;  // false: a module's bits apply to its weights and its inputs (Liu)
  SensitivityOn sensitivity_on = SensitivityOn::Paper;
  double avg_bits = 0;        // target: average weight bits over all quantized linear weights
  int64_t target_bytes = 0;   // or: total bytes of quantized linear weights (one of the two)
};

struct MixedPrecisionPlan {
  std::vector<PrecisionModule> modules;
  SensitivityOn sensitivity_on = SensitivityOn::Paper;
  std::vector<int> bits;                        // candidate bits (columns of omega)
  std::vector<std::vector<double>> omega;       // [module][candidate]
  std::vector<int> chosen;                      // bits per module
  int64_t fixed_bytes = 0, budget_bytes = 0, chosen_bytes = 0;
  double chosen_omega = 0;
  std::vector<std::pair<int64_t, double>> frontier;  // (total weight bytes, least ΣΩ)
  Recipe recipe;                                // base recipe + per-module bit overrides
};

// Measures Ω on `batches` with `base` (a recipe of uniform symmetric or asymmetric quantizers
// whose bits the modules override), solves the knapsack and returns the mixed recipe.
MixedPrecisionPlan plan_mixed_precision(const std::shared_ptr<TransformerModel>& model, const Recipe& base,
                                        const std::vector<ModelInput>& batches, const MixedPrecisionOptions& o);

// `base` with each module's roles set to bits[i] through per-site overrides.
Recipe recipe_with_module_bits(const Recipe& base, const TransformerModel& model,
                               const std::vector<PrecisionModule>& modules, const std::vector<int>& bits,
                               bool weights_only);

// The plan as a readable table, as JSON, and the frontier as an SVG chart.
std::string plan_table(const MixedPrecisionPlan& p);
nlohmann::json plan_json(const MixedPrecisionPlan& p);
std::string plan_svg(const MixedPrecisionPlan& p, const std::string& title);

}  // namespace qtx
