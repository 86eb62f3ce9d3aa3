#include "runtime/artifact.h"

#include <cmath>

#include "formats/error.h"
#include "quant/packing.h"

namespace qtx::rt {

std::unique_ptr<Artifact> Artifact::load(const std::string& dir) {
  auto a = std::unique_ptr<Artifact>(new Artifact());
  a->dir_ = dir;
  a->wpath_ = dir + "/model.safetensors";
  if (!file_exists(dir + "/recipe.json"))
    fail(dir, "not a quantized model folder (no recipe.json; make one with `qtx quantize`)");
  a->config_ = ModelConfig::load(dir + "/config.json");
  a->recipe_ = Recipe::load(dir + "/recipe.json");
  a->file_ = SafetensorsFile::open(a->wpath_);
  auto it = a->file_->metadata().find("qtx.format");
  if (it == a->file_->metadata().end() || it->second != "qtx-quantized/1")
    fail(a->wpath_, "metadata 'qtx.format' is not 'qtx-quantized/1' (not written by `qtx quantize`?)");
  return a;
}

bool Artifact::quant(const std::string& site, const char* slot, Role role, StoredQuant* out) const {
  QuantSpec spec;
  if (!recipe_.spec_for(role, site, &spec)) return false;
  const std::string k = "qtx." + site + "." + slot;
  auto get = [&](const std::string& suffix) {
    const TensorView* t = file_->find(k + suffix);
    if (!t) fail(wpath_, "missing quantizer parameter '" + k + suffix + "' (the recipe quantizes " + role_name(role) + " there)");
    std::vector<float> v = file_->to_float(*t);
    for (float x : v)
      if (!std::isfinite(x)) fail(wpath_, "'" + k + suffix + "' holds NaN or Inf");
    return v;
  };
  out->spec = spec;
  out->scale = get(".scale");
  out->zero = get(".zero_point");
  out->alpha.clear();
  if (spec.scheme == Scheme::Ptf) out->alpha = get(".alpha");
  if (out->scale.empty() || out->scale.size() != out->zero.size())
    fail(wpath_, "'" + k + ".scale' and '.zero_point' disagree in size");
  for (size_t i = 0; i < out->scale.size(); ++i) {
    if (!(out->scale[i] > 0)) fail(wpath_, "'" + k + ".scale' has a non-positive entry");
    if (out->zero[i] != std::round(out->zero[i]) || out->zero[i] < spec.qmin() || out->zero[i] > spec.qmax())
      fail(wpath_, "'" + k + ".zero_point' is not an integer in [" + std::to_string(spec.qmin()) + ", " +
                       std::to_string(spec.qmax()) + "]");
  }
  for (float a : out->alpha)
    if (a != std::round(a) || a < 0 || a > spec.ptf_k) fail(wpath_, "'" + k + ".alpha' holds an exponent outside 0.." + std::to_string(spec.ptf_k));
  return true;
}

StoredQuant Artifact::need_quant(const std::string& site, const char* slot, Role role) const {
  StoredQuant q;
  if (!quant(site, slot, role, &q))
    fail(dir_, "recipe '" + recipe_.name + "' leaves " + role_name(role) + " of '" + site +
                   "' in float; the integer runtime needs it quantized (use a fully quantized recipe, e.g. fqvit-8-8-4)");
  return q;
}

StoredWeight Artifact::need_weight(const std::string& site, int rows, int cols, Role role) const {
  StoredQuant q = need_quant(site, "weight", role);
  const std::string name = site + ".weight";
  if (!q.spec.symmetric || q.spec.scheme != Scheme::Uniform)
    fail(dir_, "weight of '" + site + "' is not symmetric uniform; the integer runtime needs zero points of 0");
  const TensorView* t = file_->find(name + ".qweight");
  if (!t) fail(wpath_, "missing tensor '" + name + ".qweight'");
  const int64_t n = static_cast<int64_t>(rows) * cols;
  if (static_cast<int64_t>(t->nbytes) != packed_bytes(n, q.spec.bits) || (t->dtype != DType::I8 && t->dtype != DType::U8))
    fail(wpath_, "'" + name + ".qweight' holds " + std::to_string(t->nbytes) + " bytes, a " + std::to_string(q.spec.bits) +
                     "-bit [" + std::to_string(rows) + ", " + std::to_string(cols) + "] weight needs " +
                     std::to_string(packed_bytes(n, q.spec.bits)));
  const size_t G = q.scale.size();
  if (G == 0 || rows % static_cast<int>(G) != 0)
    fail(wpath_, "'qtx." + site + ".weight.scale' has " + std::to_string(G) + " entries for " + std::to_string(rows) + " rows");
  StoredWeight w;
  w.rows = rows;
  w.cols = cols;
  w.bits = q.spec.bits;
  std::vector<int32_t> codes = unpack_codes(t->data, n, q.spec.bits, true);
  w.codes.resize(static_cast<size_t>(n));
  const int lo = q.spec.qmin(), hi = q.spec.qmax();
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] < lo || codes[i] > hi) fail(wpath_, "'" + name + ".qweight' holds a code outside the " + std::to_string(q.spec.bits) + "-bit range");
    w.codes[i] = static_cast<int8_t>(codes[i]);
  }
  const int per = rows / static_cast<int>(G);
  for (int r = 0; r < rows; ++r) w.scale.push_back(q.scale[static_cast<size_t>(r / per)]);
  return w;
}

std::vector<float> Artifact::param(const std::string& name, int64_t numel) const {
  const TensorView* t = file_->find(name);
  if (!t) fail(wpath_, "missing tensor '" + name + "'");
  if (t->numel() != numel)
    fail(wpath_, "'" + name + "' has " + std::to_string(t->numel()) + " elements, the config implies " + std::to_string(numel));
  std::vector<float> v = file_->to_float(*t);
  for (float x : v)
    if (!std::isfinite(x)) fail(wpath_, "'" + name + "' holds NaN or Inf");
  return v;
}

}  // namespace qtx::rt
