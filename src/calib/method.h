// Calibration methods: how a recipe's quantizer parameters are chosen. One registry; a new
// method (MREM's reconstruction, Q-BERT's Hessian mixed precision) is one entry.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "calib/interval_search.h"
#include "calib/mixed_precision.h"
#include "models/model.h"
#include "quant/recipe.h"

namespace qtx {

class QuantizedModel;

struct CalibrationOptions {
  IntervalSearchOptions search;        // liu / easyquant
  bool mixed = false;                  // liu: choose per-module bits first (mp.avg_bits / mp.target_bytes)
  MixedPrecisionOptions mp;
  int mp_samples = 128;                // samples for the sensitivity Ω (whole batches)
  std::string report_dir;              // mixed precision: where the table, JSON and SVG go
};

using CalibrationFn = std::function<std::unique_ptr<QuantizedModel>(
    const std::shared_ptr<TransformerModel>& model, const Recipe& recipe, const std::vector<ModelInput>& batches,
    const CalibrationOptions& o)>;

struct CalibrationMethod {
  std::string description;
  CalibrationFn run;
  // The interval-search settings `run` applies for the user's options (nullopt: it searches no
  // intervals): what an artifact's calibration.json records.
  std::function<std::optional<IntervalSearchOptions>(const CalibrationOptions&)> search_settings;
};

const std::map<std::string, CalibrationMethod>& calibration_methods();
const CalibrationMethod& calibration_method(const std::string& name);  // throws qtx::Error listing the names

}  // namespace qtx
