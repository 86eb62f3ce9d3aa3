// Integer runtime vs the libtorch fake-quant simulation of the same artifact: per-site codes,
// fast (oneDNN) vs reference kernels, and top-1 agreement on held-out images.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "quant/quant_model.h"
#include "runtime/cpu_isa.h"
#include "runtime/int_model.h"
#include "tasks/labeled_data.h"
#include "tasks/quantize_task.h"
#include "tasks/runtime_task.h"
#include "data/datasets.h"
#include "formats/error.h"
#include "formats/hf_config.h"
#include "formats/site_pattern.h"

using namespace qtx;

namespace {

// Captures the fake-quantized tensor at "<site>.<slot>" keys as codes of that slot's quantizer.
class Capture : public SiteHook {
 public:
  Capture(QuantizedModel* qm, std::map<std::string, std::vector<int32_t>>* out) : qm_(qm), out_(out) {}
  at::Tensor input(const OpSite& s, int slot, const at::Tensor& x) override {
    record(s.name + (slot == 0 ? ".input0" : ".input1"), s.name, slot == 0 ? Slot::Input0 : Slot::Input1, x);
    return x;
  }
  at::Tensor output(const OpSite& s, const at::Tensor& y) override {
    record(s.name + ".output", s.name, Slot::Output, y);
    return y;
  }

 private:
  void record(const std::string& key, const std::string& site, Slot slot, const at::Tensor& x) {
    QuantPoint* p = qm_->find(site, slot);
    if (!p || p->quantizer->spec().scheme == Scheme::Log2) return;
    at::Tensor q = p->quantizer->quantize(x.detach()).to(at::kInt).contiguous();
    if (name_ends_with(site, "matmul_qk") || name_ends_with(site, "matmul_av"))  // [B, H, T, dh] → [B, T, H·dh]
      q = q.permute({0, 2, 1, 3}).contiguous();
    (*out_)[key] = std::vector<int32_t>(q.data_ptr<int32_t>(), q.data_ptr<int32_t>() + q.numel());
  }
  QuantizedModel* qm_;
  std::map<std::string, std::vector<int32_t>>* out_;
};

// ctest runs each test in its own process, two at a time: one folder per process.
std::string scratch() { return "/tmp/qtx_test_runtime/" + std::to_string(getpid()); }

// A quantized folder made once per test process.
struct TestArtifact {
  std::string dir;
  TestArtifact(const std::string& model, const std::string& recipe, int calib) : dir(scratch() + "/" + model + "-" + recipe) {
    QuantizeOptions o;
    o.model = std::string(QTX_SOURCE_DIR) + "/models/" + model;
    o.recipe = recipe;
    o.out = dir;
    o.calib = calib;
    quantize(o);
  }
};
const TestArtifact& vit_artifact() {
  static TestArtifact a("vit-fmnist", "fqvit-8-8-4", 128);
  return a;
}
const TestArtifact& bert_artifact() {
  static TestArtifact a("bert-austen", "fqvit-8-8-8", 64);
  return a;
}

std::unique_ptr<LabeledData> fmnist_test(const std::string& qdir, int limit) {
  return open_labeled_data("fmnist", "test", limit, qdir, ModelConfig::load(qdir + "/config.json"));
}
std::unique_ptr<LabeledData> austen_test(const std::string& qdir, int limit) {
  return open_labeled_data("austen6", "test", limit, qdir, ModelConfig::load(qdir + "/config.json"));
}

// Every code the integer runtime taps vs the float64 fake-quant simulation's code at that site.
// Tolerance: at the embeddings and the first block the integer ops and a float64 simulation agree
// on all but codes within ~2^-20 of a rounding boundary: ≥ 99.9 % equal, never more than 1 apart
// in the embeddings, 2 in the first block (a one-code flip at a LayerNorm's input moves that
// channel's output by up to 2^α·γ/σ codes). Deeper blocks inherit those few flips through
// LayerNorm's row statistics, so only the first block is held to that bound and the rest is printed.
void expect_site_codes_match(const std::string& dir, const ModelInput& in, const std::string& embeddings,
                             const std::string& first_block) {
  auto qm = QuantizedModel::load(dir);
  std::map<std::string, std::vector<int32_t>> fake, integer;
  qm->model().sites().attach("*", std::make_shared<Capture>(qm.get(), &fake));
  torch::NoGradGuard ng;
  qm->model().to(at::kDouble);
  ModelInput in64 = in;
  if (in.pixel_values.defined()) in64.pixel_values = in.pixel_values.to(at::kDouble);
  qm->model().logits(in64);
  auto im = rt::load_int_model(dir);
  im->set_tap([&](const std::string& key, const uint8_t* c, size_t n) { integer[key] = std::vector<int32_t>(c, c + n); });
  int_logits(*im, in);
  ASSERT_FALSE(integer.empty());
  int held = 0;
  for (const auto& [key, codes] : integer) {
    ASSERT_TRUE(fake.count(key)) << key;
    const auto& f = fake.at(key);
    ASSERT_EQ(f.size(), codes.size()) << key;
    size_t equal = 0;
    int worst = 0;
    for (size_t i = 0; i < f.size(); ++i) {
      equal += f[i] == codes[i];
      worst = std::max(worst, std::abs(f[i] - codes[i]));
    }
    const double frac = static_cast<double>(equal) / f.size();
    std::printf("  %-60s equal %.4f  max |diff| %d\n", key.c_str(), frac, worst);
    if (key.rfind(embeddings, 0) == 0 || key.rfind(first_block, 0) == 0) {
      ++held;
      EXPECT_GE(frac, 0.999) << key;
      EXPECT_LE(worst, key.rfind(embeddings, 0) == 0 ? 1 : 2) << key;
    }
  }
  EXPECT_GE(held, 3);
}

}  // namespace

TEST(IntRuntime, SiteCodesMatchFakeQuant) {
  const std::string dir = vit_artifact().dir;
  auto data = fmnist_test(dir, 16);
  std::vector<int> idx(16);
  std::iota(idx.begin(), idx.end(), 0);
  expect_site_codes_match(dir, data->batch(idx), "vit.embeddings.", "vit.encoder.layer.0.");
}

// The default forward runs the last layer past its keys and values on the CLS rows alone, and
// the MLPs a block of rows at a time (the tests' batches are one block or a few). Every row of
// the last layer (set_cls_only_last_layer(false)), and MLP blocks of 16 and of 5 rows (several
// blocks and a short last one) and of the whole batch, must give the same logits, bit for bit.
void expect_forward_shortcuts_exact(const std::string& dir, const ModelInput& in, const std::vector<float>& cls_only) {
  auto full = rt::load_int_model(dir, rt::Kernels::Fast);
  full->set_cls_only_last_layer(false);
  const std::vector<float> all_rows = int_logits(*full, in);
  ASSERT_EQ(all_rows.size(), cls_only.size());
  for (size_t i = 0; i < all_rows.size(); ++i) EXPECT_EQ(all_rows[i], cls_only[i]) << "logit " << i;
  for (int rows : {16, 5, 1 << 30}) {
    auto blocked = rt::load_int_model(dir, rt::Kernels::Fast);
    blocked->set_mlp_row_block(rows);
    const std::vector<float> b = int_logits(*blocked, in);
    ASSERT_EQ(b.size(), cls_only.size());
    for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], cls_only[i]) << "MLP blocks of " << rows << " rows, logit " << i;
  }
}

TEST(IntRuntimeBert, SiteCodesMatchFakeQuant) {
  const std::string dir = bert_artifact().dir;
  auto data = austen_test(dir, 8);
  // Passages of different lengths: padding is masked in the attention of both.
  expect_site_codes_match(dir, data->batch({0, 1, 2, 3, 4, 5, 6, 7}), "bert.embeddings.", "bert.encoder.layer.0.");
}

TEST(IntRuntimeBert, FastKernelsMatchReferenceAndTop1AgreesWithFakeQuant) {
  const std::string dir = bert_artifact().dir;
  auto data = austen_test(dir, 200);
  ModelInput in = data->batch({0, 1, 2, 3});
  auto fast = rt::load_int_model(dir, rt::Kernels::Fast), ref = rt::load_int_model(dir, rt::Kernels::Reference);
  std::vector<float> a = int_logits(*fast, in), b = int_logits(*ref, in);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
  expect_forward_shortcuts_exact(dir, in, a);
  ParityResult p = parity(dir, *data, 50, /*float64=*/false);
  std::printf("  agreement %.2f%%, fake %.2f%%, integer %.2f%%\n", p.agreement(), p.fake.accuracy(), p.integer.accuracy());
  EXPECT_GE(p.agreement(), 99.0);  // the full test split (≥ 99.5 %): `qtx parity`, docs/BENCHMARKS.md
  EXPECT_LE(std::fabs(p.fake.accuracy() - p.integer.accuracy()), 1.0);
  // Bad token input: one clear error.
  std::vector<int32_t> ids = {2, 99999}, mask = {1, 1};
  EXPECT_THROW(fast->classify_tokens(ids.data(), mask.data(), 1, 2), Error);
  EXPECT_THROW(fast->classify_tokens(ids.data(), mask.data(), 0, 2), Error);
}

// The same logits, bit for bit, at every instruction-set level this CPU has (the kernels capped
// in process: the plain loops at scalar, the AVX2 forms and the exact int16 GEMM at avx2, …).
void expect_logits_identical_at_every_isa(const std::string& dir, const ModelInput& in) {
  auto model = rt::load_int_model(dir);
  rt::set_max_isa(rt::Isa::Scalar);
  const std::vector<float> want = int_logits(*model, in);
  for (rt::Isa level : rt::runnable_isas()) {
    rt::set_max_isa(level);
    const std::vector<float> got = int_logits(*model, in);
    std::printf("  %s: logits %s the scalar level's\n", rt::isa_name(rt::active_isa()),
                std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0 ? "identical to" : "DIFFERENT from");
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << rt::isa_name(level);
  }
  rt::set_max_isa(rt::Isa::Avx512Vnni);  // back to the CPU's (and QTX_MAX_ISA's) level
}

TEST(IntRuntime, LogitsIdenticalAtEveryIsaLevel) {
  const std::string vit = vit_artifact().dir, bert = bert_artifact().dir;
  expect_logits_identical_at_every_isa(vit, fmnist_test(vit, 16)->batch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  expect_logits_identical_at_every_isa(bert, austen_test(bert, 4)->batch({0, 1, 2, 3}));
}

TEST(IntRuntime, FastKernelsMatchReferenceBitExactly) {
  const std::string dir = vit_artifact().dir;
  auto data = fmnist_test(dir, 8);
  ModelInput in = data->batch({0, 1, 2, 3, 4, 5, 6, 7});
  auto fast = rt::load_int_model(dir, rt::Kernels::Fast), ref = rt::load_int_model(dir, rt::Kernels::Reference);
  std::vector<float> a = int_logits(*fast, in), b = int_logits(*ref, in);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
  expect_forward_shortcuts_exact(dir, in, a);
  // Batch size does not change a sample's result (no cross-sample state).
  std::vector<float> one = int_logits(*fast, data->batch({3}));
  for (size_t l = 0; l < one.size(); ++l) EXPECT_EQ(one[l], a[3 * one.size() + l]);
}

TEST(IntRuntime, Top1AgreesWithFakeQuantOnHeldOutImages) {
  const std::string dir = vit_artifact().dir;
  auto data = fmnist_test(dir, 300);
  ParityResult p = parity(dir, *data, 100, /*float64=*/false);
  std::printf("  agreement %.2f%%, fake %.2f%%, integer %.2f%%\n", p.agreement(), p.fake.accuracy(), p.integer.accuracy());
  EXPECT_GE(p.agreement(), 99.0);  // the full test split (≥ 99.5 %): `qtx parity`, docs/BENCHMARKS.md
  EXPECT_LE(std::fabs(p.fake.accuracy() - p.integer.accuracy()), 1.0);
}

// Recipes that keep LayerNorm and Softmax in float (W8A8, W4A8 with packed 4-bit weights, Liu's
// signed sym-* with quantized probabilities): int8 GEMMs, float between them (runtime/hybrid.cpp).
// The fast and reference GEMMs give the same integers, so the logits are identical; top-1
// agreement with fake-quant on held-out samples as for the fully quantized artifacts.
TEST(IntRuntimeHybrid, FloatLayerNormRecipesMatchReferenceAndFakeQuant) {
  struct Case {
    const char* model;
    const char* recipe;
    int calib;
  };
  for (const Case& c : {Case{"vit-fmnist", "w4a8", 128}, Case{"vit-fmnist", "sym-w4a4", 128}, Case{"bert-austen", "minmax-w8a8", 64}}) {
    SCOPED_TRACE(std::string(c.model) + " " + c.recipe);
    TestArtifact art(c.model, c.recipe, c.calib);
    const bool vit = std::string(c.model) == "vit-fmnist";
    auto data = vit ? fmnist_test(art.dir, 200) : austen_test(art.dir, 100);
    ModelInput in = data->batch({0, 1, 2, 3});
    auto fast = rt::load_int_model(art.dir, rt::Kernels::Fast), ref = rt::load_int_model(art.dir, rt::Kernels::Reference);
    std::vector<float> a = int_logits(*fast, in), b = int_logits(*ref, in);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << i;
    expect_forward_shortcuts_exact(art.dir, in, a);
    ParityResult p = parity(art.dir, *data, 50, /*float64=*/false);
    std::printf("  %s %s: agreement %.2f%%, fake %.2f%%, integer %.2f%%\n", c.model, c.recipe, p.agreement(),
                p.fake.accuracy(), p.integer.accuracy());
    EXPECT_GE(p.agreement(), 99.0);
    EXPECT_LE(std::fabs(p.fake.accuracy() - p.integer.accuracy()), 1.0);
  }
}

TEST(IntRuntime, CorruptArtifactsFailWithOneClearError) {
  const std::string dir = vit_artifact().dir;
  namespace fs = std::filesystem;
  const std::string bad = scratch() + "/bad";
  auto fresh = [&]() {
    fs::remove_all(bad);
    fs::create_directories(bad);
    for (const auto& f : fs::directory_iterator(dir)) fs::copy(f.path(), bad + "/" + f.path().filename().string());
  };
  auto expect_error = [&](const std::string& what, const std::string& needle) {
    try {
      rt::load_int_model(bad);
      ADD_FAILURE() << what << ": loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << what << ": " << e.what();
    }
  };
  // A recipe the runtime cannot execute: uniform softmax.
  fresh();
  {
    std::string r = read_text_file(bad + "/recipe.json");
    auto j = nlohmann::json::parse(r);
    j["roles"]["softmax_output"] = {{"scheme", "uniform"}, {"bits", 4}, {"symmetric", false}};
    write_text_file(bad + "/recipe.json", j.dump());
  }
  expect_error("uniform softmax", "Log-Int-Softmax only");
  // Float LayerNorm with Log-Int-Softmax: a mix no runtime path executes.
  fresh();
  {
    auto j = nlohmann::json::parse(read_text_file(bad + "/recipe.json"));
    j["roles"].erase("layernorm_input");
    write_text_file(bad + "/recipe.json", j.dump());
  }
  expect_error("float layernorm", "Log-Int-Softmax only in fully quantized recipes");
  // Bits out of range.
  fresh();
  {
    auto j = nlohmann::json::parse(read_text_file(bad + "/recipe.json"));
    j["roles"]["linear_weight"]["bits"] = 12;
    write_text_file(bad + "/recipe.json", j.dump());
  }
  expect_error("bits", "bits");
  // Missing file.
  fresh();
  fs::remove(bad + "/model.safetensors");
  expect_error("missing weights", "model.safetensors");
  // Random byte flips and truncations of model.safetensors: an error or a model, never a crash.
  std::string bytes = read_text_file(dir + "/model.safetensors");
  std::mt19937 rng(7);
  int errors = 0;
  const ModelInput two = fmnist_test(dir, 2)->batch({0, 1});
  for (int trial = 0; trial < 60; ++trial) {
    std::string m = bytes;
    if (trial % 3 == 0) {
      m.resize(rng() % m.size());
    } else {
      for (int k = 0; k < 4; ++k) m[rng() % std::min<size_t>(m.size(), trial % 3 == 1 ? 20000 : m.size())] = static_cast<char>(rng());
    }
    fresh();
    write_text_file(bad + "/model.safetensors", m);
    try {
      auto im = rt::load_int_model(bad);
      std::vector<float> logits = int_logits(*im, two);
      EXPECT_EQ(logits.size(), 20u);
    } catch (const Error& e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  EXPECT_GT(errors, 20);
}

// Leaves /tmp clean: the scratch folder of this process goes when the tests are done.
namespace {
struct RemoveScratch {
  ~RemoveScratch() { std::filesystem::remove_all(scratch()); }
} remove_scratch;
}  // namespace

// The op profiler (qtx bench, qtx_run --profile): every op class of a fully quantized ViT is
// seen, no time is counted twice (the classes sum to at most the forward's wall time), most
// of the forward is covered, and profiling changes no result.
TEST(IntRuntime, OpProfileCoversTheForwardOnce) {
  const std::string dir = vit_artifact().dir;
  auto data = fmnist_test(dir, 8);
  ModelInput in = data->batch({0, 1, 2, 3, 4, 5, 6, 7});
  auto im = rt::load_int_model(dir);
  std::vector<float> plain = int_logits(*im, in);
  rt::profile_ops(true);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> profiled;
  for (int r = 0; r < 5; ++r) profiled = int_logits(*im, in);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const rt::OpProfile p = rt::op_profile();
  rt::profile_ops(false);
  EXPECT_EQ(plain, profiled);
  for (int c = 0; c < rt::kOpClasses; ++c)
    EXPECT_GT(p.seconds[static_cast<size_t>(c)], 0) << rt::op_class_name(static_cast<rt::OpClass>(c));
  EXPECT_LE(p.timed(), wall * 1.001);
  EXPECT_GE(p.timed(), wall * 0.5);
  EXPECT_GT(p.gemm_ops, 0);
  // Off: nothing is recorded.
  int_logits(*im, in);
  EXPECT_EQ(rt::op_profile().timed(), 0);
}
