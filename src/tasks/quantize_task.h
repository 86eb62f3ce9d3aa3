// `qtx quantize`: calibrate a model with a recipe on a deterministic sample of its training
// split and write the quantized artifact.
#pragma once
#include <cstdint>
#include <string>

namespace qtx {

struct QuantizeOptions {
  std::string model, recipe, out;
  int calib = 0;  // 0: 1000 images (ViT) / 512 passages (BERT)
  uint64_t seed = 0;
  int batch = 100;
  int threads = 0;
};

struct QuantizeReport {
  int calib_samples = 0;
  double calib_seconds = 0;
  int64_t fp_bytes = 0, quantized_bytes = 0;  // model.safetensors sizes
  int quantizers = 0;
};

QuantizeReport quantize(const QuantizeOptions& o);
int64_t file_size(const std::string& path);

}  // namespace qtx
