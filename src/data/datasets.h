// Datasets qtx evaluates and calibrates on. Everything here comes from Debian packages or from
// files the user brings; nothing is downloaded.
#pragma once
#include <string>
#include <vector>

#include "data/image.h"

namespace qtx {

struct ImageSet {
  std::vector<Image> images;
  std::vector<int> labels;
  std::vector<std::string> label_names;
};

struct TextSet {
  std::vector<std::string> texts;
  std::vector<int> labels;
  std::vector<std::string> label_names;
};

// Root of the data shipped with the repo (data/): $QTX_DATA_DIR, else the source tree's data/.
std::string data_root();
std::string fashion_mnist_dir();  // $QTX_FMNIST_DIR or /usr/share/datasets/fashion-mnist

const std::vector<std::string>& fashion_mnist_labels();
ImageSet load_fashion_mnist(const std::string& split);  // "train" (60000) | "test" (10000)

// austen-6: which of Austen's six novels a passage comes from. Passages are 64-word windows of
// a chapter's text; chapter k of each book goes to test if k % 10 == 9, dev if k % 10 == 8,
// else train, so no passage (or chapter) crosses splits.
const std::vector<std::string>& austen_labels();
TextSet load_austen6(const std::string& split);  // "train" | "dev" | "test"

// User data. A TSV of "label<TAB>text" lines; labels are names from the model's id2label.
TextSet load_label_tsv(const std::string& path, const std::vector<std::string>& id2label);
// A folder with one sub-folder of .png/.pgm images per label name.
ImageSet load_image_folder(const std::string& dir, const std::vector<std::string>& id2label);

// Deterministic sample of n indices out of [0, total) for a seed (all of them if n >= total).
std::vector<int> sample_indices(int total, int n, uint64_t seed);
// The indices of [0, total) that sample_indices(total, n, seed) does not draw, ascending; at most
// `limit` of them (0 = all).
std::vector<int> indices_outside_sample(int total, int n, uint64_t seed, int limit = 0);

}  // namespace qtx
