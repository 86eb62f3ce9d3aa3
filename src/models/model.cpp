#include "models/model.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <cstring>

#include "formats/config_check.h"
#include "formats/error.h"
#include "formats/safetensors.h"

namespace qtx {

ModelInput ModelInput::to(const at::Device& d) const {
  ModelInput o;
  auto mv = [&](const at::Tensor& t) { return t.defined() ? t.to(d) : t; };
  o.pixel_values = mv(pixel_values);
  o.input_ids = mv(input_ids);
  o.attention_mask = mv(attention_mask);
  o.token_type_ids = mv(token_type_ids);
  return o;
}

at::Tensor TransformerModel::mlm_logits(const ModelInput&, const at::Tensor&) {
  fail("model", "this model has no masked-language-model head");
}

bool TransformerModel::ignorable_tensor(const std::string&) const { return false; }

at::Tensor TransformerModel::add_param(const std::string& dotted, const std::vector<int64_t>& shape) {
  // torch::nn::Module names cannot hold dots, so build the module path one level at a time.
  torch::nn::Module* m = this;
  size_t start = 0;
  for (size_t dot = dotted.find('.'); dot != std::string::npos; dot = dotted.find('.', start)) {
    std::string part = dotted.substr(start, dot - start);
    auto children = m->named_children();
    if (auto* found = children.find(part)) {
      m = found->get();
    } else {
      m = m->register_module(part, std::make_shared<torch::nn::Module>()).get();
    }
    start = dot + 1;
  }
  at::Tensor t = m->register_parameter(dotted.substr(start), torch::zeros(shape));
  params_.emplace_back(dotted, t);
  return t;
}

at::Tensor TransformerModel::param(const std::string& name) const {
  for (const auto& p : params_)
    if (p.first == name) return p.second;
  fail("model", "no parameter '" + name + "'");
}

int64_t TransformerModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.second.numel();
  return n;
}

const std::map<std::string, ModelFactory>& model_registry() {
  static const std::map<std::string, ModelFactory> k = {{"vit", make_vit}, {"bert", make_bert}};
  return k;
}

std::shared_ptr<TransformerModel> create_model(const ModelConfig& cfg, const ModelHeads& heads) {
  auto it = model_registry().find(cfg.model_type);
  if (it == model_registry().end()) fail("config.json", "model_type '" + cfg.model_type + "' is not supported");
  return it->second(cfg, heads);
}

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!cur.empty()) mkdir(cur.c_str(), 0755);
    }
    if (i < dir.size()) cur.push_back(dir[i]);
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail(dir, "cannot create folder");
}

std::shared_ptr<TransformerModel> load_model(const std::string& dir, const TensorResolver& resolve) {
  const std::string cpath = dir + "/config.json", wpath = dir + "/model.safetensors";
  if (!file_exists(dir)) fail(dir, "model folder does not exist");
  ModelConfig cfg = ModelConfig::load(cpath);
  auto file = SafetensorsFile::open(wpath);
  check_config_against_weights(cfg, *file);  // before building: sizes come from the file, not the config alone
  auto present = [&](const std::string& n) { return file->find(n) || file->find(n + ".qweight"); };
  ModelHeads heads;
  heads.mlm = cfg.architecture == "BertForMaskedLM" || present("cls.predictions.bias");
  heads.classifier = cfg.architecture != "BertForMaskedLM";
  auto model = create_model(cfg, heads);
  torch::NoGradGuard ng;
  std::vector<bool> used(file->tensors().size(), false);
  auto fmt = [](const std::vector<int64_t>& s) {
    std::string o = "[";
    for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
    return o + "]";
  };
  for (const auto& [name, p] : model->hf_parameters()) {
    std::vector<int64_t> want = p.sizes().vec();
    std::vector<float> v;
    std::vector<std::string> consumed;
    if (!(resolve && resolve(*file, name, want, &v, &consumed))) {
      const TensorView* t = file->find(name);
      if (!t) fail(wpath, "missing tensor '" + name + "' that config.json's architecture needs");
      if (t->shape != want)
        fail(wpath, "tensor '" + name + "' has shape " + fmt(t->shape) + " but config.json implies " + fmt(want));
      v = file->to_float(*t);
      consumed = {name};
    }
    for (float x : v)
      if (!std::isfinite(x)) fail(wpath, "tensor '" + name + "' holds NaN or Inf");
    std::memcpy(p.data_ptr<float>(), v.data(), v.size() * sizeof(float));
    for (const auto& c : consumed) used[static_cast<size_t>(&file->get(c) - file->tensors().data())] = true;
  }
  for (size_t i = 0; i < used.size(); ++i) {
    const auto& name = file->tensors()[i].name;
    if (!used[i] && !model->ignorable_tensor(name) && name.rfind("qtx.", 0) != 0)
      fail(wpath, "unexpected tensor '" + name + "' (not part of a " + cfg.model_type + " model with this config)");
  }
  model->eval();
  return model;
}

void save_model(TransformerModel& model, const std::string& dir, const std::map<std::string, std::string>& metadata) {
  make_dirs(dir);
  ModelConfig cfg = model.config();
  if (model.has_classifier()) {
    cfg.architecture = cfg.model_type == "vit" ? "ViTForImageClassification" : "BertForSequenceClassification";
  } else {
    cfg.architecture = "BertForMaskedLM";
  }
  cfg.save(dir + "/config.json");
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  for (const auto& kv : metadata) w.set_metadata(kv.first, kv.second);
  for (const auto& [name, p] : model.hf_parameters()) {
    at::Tensor c = p.detach().to(at::kCPU).contiguous();
    w.add(name, DType::F32, c.sizes().vec(), c.data_ptr<float>(), static_cast<size_t>(c.numel()) * 4);
  }
  w.write(dir + "/model.safetensors");
}

}  // namespace qtx
