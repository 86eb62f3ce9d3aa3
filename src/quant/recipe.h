// Quantization recipes: which quantizer, observer and bit-width each op-site role gets, with
// per-site overrides by name pattern. Pure data + JSON (no libtorch), so the integer runtime
// can read the recipe stored in a quantized artifact.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qtx {

// What a quantizer is attached to. Each role names one tensor of one kind of op site.
enum class Role {
  LinearWeight,    // weight of a Linear site (and the patch projection)
  LinearInput,     // input of a Linear site
  QkInput,         // both operands of the Q·Kᵀ matmul
  AttnScores,      // output of Q·Kᵀ (pre-softmax scores)
  SoftmaxOutput,   // attention probabilities (softmax output = left operand of A·V)
  AvInput,         // right operand of A·V (V)
  LayerNormInput,  // input of a LayerNorm site
  ActOutput,       // output of an Activation site (GELU, tanh)
  Residual,        // output of an Add site (residual sums, position embedding add)
  Embedding,       // table of an Embedding site
};
constexpr int kNumRoles = 10;
const char* role_name(Role r);
bool role_from_name(const std::string& s, Role* out);
const std::vector<Role>& all_roles();

enum class Scheme { Uniform, Log2, Ptf };
enum class Granularity { Tensor, Channel, Group };

struct QuantSpec {
  Scheme scheme = Scheme::Uniform;
  int bits = 8;
  bool symmetric = false;                  // true: signed symmetric; false: unsigned asymmetric
  Granularity granularity = Granularity::Tensor;
  int axis = 0;                            // channel axis (weights: 0 = output rows; activations: -1)
  int groups = 1;                          // Group: row groups along `axis`
  std::string observer = "minmax";         // see observer registry
  double percentile = 99.99;               // percentile and percentile-ema observers
  double ema_momentum = 0.99;              // ema and percentile-ema observers (FQ-ViT's σ = 0.01)
  int ptf_k = 3;                           // PTF: α ∈ {0..K}
  bool int_exp = true;                     // Log2 at softmax: scores through I-BERT's i-exp (LIS)

  nlohmann::json to_json() const;
  // Reads the fields present in j on top of *this; throws qtx::Error naming `where`.
  void update_from_json(const nlohmann::json& j, const std::string& where);
  void validate(const std::string& where) const;
  int qmin() const;
  int qmax() const;
};

struct RecipeOverride {
  std::string pattern;  // site-name glob (see site_pattern_matches)
  Role role;
  bool disable = false;  // leave this role in float at the matching sites
  nlohmann::json fields;  // QuantSpec fields replacing the role's defaults there
};

struct Recipe {
  std::string name, description;
  bool has[kNumRoles] = {};
  QuantSpec roles[kNumRoles];
  std::vector<RecipeOverride> overrides;
  std::vector<std::string> exclude;  // site patterns left entirely in float

  const QuantSpec* role(Role r) const { return has[static_cast<int>(r)] ? &roles[static_cast<int>(r)] : nullptr; }
  // The spec for `role` at the site named `site`, after overrides; nullptr = float.
  bool spec_for(Role r, const std::string& site, QuantSpec* out) const;

  nlohmann::json to_json() const;
  static Recipe from_json(const nlohmann::json& j, const std::string& where);
  static Recipe load(const std::string& name_or_path);  // a built-in name or a .json file
};

// Built-in recipes, name -> JSON text; documented in docs/RECIPES.md.
const std::vector<std::pair<std::string, std::string>>& builtin_recipes();

}  // namespace qtx
