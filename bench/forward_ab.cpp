// qtx_forward_ab: the integer runtime's forward under two settings of one switch, the two
// alternating in one process (this virtual machine's run-to-run noise is several per cent, more
// than the effects measured here), on fixed pseudo-random inputs: images of the model's size, or
// token ids filling --seq-len. Prints minimum, first quartile and median of each.
//   --switch mlp-blocks : the MLPs a block of rows at a time (the default block, or --rows) vs
//                         the whole batch at once
//   --switch cls-only   : the last layer on the CLS rows past its keys and values vs every row
//   --switch act-poly   : GELU's polynomial form (the default) vs its table alone
//   --switch short-rows : the attention's short-row forms (T ≤ 32: A·V by VNNI byte planes,
//                         Log-Int-Softmax in phases; the default) vs the shifting loops and row()
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "formats/error.h"
#include "runtime/gemm.h"
#include "runtime/int_blocks.h"
#include "runtime/int_kernels.h"
#include "runtime/int_model.h"

int main(int argc, char** argv) {
  CLI::App app{"qtx_forward_ab: the integer runtime's forward with a setting on and off, alternating in one process"};
  std::string model, which = "mlp-blocks";
  int batch = 32, seq_len = 128, repeats = 25, threads = 1, rows = 0;
  app.add_option("--model", model, "Quantized folder written by qtx quantize")->required();
  app.add_option("--switch", which,
                 "mlp-blocks: the MLPs in row blocks (the default, or --rows) vs the whole batch at once; "
                 "cls-only: the last layer on the CLS rows past its keys and values vs every row; "
                 "act-poly: the MLP activation's polynomial form vs its table alone; "
                 "short-rows: the attention's forms for rows of at most 32 keys (A·V by VNNI, Log-Int-Softmax in phases) vs "
                 "the shifting loops and one softmax row at a time")
      ->check(CLI::IsMember({"mlp-blocks", "cls-only", "act-poly", "short-rows"}))->capture_default_str();
  app.add_option("--batch", batch, "Batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq-len", seq_len, "Text models: tokens per sample")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--repeats", repeats, "Timed forwards per setting")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", threads, "Threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--rows", rows, "mlp-blocks: rows per MLP block of the first setting (default 0: the runtime's own)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    qtx::rt::set_threads(threads);
    auto on = qtx::rt::load_int_model(model), off = qtx::rt::load_int_model(model);
    if (which == "mlp-blocks") {
      on->set_mlp_row_block(rows);
      off->set_mlp_row_block(1 << 30);
    } else if (which == "cls-only") {
      off->set_cls_only_last_layer(false);
    }
    const bool act_poly = which == "act-poly", short_rows = which == "short-rows";
    const qtx::ModelConfig& cfg = on->config();
    const bool vit = cfg.model_type == "vit";
    std::mt19937 rng(0);
    std::vector<float> pixels;
    std::vector<int32_t> ids, mask;
    if (vit) {
      pixels.resize(static_cast<size_t>(batch) * cfg.num_channels * cfg.image_size * cfg.image_size);
      for (auto& p : pixels) p = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    } else {
      ids.resize(static_cast<size_t>(batch) * seq_len);
      for (auto& i : ids) i = static_cast<int32_t>(rng() % static_cast<uint32_t>(cfg.vocab_size));
      mask.assign(ids.size(), 1);
    }
    auto forward = [&](qtx::rt::IntModel& m) {
      if (act_poly) qtx::rt::set_activation_polynomial(&m == on.get());
      if (short_rows) qtx::rt::set_short_attention_rows(&m == on.get());
      const auto t0 = std::chrono::steady_clock::now();
      if (vit)
        m.classify_images(pixels.data(), batch);
      else
        m.classify_tokens(ids.data(), mask.data(), batch, seq_len);
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    forward(*on);  // warm-up: plans, scratch, caches
    forward(*off);
    std::vector<double> t_on, t_off;
    for (int r = 0; r < repeats; ++r) {
      t_on.push_back(forward(*on));
      t_off.push_back(forward(*off));
    }
    auto report = [](const char* name, std::vector<double> t) {
      std::sort(t.begin(), t.end());
      std::printf("%-28s min %8.2f ms   p25 %8.2f ms   median %8.2f ms\n", name, t[0], t[t.size() / 4], t[t.size() / 2]);
    };
    std::printf("%s, batch %d%s, %d thread%s, %d forwards each, alternating\n", model.c_str(), batch,
                vit ? "" : (" x " + std::to_string(seq_len) + " tokens").c_str(), threads, threads > 1 ? "s" : "", repeats);
    const std::string blocks = rows > 0 ? "MLP in blocks of " + std::to_string(rows) + " rows" : "MLP in row blocks";
    const bool mlp = which == "mlp-blocks";
    report(mlp ? blocks.c_str() : act_poly ? "activation by polynomial" : short_rows ? "attention short-row forms" : "last layer on CLS rows", t_on);
    report(mlp ? "MLP on the whole batch" : act_poly ? "activation by table alone" : short_rows ? "attention row by row" : "last layer on every row", t_off);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
