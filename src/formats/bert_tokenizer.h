// BERT tokenizer: transformers' BasicTokenizer (clean text, CJK spacing, lower-case, strip
// accents, split punctuation) followed by greedy longest-match WordPiece with "##" pieces.
// Output is identical to transformers' BertTokenizer on the same vocab.txt.
#pragma once
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace qtx {

struct BasicTokenizerOptions {
  bool do_lower_case = true;
  bool strip_accents = true;  // transformers: None -> follows do_lower_case
  bool tokenize_chinese_chars = true;
};

// Splits text into words and punctuation (UTF-8 in, UTF-8 out).
std::vector<std::string> basic_tokenize(const std::string& text, const BasicTokenizerOptions& opt);

class BertTokenizer {
 public:
  // Loads vocab.txt (one token per line) and, if present, tokenizer_config.json from the
  // same folder. Throws qtx::Error if [CLS], [SEP], [UNK] or [PAD] are missing or a token repeats.
  static BertTokenizer load(const std::string& model_dir);
  // The same from the two files' text (no tokenizer_config.json: nullopt); the paths name them in messages.
  static BertTokenizer parse(const std::string& vocab_text, const std::optional<std::string>& config_text,
                             const std::string& vocab_path, const std::string& config_path);
  static BertTokenizer from_vocab(std::vector<std::string> tokens, BasicTokenizerOptions opt = {});

  std::vector<std::string> tokenize(const std::string& text) const;  // wordpieces
  std::vector<int> wordpiece_ids(const std::string& text) const;
  // [CLS] text [SEP], truncated to max_len, no padding. Throws on empty text.
  std::vector<int> encode(const std::string& text, int max_len) const;

  int id(const std::string& token) const;  // -1 if absent
  const std::string& token(int id) const { return vocab_.at(static_cast<size_t>(id)); }
  int size() const { return static_cast<int>(vocab_.size()); }
  int cls_id() const { return cls_; }
  int sep_id() const { return sep_; }
  int unk_id() const { return unk_; }
  int pad_id() const { return pad_; }
  int mask_id() const { return mask_; }  // -1 if the vocab has no [MASK]
  const BasicTokenizerOptions& options() const { return opt_; }

  void save(const std::string& model_dir, int model_max_length) const;

 private:
  void index(const std::string& where);
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int> ids_;
  BasicTokenizerOptions opt_;
  int cls_ = -1, sep_ = -1, unk_ = -1, pad_ = -1, mask_ = -1;
};

// Builds a WordPiece vocabulary from a corpus the way HF tokenizers' WordPieceTrainer does:
// byte-pair merges over word counts, continuation pieces prefixed "##". Deterministic.
std::vector<std::string> build_wordpiece_vocab(const std::vector<std::string>& texts, int vocab_size,
                                               const BasicTokenizerOptions& opt, int min_frequency = 2);

}  // namespace qtx
