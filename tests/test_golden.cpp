// Golden logits of the shipped reference models (models/*) on fixed inputs: the first eight
// examples of each test split through the full pipeline (pre-processing or tokenizer + model).
// Regenerate after retraining with:  QTX_UPDATE_GOLDEN=1 ./build/tests/test_models --gtest_filter='Golden*'
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdlib>

#include "formats/hf_config.h"
#include "models/model.h"
#include "tasks/labeled_data.h"
#include "test_util.h"

using namespace qtx;

namespace {

void check_golden(const std::string& model_name, const std::string& data) {
  const std::string dir = std::string(QTX_SOURCE_DIR) + "/models/" + model_name;
  const std::string golden = std::string(QTX_SOURCE_DIR) + "/tests/golden/" + model_name + ".json";
  ASSERT_TRUE(file_exists(dir + "/config.json")) << "shipped model " << dir << " is missing";
  auto model = load_model(dir);
  auto set = open_labeled_data(data, "test", 8, dir, model->config());
  std::vector<int> idx(static_cast<size_t>(set->size()));
  for (int i = 0; i < set->size(); ++i) idx[static_cast<size_t>(i)] = i;
  torch::NoGradGuard ng;
  at::Tensor y = model->logits(set->batch(idx)).contiguous();
  std::vector<std::vector<float>> got(static_cast<size_t>(y.size(0)));
  for (int64_t i = 0; i < y.size(0); ++i)
    for (int64_t j = 0; j < y.size(1); ++j) got[static_cast<size_t>(i)].push_back(y[i][j].item<float>());
  if (std::getenv("QTX_UPDATE_GOLDEN")) {
    nlohmann::json j = {{"model", "models/" + model_name}, {"data", data + "/test, first 8"}, {"logits", got}};
    write_text_file(golden, j.dump(1) + "\n");
    GTEST_SKIP() << "wrote " << golden;
  }
  ASSERT_TRUE(file_exists(golden)) << golden << " is missing (QTX_UPDATE_GOLDEN=1 writes it)";
  auto want = nlohmann::json::parse(read_text_file(golden))["logits"].get<std::vector<std::vector<float>>>();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(want[i].size(), got[i].size());
    for (size_t j = 0; j < got[i].size(); ++j) EXPECT_NEAR(got[i][j], want[i][j], 2e-4) << "example " << i << " class " << j;
  }
}

}  // namespace

TEST(Golden, VitFmnist) { check_golden("vit-fmnist", "fmnist"); }
TEST(Golden, BertAusten) { check_golden("bert-austen", "austen6"); }
