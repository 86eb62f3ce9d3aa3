// `qtx quantize`: calibrate a model with a recipe on a deterministic sample of its training
// split and write the quantized artifact.
#pragma once
#include <cstdint>
#include <string>

#include "calib/method.h"

namespace qtx {

struct QuantizeOptions {
  std::string model, recipe, out;
  std::string method = "observer";  // calibration method (calib/method.h)
  std::string observer;             // replaces the observer of every activation role
  CalibrationOptions calib_options;
  std::string calib_data;  // empty: the built-in training split; else a folder or file (open_labeled_data)
  int calib = 0;  // 0: 1000 images (ViT) / 512 passages (BERT)
  uint64_t seed = 0;
  int batch = 100;
  int threads = 0;
  bool force = false;  // --out may be the input model or an existing folder that is not an artifact
};

struct QuantizeReport {
  int calib_samples = 0;
  double calib_seconds = 0;
  int64_t fp_bytes = 0, quantized_bytes = 0;  // model.safetensors sizes
  int quantizers = 0;
  int64_t peak_rss_bytes = 0;  // of the whole process, at the end
  std::string recipe_name;
};

QuantizeReport quantize(const QuantizeOptions& o);

// The calibration sample an artifact's calibration.json records (quantize writes it; docs/FORMAT.md).
struct CalibrationRecord {
  std::string method, data, split;
  int samples = 0;
  uint64_t seed = 0;
};
// Reads DIR/calibration.json; a missing or malformed file is a qtx::Error naming it.
CalibrationRecord read_calibration_record(const std::string& dir);
int64_t file_size(const std::string& path);

}  // namespace qtx
