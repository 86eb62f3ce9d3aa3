#include "tasks/quantize_task.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "formats/error.h"
#include "formats/hf_config.h"
#include "formats/output_folder.h"
#include "quant/artifact_check.h"
#include "quant/observer.h"
#include "quant/quant_model.h"
#include "tasks/labeled_data.h"

namespace qtx {

namespace {

// calibration.json: how the artifact was calibrated, so that it can be reproduced and so that
// `qtx eval --outside-calib` can leave out exactly the samples it saw (docs/FORMAT.md).
std::string calibration_record(const QuantizeOptions& o, const CalibrationMethod& method, const std::string& data,
                               const std::string& split, int samples,
                               const std::string& recipe_name) {
  nlohmann::ordered_json j;
  j["source_model"] = o.model;
  j["recipe"] = recipe_name;
  j["method"] = o.method;
  if (!o.observer.empty()) j["observer"] = o.observer;
  j["data"] = data;
  j["split"] = split;
  j["samples"] = samples;
  j["seed"] = o.seed;
  j["batch"] = o.batch;
  if (const auto settings = method.search_settings(o.calib_options)) {  // as the method ran it, not as typed
    const IntervalSearchOptions& s = *settings;
    j["search"] = {{"objective", s.objective == SearchObjective::Cosine ? "cosine" : "pearson"},
                   {"ranking", s.ranking},
                   {"gamma", s.gamma},
                   {"theta", s.theta},
                   {"rank_pairs", s.rank_pairs},
                   {"bias_correction", s.bias_correction},
                   {"correct_in_search", s.bias_correction && s.correct_in_search},
                   {"alpha", s.alpha},
                   {"beta", s.beta},
                   {"candidates", s.candidates},
                   {"rounds", s.rounds},
                   {"search_tokens", s.search_tokens}};
  }
  if (o.calib_options.mixed) {
    const MixedPrecisionOptions& mp = o.calib_options.mp;
    nlohmann::ordered_json m;
    if (mp.avg_bits > 0) m["avg_bits"] = mp.avg_bits;
    if (mp.target_bytes > 0) m["target_bytes"] = mp.target_bytes;
    m["bits"] = mp.bits;
    m["weights_only"] = mp.weights_only;
    m["sensitivity_on"] = sensitivity_on_name(mp.sensitivity_on);
    m["mp_samples"] = o.calib_options.mp_samples;  // the option (whole batches of the sample are used)
    j["mixed_precision"] = m;
  }
  return j.dump(2) + "\n";
}

}  // namespace

CalibrationRecord read_calibration_record(const std::string& dir) {
  const std::string path = dir + "/calibration.json";
  if (!file_exists(path))
    fail(path, "not found (artifacts from before qtx recorded their calibration, and float models, have none)");
  CalibrationRecord r;
  try {
    const auto j = nlohmann::json::parse(read_text_file(path));
    const auto& n = j.at("samples");
    if (!n.is_number_integer() || n.get<int64_t>() <= 0 || n.get<int64_t>() > std::numeric_limits<int>::max() ||
        !j.at("seed").is_number_unsigned())
      throw std::invalid_argument("");
    r = {j.at("method").get<std::string>(), j.at("data").get<std::string>(), j.at("split").get<std::string>(),
         static_cast<int>(n.get<int64_t>()), j.at("seed").get<uint64_t>()};
  } catch (const std::exception&) {
    fail(path, "unreadable or malformed (needs strings \"method\", \"data\", \"split\", a positive integer \"samples\" "
               "and a non-negative integer \"seed\")");
  }
  return r;
}

int64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

QuantizeReport quantize(const QuantizeOptions& o) {
  if (o.out.empty()) fail("quantize", "--out is required");
  if (QuantizedModel::is_artifact(o.model)) fail(o.model, "is already quantized; quantize the float model");
  // Before any work: --out may replace an earlier artifact, never the input model or a folder
  // that is not an artifact (unless --force), and only once the new one is complete.
  check_output_folder(o.out, {o.model}, o.force, QuantizedModel::is_artifact);
  set_threads(o.threads);
  Recipe recipe = Recipe::load(o.recipe);
  check_recipe_storable(recipe, "recipe " + recipe.name);
  const CalibrationMethod& method = calibration_method(o.method);
  auto model = load_model(o.model);
  const ModelConfig& cfg = model->config();
  const int n = o.calib > 0 ? o.calib : (cfg.model_type == "vit" ? 1000 : 512);
  // Calibration needs no labels: the user's data may have none, or other names than id2label.
  const std::string data = o.calib_data.empty() ? builtin_data_of(cfg) : o.calib_data;
  const std::string split = is_builtin_data(data) ? "train" : "all";
  auto train = open_labeled_data(data, "train", 0, o.model, cfg, {false});
  if (o.calib > train->size())
    fail("quantize", "--calib " + std::to_string(o.calib) + ": more samples than " + train->describe());
  std::vector<int> idx = sample_indices(train->size(), n, o.seed);
  if (!o.observer.empty()) {
    if (!observer_registry().count(o.observer)) fail("quantize", "unknown observer '" + o.observer + "'");
    for (Role r : all_roles())
      if (r != Role::LinearWeight && r != Role::Embedding && recipe.has[static_cast<int>(r)] &&
          recipe.roles[static_cast<int>(r)].scheme == Scheme::Uniform)
        recipe.roles[static_cast<int>(r)].observer = o.observer;
    recipe.name += "+" + o.observer;
  }
  std::fprintf(stderr, "[quantize] %s with recipe %s, method %s: calibrating on %zu of %d samples of %s (seed %llu)\n",
               o.model.c_str(), recipe.name.c_str(), o.method.c_str(), idx.size(), train->size(),
               train->describe().c_str(), static_cast<unsigned long long>(o.seed));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<ModelInput> batches;
  for (size_t start = 0; start < idx.size(); start += static_cast<size_t>(o.batch))
    batches.push_back(train->batch(std::vector<int>(idx.begin() + static_cast<long>(start),
                                                    idx.begin() + static_cast<long>(std::min(idx.size(), start + static_cast<size_t>(o.batch))))));
  OutputFolder out(o.out);  // everything is written here, then put in place whole
  CalibrationOptions co = o.calib_options;
  if (co.mixed && co.report_dir.empty()) co.report_dir = out.path();
  auto qm = method.run(model, recipe, batches, co);
  QuantizeReport r;
  r.calib_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.calib_samples = static_cast<int>(idx.size());
  r.quantizers = static_cast<int>(qm->points().size());
  r.recipe_name = qm->recipe().name;
  qm->save(out.path(), o.model);
  write_text_file(out.path() + "/calibration.json", calibration_record(o, method, data, split, r.calib_samples, r.recipe_name));
  out.commit();
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) r.peak_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  r.fp_bytes = file_size(o.model + "/model.safetensors");
  r.quantized_bytes = file_size(o.out + "/model.safetensors");
  return r;
}

}  // namespace qtx
