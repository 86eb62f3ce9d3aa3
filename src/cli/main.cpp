// qtx command line: parses arguments and calls the library; no logic of its own.
#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "data/datasets.h"
#include "eval/activation_stats.h"
#include "eval/analyze.h"
#include "eval/evaluate.h"
#include "formats/error.h"
#include "formats/hf_config.h"
#include "models/model.h"
#include "tasks/blas_baseline.h"
#include "tasks/labeled_data.h"
#include "quant/quant_model.h"
#include "tasks/predict_task.h"
#include "tasks/quantize_task.h"
#include "runtime/cpu_isa.h"
#include "tasks/runtime_task.h"
#include "runtime/gemm.h"
#include "runtime/int_model.h"
#include "train/train.h"

namespace {

// A progress callback redrawing one line on terminals, printing only the end otherwise.
qtx::ProgressFn progress_line(const std::string& tag) {
  const bool tty = isatty(fileno(stderr));
  return [tty, tag](int done, int total) {
    if (tty) std::fprintf(stderr, "\r[%s] %d/%d", tag.c_str(), done, total);
    if (done == total) std::fprintf(stderr, "%s[%s] %d/%d done\n", tty ? "\r" : "", tag.c_str(), done, total);
  };
}

int cmd_info(const std::string& dir) {
  auto loaded = qtx::load_any_model(dir);
  auto& model = loaded.model;
  const auto& c = model->config();
  std::printf("model      %s\n", dir.c_str());
  std::printf("type       %s (%s)\n", c.model_type.c_str(), c.architecture.c_str());
  std::printf("shape      hidden %d, layers %d, heads %d, intermediate %d, act %s\n", c.hidden_size,
              c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.hidden_act.c_str());
  if (c.model_type == "vit")
    std::printf("input      %dx%d, %d channel(s), patch %d -> %d tokens\n", c.image_size, c.image_size, c.num_channels,
                c.patch_size, (c.image_size / c.patch_size) * (c.image_size / c.patch_size) + 1);
  else
    std::printf("input      vocab %d, max %d positions\n", c.vocab_size, c.max_position_embeddings);
  std::printf("labels     %d:", c.num_labels());
  for (const auto& l : c.id2label) std::printf(" [%s]", l.c_str());
  std::printf("\nparameters %lld (%.2f MB as FP32)\n", static_cast<long long>(model->parameter_count()),
              model->parameter_count() * 4.0 / 1e6);
  std::printf("op sites   %zu\n", model->sites().sites().size());
  for (const auto& s : model->sites().sites())
    std::printf("  %-11s %s\n", qtx::site_kind_name(s.kind), s.name.c_str());
  if (loaded.quantized) {
    if (qtx::file_exists(dir + "/calibration.json")) {  // for people: a bad record is reported, not fatal
      try {
        const auto c = qtx::read_calibration_record(dir);
        std::printf("calibrated %s on %d %s/%s samples (seed %llu)\n", c.method.c_str(), c.samples, c.data.c_str(),
                    c.split.c_str(), static_cast<unsigned long long>(c.seed));
      } catch (const qtx::Error& e) {
        std::printf("calibrated (%s)\n", e.what());
      }
    }
    std::printf("recipe     %s: %zu quantizers\n", loaded.quantized->recipe().name.c_str(), loaded.quantized->points().size());
    for (const auto& p : loaded.quantized->points()) {
      const auto& sp = p.quantizer->spec();
      std::printf("  %-16s %-58s %s %d-bit%s\n", qtx::role_name(p.role), p.key().c_str(),
                  sp.scheme == qtx::Scheme::Ptf ? "ptf" : sp.scheme == qtx::Scheme::Log2 ? "log2" : (sp.symmetric ? "int" : "uint"),
                  sp.bits, p.quantizer->scale.numel() > 1 ? " per-channel" : "");
    }
  }
  return 0;
}

struct EvalArgs {
  std::string model, data, split = "test";
  int limit = 0, threads = 0, batch = 64;
  bool mlm = false;
  uint64_t seed = 1234;
  std::string engine = "torch";
  bool float64 = false;
  std::string predictions;  // eval: per-sample "label predicted" lines go here
  int exclude_calib = 0;    // eval: leave out the training samples `qtx quantize --calib N --seed S` draws
  uint64_t calib_seed = 0;
  bool calib_seed_given = false;
  bool outside_calib = false;  // eval: the same, with N, S and the data read from the artifact's calibration.json
  bool labels_by_index = false;  // the data's class k is the model's class k (LABEL_k or renamed classes)
  qtx::DataLabels labels() const { return {true, labels_by_index ? qtx::LabelMatch::ByIndex : qtx::LabelMatch::ByName}; }
};

// --outside-calib: the calibration sample recorded in the artifact (tasks/quantize_task.h).
void take_calibration_record(EvalArgs& a) {
  qtx::CalibrationRecord c;
  try {
    c = qtx::read_calibration_record(a.model);
  } catch (const qtx::Error& e) {
    throw qtx::Error(std::string(e.what()) + "; or give the sample as --exclude-calib N --calib-seed S");
  }
  if (c.split != "train")
    throw qtx::Error("--outside-calib: the artifact was calibrated on " + c.data +
                     " (--calib-data), not on a built-in training split; evaluate on other data with --data");
  if (!a.data.empty() && a.data != c.data)
    throw qtx::Error("--outside-calib: the artifact was calibrated on " + c.data + ", not " + a.data);
  a.data = c.data;
  a.exclude_calib = c.samples;
  a.calib_seed = c.seed;
}

int cmd_eval(EvalArgs a) {
  if (a.outside_calib) {
    if (a.exclude_calib > 0 || a.calib_seed_given)
      throw qtx::Error("--outside-calib reads the sample from the artifact: give it without --exclude-calib / --calib-seed");
    if (a.split != "train") throw qtx::Error("--outside-calib: evaluates the training split; give --split train");
    take_calibration_record(a);
  }
  if (a.calib_seed_given && a.exclude_calib == 0) throw qtx::Error("--calib-seed: only with --exclude-calib");
  if (!a.predictions.empty()) {  // fail now, not after a whole evaluation
    const auto slash = a.predictions.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : a.predictions.substr(0, slash + 1);
    if (access(dir.c_str(), W_OK) != 0) throw qtx::Error("--predictions " + a.predictions + ": cannot write into " + dir);
  }
  qtx::set_threads(a.threads);
  auto loaded = qtx::load_any_model(a.model);
  auto& model = loaded.model;
  const auto& cfg = model->config();
  std::string spec = a.data.empty() ? qtx::builtin_data_of(cfg) : a.data;
  std::unique_ptr<qtx::LabeledData> data;
  if (a.exclude_calib > 0) {
    // The training split less a calibration sample: data no quantizer was fitted on, beside the test split.
    const std::string flag = a.outside_calib ? "--outside-calib" : "--exclude-calib";
    if (a.split != "train" || !qtx::is_builtin_data(spec))
      throw qtx::Error(flag + ": needs --split train of the built-in data (fmnist or austen6)");
    if (a.mlm) throw qtx::Error(flag + ": --mlm scores whole text splits; use it without " + flag);
    auto train = qtx::open_labeled_data(spec, "train", 0, a.model, cfg, a.labels());
    auto keep = qtx::indices_outside_sample(train->size(), a.exclude_calib, a.calib_seed, a.limit);
    if (keep.empty())
      throw qtx::Error(a.outside_calib ? "--outside-calib: the artifact's calibration sample (calibration.json: " +
                                             std::to_string(a.exclude_calib) + ", seed " + std::to_string(a.calib_seed) +
                                             ") covers the whole training split"
                                       : "--exclude-calib " + std::to_string(a.exclude_calib) + ": leaves no training samples");
    const int drawn = std::min(a.exclude_calib, train->size());
    data = qtx::subset_data(std::move(train), std::move(keep),
                            "outside the calibration sample (" + std::to_string(drawn) + ", seed " +
                                std::to_string(a.calib_seed) + ")");
  } else {
    data = qtx::open_labeled_data(spec, a.split, a.limit, a.model, cfg, a.labels());
  }
  std::fprintf(stderr, "[eval] %s%s on %s, %d threads\n", a.model.c_str(),
               loaded.quantized ? (" (fake-quant, recipe " + loaded.quantized->recipe().name + ")").c_str() : "",
               data->describe().c_str(), at::get_num_threads());
  qtx::EvalResult r;
  if (a.engine == "int") {
    if (!loaded.quantized) throw qtx::Error(a.model + ": --engine int runs quantized folders (make one with `qtx quantize`)");
    if (a.mlm) throw qtx::Error("--mlm: the integer runtime runs the classifier only");
    loaded = {};
    qtx::rt::set_threads(a.threads > 0 ? a.threads : qtx::default_threads());
    auto im = qtx::rt::load_int_model(a.model);
    std::fprintf(stderr, "[eval] integer runtime (oneDNN int8 GEMMs)\n");
    r = qtx::evaluate_int(*im, *data, a.batch, progress_line("eval"));
  } else {
    r = qtx::evaluate(*model, *data, a.batch, progress_line("eval"));
  }
  if (!a.predictions.empty()) {
    // One line per sample in data order, so two runs can be compared sample by sample
    // (scripts/results.sh bootstraps its targets' confidence intervals from these).
    std::string lines;
    for (size_t i = 0; i < r.predictions.size(); ++i)
      lines += std::to_string(data->label(static_cast<int>(i))) + " " + std::to_string(r.predictions[i]) + "\n";
    qtx::write_text_file(a.predictions, lines);
  }
  std::printf("accuracy   %.2f%% (%d/%d)\n", r.accuracy(), r.correct, r.samples);
  std::printf("speed      %.1f samples/s (batch %d, %d threads)\n", r.samples_per_second(), a.batch, at::get_num_threads());
  if (a.mlm) {
    if (cfg.model_type != "bert") throw qtx::Error("--mlm: only BERT models have an MLM head");
    if (spec != "austen6") throw qtx::Error("--mlm: evaluates held-out austen6 text; use --data austen6");
    auto tok = qtx::BertTokenizer::load(a.model);
    auto texts = qtx::load_austen6(a.split).texts;
    if (a.limit > 0 && static_cast<size_t>(a.limit) < texts.size()) texts.resize(static_cast<size_t>(a.limit));
    auto m = qtx::mlm_accuracy(*model, tok, texts, std::min(128, cfg.max_position_embeddings), a.seed, a.batch);
    std::printf("mlm        %.2f%% of %lld masked pieces restored (seed %llu)\n", m.accuracy(),
                static_cast<long long>(m.masked), static_cast<unsigned long long>(a.seed));
  }
  std::printf("peak RSS   %.1f MiB\n", qtx::peak_rss_mib());
  return 0;
}

int cmd_parity(const EvalArgs& a) {
  qtx::set_threads(a.threads);
  qtx::rt::set_threads(a.threads > 0 ? a.threads : qtx::default_threads());
  if (!qtx::QuantizedModel::is_artifact(a.model)) throw qtx::Error(a.model + ": parity compares a quantized folder's two engines");
  const auto cfg = qtx::ModelConfig::load(a.model + "/config.json");
  std::string spec = a.data.empty() ? qtx::builtin_data_of(cfg) : a.data;
  auto data = qtx::open_labeled_data(spec, a.split, a.limit, a.model, cfg, a.labels());
  std::fprintf(stderr, "[parity] %s on %s: libtorch fake-quant (%s) vs integer runtime\n", a.model.c_str(), data->describe().c_str(), a.float64 ? "float64" : "float32");
  auto p = qtx::parity(a.model, *data, a.batch, a.float64, progress_line("parity"));
  std::printf("fake-quant  %.2f%% (%d/%d)  %.1f samples/s\n", p.fake.accuracy(), p.fake.correct, p.fake.samples, p.fake.samples_per_second());
  std::printf("integer     %.2f%% (%d/%d)  %.1f samples/s\n", p.integer.accuracy(), p.integer.correct, p.integer.samples, p.integer.samples_per_second());
  std::printf("agreement   %.2f%% top-1 (%d/%d), accuracy difference %+.2f points\n", p.agreement(), p.agree, p.fake.samples,
              p.integer.accuracy() - p.fake.accuracy());
  return 0;
}

struct BenchArgs {
  std::string model, float_model;
  std::vector<int> batches{1, 64}, threads{1, 2};
  int repeats = 10, seq_len = 128;
  bool blas_as_picked = false;
};

// OpenBLAS chooses its kernels when the process loads it, from the CPU or OPENBLAS_CORETYPE. The
// FP32 baseline must run the instruction set the integer runtime runs: an AVX-512 CPU running its
// AVX2 kernels (an environment pinning OPENBLAS_CORETYPE=Haswell, as this project's machines do,
// or a CPU that OpenBLAS does not know) times libtorch's FP32 GEMMs well below what the CPU does,
// and a speed-up against that flatters the runtime; with the runtime capped below AVX-512
// (QTX_MAX_ISA=avx2: an AVX2-only CPU's path) the baseline gets OpenBLAS's AVX2 kernels. bench
// starts itself again with the matching kernels (once: QTX_BENCH_RESTARTED guards against a loop).
void restart_with_matching_blas(const BenchArgs& a, char** argv) {
  const qtx::BlasBaseline b = qtx::blas_baseline();
  if (a.blas_as_picked || b.core.empty() || std::getenv("QTX_BENCH_RESTARTED")) return;
  const bool runtime_avx512 = qtx::rt::active_isa() >= qtx::rt::Isa::Avx512;
  const char* want = runtime_avx512 && b.avx512_left_unused() ? "SkylakeX" : !runtime_avx512 && b.core_avx512 ? "Haswell" : nullptr;
  if (!want) return;
  std::fprintf(stderr, "[bench] libtorch's OpenBLAS runs its %s kernels%s and the integer runtime %s; restarting with "
               "OPENBLAS_CORETYPE=%s so the FP32 baseline uses the same instruction set (--blas-as-picked keeps them)\n",
               b.core.c_str(), std::getenv("OPENBLAS_CORETYPE") ? " (set by OPENBLAS_CORETYPE)" : "", qtx::rt::isa_name(qtx::rt::active_isa()), want);
  setenv("OPENBLAS_CORETYPE", want, 1);
  setenv("QTX_BENCH_RESTARTED", "1", 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "[bench] could not restart (%s); timing libtorch with the %s kernels\n", std::strerror(errno), b.core.c_str());
}

int cmd_bench(const BenchArgs& a) {
  const qtx::BlasBaseline blas = qtx::blas_baseline();
  std::fprintf(stderr, "[bench] libtorch's BLAS: %s\n", qtx::describe(blas).c_str());
  if (blas.avx512_left_unused() && qtx::rt::active_isa() >= qtx::rt::Isa::Avx512)
    std::fprintf(stderr, "[bench] warning: the FP32 baseline leaves this CPU's AVX-512 unused, so the speed-ups below overstate "
                 "the runtime's\n");
  std::fprintf(stderr, "[bench] libtorch FP32 (%s) vs integer runtime (%s), %d repeats each\n", a.float_model.c_str(), a.model.c_str(), a.repeats);
  auto rows = qtx::bench(a.float_model, a.model, a.batches, a.threads, a.repeats, a.seq_len);
  std::printf("libtorch FP32 on %s\n", qtx::describe(blas).c_str());
  std::printf("integer runtime: %s\n\n", qtx::rt::isa_summary().c_str());
  std::printf("| batch | threads | libtorch FP32 ms | FP32 samples/s | integer ms | integer samples/s | speed-up | linear GEMMs | attention matmuls | non-GEMM | GEMM GOPS | integer ms, every row | speed-up, every row | speed-up per repeat, quartiles |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows)
    std::printf("| %d | %d | %.2f | %.0f | %.2f | %.0f | %.2fx | %.0f %% | %.0f %% | %.0f %% | %.0f | %.2f | %.2fx | %.2f–%.2fx |\n", r.batch,
                r.threads, r.fp32_ms, r.batch * 1000.0 / r.fp32_ms, r.int_ms, r.batch * 1000.0 / r.int_ms, r.speedup(),
                100 * r.share(qtx::rt::OpClass::LinearGemm), 100 * r.share(qtx::rt::OpClass::AttentionMatmul),
                100 * r.non_gemm_share(), r.gemm_gops(), r.int_all_rows_ms, r.speedup_all_rows(), r.speedup_q1, r.speedup_q3);
  // Where the non-GEMM time goes, per cell.
  std::printf("\n| batch | threads |");
  for (int c = 2; c < qtx::rt::kOpClasses; ++c) std::printf(" %s |", qtx::rt::op_class_name(static_cast<qtx::rt::OpClass>(c)));
  std::printf(" untimed |\n|---:|---:|");
  for (int c = 2; c <= qtx::rt::kOpClasses; ++c) std::printf("---:|");
  std::printf("\n");
  for (const auto& r : rows) {
    std::printf("| %d | %d |", r.batch, r.threads);
    for (int c = 2; c < qtx::rt::kOpClasses; ++c) std::printf(" %.1f %% |", 100 * r.share(static_cast<qtx::rt::OpClass>(c)));
    std::printf(" %.1f %% |\n", 100 * r.profile.untimed(r.profiled_seconds));
  }
  return 0;
}

struct AnalyzeArgs {
  std::string model, data, split = "test";
  int limit = 256, threads = 0, batch = 64;
};

int cmd_analyze(const AnalyzeArgs& a) {
  qtx::set_threads(a.threads);
  if (!qtx::QuantizedModel::is_artifact(a.model))
    throw qtx::Error(a.model + ": not a quantized artifact (no recipe.json); run qtx quantize first");
  auto qm = qtx::QuantizedModel::load(a.model);
  const auto& cfg = qm->model().config();
  std::string spec = a.data.empty() ? qtx::builtin_data_of(cfg) : a.data;
  auto data = qtx::open_labeled_data(spec, a.split, a.limit, a.model, cfg, {false});
  std::fprintf(stderr, "[analyze] %s (recipe %s) on %s\n", a.model.c_str(), qm->recipe().name.c_str(), data->describe().c_str());
  auto rows = qtx::analyze_sites(*qm, *data, a.limit, a.batch);
  std::printf("%-58s %-10s %9s %9s\n", "site (output)", "kind", "cosine", "SQNR dB");
  for (const auto& r : rows) std::printf("%-58s %-10s %9.5f %9.2f\n", r.site.c_str(), r.kind.c_str(), r.cosine, r.sqnr_db);
  return 0;
}

struct StatsArgs {
  std::string model, out, calib_data;
  int calib = 256, threads = 0, batch = 64;
  uint64_t seed = 0;
};

int cmd_stats(const StatsArgs& a) {
  qtx::set_threads(a.threads);
  auto model = qtx::load_model(a.model);
  const auto& cfg = model->config();
  auto train = qtx::open_labeled_data(a.calib_data.empty() ? qtx::builtin_data_of(cfg) : a.calib_data, "train", 0, a.model, cfg,
                                      {false});
  if (a.calib > train->size())
    throw qtx::Error("--calib " + std::to_string(a.calib) + ": more samples than " + train->describe());
  auto idx = qtx::sample_indices(train->size(), a.calib, a.seed);
  auto st = qtx::collect_activation_stats(*model, *train, idx, a.batch);
  std::string name = a.model;
  while (!name.empty() && name.back() == '/') name.pop_back();
  name = name.substr(name.find_last_of('/') + 1);
  qtx::write_activation_report(st, name, a.out);
  std::printf("%-50s %s\n", "LayerNorm input", "widest / median channel range");
  for (const auto& l : st.layernorm_inputs) std::printf("%-50s %.1f\n", l.site.c_str(), l.spread());
  std::printf("wrote %s/{ln_input_ranges.svg, attention_log2_hist.svg, activation_stats.md}\n", a.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Calibration allocates and frees tensors of hundreds of MB in a loop; glibc would map and
  // unmap each one, and the page faults cost ~30 % of a search. Keep freed memory instead.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"qtx: post-training quantization of Transformers (ViT, BERT) and an integer runtime.\n"
               "Models are Hugging Face folders (config.json, model.safetensors, vocab.txt / preprocessor_config.json)."};
  app.require_subcommand(1);
  // Bounds with human numbers: CLI11's NonNegativeNumber / PositiveNumber print the range of a
  // double (309 digits). Threads: runtime/gemm.h; a batch beyond 65536 only exhausts memory.
  const CLI::Range kThreads(0, qtx::rt::kMaxThreads), kBatch(1, 65536), kCount(0, INT_MAX), kPositive(1, INT_MAX);

  std::string info_dir;
  auto* info = app.add_subcommand("info", "Print a model's architecture, parameter count and every op site name");
  info->add_option("model", info_dir, "Model folder")->required();

  EvalArgs ea;
  auto* ev = app.add_subcommand("eval", "Evaluate a model: accuracy, samples/s, peak memory");
  ev->add_option("--model", ea.model, "Model folder")->required();
  ev->add_option("--data", ea.data,
                 "fmnist | austen6 | FILE.tsv (label<TAB>text per line) | DIR (one sub-folder of PNG/PGM images per label); "
                 "default: the model's built-in task. Labels match the model's id2label by name, ignoring case and "
                 "punctuation (T-shirt/top = t_shirt_top)");
  const char* by_index_help = "The data's class k is the model's class k: labels written k or LABEL_k, or a built-in set's "
                              "k-th class (for LABEL_0-style or renamed classes)";
  ev->add_flag("--labels-by-index", ea.labels_by_index, by_index_help);
  ev->add_option("--split", ea.split, "Split of a built-in data set: train | dev (austen6) | test")
      ->check(CLI::IsMember({"train", "dev", "test"}))->capture_default_str();
  ev->add_option("--limit", ea.limit, "Evaluate the first N examples only (0 = all)")->check(kCount);
  ev->add_option("--threads", ea.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);
  ev->add_option("--batch", ea.batch, "Batch size")->check(kBatch)->capture_default_str();
  ev->add_option("--predictions", ea.predictions,
                 "Write FILE: one line \"label predicted\" per evaluated sample, in data order (for paired comparisons)");
  ev->add_option("--exclude-calib", ea.exclude_calib,
                 "With --split train: leave out the N training samples `qtx quantize --calib N --seed S` calibrates on "
                 "(S from --calib-seed), so the rest is data no quantizer saw")
      ->check(kPositive);
  auto* calib_seed = ev->add_option("--calib-seed", ea.calib_seed, "Seed of the calibration sample --exclude-calib leaves out")
                         ->capture_default_str();
  ev->add_flag("--outside-calib", ea.outside_calib,
               "With --split train: leave out the training samples this artifact was calibrated on, as its calibration.json "
               "records them (the same as --exclude-calib N --calib-seed S with its N and S)");
  ev->add_flag("--mlm", ea.mlm, "BERT: also report masked-token accuracy on held-out austen6 text");
  ev->add_option("--seed", ea.seed, "Seed of the MLM masking")->capture_default_str();
  ev->add_option("--engine", ea.engine,
                 "torch: libtorch (float, or fake-quant for a quantized folder) | int: the integer-only runtime (quantized folders)")
      ->check(CLI::IsMember({"torch", "int"}))->capture_default_str();

  EvalArgs pa;
  auto* par = app.add_subcommand("parity", "Top-1 agreement of a quantized folder's integer runtime with its libtorch fake-quant simulation");
  par->add_option("--model", pa.model, "Quantized model folder (from qtx quantize)")->required();
  par->add_option("--data", pa.data, "As for eval; default: the model's built-in task");
  par->add_flag("--labels-by-index", pa.labels_by_index, by_index_help);
  par->add_option("--split", pa.split, "Split of a built-in data set")->check(CLI::IsMember({"train", "dev", "test"}))->capture_default_str();
  par->add_option("--limit", pa.limit, "First N examples only (0 = all)")->check(kCount);
  par->add_option("--threads", pa.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);
  par->add_option("--batch", pa.batch, "Batch size")->check(kBatch)->capture_default_str();
  par->add_flag("--float64", pa.float64, "Run the fake-quant simulation in float64 (float32 rounding in its GEMMs is then out of the comparison)");

  qtx::QuantizeOptions qo;
  auto* qz = app.add_subcommand("quantize", "Calibrate a model with a recipe and write a quantized artifact (docs/FORMAT.md)");
  qz->add_option("--model", qo.model, "Float model folder")->required();
  qz->add_option("--recipe", qo.recipe, "Built-in recipe name (see docs/RECIPES.md) or a recipe .json file")->required();
  qz->add_option("--out", qo.out,
                 "Output folder for the quantized model: written beside it and renamed into place only when complete; "
                 "an earlier artifact there is replaced, the input model or any other existing folder is refused (see --force)")
      ->required();
  qz->add_flag("--force", qo.force,
               "Let --out replace whatever folder is there, even the input model itself or a folder that is not a qtx artifact");
  qz->add_option("--calib", qo.calib, "Calibration samples, drawn with --seed (default 1000 images / 512 passages)")
      ->check(kCount);
  qz->add_option("--calib-data", qo.calib_data,
                 "Calibrate on this data instead of the built-in training split: DIR (images, in per-label sub-folders or "
                 "not), FILE.tsv (label<TAB>text) or FILE.txt (one passage per line). Labels are not needed");
  qz->add_option("--seed", qo.seed, "Seed of the calibration sample")->capture_default_str();
  qz->add_option("--batch", qo.batch, "Calibration batch size")->check(kBatch)->capture_default_str();
  qz->add_option("--threads", qo.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);
  qz->add_option("--method", qo.method,
                 "Calibration method: observer (the recipe's observers) | liu (Liu et al. interval search) | "
                 "easyquant (cosine interval search)")
      ->capture_default_str();
  qz->add_option("--observer", qo.observer, "Replace the observer of every activation role: minmax | ema | percentile | percentile-ema (FQ-ViT's) | omse");
  auto& so = qo.calib_options.search;
  std::string objective = "pearson";
  qz->add_option("--objective", objective, "liu: similarity objective, pearson | cosine")->capture_default_str()
      ->check(CLI::IsMember({"pearson", "cosine"}));
  bool no_ranking = false, no_bias = false;
  qz->add_flag("--no-ranking", no_ranking, "liu: drop the attention ranking loss (ablation)");
  qz->add_flag("--no-bias-correction", no_bias, "liu: keep the biases as they are (ablation)");
  qz->add_flag("--correct-in-search", so.correct_in_search,
               "liu: score every candidate interval of a linear layer with its own bias correction applied (its mean error per output channel)");
  qz->add_option("--gamma", so.gamma, "liu: weight of the ranking loss (normalised per pair)")->capture_default_str();
  qz->add_option("--theta", so.theta, "liu: margin of the ranking hinge")->capture_default_str();
  qz->add_option("--rank-pairs", so.rank_pairs, "liu: key pairs per attention row (all if fewer)")
      ->check(kPositive)->capture_default_str();
  qz->add_option("--alpha", so.alpha, "liu/easyquant: smallest candidate interval, × Δ_init")->capture_default_str();
  qz->add_option("--beta", so.beta, "liu/easyquant: largest candidate interval, × Δ_init")->capture_default_str();
  qz->add_option("--candidates", so.candidates, "liu/easyquant: candidate intervals per search")
      ->check(kPositive)->capture_default_str();
  qz->add_option("--rounds", so.rounds, "liu/easyquant: alternating weight/input search rounds (liu corrects the bias after each round)")
      ->check(kPositive)->capture_default_str();
  qz->add_option("--search-tokens", so.search_tokens,
                 "liu/easyquant: score candidates on the first calibration batches holding this many tokens (0 = all; "
                 "Δ_init and bias correction always use all)")
      ->check(kCount)->capture_default_str();
  auto& mp = qo.calib_options.mp;
  qz->add_option("--avg-bits", mp.avg_bits, "liu: mixed precision with this average weight bit-width over linear layers")
      ->check(CLI::Range(1.0, 8.0));
  qz->add_option("--target-size", mp.target_bytes, "liu: mixed precision with this many bytes of linear weights")
      ->check(CLI::Range(int64_t{1}, INT64_MAX));
  qz->add_option("--mp-bits", mp.bits, "liu: candidate bit-widths per module")->delimiter(',')->capture_default_str();
  bool mp_msa_output = false, mp_model_output = false;
  auto* msa_out = qz->add_flag("--mp-msa-output", mp_msa_output,
                               "liu: measure an MSA module's sensitivity on its output feature, not its attention map "
                               "(comparable with the MLP's) [not the paper's]");
  qz->add_flag("--mp-model-output", mp_model_output,
               "liu: measure every module's sensitivity on the model's output (the classifier's logits), "
               "where its error ends up [not the paper's]")
      ->excludes(msa_out);
  qz->add_flag("--mp-weights-only", mp.weights_only, "liu: module bit-widths apply to weights only (inputs keep the recipe's bits)");
  qz->add_option("--mp-samples", qo.calib_options.mp_samples, "liu: calibration samples for the sensitivity (whole batches)")
      ->check(kPositive)->capture_default_str();
  qz->callback([&] {
    so.objective = objective == "cosine" ? qtx::SearchObjective::Cosine : qtx::SearchObjective::Pearson;
    so.ranking = !no_ranking;
    so.bias_correction = !no_bias;
    so.seed = qo.seed;
    qo.calib_options.mixed = mp.avg_bits > 0 || mp.target_bytes > 0;
    mp.sensitivity_on = mp_model_output ? qtx::SensitivityOn::ModelOutput
                        : mp_msa_output ? qtx::SensitivityOn::ModuleOutput : qtx::SensitivityOn::Paper;
  });

  qtx::PredictOptions po;
  auto* pr = app.add_subcommand("predict", "Top-k labels with probabilities for images or texts (integer runtime for quantized folders it can run)");
  pr->add_option("--model", po.model, "Model folder: float, or quantized by qtx quantize")->required();
  pr->add_option("--image", po.images, "Image file(s), .png or .pgm (converted to the model's channels and resized as preprocessor_config.json says)");
  pr->add_option("--text", po.texts, "Text(s) to classify (BERT models)");
  pr->add_option("--top-k", po.top_k, "How many labels to print")->check(kPositive)->capture_default_str();
  pr->add_option("--engine", po.engine, "auto (integer runtime when it can run the folder, else libtorch) | int | torch")
      ->check(CLI::IsMember({"auto", "int", "torch"}))->capture_default_str();
  pr->add_option("--threads", po.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);

  BenchArgs ba;
  auto* bn = app.add_subcommand("bench", "Speed of the integer runtime next to libtorch FP32 on the same inputs and threads (medians); "
                                         "two columns: the runtime with every row of the last layer, as libtorch; the last: quartiles of "
                                         "each repeat's speed-up (both engines timed back to back). Prints the instruction set the "
                                         "runtime's kernels use; QTX_MAX_ISA=avx2 (or avx512, scalar) caps it, e.g. to time an AVX2-only "
                                         "CPU's path on a newer one");
  bn->add_option("--model", ba.model, "Quantized model folder (from qtx quantize)")->required();
  bn->add_option("--float-model", ba.float_model, "The float model it was made from (the FP32 baseline)")->required();
  bn->add_option("--batch", ba.batches, "Batch sizes (repeat the option)")->check(kBatch)->capture_default_str();
  bn->add_option("--threads", ba.threads, "Thread counts")->check(kThreads)->capture_default_str();
  bn->add_option("--repeats", ba.repeats, "Timed forwards per engine and setting")->check(kPositive)->capture_default_str();
  bn->add_option("--seq-len", ba.seq_len, "Text models: attended tokens per sample (each passage's wordpieces repeated to fill them; 0 = passages as they are)")
      ->check(kCount)->capture_default_str();
  bn->add_flag("--blas-as-picked", ba.blas_as_picked,
               "Time libtorch with the OpenBLAS kernels the process started with. By default bench restarts with the OpenBLAS "
               "kernels of the runtime's instruction set: OPENBLAS_CORETYPE=SkylakeX where the runtime uses AVX-512 and OpenBLAS "
               "runs AVX2 kernels (e.g. OPENBLAS_CORETYPE=Haswell in the environment), Haswell where QTX_MAX_ISA caps the "
               "runtime below AVX-512: the fair FP32 baseline");

  AnalyzeArgs aa;
  auto* an = app.add_subcommand("analyze", "Per-site error of a quantized model: cosine similarity and SQNR of each op's output vs FP");
  an->add_option("--model", aa.model, "Quantized model folder (from qtx quantize)")->required();
  an->add_option("--data", aa.data, "As for eval; default: the model's built-in task");
  an->add_option("--split", aa.split, "Split of a built-in data set")->check(CLI::IsMember({"train", "dev", "test"}))->capture_default_str();
  an->add_option("--limit", aa.limit, "Examples to compare on")->check(kPositive)->capture_default_str();
  an->add_option("--batch", aa.batch, "Batch size")->check(kBatch)->capture_default_str();
  an->add_option("--threads", aa.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);

  StatsArgs sa;
  auto* stt = app.add_subcommand("stats", "Per-channel LayerNorm-input ranges and the attention-probability histogram (SVG plots)");
  stt->add_option("--model", sa.model, "Float model folder")->required();
  stt->add_option("--out", sa.out, "Folder for the plots and table")->required();
  stt->add_option("--calib", sa.calib, "Samples to collect on")->check(kPositive)->capture_default_str();
  stt->add_option("--calib-data", sa.calib_data, "Collect on this data instead of the built-in training split (as quantize's)");
  stt->add_option("--seed", sa.seed, "Seed of the sample")->capture_default_str();
  stt->add_option("--threads", sa.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);

  qtx::TrainOptions to;
  auto* tr = app.add_subcommand("train", "Train a reference model from scratch (checkpoints every epoch, resumes)");
  tr->add_option("--task", to.task, "vit-fmnist | bert-mlm | bert-austen6")
      ->required()->check(CLI::IsMember({"vit-fmnist", "bert-mlm", "bert-austen6"}));
  tr->add_option("--out", to.out, "Output model folder (training resumes from its checkpoint/; it may not be --init or a folder no training wrote, see --force)")->required();
  tr->add_flag("--force", to.force, "Let --out be --init itself or an existing folder that no training wrote");
  tr->add_option("--init", to.init, "bert-austen6: MLM-pretrained model to fine-tune; vit-fmnist: trained model to continue from");
  tr->add_option("--device", to.device, "cpu | cuda")->capture_default_str();
  tr->add_option("--epochs", to.epochs)->check(kPositive)->capture_default_str();
  tr->add_option("--batch", to.batch)->check(kBatch)->capture_default_str();
  tr->add_option("--lr", to.lr, "Peak learning rate")->capture_default_str();
  tr->add_option("--weight-decay", to.weight_decay)->capture_default_str();
  tr->add_option("--warmup", to.warmup_frac, "Warm-up fraction of all steps")->capture_default_str();
  tr->add_option("--label-smoothing", to.label_smoothing)->capture_default_str();
  tr->add_option("--dropout", to.dropout, "hidden (and BERT attention) dropout")->capture_default_str();
  tr->add_option("--mlm-weight", to.mlm_weight, "bert-austen6: weight of the auxiliary MLM loss")->capture_default_str();
  tr->add_option("--seed", to.seed)->capture_default_str();
  tr->add_option("--threads", to.threads, "Threads (0 = all cores; at most 1024)")->check(kThreads);
  tr->add_option("--limit", to.limit, "Use the first N training examples only (smoke tests)")->check(kCount);
  tr->add_flag("!--no-augment", to.augment, "vit-fmnist: no random shifts/flips");
  tr->add_flag("!--no-flip", to.flip, "vit-fmnist: augment with shifts only (Fashion-MNIST's shoes all face one way)");
  tr->add_option("--shift", to.shift, "vit-fmnist: largest random shift in pixels (0: flips only, unless --no-flip)")
      ->check(CLI::Range(0, 8))->capture_default_str();
  tr->add_option("--erase", to.erase,
                 "vit-fmnist: probability of random erasing (one rectangle of 2-40 % of the image filled with uniform noise; 0: off)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  tr->add_option("--distill-cnn", to.distill_epochs,
                 "vit-fmnist: first train a CNN teacher for this many epochs (kept in OUT/teacher/), then distil the ViT "
                 "from its soft outputs on the same augmented images (0: off)")
      ->check(CLI::Range(0, 100))->capture_default_str();
  tr->add_option("--distill-weight", to.distill_weight, "vit-fmnist: weight of the teacher loss (1 - it weighs the label loss)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  tr->add_option("--distill-temp", to.distill_temp, "vit-fmnist: softmax temperature of the teacher's targets")
      ->check(CLI::Range(0.1, 100.0))->capture_default_str();
  tr->add_option("--hidden", to.hidden)->capture_default_str();
  tr->add_option("--layers", to.layers)->capture_default_str();
  tr->add_option("--heads", to.heads)->capture_default_str();
  tr->add_option("--intermediate", to.intermediate)->capture_default_str();
  tr->add_option("--patch", to.patch, "ViT patch size")->capture_default_str();
  tr->add_option("--vocab-size", to.vocab_size, "bert-mlm: WordPiece vocabulary size")->capture_default_str();

  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto* sc : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sc->get_name() == argv[1];
      names += (names.empty() ? "" : " | ") + sc->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "error: unknown command '%s' (%s; see qtx --help)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    qtx::rt::active_isa();  // a bad QTX_MAX_ISA is one clear error here, before any work
    if (*info) return cmd_info(info_dir);
    if (*ev) {
      ea.calib_seed_given = calib_seed->count() > 0;
      return cmd_eval(ea);
    }
    if (*par) return cmd_parity(pa);
    if (*bn) {
      restart_with_matching_blas(ba, argv);
      return cmd_bench(ba);
    }
    if (*pr) {
      auto r = qtx::predict(po);
      std::printf("engine     %s\n", r.engine.c_str());
      for (const auto& p : r.predictions) {
        std::printf("%s\n", p.input.c_str());
        for (const auto& [label, prob] : p.top) std::printf("  %6.2f%%  %s\n", 100.0 * prob, label.c_str());
      }
      return 0;
    }
    if (*an) return cmd_analyze(aa);
    if (*stt) return cmd_stats(sa);
    if (*qz) {
      // The option changes how Liu et al.'s bias correction scores candidates: without that
      // correction it would do nothing, silently.
      if (qo.calib_options.search.correct_in_search && (qo.method != "liu" || !qo.calib_options.search.bias_correction))
        throw qtx::Error("--correct-in-search: needs --method liu with its bias correction (not --no-bias-correction)");
      // Mixed-precision settings without a target would be ignored, silently.
      for (const char* opt : {"--mp-bits", "--mp-msa-output", "--mp-model-output", "--mp-weights-only", "--mp-samples"})
        if (qz->count(opt) > 0 && !qo.calib_options.mixed)
          throw qtx::Error(std::string(opt) + ": only applies to mixed precision (--avg-bits or --target-size)");
      auto r = qtx::quantize(qo);
      std::printf("recipe       %s, method %s\n", r.recipe_name.c_str(), qo.method.c_str());
      std::printf("quantizers   %d\n", r.quantizers);
      std::printf("calibration  %d samples, %.1f s, peak RSS %.0f MB\n", r.calib_samples, r.calib_seconds, r.peak_rss_bytes / 1e6);
      std::printf("size         %.2f MB -> %.2f MB (model.safetensors)\n", r.fp_bytes / 1e6, r.quantized_bytes / 1e6);
      std::printf("wrote        %s\n", qo.out.c_str());
      return 0;
    }
    if (*tr) {
      qtx::train(to);
      return 0;
    }
  } catch (const qtx::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {  // libtorch: its message's first line, not its 30-line stack trace
    std::string msg = e.what_without_backtrace();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "error: libtorch: %s\n", msg.c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
