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

// How the labels of data are matched to a model's classes (id2label).
//   ByName: names equal after normalised_label (case and punctuation ignored), so "T-shirt/top",
//           "T-shirt-top" and "t_shirt top" are one class.
//   ByIndex: class k is class k: a label written as an integer k or LABEL_k, or a built-in set's
//           k-th class (for `LABEL_0`-style or renamed classes).
enum class LabelMatch { ByName, ByIndex };
// Lower-case ASCII; every run of other ASCII characters that are not letters or digits becomes
// one '-', trimmed at both ends (bytes of UTF-8 characters are kept as they are).
std::string normalised_label(const std::string& name);
// The model class that data label `label` names; throws qtx::Error naming `where`, the label and
// the model's id2label when it names none.
int model_class_of(const std::string& label, const std::vector<std::string>& id2label, LabelMatch match,
                   const std::string& where);
// Relabels a built-in set (labels index its label_names) with the model's classes; throws naming
// `where` and both lists when a class of the set is not among the model's.
void map_set_labels(std::vector<int>* labels, const std::vector<std::string>& set_names,
                    const std::vector<std::string>& id2label, LabelMatch match, const std::string& where);

// User data. With an empty id2label, labels are not matched and read as -1 (calibration, which
// needs none). A TSV of "label<TAB>text" lines, labels matched to the model's id2label.
TextSet load_label_tsv(const std::string& path, const std::vector<std::string>& id2label,
                       LabelMatch match = LabelMatch::ByName);
// Unlabeled text: one passage per non-empty line (labels -1).
TextSet load_text_lines(const std::string& path);
// A folder with one sub-folder of .png/.pgm images per label (matched to id2label), or a flat
// folder of images without labels (labels -1). A folder mixing both is an error.
ImageSet load_image_folder(const std::string& dir, const std::vector<std::string>& id2label,
                           LabelMatch match = LabelMatch::ByName);

// Deterministic sample of n indices out of [0, total) for a seed (all of them if n >= total).
std::vector<int> sample_indices(int total, int n, uint64_t seed);
// The indices of [0, total) that sample_indices(total, n, seed) does not draw, ascending; at most
// `limit` of them (0 = all).
std::vector<int> indices_outside_sample(int total, int n, uint64_t seed, int limit = 0);

}  // namespace qtx
