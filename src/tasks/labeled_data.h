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

// Opens `spec` for the model in model_dir: "fmnist" / "austen6" (built-in, with `split`), a TSV
// file of "label<TAB>text" lines, or a folder of per-label image folders. `limit` > 0 keeps the
// first `limit` examples. Throws qtx::Error if the data does not fit the model.
std::unique_ptr<LabeledData> open_labeled_data(const std::string& spec, const std::string& split, int limit,
                                               const std::string& model_dir, const ModelConfig& cfg);

// The examples of `base` at `keep` (in that order), described as `base`'s description + `what`.
std::unique_ptr<LabeledData> subset_data(std::unique_ptr<LabeledData> base, std::vector<int> keep, const std::string& what);

// Number of threads torch uses (its default here is 1): 0 means all cores.
void set_threads(int threads);
int default_threads();

}  // namespace qtx
