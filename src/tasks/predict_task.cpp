#include "tasks/predict_task.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "data/image.h"
#include "formats/bert_tokenizer.h"
#include "formats/error.h"
#include "formats/finite.h"
#include "quant/quant_model.h"
#include "runtime/gemm.h"
#include "tasks/labeled_data.h"
#include "tasks/runtime_task.h"

namespace qtx {

namespace {

std::vector<std::pair<std::string, double>> top_k(const std::vector<float>& logits, const ModelConfig& cfg, int k) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(static_cast<double>(logits[i]) - mx);
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  std::vector<std::pair<std::string, double>> out;
  for (int i = 0; i < std::min<int>(k, static_cast<int>(order.size())); ++i) {
    const int c = order[static_cast<size_t>(i)];
    const std::string name = c < cfg.num_labels() ? cfg.id2label[static_cast<size_t>(c)] : "LABEL_" + std::to_string(c);
    out.emplace_back(name, p[static_cast<size_t>(c)] / sum);
  }
  return out;
}

}  // namespace

PredictResult predict(const PredictOptions& o) {
  if (o.images.empty() == o.texts.empty()) fail("predict", "give --image FILE or --text \"...\" (one kind of input)");
  if (o.top_k < 1) fail("predict", "--top-k must be at least 1");
  if (o.engine != "auto" && o.engine != "int" && o.engine != "torch")
    fail("predict", "unknown engine '" + o.engine + "' (auto, int, torch)");
  ModelConfig cfg = ModelConfig::load(o.model + "/config.json");
  const bool vit = cfg.model_type == "vit";
  if (vit && !o.texts.empty()) fail(o.model, "is an image model; give --image FILE");
  if (!vit && !o.images.empty()) fail(o.model, "is a text model; give --text \"...\"");
  set_threads(o.threads);
  rt::set_threads(o.threads > 0 ? o.threads : default_threads());
  const bool quantized = QuantizedModel::is_artifact(o.model);
  PredictResult r;
  std::unique_ptr<rt::IntModel> im;
  LoadedModel tm;
  r.engine = o.engine;
  if (o.engine == "int" && !quantized) fail(o.model, "--engine int runs quantized folders (make one with qtx quantize)");
  if (o.engine == "int") im = rt::load_int_model(o.model);
  std::string int_refused;  // why the integer runtime did not take a quantized folder (auto)
  if (o.engine == "auto") {
    r.engine = "torch";
    if (quantized) {
      try {
        im = rt::load_int_model(o.model);
        r.engine = "int";
      } catch (const Error& e) {
        int_refused = e.what();
      }
    }
  }
  if (r.engine == "torch") {
    // Both loaders share the artifact's validation (quant/artifact_check.h): a corrupt artifact
    // fails here too, with the same message, and predict exits non-zero. Only a recipe the runtime
    // cannot run (parts left in float, a PTF residual stream) falls back, and says so.
    tm = load_any_model(o.model);
    r.engine = tm.quantized ? "torch (fake-quant, recipe " + tm.quantized->recipe().name + ")" : "torch (float)";
    if (!int_refused.empty())
      std::fprintf(stderr, "[predict] the integer runtime cannot run this folder (%s); using libtorch fake-quant\n", int_refused.c_str());
  }
  std::vector<std::pair<std::string, ModelInput>> inputs;
  if (vit) {
    ImagePreprocess pp = ImagePreprocess::load_for_model(o.model + "/preprocessor_config.json", cfg);
    for (const auto& path : o.images) {
      std::vector<float> px = preprocess_image(read_image(path), pp, cfg.num_channels, path);
      ModelInput in;
      in.pixel_values = at::tensor(px, at::kFloat).view({1, cfg.num_channels, pp.height, pp.width});
      inputs.emplace_back(path, in);
    }
  } else {
    BertTokenizer tok = BertTokenizer::load(o.model);
    for (const auto& text : o.texts)
      inputs.emplace_back(text, pad_token_batch({tok.encode(text, std::min(128, cfg.max_position_embeddings))}, tok.pad_id()));
  }
  torch::NoGradGuard ng;
  for (auto& [name, in] : inputs) {
    std::vector<float> logits;
    if (im) {
      logits = int_logits(*im, in);
    } else {
      at::Tensor l = tm.model->logits(in).to(at::kFloat).contiguous();
      logits.assign(l.data_ptr<float>(), l.data_ptr<float>() + l.numel());
    }
    check_finite_logits(logits.data(), logits.size(), cfg.num_labels(), 0, name);
    r.predictions.push_back({name, top_k(logits, cfg, o.top_k)});
  }
  return r;
}

}  // namespace qtx
