// The named recipes `qtx quantize --recipe NAME` knows (documented in docs/RECIPES.md).
#include <nlohmann/json.hpp>

#include "quant/recipe.h"

namespace qtx {
using nlohmann::json;

namespace {

json weights(int bits) { return {{"bits", bits}, {"symmetric", true}, {"granularity", "channel"}, {"axis", 0}, {"observer", "minmax"}}; }
json act(int bits, const std::string& observer = "minmax") { return {{"bits", bits}, {"symmetric", false}, {"observer", observer}}; }

// Weights and inputs of every linear layer and both attention matmuls; LayerNorm and Softmax in
// float. observer_fields: more fields of the activation quantizers (e.g. the percentile).
json wa(const std::string& name, const std::string& desc, int wbits, int abits, const std::string& observer,
        const json& observer_fields = json::object()) {
  json a = act(abits, observer);
  a.update(observer_fields);
  return {{"name", name}, {"description", desc},
          {"roles", {{"linear_weight", weights(wbits)}, {"linear_input", a}, {"qk_input", a}, {"av_input", a},
                     {"embedding", weights(wbits)}}}};
}

// Everything quantized (FQ-ViT's set of sites). ln = PTF or uniform LayerNorm input; lis = log2
// (Log-Int-Softmax) or uniform attention probabilities with `attn_bits`.
json full(const std::string& name, const std::string& desc, bool ptf, bool lis, int attn_bits) {
  json j = wa(name, desc, 8, 8, "minmax");
  json a = act(8);
  j["roles"]["attn_scores"] = a;
  j["roles"]["act_output"] = a;
  j["roles"]["residual"] = a;
  j["roles"]["layernorm_input"] = ptf ? json{{"scheme", "ptf"}, {"bits", 8}, {"ptf_k", 3}, {"observer", "minmax"}} : a;
  j["roles"]["softmax_output"] = lis ? json{{"scheme", "log2"}, {"bits", attn_bits}, {"int_exp", true}}
                                     : json{{"bits", attn_bits}, {"symmetric", false}, {"observer", "minmax"}};
  return j;
}

// Liu et al.'s setting: one signed symmetric interval per layer for weights and one for inputs
// (every linear layer incl. the patch projection, both attention matmuls); LayerNorm and Softmax
// in float. MinMax gives Δ_init; `--method liu` searches the intervals.
json sym(int wbits, int abits) {
  json w = {{"bits", wbits}, {"symmetric", true}, {"granularity", "tensor"}, {"observer", "minmax"}};
  json a = {{"bits", abits}, {"symmetric", true}, {"observer", "minmax"}};
  const std::string name = "sym-w" + std::to_string(wbits) + "a" + std::to_string(abits);
  return {{"name", name},
          {"description", "W" + std::to_string(wbits) + "A" + std::to_string(abits) +
                              " as Liu et al.: per-tensor signed symmetric weights and inputs of every linear layer and "
                              "both attention matmuls; LayerNorm and Softmax in float"},
          {"roles", {{"linear_weight", w}, {"linear_input", a}, {"qk_input", a}, {"softmax_output", a}, {"av_input", a}}}};
}

std::vector<std::pair<std::string, std::string>> make() {
  std::vector<json> r = {
      wa("minmax-w8a8", "W8A8, MinMax: per-channel int8 weights, per-tensor uint8 inputs of linear layers and matmuls; "
                        "LayerNorm and Softmax in float", 8, 8, "minmax"),
      wa("percentile-w8a8", "W8A8 as minmax-w8a8 with 99.99th-percentile activation ranges", 8, 8, "percentile"),
      wa("ema-w8a8", "W8A8 as minmax-w8a8 with FQ-ViT's EMA activation ranges: each batch's min / max averaged "
                     "with momentum 0.99", 8, 8, "ema", {{"ema_momentum", 0.99}}),
      wa("percentile-ema-w8a8", "W8A8 as minmax-w8a8 with FQ-ViT's percentile: each batch's 99.999th percentile "
                                "averaged with momentum 0.99", 8, 8, "percentile-ema",
         {{"percentile", 99.999}, {"ema_momentum", 0.99}}),
      wa("omse-w8a8", "W8A8 as minmax-w8a8 with activation ranges minimising quantization MSE (OMSE)", 8, 8, "omse"),
      wa("w6a6", "W6A6, MinMax, sites as minmax-w8a8", 6, 6, "minmax"),
      wa("w4a8", "W4A8, MinMax, 4-bit per-channel weights packed two per byte, sites as minmax-w8a8", 4, 8, "minmax"),
      full("minmax-8-8-8", "Fully quantized with plain MinMax: uniform 8-bit layer-wise LayerNorm input, uniform 8-bit "
                           "attention probabilities", false, false, 8),
      full("minmax-8-8-4", "Fully quantized with plain MinMax, uniform 4-bit attention probabilities", false, false, 4),
      full("fqvit-8-8-8", "FQ-ViT: PTF LayerNorm input (K=3), Log-Int-Softmax 8-bit", true, true, 8),
      full("fqvit-8-8-4", "FQ-ViT: PTF LayerNorm input (K=3), Log-Int-Softmax 4-bit", true, true, 4),
      full("ptf-8-8-4", "Ablation: PTF LayerNorm input, uniform 4-bit attention", true, false, 4),
      full("lis-8-8-4", "Ablation: uniform LayerNorm input, Log-Int-Softmax 4-bit", false, true, 4),
      sym(8, 8), sym(6, 6), sym(4, 8), sym(4, 4), sym(3, 4),
  };
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& j : r) out.emplace_back(j["name"].get<std::string>(), j.dump(2));
  return out;
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& builtin_recipes() {
  static const auto k = make();
  return k;
}

}  // namespace qtx
