// The shared validation of model folders and artifacts (formats/config_check.h,
// quant/artifact_check.h, formats/output_folder.h): every rule, one corrupt value at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "formats/config_check.h"
#include "formats/finite.h"
#include "formats/output_folder.h"
#include "quant/artifact_check.h"
#include "quant/packing.h"
#include "test_util.h"

using namespace qtx;
using qtx_test::temp_dir;

namespace {

// The tensors that carry a tiny ViT's sizes (tiny_vit_config: 2 layers, hidden 32, MLP 64, 8x8
// images in patches of 4, 1 channel, 3 labels), `layers` encoder layers of them.
std::shared_ptr<SafetensorsFile> tiny_vit_file(const std::string& dir, int layers, int64_t mlp = 64) {
  SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n), 0.5f);
    w.add(name, DType::F32, shape, v.data(), v.size() * 4);
  };
  for (int i = 0; i < layers; ++i) add("vit.encoder.layer." + std::to_string(i) + ".intermediate.dense.bias", {mlp});
  add("vit.layernorm.weight", {32});
  add("vit.embeddings.position_embeddings", {1, 5, 32});
  add("vit.embeddings.patch_embeddings.projection.weight", {32, 1, 4, 4});
  add("classifier.bias", {3});
  w.write(dir + "/model.safetensors");
  return SafetensorsFile::open(dir + "/model.safetensors");
}

std::string config_with(const std::string& field, const std::string& value) {
  return "{\"model_type\": \"vit\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
         "\"intermediate_size\": 64, \"image_size\": 8, \"patch_size\": 4, \"num_channels\": 1, \"" + field + "\": " + value + "}";
}

QuantParams params(QuantSpec spec, std::vector<float> scale, std::vector<float> zero, std::vector<float> alpha = {}) {
  QuantParams q;
  q.spec = spec;
  q.scale = std::move(scale);
  q.zero = std::move(zero);
  q.alpha = std::move(alpha);
  return q;
}

}  // namespace

TEST(ConfigFields, IntegersAreExactNeverTruncatedOrWrapped) {
  const std::string d = temp_dir("config_ints");
  auto load = [&](const std::string& field, const std::string& value) {
    qtx_test::write_bytes(d + "/config.json", config_with(field, value));
    return ModelConfig::load(d + "/config.json");
  };
  EXPECT_EQ(load("num_hidden_layers", "2").num_hidden_layers, 2);
  EXPECT_EQ(load("num_hidden_layers", "2.0").num_hidden_layers, 2);  // an integral JSON double is that integer
  EXPECT_QTX_ERROR(load("hidden_size", "192.9"), "field 'hidden_size' must be an integer");
  EXPECT_QTX_ERROR(load("num_hidden_layers", "4294967308"), "got 4294967308");  // 2^32 + 12 was read as 12
  EXPECT_QTX_ERROR(load("num_hidden_layers", "-4294967295"), "must be an integer");
  EXPECT_QTX_ERROR(load("image_size", "1e300"), "field 'image_size' must be an integer");
  EXPECT_QTX_ERROR(load("patch_size", "\"4\""), "field 'patch_size' has the wrong type");
  qtx_test::write_bytes(d + "/pp.json", "{\"size\": 4294967304, \"image_mean\": [0.5], \"image_std\": [0.5]}");
  EXPECT_QTX_ERROR(ImagePreprocess::load(d + "/pp.json"), "field 'size' must be an integer");
}

TEST(ConfigAgainstWeights, EverySizeMatchesTheStoredTensorsBeforeAnyModelIsBuilt) {
  const std::string d = temp_dir("config_weights");
  ModelConfig c = qtx_test::tiny_vit_config();
  auto f = tiny_vit_file(d, 2);
  EXPECT_NO_THROW(check_config_against_weights(c, *f));
  ModelConfig bad = c;
  bad.num_hidden_layers = 100000;  // `qtx info` built gigabytes of model before it looked
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "num_hidden_layers is 100000 but the file stores 2 encoder layer(s)");
  bad.num_hidden_layers = 1;  // qtx_run ran 1 of 12 stored layers
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "num_hidden_layers is 1 but the file stores 2");
  auto gap = tiny_vit_file(temp_dir("config_weights_gap"), 3);
  EXPECT_QTX_ERROR(check_config_against_weights(c, *gap), "numbered 0..2");
  bad = c;
  bad.hidden_size = 1 << 30;
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "'vit.layernorm.weight' holds 32 elements but config.json (hidden_size 1073741824)");
  bad = c;
  bad.intermediate_size = 128;
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "intermediate_size 128");
  bad = c;
  bad.image_size = 16;
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "image_size 16");
  bad = c;
  bad.num_channels = 3;
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "num_channels 3");
  bad = c;
  bad.id2label.push_back("extra");
  EXPECT_QTX_ERROR(check_config_against_weights(bad, *f), "4 labels");
}

TEST(Preprocessor, SizeMustBeTheModelsImageSize) {
  const std::string d = temp_dir("pp_size");
  const ModelConfig c = qtx_test::tiny_vit_config();  // 8x8, 1 channel
  qtx_test::write_bytes(d + "/pp.json", "{\"size\": {\"height\": 4, \"width\": 4}, \"image_mean\": [0.5], \"image_std\": [0.5]}");
  EXPECT_QTX_ERROR(ImagePreprocess::load_for_model(d + "/pp.json", c), "size 4x4 does not match config.json image_size 8");
  qtx_test::write_bytes(d + "/pp.json", "{\"size\": 8, \"image_mean\": [0.5, 0.5], \"image_std\": [0.5, 0.5]}");
  EXPECT_QTX_ERROR(ImagePreprocess::load_for_model(d + "/pp.json", c), "need 1 or 1 entries");
  qtx_test::write_bytes(d + "/pp.json", "{\"image_mean\": [0.5], \"image_std\": [0.5]}");
  EXPECT_EQ(ImagePreprocess::load_for_model(d + "/pp.json", c).height, 8);  // no size: the model's
}

TEST(QuantParams, EveryParameterTheRuntimeRejectsIsRejectedByBothLoaders) {
  QuantSpec u8;  // unsigned asymmetric 8-bit: codes 0..255
  QuantSpec s8;
  s8.symmetric = true;
  QuantSpec ptf;
  ptf.scheme = Scheme::Ptf;
  ptf.ptf_k = 3;
  EXPECT_NO_THROW(check_quant_params(params(u8, {0.1f}, {128}), "qtx.a.input0", "m"));
  EXPECT_NO_THROW(check_quant_params(params(ptf, {0.1f}, {3}, {0, 3, 1}), "qtx.a.input0", "m"));
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {0.1f}, {256}), "qtx.a.input0", "m"), "'qtx.a.input0.zero_point' entry 0 is 256; it must be an integer in [0, 255]");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {0.1f}, {-2147483648.0f}), "k", "m"), "in [0, 255]");  // would wrap int32 lanes
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {0.1f}, {3.5f}), "k", "m"), "is 3.5; it must be an integer");
  EXPECT_QTX_ERROR(check_quant_params(params(s8, {0.1f}, {5}), "k", "m"), "a symmetric quantizer's zero point is 0");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {1e-40f}, {0}), "k", "m"), "'k.scale' entry 0 is 9.9999461e-41; a scale must be a finite, normal number > 0");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {0.0f}, {0}), "k", "m"), "normal number > 0");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {-1.0f}, {0}), "k", "m"), "normal number > 0");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {std::numeric_limits<float>::infinity()}, {0}), "k", "m"), "normal number > 0");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {std::nanf("")}, {0}), "k", "m"), "normal number > 0");
  EXPECT_QTX_ERROR(check_quant_params(params(ptf, {0.1f}, {3}, {0, 4}), "k", "m"), "'k.alpha' entry 1 is 4; a PTF exponent must be an integer in 0..3");
  EXPECT_QTX_ERROR(check_quant_params(params(ptf, {0.1f}, {3}, {0.5f}), "k", "m"), "0..3");
  EXPECT_QTX_ERROR(check_quant_params(params(ptf, {0.1f}, {3}), "k", "m"), "'k.alpha' is empty");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {0.1f, 0.2f}, {0}), "k", "m"), "must have the same non-zero length");
  EXPECT_QTX_ERROR(check_quant_params(params(u8, {}, {}), "k", "m"), "non-zero length");
}

TEST(WeightCodes, OutOfRangeCodesAndWideWeightsAreRejected) {
  const std::string d = temp_dir("weight_codes");
  QuantSpec s3;
  s3.symmetric = true;
  s3.bits = 3;  // codes -4..3, stored as 4-bit nibbles that can hold -8..7
  SafetensorsWriter w;
  std::vector<uint8_t> ok = pack_codes({-4, 3, 0, 1}, 4), bad = pack_codes({-4, 7, 0, 1}, 4);
  w.add("a.weight.qweight", DType::U8, {2}, ok.data(), ok.size());
  w.add("b.weight.qweight", DType::U8, {2}, bad.data(), bad.size());
  w.write(d + "/w.safetensors");
  auto f = SafetensorsFile::open(d + "/w.safetensors");
  EXPECT_EQ(read_weight_codes(*f, "a.weight", 4, s3), (std::vector<int32_t>{-4, 3, 0, 1}));
  EXPECT_QTX_ERROR(read_weight_codes(*f, "b.weight", 4, s3), "'b.weight.qweight' element 1 is code 7, outside the 3-bit range [-4, 3]");
  EXPECT_QTX_ERROR(read_weight_codes(*f, "a.weight", 6, s3), "holds 2 bytes of U8");
  QuantSpec wide;
  wide.bits = 16;
  EXPECT_QTX_ERROR(read_weight_codes(*f, "a.weight", 4, wide), "16-bit weights cannot be stored");
  Recipe r = Recipe::from_json(nlohmann::json::parse(R"({"roles": {"linear_weight": {"bits": 16}}})"), "r.json");
  EXPECT_QTX_ERROR(check_recipe_storable(r, "r.json"), "role linear_weight quantizes weights to 16 bits; stored weight codes hold 2..8 bits");
  r = Recipe::from_json(nlohmann::json::parse(R"({"roles": {"linear_weight": {"bits": 8}},
      "overrides": [{"pattern": "*.query", "role": "linear_weight", "bits": 32}]})"), "r.json");
  EXPECT_QTX_ERROR(check_recipe_storable(r, "r.json"), "override '*.query' (linear_weight) quantizes weights to 32 bits");
}

TEST(Logits, NaNAndInfinityAreNeverScored) {
  std::vector<float> l = {0.1f, 0.2f, 0.3f, 0.4f, std::nanf(""), 0.f};
  EXPECT_NO_THROW(check_finite_logits(l.data(), 4, 2, 0, "x"));
  EXPECT_QTX_ERROR(check_finite_logits(l.data(), l.size(), 2, 10, "x"), "a NaN logit for sample 12");
}

TEST(OutputFolder, ReplacesWholeOrNotAtAllAndRefusesForeignFolders) {
  namespace fs = std::filesystem;
  const std::string d = temp_dir("output_folder");
  const std::string out = d + "/art";
  auto is_art = [](const std::string& p) { return fs::exists(p + "/recipe.json"); };
  fs::create_directories(out);
  qtx_test::write_bytes(out + "/recipe.json", "old");
  qtx_test::write_bytes(out + "/model.safetensors", "old weights");
  {
    OutputFolder f(out + "/");  // "art/" and "art" are one folder
    qtx_test::write_bytes(f.path() + "/recipe.json", "new");
    // no commit: a run that failed here
  }
  EXPECT_EQ(qtx_test::read_bytes(out + "/recipe.json"), "old");
  EXPECT_EQ(qtx_test::read_bytes(out + "/model.safetensors"), "old weights");
  EXPECT_FALSE(fs::exists(out + ".tmp-" + std::to_string(getpid())));
  {
    OutputFolder f(out);
    qtx_test::write_bytes(f.path() + "/recipe.json", "new");
    setenv("QTX_TEST_FAIL_COMMIT", "1", 1);
    EXPECT_QTX_ERROR(f.commit(), "injected failure");
    unsetenv("QTX_TEST_FAIL_COMMIT");
  }
  EXPECT_EQ(qtx_test::read_bytes(out + "/recipe.json"), "old");
  {
    OutputFolder f(out);
    qtx_test::write_bytes(f.path() + "/recipe.json", "new");
    f.commit();
  }
  EXPECT_EQ(qtx_test::read_bytes(out + "/recipe.json"), "new");
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));  // the old folder's files do not mix in
  // The guard: the input itself, under any spelling, and folders that are not ours.
  const std::string model = d + "/model";
  fs::create_directories(model);
  qtx_test::write_bytes(model + "/config.json", "{}");
  EXPECT_QTX_ERROR(check_output_folder(model + "/", {model}, false, is_art), "is the input folder");
  EXPECT_QTX_ERROR(check_output_folder(d + "/./model", {model}, false, is_art), "is the input folder");
  EXPECT_QTX_ERROR(check_output_folder(d, {model}, false, is_art), "exists and is not a qtx output");
  EXPECT_QTX_ERROR(check_output_folder(model + "/config.json", {model}, true, is_art), "exists and is not a folder");
  EXPECT_NO_THROW(check_output_folder(model, {model}, true, is_art));  // --force
  EXPECT_NO_THROW(check_output_folder(out, {model}, false, is_art));   // an earlier artifact
  EXPECT_NO_THROW(check_output_folder(d + "/new", {model}, false, is_art));
  fs::create_directories(d + "/empty");
  EXPECT_NO_THROW(check_output_folder(d + "/empty", {model}, false, is_art));
}
