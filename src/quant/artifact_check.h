// The one validation of a quantized artifact's contents (docs/FORMAT.md, "Validation"), shared by
// both of its readers: the fake-quant loader (QuantizedModel::load, libtorch) and the integer
// runtime's (rt::Artifact). No libtorch here. Every check throws qtx::Error naming the file and
// the tensor or field, the value and the range allowed.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "quant/recipe.h"

namespace qtx {

constexpr const char* kArtifactFormat = "qtx-quantized/1";  // model.safetensors metadata "qtx.format"
constexpr int kMaxStoredWeightBits = 8;                     // packing.h: one byte per code at most

// The files of an artifact folder, each checked on its own and against the others: recipe.json
// present and valid with storable weight bit-widths, config.json with every size matching the
// stored tensors, the format tag, and (ViT) preprocessor_config.json's size against the model.
struct ArtifactFiles {
  std::string dir, weights_path;
  ModelConfig config;
  Recipe recipe;
  std::shared_ptr<SafetensorsFile> file;
};
ArtifactFiles open_artifact(const std::string& dir);

// Weight quantizers must fit the stored codes (2..8 bits): a 16-bit weight would be kept & 0xFF.
void check_recipe_storable(const Recipe& recipe, const std::string& where);

// One quantizer's parameters as stored under key "qtx.<site>.<slot>": real = (q − zero) · scale
// (· 2^α_c for PTF).
struct QuantParams {
  QuantSpec spec;
  std::vector<float> scale, zero, alpha;
};
// scale and zero the same non-zero length; each scale finite, normal and > 0; each zero point an
// integer within the spec's code range [qmin, qmax] (0 when symmetric); PTF: α integers in 0..ptf_k.
void check_quant_params(const QuantParams& q, const std::string& key, const std::string& wpath);
// Reads key.scale / .zero_point (/ .alpha for PTF) and checks them; a missing one is an error.
QuantParams read_quant_params(const SafetensorsFile& file, const std::string& key, const QuantSpec& spec);

// The `n` integer codes of weight `name` (stored as name.qweight), every one within the spec's
// code range; the byte count and dtype must be those of packing.h.
std::vector<int32_t> read_weight_codes(const SafetensorsFile& file, const std::string& name, int64_t n, const QuantSpec& spec);

}  // namespace qtx
