#include "runtime/int_model.h"

#include <functional>
#include <map>
#include <stdexcept>

#include "formats/error.h"
#include "runtime/artifact.h"
#include "runtime/cpu_isa.h"

namespace qtx::rt {

std::unique_ptr<IntModel> make_int_vit(const Artifact& a, Kernels kernels);
std::unique_ptr<IntModel> make_int_bert(const Artifact& a, Kernels kernels);
std::unique_ptr<IntModel> make_hybrid_vit(const Artifact& a, Kernels kernels);
std::unique_ptr<IntModel> make_hybrid_bert(const Artifact& a, Kernels kernels);

std::vector<float> IntModel::classify_images(const float*, int) {
  fail(config().model_type, "this model does not take images");
}
std::vector<float> IntModel::classify_tokens(const int32_t*, const int32_t*, int, int) {
  fail(config().model_type, "this model does not take text");
}

namespace {
using Factory = std::function<std::unique_ptr<IntModel>(const Artifact&, Kernels)>;
// Per architecture: the integer-only model for fully quantized recipes (the first LayerNorm's
// input is quantized) and the hybrid one (int8 GEMMs, float LayerNorm/softmax) for the rest.
struct Entry {
  std::string first_layernorm;
  Factory integer, hybrid;
};
const std::map<std::string, Entry>& registry() {
  static const std::map<std::string, Entry> r = {
      {"vit", {"vit.encoder.layer.0.layernorm_before", make_int_vit, make_hybrid_vit}},
      {"bert", {"bert.embeddings.LayerNorm", make_int_bert, make_hybrid_bert}}};
  return r;
}
}  // namespace

std::unique_ptr<IntModel> load_int_model(const std::string& dir, Kernels kernels) {
  active_isa();  // reads QTX_MAX_ISA now (an unknown name throws here, not inside a kernel's threads)
  auto a = Artifact::load(dir);
  auto it = registry().find(a->config().model_type);
  if (it == registry().end())
    fail(dir, "the integer runtime has no '" + a->config().model_type + "' model yet");
  try {
    StoredQuant ln;
    const bool full = a->quant(it->second.first_layernorm, "input0", Role::LayerNormInput, &ln);
    return (full ? it->second.integer : it->second.hybrid)(*a, kernels);
  } catch (const std::invalid_argument& e) {  // a kernel's constants cannot be built from these scales
    fail(a->weights_path(), e.what());
  }
}

}  // namespace qtx::rt
