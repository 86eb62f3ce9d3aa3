#include "tasks/quantize_task.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "formats/error.h"
#include "quant/observer.h"
#include "quant/quant_model.h"
#include "tasks/labeled_data.h"

namespace qtx {

int64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

QuantizeReport quantize(const QuantizeOptions& o) {
  if (o.out.empty()) fail("quantize", "--out is required");
  if (o.out == o.model) fail("quantize", "--out must differ from --model");
  if (QuantizedModel::is_artifact(o.model)) fail(o.model, "is already quantized; quantize the float model");
  set_threads(o.threads);
  Recipe recipe = Recipe::load(o.recipe);
  const CalibrationMethod& method = calibration_method(o.method);
  auto model = load_model(o.model);
  const ModelConfig& cfg = model->config();
  const int n = o.calib > 0 ? o.calib : (cfg.model_type == "vit" ? 1000 : 512);
  auto train = open_labeled_data(cfg.model_type == "vit" ? "fmnist" : "austen6", "train", 0, o.model, cfg);
  std::vector<int> idx = sample_indices(train->size(), n, o.seed);
  if (!o.observer.empty()) {
    if (!observer_registry().count(o.observer)) fail("quantize", "unknown observer '" + o.observer + "'");
    for (Role r : all_roles())
      if (r != Role::LinearWeight && r != Role::Embedding && recipe.has[static_cast<int>(r)] &&
          recipe.roles[static_cast<int>(r)].scheme == Scheme::Uniform)
        recipe.roles[static_cast<int>(r)].observer = o.observer;
    recipe.name += "+" + o.observer;
  }
  std::fprintf(stderr, "[quantize] %s with recipe %s, method %s: calibrating on %zu %s training samples (seed %llu)\n",
               o.model.c_str(), recipe.name.c_str(), o.method.c_str(), idx.size(),
               cfg.model_type == "vit" ? "fmnist" : "austen6", static_cast<unsigned long long>(o.seed));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<ModelInput> batches;
  for (size_t start = 0; start < idx.size(); start += static_cast<size_t>(o.batch))
    batches.push_back(train->batch(std::vector<int>(idx.begin() + static_cast<long>(start),
                                                    idx.begin() + static_cast<long>(std::min(idx.size(), start + static_cast<size_t>(o.batch))))));
  CalibrationOptions co = o.calib_options;
  if (co.mixed && co.report_dir.empty()) co.report_dir = o.out;
  auto qm = method.run(model, recipe, batches, co);
  QuantizeReport r;
  r.calib_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.calib_samples = static_cast<int>(idx.size());
  r.quantizers = static_cast<int>(qm->points().size());
  r.recipe_name = qm->recipe().name;
  qm->save(o.out, o.model);
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) r.peak_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  r.fp_bytes = file_size(o.model + "/model.safetensors");
  r.quantized_bytes = file_size(o.out + "/model.safetensors");
  return r;
}

}  // namespace qtx
