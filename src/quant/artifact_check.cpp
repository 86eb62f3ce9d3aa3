#include "quant/artifact_check.h"

#include <cmath>

#include "formats/config_check.h"
#include "formats/error.h"
#include "quant/packing.h"

namespace qtx {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

}  // namespace

void check_recipe_storable(const Recipe& recipe, const std::string& where) {
  for (Role r : {Role::LinearWeight, Role::Embedding}) {
    auto check = [&](const QuantSpec& s, const std::string& what) {
      if (s.bits > kMaxStoredWeightBits)
        fail(where, what + " quantizes weights to " + std::to_string(s.bits) + " bits; stored weight codes hold 2.." +
                        std::to_string(kMaxStoredWeightBits) + " bits (16/32 bits are for activations)");
    };
    if (const QuantSpec* s = recipe.role(r)) check(*s, std::string("role ") + role_name(r));
    for (const auto& o : recipe.overrides) {
      if (o.role != r || o.disable) continue;
      QuantSpec s = recipe.role(r) ? *recipe.role(r) : QuantSpec{};
      s.update_from_json(o.fields, where + ": override '" + o.pattern + "'");
      check(s, "override '" + o.pattern + "' (" + role_name(r) + ")");
    }
  }
}

ArtifactFiles open_artifact(const std::string& dir) {
  ArtifactFiles a;
  a.dir = dir;
  a.weights_path = dir + "/model.safetensors";
  if (!file_exists(dir + "/recipe.json"))
    fail(dir, "not a quantized model folder (no recipe.json; make one with `qtx quantize`)");
  a.config = ModelConfig::load(dir + "/config.json");
  a.recipe = Recipe::load(dir + "/recipe.json");
  check_recipe_storable(a.recipe, dir + "/recipe.json");
  a.file = SafetensorsFile::open(a.weights_path);
  auto it = a.file->metadata().find("qtx.format");
  if (it == a.file->metadata().end() || it->second != kArtifactFormat)
    fail(a.weights_path, "metadata 'qtx.format' is " + (it == a.file->metadata().end() ? std::string("missing") : "'" + it->second + "'") +
                             ", not '" + kArtifactFormat + "' (not written by `qtx quantize`?)");
  check_config_against_weights(a.config, *a.file);
  if (a.config.model_type == "vit") ImagePreprocess::load_for_model(dir + "/preprocessor_config.json", a.config);
  return a;
}

void check_quant_params(const QuantParams& q, const std::string& k, const std::string& wpath) {
  if (q.scale.empty() || q.scale.size() != q.zero.size())
    fail(wpath, "'" + k + ".scale' (" + std::to_string(q.scale.size()) + " entries) and '.zero_point' (" + std::to_string(q.zero.size()) +
                    ") must have the same non-zero length");
  const int lo = q.spec.qmin(), hi = q.spec.qmax();
  for (size_t i = 0; i < q.scale.size(); ++i) {
    const float s = q.scale[i], z = q.zero[i];
    if (!(std::isnormal(s) && s > 0))
      fail(wpath, "'" + k + ".scale' entry " + std::to_string(i) + " is " + num(s) + "; a scale must be a finite, normal number > 0");
    if (!std::isfinite(z) || z != std::round(z) || z < lo || z > hi)
      fail(wpath, "'" + k + ".zero_point' entry " + std::to_string(i) + " is " + num(z) + "; it must be an integer in [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "] (" + std::to_string(q.spec.bits) + "-bit " +
                      (q.spec.symmetric ? "signed" : "unsigned") + " codes)");
    if (q.spec.symmetric && z != 0)
      fail(wpath, "'" + k + ".zero_point' entry " + std::to_string(i) + " is " + num(z) + "; a symmetric quantizer's zero point is 0");
  }
  if (q.spec.scheme == Scheme::Ptf && q.alpha.empty()) fail(wpath, "'" + k + ".alpha' is empty (PTF needs one exponent per channel)");
  for (size_t i = 0; i < q.alpha.size(); ++i) {
    const float a = q.alpha[i];
    if (!std::isfinite(a) || a != std::round(a) || a < 0 || a > q.spec.ptf_k)
      fail(wpath, "'" + k + ".alpha' entry " + std::to_string(i) + " is " + num(a) + "; a PTF exponent must be an integer in 0.." +
                      std::to_string(q.spec.ptf_k));
  }
}

QuantParams read_quant_params(const SafetensorsFile& file, const std::string& k, const QuantSpec& spec) {
  auto get = [&](const std::string& suffix) {
    const TensorView* t = file.find(k + suffix);
    if (!t) fail(file.path(), "missing quantizer parameter '" + k + suffix + "' (the recipe quantizes this tensor)");
    return file.to_float(*t);
  };
  QuantParams q;
  q.spec = spec;
  q.scale = get(".scale");
  q.zero = get(".zero_point");
  if (spec.scheme == Scheme::Ptf) q.alpha = get(".alpha");
  check_quant_params(q, k, file.path());
  return q;
}

std::vector<int32_t> read_weight_codes(const SafetensorsFile& file, const std::string& name, int64_t n, const QuantSpec& spec) {
  const std::string qname = name + ".qweight";
  const TensorView* t = file.find(qname);
  if (!t) fail(file.path(), "missing tensor '" + qname + "' (the recipe quantizes this weight)");
  if (spec.bits < 2 || spec.bits > kMaxStoredWeightBits)
    fail(file.path(), "'" + qname + "': " + std::to_string(spec.bits) + "-bit weights cannot be stored (2.." +
                          std::to_string(kMaxStoredWeightBits) + ")");
  const int64_t want = packed_bytes(n, spec.bits);
  if (static_cast<int64_t>(t->nbytes) != want || (t->dtype != DType::I8 && t->dtype != DType::U8))
    fail(file.path(), "'" + qname + "' holds " + std::to_string(t->nbytes) + " bytes of " + dtype_name(t->dtype) + ", a " +
                          std::to_string(spec.bits) + "-bit " + std::to_string(n) + "-element weight needs " + std::to_string(want) +
                          " bytes of I8/U8");
  std::vector<int32_t> codes = unpack_codes(t->data, n, spec.bits, spec.symmetric);
  const int lo = spec.qmin(), hi = spec.qmax();
  for (size_t i = 0; i < codes.size(); ++i)
    if (codes[i] < lo || codes[i] > hi)
      fail(file.path(), "'" + qname + "' element " + std::to_string(i) + " is code " + std::to_string(codes[i]) + ", outside the " +
                            std::to_string(spec.bits) + "-bit range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return codes;
}

}  // namespace qtx
