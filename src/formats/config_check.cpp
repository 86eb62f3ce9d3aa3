#include "formats/config_check.h"

#include <climits>
#include <set>

#include "formats/error.h"

namespace qtx {

namespace {

// a · b, or INT64_MAX when it would overflow (no stored tensor is that large, so the check fails).
int64_t mul_sat(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return 0;
  return a > INT64_MAX / b ? INT64_MAX : a * b;
}

// The number of layers stored: the indices N of names holding "encoder.layer.N." (weights and
// quantizer parameters alike) must be exactly 0..L-1.
std::set<int64_t> stored_layers(const SafetensorsFile& file) {
  std::set<int64_t> layers;
  static const std::string kTag = "encoder.layer.";
  for (const auto& t : file.tensors()) {
    const size_t at = t.name.find(kTag);
    if (at == std::string::npos) continue;
    size_t i = at + kTag.size();
    int64_t n = 0;
    bool digits = false;
    for (; i < t.name.size() && t.name[i] >= '0' && t.name[i] <= '9' && n < INT_MAX; ++i, digits = true) n = n * 10 + (t.name[i] - '0');
    if (digits) layers.insert(n);
  }
  return layers;
}

class Checker {
 public:
  explicit Checker(const SafetensorsFile& file) : file_(file) {}

  // `name` holds `n` elements: as a float tensor, or as integer codes `name.qweight` (one byte
  // per code, or two per byte for <= 4 bits). Absent: left to the loader, which names it.
  void numel(const std::string& name, int64_t n, const std::string& fields) const {
    if (const TensorView* t = file_.find(name)) {
      if (t->numel() != n) mismatch(name, std::to_string(t->numel()) + " elements", std::to_string(n), fields);
    } else if (const TensorView* q = file_.find(name + ".qweight")) {
      const int64_t b = static_cast<int64_t>(q->nbytes);
      if (b != n && b != n / 2 + n % 2) mismatch(name + ".qweight", std::to_string(b) + " bytes of codes", std::to_string(n) + " codes", fields);
    }
  }

 private:
  [[noreturn]] void mismatch(const std::string& name, const std::string& has, const std::string& want, const std::string& fields) const {
    fail(file_.path(), "tensor '" + name + "' holds " + has + " but config.json (" + fields + ") implies " + want);
  }
  const SafetensorsFile& file_;
};

}  // namespace

void check_config_against_weights(const ModelConfig& cfg, const SafetensorsFile& file) {
  const std::set<int64_t> layers = stored_layers(file);
  const int64_t L = cfg.num_hidden_layers;
  if (static_cast<int64_t>(layers.size()) != L || (!layers.empty() && *layers.rbegin() != L - 1))
    fail(file.path(), "config.json num_hidden_layers is " + std::to_string(L) + " but the file stores " +
                          (layers.empty() ? std::string("no encoder layers")
                                          : std::to_string(layers.size()) + " encoder layer(s) numbered " + std::to_string(*layers.begin()) +
                                                ".." + std::to_string(*layers.rbegin())));
  const Checker c(file);
  const int64_t D = cfg.hidden_size, F = cfg.intermediate_size;
  const std::string p = cfg.model_type + ".";
  c.numel(p + "encoder.layer.0.intermediate.dense.bias", F, "intermediate_size " + std::to_string(F));
  if (cfg.model_type == "vit") {
    c.numel("vit.layernorm.weight", D, "hidden_size " + std::to_string(D));
    const int64_t side = cfg.image_size / cfg.patch_size, P = cfg.patch_size;
    c.numel("vit.embeddings.position_embeddings", mul_sat(mul_sat(side, side) + 1, D),
            "image_size " + std::to_string(cfg.image_size) + ", patch_size " + std::to_string(P) + ", hidden_size " + std::to_string(D));
    c.numel("vit.embeddings.patch_embeddings.projection.weight", mul_sat(mul_sat(D, cfg.num_channels), mul_sat(P, P)),
            "hidden_size, num_channels " + std::to_string(cfg.num_channels) + ", patch_size " + std::to_string(P));
  } else {
    c.numel("bert.embeddings.LayerNorm.weight", D, "hidden_size " + std::to_string(D));
    c.numel("bert.embeddings.word_embeddings.weight", mul_sat(cfg.vocab_size, D),
            "vocab_size " + std::to_string(cfg.vocab_size) + " x hidden_size " + std::to_string(D));
    c.numel("bert.embeddings.position_embeddings.weight", mul_sat(cfg.max_position_embeddings, D),
            "max_position_embeddings " + std::to_string(cfg.max_position_embeddings) + " x hidden_size " + std::to_string(D));
    c.numel("bert.embeddings.token_type_embeddings.weight", mul_sat(cfg.type_vocab_size, D),
            "type_vocab_size " + std::to_string(cfg.type_vocab_size) + " x hidden_size " + std::to_string(D));
  }
  if (!cfg.id2label.empty()) c.numel("classifier.bias", cfg.num_labels(), "id2label, " + std::to_string(cfg.num_labels()) + " labels");
}

}  // namespace qtx
