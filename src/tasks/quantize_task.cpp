#include "tasks/quantize_task.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "formats/error.h"
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
  auto model = load_model(o.model);
  const ModelConfig& cfg = model->config();
  const int n = o.calib > 0 ? o.calib : (cfg.model_type == "vit" ? 1000 : 512);
  auto train = open_labeled_data(cfg.model_type == "vit" ? "fmnist" : "austen6", "train", 0, o.model, cfg);
  std::vector<int> idx = sample_indices(train->size(), n, o.seed);
  QuantizedModel qm(model, recipe);
  std::fprintf(stderr, "[quantize] %s with recipe %s: %zu quantizers, calibrating on %zu %s training samples (seed %llu)\n",
               o.model.c_str(), recipe.name.c_str(), qm.points().size(), idx.size(),
               cfg.model_type == "vit" ? "fmnist" : "austen6", static_cast<unsigned long long>(o.seed));
  auto t0 = std::chrono::steady_clock::now();
  const bool tty = isatty(fileno(stderr));  // redraw a progress line on terminals only
  qm.calibrate(*train, idx, o.batch, [tty](int done, int total) {
    if (tty) std::fprintf(stderr, "\r[quantize] calibration %d/%d", done, total);
    if (done == total) std::fprintf(stderr, "%s[quantize] calibration %d/%d done\n", tty ? "\r" : "", done, total);
  });
  QuantizeReport r;
  r.calib_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.calib_samples = static_cast<int>(idx.size());
  r.quantizers = static_cast<int>(qm.points().size());
  qm.save(o.out, o.model);
  r.fp_bytes = file_size(o.model + "/model.safetensors");
  r.quantized_bytes = file_size(o.out + "/model.safetensors");
  return r;
}

}  // namespace qtx
