#include "calib/method.h"

#include <cstdio>

#include "formats/error.h"
#include "formats/hf_config.h"
#include "quant/quant_model.h"

namespace qtx {

namespace {

std::unique_ptr<QuantizedModel> observe(const std::shared_ptr<TransformerModel>& model, const Recipe& recipe,
                                        const std::vector<ModelInput>& batches) {
  auto qm = std::make_unique<QuantizedModel>(model, recipe);
  qm->calibrate(batches);
  return qm;
}

std::unique_ptr<QuantizedModel> search(const std::shared_ptr<TransformerModel>& model, const Recipe& base,
                                       const std::vector<ModelInput>& batches, const CalibrationOptions& o,
                                       const IntervalSearchOptions& so) {
  Recipe recipe = base;
  if (o.mixed) {
    std::vector<ModelInput> sub;
    int64_t n = 0;
    for (const auto& b : batches) {
      if (n >= o.mp_samples) break;
      sub.push_back(b);
      n += b.batch_size();
    }
    MixedPrecisionPlan plan = plan_mixed_precision(model, base, sub, o.mp);
    std::fprintf(stderr, "%s", plan_table(plan).c_str());
    if (!o.report_dir.empty()) {
      make_dirs(o.report_dir);
      write_text_file(o.report_dir + "/mixed_precision.txt", plan_table(plan));
      write_text_file(o.report_dir + "/mixed_precision.json", plan_json(plan).dump(2) + "\n");
      write_text_file(o.report_dir + "/mixed_precision.svg",
                      plan_svg(plan, model->config().model_type + ": size vs nuclear-norm sensitivity (" + base.name + ")"));
    }
    recipe = plan.recipe;
  }
  auto qm = observe(model, recipe, batches);
  IntervalSearchReport r = interval_search(*qm, batches, so);
  std::fprintf(stderr, "[search] %zu layers searched in %.1f s\n", r.layers.size(), r.seconds);
  return qm;
}

std::map<std::string, CalibrationMethod> make() {
  std::map<std::string, CalibrationMethod> m;
  const auto none = [](const CalibrationOptions&) { return std::optional<IntervalSearchOptions>(); };
  m["observer"] = {"each quantizer's range from its recipe observer (MinMax, EMA, Percentile, OMSE, PTF) over the calibration set",
                   [](const auto& model, const Recipe& r, const auto& batches, const CalibrationOptions& o) {
                     if (o.mixed) fail("quantize", "mixed precision (--avg-bits / --target-size) needs --method liu");
                     return observe(model, r, batches);
                   },
                   none};
  m["liu"] = {"Liu et al. 2021: Pearson + attention-ranking interval search layer by layer, bias correction, optional "
              "nuclear-norm mixed precision",
              [](const auto& model, const Recipe& r, const auto& batches, const CalibrationOptions& o) {
                return search(model, r, batches, o, o.search);
              },
              [](const CalibrationOptions& o) { return std::optional<IntervalSearchOptions>(o.search); }};
  const auto easyquant_search = [](const CalibrationOptions& o) {
    IntervalSearchOptions so = o.search;
    so.objective = SearchObjective::Cosine;
    so.ranking = false;
    so.bias_correction = false;
    return so;
  };
  m["easyquant"] = {"EasyQuant-style baseline: the same layer-by-layer interval search maximising cosine similarity, "
                    "no ranking loss, no bias correction",
                    [easyquant_search](const auto& model, const Recipe& r, const auto& batches, const CalibrationOptions& o) {
                      if (o.mixed) fail("quantize", "mixed precision (--avg-bits / --target-size) needs --method liu");
                      return search(model, r, batches, o, easyquant_search(o));
                    },
                    [easyquant_search](const CalibrationOptions& o) { return std::optional<IntervalSearchOptions>(easyquant_search(o)); }};
  return m;
}

}  // namespace

const std::map<std::string, CalibrationMethod>& calibration_methods() {
  static const auto k = make();
  return k;
}

const CalibrationMethod& calibration_method(const std::string& name) {
  const auto& m = calibration_methods();
  auto it = m.find(name);
  if (it == m.end()) {
    std::string names;
    for (const auto& [n, _] : m) names += (names.empty() ? "" : ", ") + n;
    fail("quantize", "unknown calibration method '" + name + "' (known: " + names + ")");
  }
  return it->second;
}

}  // namespace qtx
