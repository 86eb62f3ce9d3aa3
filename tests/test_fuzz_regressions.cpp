// Inputs found by the fuzz targets (fuzz/, scripts/fuzz.sh) and by the sanitizer build of this
// suite: each failed (crash, sanitizer report or silent garbage) before its fix. The reproducers
// are also in fuzz/corpus/<target>/ so that every fuzzing session replays them.
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "runtime/int_kernels.h"
#include "test_util.h"

using namespace qtx;

namespace {

std::vector<uint8_t> safetensors_bytes(const std::string& header, const std::string& data) {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(header.size() >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

}  // namespace

TEST(FuzzRegressions, SafetensorsEmptyF32TensorConvertsWithoutNullMemcpy) {
  // fuzz_safetensors: to_float of an empty F32 tensor passed an empty vector's null data() to
  // memcpy (UBSan: null pointer passed as argument 1).
  auto f = SafetensorsFile::from_bytes(safetensors_bytes(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", ""),
                                       "empty.safetensors");
  EXPECT_TRUE(f->to_float(f->get("e")).empty());
}

TEST(FuzzRegressions, SafetensorsDimensionPastInt64AfterZeroIsRejected) {
  // A zero dimension made the overflow check pass any later dimension, stored as a negative int64.
  EXPECT_QTX_ERROR(SafetensorsFile::from_bytes(
                       safetensors_bytes(R"({"e":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", ""),
                       "huge.safetensors"),
                   "huge.safetensors: tensor 'e': shape dimension 18446744073709551615 does not fit");
}

TEST(FuzzRegressions, SafetensorsFromBytesMatchesOpen) {
  std::string d = qtx_test::temp_dir("fuzz_st_bytes");
  const std::string hdr = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<uint8_t> bytes = safetensors_bytes(hdr, std::string(8, '\0'));
  qtx_test::write_bytes(d + "/w.safetensors", std::string(bytes.begin(), bytes.end()));
  auto a = SafetensorsFile::open(d + "/w.safetensors");
  auto b = SafetensorsFile::from_bytes(bytes, "w.safetensors");
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  EXPECT_EQ(a->to_float(a->get("w")), b->to_float(b->get("w")));
  EXPECT_QTX_ERROR(SafetensorsFile::from_bytes({1, 2, 3}, "short.safetensors"), "short.safetensors: truncated safetensors file");
}

TEST(FuzzRegressions, ConfigIntegerFieldsMustBeIntegersThatFit) {
  // nlohmann's get<int>() wrapped 2^32+12 to 12 and truncated 192.9 to 192 without a word, and
  // casting 1e300 to int is undefined behaviour (UBSan: float-cast-overflow).
  const std::string head = R"({"model_type":"vit","num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,)"
                           R"("image_size":8,"patch_size":4,"hidden_size":)";
  EXPECT_EQ(ModelConfig::parse(head + "16}", "config.json").hidden_size, 16);
  EXPECT_QTX_ERROR(ModelConfig::parse(head + "4294967308}", "config.json"),
                   "config.json: field 'hidden_size' must be an integer in [-2147483648, 2147483647], got 4294967308");
  EXPECT_QTX_ERROR(ModelConfig::parse(head + "192.9}", "config.json"), "field 'hidden_size' must be an integer");
  EXPECT_QTX_ERROR(ModelConfig::parse(head + "1e300}", "config.json"), "got 1e+300");
  EXPECT_QTX_ERROR(ModelConfig::parse(head + "-9223372036854775808}", "config.json"), "field 'hidden_size' must be an integer");
  EXPECT_QTX_ERROR(ImagePreprocess::parse(R"({"do_normalize":false,"size":{"height":1e20,"width":8}})", "pp.json"),
                   "pp.json: field 'height' must be an integer");
  EXPECT_QTX_ERROR(ImagePreprocess::parse(R"({"do_normalize":false,"size":28.5})", "pp.json"), "field 'size' must be an integer");
  EXPECT_EQ(ImagePreprocess::parse(R"({"do_normalize":false,"size":28})", "pp.json").width, 28);
}

TEST(FuzzRegressions, RequantBiasBeyondFixedPointRangeIsRejected) {
  // fuzz_artifact (crash-requant-bias-overflow.seed): a bias huge next to its output scale made
  // std::llround overflow (undefined; INT64_MIN in practice), then bias + offset·m overflowed int64
  // (UBSan: signed integer overflow in ChannelRequant::make): garbage codes, no error.
  using qtx::rt::ChannelRequant;
  using qtx::rt::IntLayerNorm;
  using qtx::rt::QParams;
  using qtx::rt::ResidualRequant;
  EXPECT_NO_THROW(ChannelRequant::make({1e-3}, {0.5}, 1, 1e-2, 0, -128, 127, {1000}, 1 << 20));
  auto message = [](auto&& make) {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { ChannelRequant::make({1e-3}, {1e30}, 1, 1e-2, 0, -128, 127); }).rfind("requantization: bias is too large", 0), 0u);
  EXPECT_EQ(message([] { ChannelRequant::make({1e-3}, {1e16}, 1, 1e-2, 0, -128, 127, {int64_t{1} << 40}); }).rfind("requantization: bias", 0), 0u);
  EXPECT_NE(message([] { ResidualRequant::make({1e-3}, {1e30}, QParams{0.1, 0, 0, 255}, QParams{0.1, 0, 0, 255}); }), "no error");
  EXPECT_NE(message([] { IntLayerNorm::make(0, {}, {1.f}, {3e38f}, QParams{0.01, 0, 0, 255}); }), "no error");
}
