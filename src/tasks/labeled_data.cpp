#include "tasks/labeled_data.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "formats/error.h"
#include "runtime/gemm.h"

namespace qtx {
namespace {

class ImageData : public LabeledData {
 public:
  ImageData(const ImageSet& set, const ImagePreprocess& pp, int channels, const std::string& where)
      : labels_(set.labels), c_(channels), h_(pp.height), w_(pp.width), where_(where) {
    const size_t per = static_cast<size_t>(c_) * h_ * w_;
    pixels_.resize(per * set.images.size());
    for (size_t i = 0; i < set.images.size(); ++i) {
      std::vector<float> v = preprocess_image(set.images[i], pp, channels, where);
      std::copy(v.begin(), v.end(), pixels_.begin() + static_cast<std::ptrdiff_t>(i * per));
    }
  }
  int size() const override { return static_cast<int>(labels_.size()); }
  int label(int i) const override { return labels_[static_cast<size_t>(i)]; }
  ModelInput batch(const std::vector<int>& idx) const override {
    const int64_t per = static_cast<int64_t>(c_) * h_ * w_;
    at::Tensor t = at::empty({static_cast<int64_t>(idx.size()), c_, h_, w_}, at::kFloat);
    float* dst = t.data_ptr<float>();
    for (size_t i = 0; i < idx.size(); ++i)
      std::memcpy(dst + static_cast<int64_t>(i) * per, pixels_.data() + static_cast<int64_t>(idx[i]) * per,
                  static_cast<size_t>(per) * sizeof(float));
    ModelInput in;
    in.pixel_values = t;
    return in;
  }
  std::string describe() const override { return where_ + " (" + std::to_string(size()) + " images)"; }

 private:
  std::vector<float> pixels_;
  std::vector<int> labels_;
  int c_, h_, w_;
  std::string where_;
};

class TextData : public LabeledData {
 public:
  TextData(const TextSet& set, const BertTokenizer& tok, int max_len, const std::string& where)
      : labels_(set.labels), pad_(tok.pad_id()), where_(where) {
    for (size_t i = 0; i < set.texts.size(); ++i) {
      try {
        ids_.push_back(tok.encode(set.texts[i], max_len));
      } catch (const Error& e) {
        fail(where + " example " + std::to_string(i + 1), e.what());
      }
    }
  }
  int size() const override { return static_cast<int>(labels_.size()); }
  int label(int i) const override { return labels_[static_cast<size_t>(i)]; }
  ModelInput batch(const std::vector<int>& idx) const override {
    std::vector<std::vector<int>> seqs;
    for (int i : idx) seqs.push_back(ids_[static_cast<size_t>(i)]);
    return pad_token_batch(seqs, pad_);
  }
  std::string describe() const override { return where_ + " (" + std::to_string(size()) + " passages)"; }

 private:
  std::vector<std::vector<int>> ids_;
  std::vector<int> labels_;
  int pad_;
  std::string where_;
};

class SubsetData : public LabeledData {
 public:
  SubsetData(std::unique_ptr<LabeledData> base, std::vector<int> keep, std::string what)
      : base_(std::move(base)), keep_(std::move(keep)), what_(std::move(what)) {}
  int size() const override { return static_cast<int>(keep_.size()); }
  int label(int i) const override { return base_->label(keep_[static_cast<size_t>(i)]); }
  ModelInput batch(const std::vector<int>& indices) const override {
    std::vector<int> mapped;
    mapped.reserve(indices.size());
    for (int i : indices) mapped.push_back(keep_[static_cast<size_t>(i)]);
    return base_->batch(mapped);
  }
  std::string describe() const override { return base_->describe() + ", " + std::to_string(size()) + " of them " + what_; }

 private:
  std::unique_ptr<LabeledData> base_;
  std::vector<int> keep_;
  std::string what_;
};

template <typename Set>
void truncate_set(Set* s, int limit) {
  if (limit <= 0 || static_cast<size_t>(limit) >= s->labels.size()) return;
  s->labels.resize(static_cast<size_t>(limit));
  if constexpr (std::is_same_v<Set, ImageSet>) s->images.resize(static_cast<size_t>(limit));
  else s->texts.resize(static_cast<size_t>(limit));
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

std::unique_ptr<LabeledData> make_image_data(const ImageSet& set, const ImagePreprocess& pp, int channels,
                                             const std::string& where) {
  return std::make_unique<ImageData>(set, pp, channels, where);
}

std::unique_ptr<LabeledData> make_text_data(const TextSet& set, const BertTokenizer& tok, int max_len,
                                            const std::string& where) {
  return std::make_unique<TextData>(set, tok, max_len, where);
}

ModelInput pad_token_batch(const std::vector<std::vector<int>>& seqs, int pad_id) {
  size_t T = 0;
  for (const auto& s : seqs) T = std::max(T, s.size());
  const int64_t B = static_cast<int64_t>(seqs.size());
  at::Tensor ids = at::full({B, static_cast<int64_t>(T)}, pad_id, at::kLong);
  at::Tensor mask = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
  auto pi = ids.accessor<int64_t, 2>();
  auto pm = mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < seqs[static_cast<size_t>(b)].size(); ++t) {
      pi[b][static_cast<int64_t>(t)] = seqs[static_cast<size_t>(b)][t];
      pm[b][static_cast<int64_t>(t)] = 1;
    }
  ModelInput in;
  in.input_ids = ids;
  in.attention_mask = mask;
  in.token_type_ids = at::zeros_like(ids);
  return in;
}

std::string builtin_data_of(const ModelConfig& cfg) { return cfg.model_type == "vit" ? "fmnist" : "austen6"; }
bool is_builtin_data(const std::string& spec) { return spec == "fmnist" || spec == "austen6"; }

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Applies what a command needs of the labels: checks they exist, or drops them.
template <typename Set>
void settle_labels(Set* set, const DataLabels& labels, const std::string& where) {
  const bool unlabeled = std::any_of(set->labels.begin(), set->labels.end(), [](int l) { return l < 0; });
  if (!labels.required) std::fill(set->labels.begin(), set->labels.end(), -1);
  else if (unlabeled)
    fail(where, "has no labels, and this command measures accuracy: give labelled data (a folder of per-label "
                "sub-folders, or a TSV of label<TAB>text lines)");
}

}  // namespace

std::unique_ptr<LabeledData> open_labeled_data(const std::string& spec, const std::string& split, int limit,
                                               const std::string& model_dir, const ModelConfig& cfg,
                                               const DataLabels& labels) {
  const LabelMatch match = labels.match;
  if (cfg.model_type == "vit") {
    ImagePreprocess pp = ImagePreprocess::load_for_model(model_dir + "/preprocessor_config.json", cfg);
    ImageSet set;
    std::string where;
    if (spec == "fmnist") {
      set = load_fashion_mnist(split);
      if (labels.required) map_set_labels(&set.labels, set.label_names, cfg.id2label, match, "--data fmnist");
      where = "fashion-mnist/" + split;
    } else if (is_dir(spec)) {
      set = load_image_folder(spec, labels.required ? cfg.id2label : std::vector<std::string>{}, match);
      where = spec;
    } else {
      fail("--data " + spec, "a ViT model takes 'fmnist', a folder of per-label image folders or a folder of images");
    }
    settle_labels(&set, labels, where);
    truncate_set(&set, limit);
    return make_image_data(set, pp, cfg.num_channels, where);
  }
  BertTokenizer tok = BertTokenizer::load(model_dir);
  if (tok.size() != cfg.vocab_size)
    fail(model_dir + "/vocab.txt", "has " + std::to_string(tok.size()) + " tokens but config.json vocab_size is " +
                                       std::to_string(cfg.vocab_size));
  TextSet set;
  std::string where;
  if (spec == "austen6") {
    set = load_austen6(split);
    if (labels.required) map_set_labels(&set.labels, set.label_names, cfg.id2label, match, "--data austen6");
    where = "austen6/" + split;
  } else if (spec == "fmnist" || is_dir(spec)) {
    fail("--data " + spec, "a BERT model takes 'austen6', a TSV file of label<TAB>text lines or a .txt file of passages");
  } else if (ends_with(spec, ".txt")) {
    set = load_text_lines(spec);
    where = spec;
  } else {
    set = load_label_tsv(spec, labels.required ? cfg.id2label : std::vector<std::string>{}, match);
    where = spec;
  }
  settle_labels(&set, labels, where);
  truncate_set(&set, limit);
  return make_text_data(set, tok, std::min(128, cfg.max_position_embeddings), where);
}

std::unique_ptr<LabeledData> subset_data(std::unique_ptr<LabeledData> base, std::vector<int> keep, const std::string& what) {
  for (int i : keep)
    if (i < 0 || i >= base->size()) fail("data subset", "index " + std::to_string(i) + " outside " + base->describe());
  return std::make_unique<SubsetData>(std::move(base), std::move(keep), what);
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void set_threads(int threads) {
  rt::set_threads(threads);  // checks the cap (runtime/gemm.h) before libtorch sees it
  at::set_num_threads(threads > 0 ? threads : default_threads());
}

}  // namespace qtx
