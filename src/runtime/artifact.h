// Reads a quantized folder written by `qtx quantize` (docs/FORMAT.md) without libtorch: the
// config, the stored recipe, integer weights with their scales and every quantizer's parameters,
// each checked against what the recipe says the site must hold.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "quant/recipe.h"

namespace qtx::rt {

// One quantizer's parameters as stored: real = (q − zero) · scale (· 2^α_c for PTF).
struct StoredQuant {
  QuantSpec spec;
  std::vector<float> scale, zero, alpha;
};

// An integer weight [rows, cols] (rows = output channels), codes unpacked to one per byte.
struct StoredWeight {
  int rows = 0, cols = 0, bits = 8;
  std::vector<int8_t> codes;  // symmetric per-row codes (the runtime needs zero points of 0)
  std::vector<float> scale;   // per row (groups expanded)
};

class Artifact {
 public:
  // Throws qtx::Error naming the file and the problem (missing files, not an artifact, ...).
  static std::unique_ptr<Artifact> load(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const Recipe& recipe() const { return recipe_; }
  const std::string& weights_path() const { return wpath_; }

  // The quantizer of `role` at tensor slot `slot` ("input0", "input1", "weight", "output") of
  // `site`, or false when the recipe leaves it in float. Present but malformed → throws.
  bool quant(const std::string& site, const char* slot, Role role, StoredQuant* out) const;
  // Like quant() but the runtime cannot go on without it: throws naming the site and role.
  StoredQuant need_quant(const std::string& site, const char* slot, Role role) const;
  // The weight `<site>.weight` quantized by the recipe (symmetric, per row or per tensor); an
  // embedding table with role Embedding.
  StoredWeight need_weight(const std::string& site, int rows, int cols, Role role = Role::LinearWeight) const;
  // A float parameter with the given element count.
  std::vector<float> param(const std::string& name, int64_t numel) const;
  bool has_tensor(const std::string& name) const { return file_->find(name) != nullptr; }

 private:
  std::string dir_, wpath_;
  ModelConfig config_;
  Recipe recipe_;
  std::shared_ptr<SafetensorsFile> file_;
};

}  // namespace qtx::rt
