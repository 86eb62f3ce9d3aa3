// A saved tiny ViT folder with random weights and random 8x8 images (shared by the libtorch tests).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "tasks/labeled_data.h"
#include "test_util.h"

namespace qtx_test {
using namespace qtx;

struct TinyVitFixture {
  std::string dir;
  std::shared_ptr<TransformerModel> model;
  std::unique_ptr<LabeledData> data;
  explicit TinyVitFixture(const std::string& name) {
    dir = qtx_test::temp_dir(name) + "/fp";
    model = create_model(qtx_test::tiny_vit_config(), {});
    model->init_weights(1);
    {
      torch::NoGradGuard ng;
      torch::manual_seed(2);
      for (auto& [n, p] : model->hf_parameters()) p.add_(at::randn_like(p) * 0.1);
    }
    save_model(*model, dir);
    ImagePreprocess pp;
    pp.height = pp.width = 8;
    pp.image_mean = {0.5f};
    pp.image_std = {0.5f};
    pp.save(dir + "/preprocessor_config.json");
    ImageSet set;
    std::mt19937 rng(9);
    for (int i = 0; i < 40; ++i) {
      Image im;
      im.height = im.width = 8;
      im.channels = 1;
      for (int k = 0; k < 64; ++k) im.pixels.push_back(static_cast<uint8_t>(rng() % 256));
      set.images.push_back(im);
      set.labels.push_back(i % 3);
    }
    set.label_names = {"a", "b", "c"};
    data = make_image_data(set, pp, 1, "random images");
  }
  // All 40 images in batches of `size`.
  std::vector<ModelInput> batches(int size) const {
    std::vector<ModelInput> out;
    for (int s = 0; s < data->size(); s += size) {
      std::vector<int> idx;
      for (int i = s; i < std::min(data->size(), s + size); ++i) idx.push_back(i);
      out.push_back(data->batch(idx));
    }
    return out;
  }
  std::vector<int> all() const {
    std::vector<int> v(static_cast<size_t>(data->size()));
    std::iota(v.begin(), v.end(), 0);
    return v;
  }
};


}  // namespace qtx_test
