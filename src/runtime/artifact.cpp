#include "runtime/artifact.h"

#include <cmath>

#include "formats/error.h"
#include "quant/artifact_check.h"

namespace qtx::rt {

std::unique_ptr<Artifact> Artifact::load(const std::string& dir) {
  // Every file and every size checked against the others before anything is read (quant/artifact_check.h).
  ArtifactFiles f = open_artifact(dir);
  auto a = std::unique_ptr<Artifact>(new Artifact());
  a->dir_ = f.dir;
  a->wpath_ = f.weights_path;
  a->config_ = std::move(f.config);
  a->recipe_ = std::move(f.recipe);
  a->file_ = std::move(f.file);
  return a;
}

bool Artifact::quant(const std::string& site, const char* slot, Role role, StoredQuant* out) const {
  QuantSpec spec;
  if (!recipe_.spec_for(role, site, &spec)) return false;
  QuantParams q = read_quant_params(*file_, "qtx." + site + "." + slot, spec);  // the checks both loaders share
  out->spec = q.spec;
  out->scale = std::move(q.scale);
  out->zero = std::move(q.zero);
  out->alpha = std::move(q.alpha);
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
  const int64_t n = static_cast<int64_t>(rows) * cols;
  std::vector<int32_t> codes = read_weight_codes(*file_, name, n, q.spec);  // byte count and code range checked there
  const size_t G = q.scale.size();
  if (G == 0 || rows % static_cast<int>(G) != 0)
    fail(wpath_, "'qtx." + site + ".weight.scale' has " + std::to_string(G) + " entries for " + std::to_string(rows) + " rows");
  StoredWeight w;
  w.rows = rows;
  w.cols = cols;
  w.bits = q.spec.bits;
  w.codes.assign(codes.begin(), codes.end());  // within the spec's <= 8-bit range
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
