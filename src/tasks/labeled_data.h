// Glue between datasets and models: labelled examples turned into model-ready batches
// (pre-processed images, or tokenised and padded passages).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "formats/bert_tokenizer.h"
#include "formats/hf_config.h"
#include "models/model.h"

namespace qtx {

class LabeledData {
 public:
  virtual ~LabeledData() = default;
  virtual int size() const = 0;
  virtual int label(int i) const = 0;
  virtual ModelInput batch(const std::vector<int>& indices) const = 0;
  virtual std::string describe() const = 0;
};

std::unique_ptr<LabeledData> make_image_data(const ImageSet& set, const ImagePreprocess& pp, int channels,
                                             const std::string& where);
std::unique_ptr<LabeledData> make_text_data(const TextSet& set, const BertTokenizer& tok, int max_len,
                                            const std::string& where);

// Token ids → a padded batch ([CLS] … [SEP] already included).
ModelInput pad_token_batch(const std::vector<std::vector<int>>& seqs, int pad_id);

// What a command needs of the labels of its data.
struct DataLabels {
  bool required = true;                   // evaluation: yes; calibration: no (labels are ignored)
  LabelMatch match = LabelMatch::ByName;  // how labels name the model's classes (--labels-by-index)
};

// Opens `spec` for the model in model_dir: "fmnist" / "austen6" (built-in, with `split`), a TSV
// file of "label<TAB>text" lines, a text file (*.txt) of unlabeled passages, one per line, or a
// folder of per-label image folders (or a flat folder of unlabeled images). `limit` > 0 keeps
// the first `limit` examples. Labels are those of the model's id2label (label(i) = -1 where the
// data has none or `labels.required` is false). Throws qtx::Error if the data does not fit the
// model, or has no labels where they are required.
std::unique_ptr<LabeledData> open_labeled_data(const std::string& spec, const std::string& split, int limit,
                                               const std::string& model_dir, const ModelConfig& cfg,
                                               const DataLabels& labels = {});
// The built-in data set of an architecture: "fmnist" (ViT) or "austen6" (BERT).
std::string builtin_data_of(const ModelConfig& cfg);
bool is_builtin_data(const std::string& spec);

// The examples of `base` at `keep` (in that order), described as `base`'s description + `what`.
std::unique_ptr<LabeledData> subset_data(std::unique_ptr<LabeledData> base, std::vector<int> keep, const std::string& what);

// Number of threads torch uses (its default here is 1): 0 means all cores.
void set_threads(int threads);
int default_threads();

}  // namespace qtx
