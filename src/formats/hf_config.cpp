#include "formats/hf_config.h"

#include <sys/stat.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/error.h"

namespace qtx {
using json = nlohmann::json;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (missing file?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp, "cannot open for writing");
    out << text;
    if (!out) fail(tmp, "write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "cannot rename temporary file into place");
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

namespace {

// `path` names the file in messages; `text` is its contents.
json parse_json_text(const std::string& text, const std::string& path) {
  try {
    json j = json::parse(text);
    if (!j.is_object()) fail(path, "not a JSON object");
    return j;
  } catch (const json::exception& e) {
    fail(path, std::string("invalid JSON: ") + e.what());
  }
}

template <typename T>
void get_field(const json& j, const std::string& path, const char* key, T* out, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(path, std::string("missing field '") + key + "'");
    return;
  }
  try {
    *out = j[key].get<T>();
  } catch (const json::exception&) {
    fail(path, std::string("field '") + key + "' has the wrong type: " + j[key].dump());
  }
}

// Integer fields exactly: nlohmann's get<int> would truncate 192.9 to 192 and wrap 2^32+12 to 12.
int int_value(const json& v, const std::string& path, const std::string& key) {
  const std::string what = "field '" + key + "' must be an integer in [" + std::to_string(INT_MIN) + ", " +
                           std::to_string(INT_MAX) + "], got " + v.dump();
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT_MAX)) fail(path, what);
    return static_cast<int>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < INT_MIN || i > INT_MAX) fail(path, what);
    return static_cast<int>(i);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!(d >= INT_MIN && d <= INT_MAX) || d != std::floor(d)) fail(path, what);
    return static_cast<int>(d);
  }
  fail(path, "field '" + key + "' has the wrong type: " + v.dump());
}

void get_field(const json& j, const std::string& path, const char* key, int* out, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(path, std::string("missing field '") + key + "'");
    return;
  }
  *out = int_value(j[key], path, key);
}

}  // namespace

int ModelConfig::label_index(const std::string& name) const {
  for (size_t i = 0; i < id2label.size(); ++i)
    if (id2label[i] == name) return static_cast<int>(i);
  return -1;
}

ModelConfig ModelConfig::load(const std::string& path) { return parse(read_text_file(path), path); }

ModelConfig ModelConfig::parse(const std::string& text, const std::string& path) {
  json j = parse_json_text(text, path);
  ModelConfig c;
  get_field(j, path, "model_type", &c.model_type, true);
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    c.architecture = j["architectures"][0].get<std::string>();
  get_field(j, path, "hidden_size", &c.hidden_size, true);
  get_field(j, path, "num_hidden_layers", &c.num_hidden_layers, true);
  get_field(j, path, "num_attention_heads", &c.num_attention_heads, true);
  get_field(j, path, "intermediate_size", &c.intermediate_size, true);
  get_field(j, path, "hidden_act", &c.hidden_act, false);
  get_field(j, path, "layer_norm_eps", &c.layer_norm_eps, false);
  get_field(j, path, "hidden_dropout_prob", &c.hidden_dropout_prob, false);
  get_field(j, path, "attention_probs_dropout_prob", &c.attention_probs_dropout_prob, false);
  get_field(j, path, "initializer_range", &c.initializer_range, false);
  if (j.contains("id2label")) {
    if (!j["id2label"].is_object()) fail(path, "field 'id2label' must be an object");
    std::map<int, std::string> m;
    for (auto it = j["id2label"].begin(); it != j["id2label"].end(); ++it) {
      int id = -1;
      try {
        size_t pos = 0;
        id = std::stoi(it.key(), &pos);
        if (pos != it.key().size()) id = -1;
      } catch (...) {
      }
      if (id < 0 || !it.value().is_string()) fail(path, "id2label entry '" + it.key() + "' is malformed");
      m[id] = it.value().get<std::string>();
    }
    for (size_t i = 0; i < m.size(); ++i) {
      if (!m.count(static_cast<int>(i))) fail(path, "id2label ids must be 0..N-1");
      c.id2label.push_back(m[static_cast<int>(i)]);
    }
  }
  if (c.model_type == "vit") {
    get_field(j, path, "image_size", &c.image_size, true);
    get_field(j, path, "patch_size", &c.patch_size, true);
    get_field(j, path, "num_channels", &c.num_channels, false);
    if (c.num_channels == 0) c.num_channels = 3;
    get_field(j, path, "qkv_bias", &c.qkv_bias, false);
  } else if (c.model_type == "bert") {
    get_field(j, path, "vocab_size", &c.vocab_size, true);
    get_field(j, path, "max_position_embeddings", &c.max_position_embeddings, true);
    get_field(j, path, "type_vocab_size", &c.type_vocab_size, false);
    if (c.type_vocab_size == 0) c.type_vocab_size = 2;
    get_field(j, path, "pad_token_id", &c.pad_token_id, false);
    if (j.contains("position_embedding_type") && j["position_embedding_type"] != "absolute")
      fail(path, "position_embedding_type " + j["position_embedding_type"].dump() +
                     " is not supported (only \"absolute\")");
  } else {
    fail(path, "model_type '" + c.model_type + "' is not supported (qtx knows \"vit\" and \"bert\")");
  }
  c.validate(path);
  return c;
}

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int v, const char* name) {
    if (v <= 0) fail(where, std::string("field '") + name + "' must be positive, got " + std::to_string(v));
  };
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  if (hidden_size % num_attention_heads != 0)
    fail(where, "hidden_size " + std::to_string(hidden_size) + " is not divisible by num_attention_heads " +
                    std::to_string(num_attention_heads));
  static const char* kActs[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu"};
  bool known = false;
  for (const char* a : kActs) known = known || hidden_act == a;
  if (!known) fail(where, "unknown hidden_act '" + hidden_act + "' (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)");
  if (!(layer_norm_eps > 0)) fail(where, "layer_norm_eps must be positive");
  if (model_type == "vit") {
    positive(image_size, "image_size");
    positive(patch_size, "patch_size");
    positive(num_channels, "num_channels");
    if (image_size % patch_size != 0) fail(where, "image_size is not a multiple of patch_size");
  } else if (model_type == "bert") {
    positive(vocab_size, "vocab_size");
    positive(max_position_embeddings, "max_position_embeddings");
    positive(type_vocab_size, "type_vocab_size");
  }
}

void ModelConfig::save(const std::string& path) const {
  json j;
  j["model_type"] = model_type;
  if (!architecture.empty()) j["architectures"] = {architecture};
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["intermediate_size"] = intermediate_size;
  j["hidden_act"] = hidden_act;
  j["layer_norm_eps"] = layer_norm_eps;
  j["hidden_dropout_prob"] = hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["initializer_range"] = initializer_range;
  if (!id2label.empty()) {
    json a = json::object(), b = json::object();
    for (size_t i = 0; i < id2label.size(); ++i) {
      a[std::to_string(i)] = id2label[i];
      b[id2label[i]] = i;
    }
    j["id2label"] = a;
    j["label2id"] = b;
  }
  if (model_type == "vit") {
    j["image_size"] = image_size;
    j["patch_size"] = patch_size;
    j["num_channels"] = num_channels;
    j["qkv_bias"] = qkv_bias;
    j["encoder_stride"] = patch_size;
  } else {
    j["vocab_size"] = vocab_size;
    j["max_position_embeddings"] = max_position_embeddings;
    j["type_vocab_size"] = type_vocab_size;
    j["pad_token_id"] = pad_token_id;
    j["position_embedding_type"] = "absolute";
  }
  write_text_file(path, j.dump(2) + "\n");
}

ImagePreprocess ImagePreprocess::load(const std::string& path) { return parse(read_text_file(path), path); }

ImagePreprocess ImagePreprocess::parse(const std::string& text, const std::string& path) {
  json j = parse_json_text(text, path);
  ImagePreprocess p;
  get_field(j, path, "do_resize", &p.do_resize, false);
  get_field(j, path, "do_rescale", &p.do_rescale, false);
  get_field(j, path, "do_normalize", &p.do_normalize, false);
  get_field(j, path, "rescale_factor", &p.rescale_factor, false);
  get_field(j, path, "image_mean", &p.image_mean, p.do_normalize);
  get_field(j, path, "image_std", &p.image_std, p.do_normalize);
  if (p.image_mean.size() != p.image_std.size())
    fail(path, "image_mean and image_std have different lengths");
  for (float s : p.image_std)
    if (!(s > 0)) fail(path, "image_std entries must be positive");
  if (j.contains("size")) {
    const auto& s = j["size"];
    if (s.is_object()) {
      get_field(s, path, "height", &p.height, false);
      get_field(s, path, "width", &p.width, false);
      if (s.contains("shortest_edge")) fail(path, "size.shortest_edge is not supported; use height/width");
    } else if (s.is_number()) {
      p.height = p.width = int_value(s, path, "size");
    }
  }
  return p;
}

ImagePreprocess ImagePreprocess::load_for_model(const std::string& path, const ModelConfig& cfg) {
  ImagePreprocess p = load(path);
  if (p.height == 0 && p.width == 0) p.height = p.width = cfg.image_size;
  if (p.height != cfg.image_size || p.width != cfg.image_size)
    fail(path, "size " + std::to_string(p.height) + "x" + std::to_string(p.width) + " does not match config.json image_size " +
                   std::to_string(cfg.image_size) + " (the model's patch embedding takes " + std::to_string(cfg.image_size) + "x" +
                   std::to_string(cfg.image_size) + ")");
  if (p.do_normalize)
    for (const auto* v : {&p.image_mean, &p.image_std})
      if (v->size() != 1 && v->size() != static_cast<size_t>(cfg.num_channels))
        fail(path, "image_mean/image_std need 1 or " + std::to_string(cfg.num_channels) + " entries (config.json num_channels), got " +
                       std::to_string(v->size()));
  return p;
}

void ImagePreprocess::save(const std::string& path) const {
  json j;
  j["image_processor_type"] = "ViTImageProcessor";
  j["do_resize"] = do_resize;
  j["do_rescale"] = do_rescale;
  j["do_normalize"] = do_normalize;
  j["rescale_factor"] = rescale_factor;
  j["image_mean"] = image_mean;
  j["image_std"] = image_std;
  j["resample"] = 2;
  j["size"] = {{"height", height}, {"width", width}};
  write_text_file(path, j.dump(2) + "\n");
}

}  // namespace qtx
