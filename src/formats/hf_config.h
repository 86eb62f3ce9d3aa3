// Hugging Face config.json / preprocessor_config.json for the architectures qtx knows
// (model_type "vit" and "bert"), with the field names transformers writes.
#pragma once
#include <string>
#include <vector>

namespace qtx {

struct ModelConfig {
  std::string model_type;    // "vit" | "bert"
  std::string architecture;  // e.g. "ViTForImageClassification", "BertForSequenceClassification"
  int hidden_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int intermediate_size = 0;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-12;
  double hidden_dropout_prob = 0.0;
  double attention_probs_dropout_prob = 0.0;
  double initializer_range = 0.02;
  std::vector<std::string> id2label;  // index -> label name
  // ViT
  int image_size = 0, patch_size = 0, num_channels = 0;
  bool qkv_bias = true;
  // BERT
  int vocab_size = 0, max_position_embeddings = 0, type_vocab_size = 0, pad_token_id = 0;

  int num_labels() const { return static_cast<int>(id2label.size()); }
  int head_dim() const { return hidden_size / num_attention_heads; }
  int label_index(const std::string& name) const;  // -1 if unknown

  // Throws qtx::Error naming the file and field on anything missing, mistyped or inconsistent.
  static ModelConfig load(const std::string& path);
  // The same from the file's text; `where` names it in messages.
  static ModelConfig parse(const std::string& text, const std::string& where);
  void save(const std::string& path) const;
  void validate(const std::string& where) const;
};

struct ImagePreprocess {
  bool do_resize = true, do_rescale = true, do_normalize = true;
  double rescale_factor = 1.0 / 255.0;
  std::vector<float> image_mean, image_std;  // one per channel
  int height = 0, width = 0;
  static ImagePreprocess load(const std::string& path);
  // load() and checked against the model it feeds: the size is config.json's image_size (a
  // missing size takes it), mean/std have 1 or num_channels entries. Every reader of a model's
  // images uses this, so a runtime never reads past an image the model is not built for.
  static ImagePreprocess load_for_model(const std::string& path, const ModelConfig& cfg);
  static ImagePreprocess parse(const std::string& text, const std::string& where);
  void save(const std::string& path) const;
};

// Reads a whole text file; throws qtx::Error if it cannot.
std::string read_text_file(const std::string& path);
// Writes via temp file + rename.
void write_text_file(const std::string& path, const std::string& text);
bool file_exists(const std::string& path);

}  // namespace qtx
