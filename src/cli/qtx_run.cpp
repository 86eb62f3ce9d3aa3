// qtx_run: the integer runtime on its own — links qtx_runtime, the data readers and oneDNN, not
// libtorch (the build checks this), so its memory and start-up are the runtime's alone.
// Evaluates a quantized folder on Fashion-MNIST / an image folder (ViT) or austen-6 / a TSV
// (BERT), or classifies images or texts.
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <functional>

#include "data/datasets.h"
#include "formats/bert_tokenizer.h"
#include "formats/error.h"
#include "formats/finite.h"
#include "runtime/cpu_isa.h"
#include "runtime/gemm.h"
#include "runtime/int_model.h"
#include "runtime/profile.h"

namespace {

// One batch of logits for examples [s, s + b) of either kind of input.
using BatchFn = std::function<std::vector<float>(int s, int b)>;

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qtx_run: run a quantized folder (ViT or BERT) in the integer-only runtime (no libtorch in this binary)"};
  std::string model, data;
  std::vector<std::string> images, texts;
  int limit = 0, batch = 64, threads = 0;
  bool profile = false, print_isa = false;
  auto* model_opt = app.add_option("--model", model, "Quantized folder written by qtx quantize");
  app.add_flag("--print-isa", print_isa,
               "Print the instruction-set level the kernels use (active), the CPU's (cpu) and a summary with oneDNN's, then "
               "exit; QTX_MAX_ISA=scalar|avx2|avx512|avx512_vnni caps the level");
  app.add_option("--data", data,
                 "What to evaluate: fmnist (test split) or a folder with one sub-folder of images per label (ViT); "
                 "austen6 (test split) or a TSV of label<TAB>text lines (BERT). Default: the model's task");
  app.add_option("--image", images, "Classify these .png/.pgm files instead of evaluating (ViT)");
  app.add_option("--text", texts, "Classify these texts instead of evaluating (BERT)");
  app.add_option("--limit", limit, "Evaluate the first N examples only")->check(CLI::Range(0, INT_MAX));
  app.add_option("--batch", batch, "Batch size")->check(CLI::Range(1, 65536))->capture_default_str();
  app.add_option("--threads", threads, "Threads (0 = all cores, at most " + std::to_string(qtx::rt::kMaxThreads) + ")")
      ->check(CLI::Range(0, qtx::rt::kMaxThreads));
  app.add_flag("--profile", profile,
               "Print where the model's forward time goes, by op class (linear GEMMs, attention matmuls, softmax, "
               "LayerNorm, activation, requantization, embedding)");
  CLI11_PARSE(app, argc, argv);
  try {
    qtx::rt::active_isa();  // a bad QTX_MAX_ISA is one clear error here, before any work
    if (print_isa) {
      std::printf("active   %s\ncpu      %s\nsummary  %s\n", qtx::rt::isa_name(qtx::rt::active_isa()), qtx::rt::isa_name(qtx::rt::cpu_isa()),
                  qtx::rt::isa_summary().c_str());
      return 0;
    }
    if (model_opt->count() == 0) throw qtx::Error("--model is required (a quantized folder written by qtx quantize)");
    if (threads > 0) qtx::rt::set_threads(threads);
    auto im = qtx::rt::load_int_model(model);
    const qtx::ModelConfig& cfg = im->config();
    const bool vit = cfg.model_type == "vit";
    if (vit && !texts.empty()) throw qtx::Error(model + ": is an image model; give --image FILE");
    if (!vit && !images.empty()) throw qtx::Error(model + ": is a text model; give --text \"...\"");
    const bool single = !images.empty() || !texts.empty();
    std::vector<std::string> names = vit ? images : texts;
    std::vector<int> labels;
    BatchFn run;
    double forward_secs = 0;  // inside the model's forward only (no preprocessing)
    auto timed_forward = [&](const std::function<std::vector<float>()>& f) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<float> logits = f();
      forward_secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return logits;
    };
    qtx::ImageSet set;
    qtx::TextSet text_set;
    if (vit) {
      qtx::ImagePreprocess pp = qtx::ImagePreprocess::load_for_model(model + "/preprocessor_config.json", cfg);
      if (single) {
        for (const auto& f : images) set.images.push_back(qtx::read_image(f));
        set.labels.assign(images.size(), -1);
      } else {
        if (data.empty()) data = "fmnist";
        set = data == "fmnist" ? qtx::load_fashion_mnist("test") : qtx::load_image_folder(data, cfg.id2label);
      }
      labels = set.labels;
      const size_t per = static_cast<size_t>(cfg.num_channels) * pp.height * pp.width;
      run = [&, pp, per](int s, int b) {
        std::vector<float> px;
        px.reserve(per * b);
        for (int i = s; i < s + b; ++i) {
          const std::string where = single ? images[static_cast<size_t>(i)] : data + " #" + std::to_string(i);
          std::vector<float> x = qtx::preprocess_image(set.images[static_cast<size_t>(i)], pp, cfg.num_channels, where);
          px.insert(px.end(), x.begin(), x.end());
        }
        if (px.size() != per * static_cast<size_t>(b))  // the runtime reads exactly this many floats
          throw qtx::Error(model + ": preprocessed images hold " + std::to_string(px.size()) + " floats, the model reads " +
                           std::to_string(per * static_cast<size_t>(b)));
        return timed_forward([&] { return im->classify_images(px.data(), b); });
      };
    } else {
      if (single) {
        text_set.texts = texts;
        text_set.labels.assign(texts.size(), -1);
      } else {
        if (data.empty()) data = "austen6";
        text_set = data == "austen6" ? qtx::load_austen6("test") : qtx::load_label_tsv(data, cfg.id2label);
      }
      labels = text_set.labels;
      auto tok = std::make_shared<qtx::BertTokenizer>(qtx::BertTokenizer::load(model));
      const int max_len = std::min(128, cfg.max_position_embeddings);
      run = [&, tok, max_len](int s, int b) {
        std::vector<std::vector<int>> seqs;
        size_t T = 0;
        for (int i = s; i < s + b; ++i) {
          const std::string& t = text_set.texts[static_cast<size_t>(i)];
          if (t.find_first_not_of(" \t\r\n") == std::string::npos)
            throw qtx::Error((single ? std::string("--text") : data + " #" + std::to_string(i)) + ": empty text");
          seqs.push_back(tok->encode(t, max_len));
          T = std::max(T, seqs.back().size());
        }
        std::vector<int32_t> ids(static_cast<size_t>(b) * T, tok->pad_id()), mask(ids.size(), 0);
        for (int i = 0; i < b; ++i)
          for (size_t t = 0; t < seqs[static_cast<size_t>(i)].size(); ++t) {
            ids[static_cast<size_t>(i) * T + t] = seqs[static_cast<size_t>(i)][t];
            mask[static_cast<size_t>(i) * T + t] = 1;
          }
        return timed_forward([&] { return im->classify_tokens(ids.data(), mask.data(), b, static_cast<int>(T)); });
      };
    }
    if (!single && std::any_of(labels.begin(), labels.end(), [](int l) { return l < 0; }))
      throw qtx::Error(data + ": has no labels, and --data measures accuracy (use --image / --text for unlabeled inputs)");
    const int total = static_cast<int>(labels.size());
    const int n = limit > 0 ? std::min(limit, total) : total;
    const int L = cfg.num_labels();
    int correct = 0;
    double secs = 0;
    if (profile) qtx::rt::profile_ops(true);
    for (int s = 0; s < n; s += batch) {
      const int b = std::min(batch, n - s);
      auto t0 = std::chrono::steady_clock::now();
      std::vector<float> logits = run(s, b);
      qtx::check_finite_logits(logits.data(), logits.size(), L, s, model);
      secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (int i = 0; i < b; ++i) {
        const float* row = logits.data() + static_cast<size_t>(i) * L;
        const int pred = static_cast<int>(std::max_element(row, row + L) - row);
        if (single) {
          double sum = 0;
          for (int l = 0; l < L; ++l) sum += std::exp(row[l] - row[pred]);
          std::printf("%s  %s  %.2f%%\n", names[static_cast<size_t>(s + i)].c_str(), cfg.id2label[static_cast<size_t>(pred)].c_str(),
                      100.0 / sum);
        }
        correct += pred == labels[static_cast<size_t>(s + i)];
      }
    }
    if (!single) {
      std::printf("accuracy   %.2f%% (%d/%d)\n", n ? 100.0 * correct / n : 0.0, correct, n);
      std::printf("speed      %.1f samples/s (batch %d; preprocessing included)\n", secs > 0 ? n / secs : 0.0, batch);
    }
    if (profile) std::printf("isa        %s\n", qtx::rt::isa_summary().c_str());
    if (profile && forward_secs > 0) {
      const qtx::rt::OpProfile p = qtx::rt::op_profile();
      std::printf("forward    %.3f s in all; by op class:\n", forward_secs);
      for (int c = 0; c < qtx::rt::kOpClasses; ++c)
        std::printf("  %-18s %5.1f %%\n", qtx::rt::op_class_name(static_cast<qtx::rt::OpClass>(c)),
                    100 * p.share(static_cast<qtx::rt::OpClass>(c), forward_secs));
      std::printf("  %-18s %5.1f %%\n", "untimed", 100 * p.untimed(forward_secs));
    }
    std::printf("peak RSS   %.1f MiB\n", peak_rss_mib());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
