// qtx_run: the integer runtime on its own — links qtx_runtime, the data readers and oneDNN, not
// libtorch (the build checks this), so its memory and start-up are the runtime's alone.
// Evaluates a quantized folder on Fashion-MNIST or a folder of images, or classifies images.
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "data/datasets.h"
#include "formats/error.h"
#include "runtime/gemm.h"
#include "runtime/int_model.h"

namespace {

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qtx_run: run a quantized ViT folder in the integer-only runtime (no libtorch in this binary)"};
  std::string model, data = "fmnist";
  std::vector<std::string> images;
  int limit = 0, batch = 64, threads = 0;
  app.add_option("--model", model, "Quantized folder written by qtx quantize")->required();
  app.add_option("--data", data, "fmnist (the test split) or a folder with one sub-folder of images per label")
      ->capture_default_str();
  app.add_option("--image", images, "Classify these .png/.pgm files instead of evaluating");
  app.add_option("--limit", limit, "Evaluate the first N examples only")->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "Batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", threads, "Threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) qtx::rt::set_threads(threads);
    auto im = qtx::rt::load_int_model(model);
    const qtx::ModelConfig& cfg = im->config();
    if (cfg.model_type != "vit") throw qtx::Error(model + ": qtx_run evaluates image models; use qtx eval for text");
    qtx::ImagePreprocess pp = qtx::ImagePreprocess::load(model + "/preprocessor_config.json");
    qtx::ImageSet set;
    if (!images.empty()) {
      for (const auto& f : images) {
        set.images.push_back(qtx::read_image(f));
        set.labels.push_back(-1);
      }
    } else {
      set = data == "fmnist" ? qtx::load_fashion_mnist("test") : qtx::load_image_folder(data, cfg.id2label);
    }
    const int n = limit > 0 ? std::min<int>(limit, static_cast<int>(set.images.size())) : static_cast<int>(set.images.size());
    const int C = cfg.num_channels, L = cfg.num_labels();
    const size_t per = static_cast<size_t>(C) * pp.height * pp.width;
    int correct = 0;
    double secs = 0;
    for (int s = 0; s < n; s += batch) {
      const int b = std::min(batch, n - s);
      std::vector<float> px;
      px.reserve(per * b);
      for (int i = s; i < s + b; ++i) {
        const std::string where = images.empty() ? data + " #" + std::to_string(i) : images[static_cast<size_t>(i)];
        std::vector<float> x = qtx::preprocess_image(set.images[static_cast<size_t>(i)], pp, C, where);
        px.insert(px.end(), x.begin(), x.end());
      }
      auto t0 = std::chrono::steady_clock::now();
      std::vector<float> logits = im->classify_images(px.data(), b);
      secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (int i = 0; i < b; ++i) {
        const float* row = logits.data() + static_cast<size_t>(i) * L;
        const int pred = static_cast<int>(std::max_element(row, row + L) - row);
        if (!images.empty()) {
          double sum = 0;
          for (int l = 0; l < L; ++l) sum += std::exp(row[l] - row[pred]);
          std::printf("%s  %s  %.2f%%\n", images[static_cast<size_t>(s + i)].c_str(), cfg.id2label[static_cast<size_t>(pred)].c_str(),
                      100.0 / sum);
        }
        correct += pred == set.labels[static_cast<size_t>(s + i)];
      }
    }
    if (images.empty()) {
      std::printf("accuracy   %.2f%% (%d/%d)\n", n ? 100.0 * correct / n : 0.0, correct, n);
      std::printf("speed      %.1f samples/s (batch %d)\n", secs > 0 ? n / secs : 0.0, batch);
    }
    std::printf("peak RSS   %.1f MiB\n", peak_rss_mib());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
