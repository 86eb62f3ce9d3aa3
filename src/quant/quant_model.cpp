#include "quant/quant_model.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <nlohmann/json.hpp>

#include "formats/error.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "formats/site_pattern.h"
#include "quant/artifact_check.h"
#include "quant/packing.h"

namespace qtx {

const char* slot_name(Slot s) {
  switch (s) {
    case Slot::Input0: return "input0";
    case Slot::Input1: return "input1";
    case Slot::Weight: return "weight";
    case Slot::Output: return "output";
  }
  return "?";
}

std::vector<std::pair<Slot, Role>> site_roles(const OpSite& site) {
  switch (site.kind) {
    case SiteKind::Linear: return {{Slot::Weight, Role::LinearWeight}, {Slot::Input0, Role::LinearInput}};
    case SiteKind::MatMul:
      if (name_ends_with(site.name, "matmul_qk"))
        return {{Slot::Input0, Role::QkInput}, {Slot::Input1, Role::QkInput}, {Slot::Output, Role::AttnScores}};
      return {{Slot::Input1, Role::AvInput}};  // its left operand is the softmax output
    case SiteKind::Softmax: return {{Slot::Output, Role::SoftmaxOutput}};
    case SiteKind::LayerNorm:
      if (site.output_is_residual) return {{Slot::Input0, Role::LayerNormInput}, {Slot::Output, Role::Residual}};
      return {{Slot::Input0, Role::LayerNormInput}};
    case SiteKind::Activation: return {{Slot::Output, Role::ActOutput}};
    case SiteKind::Add: return {{Slot::Output, Role::Residual}};
    case SiteKind::Embedding: return {{Slot::Weight, Role::Embedding}};
  }
  return {};
}

struct QuantizedModel::State {
  QuantMode mode = QuantMode::Float;
};

namespace {

// Applies a site's quantizers according to the model-wide mode.
class QuantHook : public SiteHook {
 public:
  explicit QuantHook(std::shared_ptr<QuantizedModel::State> st) : st_(std::move(st)) {}
  QuantPoint* in[2] = {nullptr, nullptr};
  QuantPoint* w = nullptr;
  QuantPoint* out = nullptr;
  QuantPoint* scores = nullptr;  // softmax with Log-Int-Softmax: the Q·Kᵀ output quantizer

  at::Tensor input(const OpSite&, int slot, const at::Tensor& x) override {
    if (slot == 0 && scores) stash_ = x;
    return apply(slot < 2 ? in[slot] : nullptr, x);
  }
  at::Tensor weight(const OpSite&, const at::Tensor& x) override {
    if (w && st_->mode == QuantMode::Observe && w->observer->seen() > 0) return x;  // weights are constant
    return apply(w, x);
  }
  at::Tensor output(const OpSite&, const at::Tensor& y) override {
    if (out && out->enabled && scores && scores->enabled && st_->mode == QuantMode::FakeQuant) return log_int_softmax(y);
    return apply(out, y);
  }

 private:
  at::Tensor apply(QuantPoint* p, const at::Tensor& x) {
    if (!p || !p->enabled) return x;
    switch (st_->mode) {
      case QuantMode::Float: return x;
      case QuantMode::Observe: p->observer->observe(x); return x;
      case QuantMode::FakeQuant: return p->quantizer->fake_quant(x);
    }
    return x;
  }
  // LIS: integer scores (already fake-quantized by the Q·Kᵀ output quantizer) → i-exp → log2
  // codes. Masked entries are those the float softmax gave exactly 0.
  at::Tensor log_int_softmax(const at::Tensor& probs) {
    const double s = scores->quantizer->scale.item<double>();
    at::Tensor p = log_int_softmax_probs(stash_, probs > 0, s, out->quantizer->spec().bits);
    stash_ = at::Tensor();
    return p.to(probs.scalar_type());
  }
  std::shared_ptr<QuantizedModel::State> st_;
  at::Tensor stash_;
};

}  // namespace

QuantizedModel::QuantizedModel(std::shared_ptr<TransformerModel> model, Recipe recipe)
    : model_(std::move(model)), recipe_(std::move(recipe)), state_(std::make_shared<State>()) {
  SiteTable& table = model_->sites();
  for (const auto& o : recipe_.overrides)
    if (table.match(o.pattern).empty()) fail("recipe " + recipe_.name, "override pattern '" + o.pattern + "' matches no op site");
  for (const auto& e : recipe_.exclude)
    if (table.match(e).empty()) fail("recipe " + recipe_.name, "exclude pattern '" + e + "' matches no op site");
  build();
}

void QuantizedModel::build() {
  SiteTable& table = model_->sites();
  table.detach_all();
  points_.clear();
  // Create all points first (the vector must not reallocate once hooks hold pointers).
  for (const auto& site : table.sites())
    for (auto [slot, role] : site_roles(site)) {
      QuantSpec spec;
      if (!recipe_.spec_for(role, site.name, &spec)) continue;
      if (role == Role::LayerNormInput && spec.scheme == Scheme::Uniform && spec.granularity != Granularity::Tensor)
        spec.axis = -1;
      QuantPoint p;
      p.site = site.id;
      p.site_name = site.name;
      p.role = role;
      p.slot = slot;
      p.quantizer = std::make_unique<Quantizer>(spec);
      p.observer = make_observer(spec);
      points_.push_back(std::move(p));
    }
  std::map<int, std::shared_ptr<QuantHook>> hooks;
  for (auto& p : points_) {
    auto& h = hooks[p.site];
    if (!h) h = std::make_shared<QuantHook>(state_);
    switch (p.slot) {
      case Slot::Input0: h->in[0] = &p; break;
      case Slot::Input1: h->in[1] = &p; break;
      case Slot::Weight: h->w = &p; break;
      case Slot::Output: h->out = &p; break;
    }
  }
  for (auto& [site, h] : hooks) {
    const OpSite& s = table.site(site);
    if (s.kind == SiteKind::Softmax && h->out && h->out->quantizer->spec().scheme == Scheme::Log2 &&
        h->out->quantizer->spec().int_exp) {
      std::string qk = s.name.substr(0, s.name.size() - std::string("softmax").size()) + "matmul_qk";
      h->scores = find(qk, Slot::Output);  // null: no quantized scores, so plain log2 of the float softmax
    }
    table.attach(site, h);
  }
}

QuantizedModel::~QuantizedModel() { model_->sites().detach_all(); }

QuantPoint* QuantizedModel::find(const std::string& site_name, Slot slot) {
  for (auto& p : points_)
    if (p.site_name == site_name && p.slot == slot) return &p;
  return nullptr;
}

void QuantizedModel::set_mode(QuantMode m) {
  if (m == QuantMode::FakeQuant)
    for (const auto& p : points_)
      if (!p.quantizer->ready()) fail("quantize", "fake-quant mode before calibration (" + p.key() + ")");
  state_->mode = m;
}

QuantMode QuantizedModel::mode() const { return state_->mode; }

void QuantizedModel::calibrate(const std::vector<ModelInput>& batches) {
  if (batches.empty()) fail("calibration", "no calibration samples");
  torch::NoGradGuard ng;
  model_->eval();
  begin_observe();
  for (const auto& b : batches) model_->logits(b);
  finish_observe();
}

void QuantizedModel::begin_observe() {
  for (auto& p : points_) {
    p.observer = make_observer(p.quantizer->spec());
    p.enabled = true;
  }
  set_mode(QuantMode::Observe);
}

void QuantizedModel::finish_observe() {
  // Sites the task's forward never reaches (BERT's MLM head when calibrating the classifier)
  // cannot be calibrated: they are excluded by name in the stored recipe, so reloading agrees.
  std::set<std::string> unreached;
  for (const auto& p : points_)
    if (p.observer->seen() == 0) unreached.insert(p.site_name);
  if (!unreached.empty()) {
    std::string names;
    for (const auto& n : unreached) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "[quantize] %zu op sites are not used by this task's forward pass and stay in float: %s\n",
                 unreached.size(), names.c_str());
    std::map<std::string, std::unique_ptr<Observer>> observers;
    for (auto& p : points_) observers[p.key()] = std::move(p.observer);
    recipe_.exclude.insert(recipe_.exclude.end(), unreached.begin(), unreached.end());
    build();
    for (auto& p : points_) p.observer = std::move(observers.at(p.key()));
  }
  for (auto& p : points_) p.observer->calibrate(*p.quantizer);
  set_mode(QuantMode::FakeQuant);
}

// ---- artifact ----------------------------------------------------------------------------

namespace {

void put_f32(SafetensorsWriter& w, const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  w.add(name, DType::F32, c.sizes().vec(), c.data_ptr<float>(), static_cast<size_t>(c.numel()) * 4);
}

void copy_if_exists(const std::string& from, const std::string& to) {
  if (file_exists(from)) write_text_file(to, read_text_file(from));
}

}  // namespace

bool QuantizedModel::is_artifact(const std::string& dir) { return file_exists(dir + "/recipe.json"); }

void QuantizedModel::save(const std::string& dir, const std::string& source_dir) const {
  make_dirs(dir);
  for (const char* f : {"config.json", "preprocessor_config.json", "vocab.txt", "tokenizer_config.json"})
    copy_if_exists(source_dir + "/" + f, dir + "/" + f);
  write_text_file(dir + "/recipe.json", recipe_.to_json().dump(2) + "\n");
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("qtx.format", kArtifactFormat);
  w.set_metadata("qtx.recipe", recipe_.name);
  std::map<std::string, const QuantPoint*> weight_of;  // parameter name -> its weight quantizer
  for (const auto& p : points_) {
    if (p.slot == Slot::Weight && !weight_of.count(p.site_name + ".weight")) weight_of[p.site_name + ".weight"] = &p;
    const Quantizer& q = *p.quantizer;
    const std::string k = "qtx." + p.key();
    put_f32(w, k + ".scale", q.scale);
    put_f32(w, k + ".zero_point", q.zero_point);
    if (q.alpha.defined()) put_f32(w, k + ".alpha", q.alpha);
  }
  torch::NoGradGuard ng;
  for (const auto& [name, param] : model_->hf_parameters()) {
    auto it = weight_of.find(name);
    if (it == weight_of.end()) {
      put_f32(w, name, param);
      continue;
    }
    const Quantizer& q = *it->second->quantizer;
    if (q.spec().bits > kMaxStoredWeightBits)
      fail("quantize", "weight quantizer of '" + name + "' has " + std::to_string(q.spec().bits) + " bits; stored codes hold 2.." +
                           std::to_string(kMaxStoredWeightBits));
    if (q.spec().granularity != Granularity::Tensor && q.spec().axis != 0)
      fail("quantize", "weight quantizer of '" + name + "' must use axis 0 (output rows) to be stored");
    at::Tensor codes = q.quantize(param.detach().to(at::kCPU)).to(at::kInt).flatten().contiguous();
    std::vector<uint8_t> bytes = pack_codes(std::vector<int32_t>(codes.data_ptr<int32_t>(), codes.data_ptr<int32_t>() + codes.numel()),
                                            q.spec().bits);
    const bool packed = q.spec().bits <= 4;
    const DType dt = packed || !q.spec().symmetric ? DType::U8 : DType::I8;
    std::vector<int64_t> shape = packed ? std::vector<int64_t>{static_cast<int64_t>(bytes.size())} : param.sizes().vec();
    w.add(name + ".qweight", dt, shape, bytes.data(), bytes.size());
  }
  w.write(dir + "/model.safetensors");
}

std::unique_ptr<QuantizedModel> QuantizedModel::load(const std::string& dir) {
  // The files, their sizes against each other and the format tag, before any model is built;
  // then every parameter through the same checks as the integer runtime (quant/artifact_check.h).
  ArtifactFiles files = open_artifact(dir);
  const std::string& wpath = files.weights_path;
  const Recipe& recipe = files.recipe;
  const ModelConfig& cfg = files.config;
  const SafetensorsFile& file = *files.file;
  std::set<std::string> used;  // tensors "qtx.*" read; any other is an error below
  // Weight quantizer specs by parameter name, from the recipe and the architecture's sites.
  std::map<std::string, QuantSpec> wspec;
  {
    auto probe = create_model(cfg, ModelHeads{cfg.architecture != "BertForMaskedLM", cfg.model_type == "bert"});
    for (const auto& site : probe->sites().sites())
      for (auto [slot, role] : site_roles(site)) {
        QuantSpec s;
        if (slot == Slot::Weight && recipe.spec_for(role, site.name, &s) && !wspec.count(site.name + ".weight"))
          wspec[site.name + ".weight"] = s;
      }
  }
  auto resolve = [&](const SafetensorsFile& f, const std::string& name, const std::vector<int64_t>& shape,
                     std::vector<float>* values, std::vector<std::string>* consumed) {
    if (!f.find(name + ".qweight")) {
      if (wspec.count(name)) fail(wpath, "missing tensor '" + name + ".qweight' (the recipe quantizes this weight)");
      return false;
    }
    auto it = wspec.find(name);
    if (it == wspec.end()) fail(wpath, "'" + name + ".qweight' is present but the recipe does not quantize it");
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<int32_t> codes = read_weight_codes(f, name, n, it->second);
    const std::string k = "qtx." + name.substr(0, name.size() - 7) + ".weight";  // site + ".weight" slot
    const QuantParams q = read_quant_params(f, k, it->second);
    const int64_t C = static_cast<int64_t>(q.scale.size());
    if (n % C != 0) fail(wpath, "'" + k + ".scale' has " + std::to_string(C) + " entries, which does not fit '" + name + "'");
    // Channels (or groups) along axis 0 of the weight: each owns n / C consecutive elements.
    values->resize(static_cast<size_t>(n));
    const int64_t per = n / C;
    for (int64_t i = 0; i < n; ++i)
      (*values)[static_cast<size_t>(i)] = (codes[static_cast<size_t>(i)] - q.zero[static_cast<size_t>(i / per)]) * q.scale[static_cast<size_t>(i / per)];
    *consumed = {name + ".qweight"};
    return true;
  };
  auto model = load_model(dir, resolve);
  auto qm = std::make_unique<QuantizedModel>(model, recipe);
  for (auto& p : qm->points()) {
    const std::string k = "qtx." + p.key();
    Quantizer& q = *p.quantizer;
    const QuantParams s = read_quant_params(file, k, q.spec());
    used.insert({k + ".scale", k + ".zero_point"});
    if (q.spec().scheme == Scheme::Ptf) used.insert(k + ".alpha");
    q.scale = at::tensor(s.scale, at::kFloat);
    q.zero_point = at::tensor(s.zero, at::kFloat);
    if (q.spec().scheme == Scheme::Ptf) q.alpha = at::tensor(s.alpha, at::kFloat);
  }
  for (const auto& t : file.tensors())
    if (t.name.rfind("qtx.", 0) == 0 && !used.count(t.name))
      fail(wpath, "unexpected tensor '" + t.name + "' (no quantizer of recipe '" + recipe.name + "' reads it)");
  qm->set_mode(QuantMode::FakeQuant);
  return qm;
}

LoadedModel load_any_model(const std::string& dir) {
  LoadedModel m;
  if (QuantizedModel::is_artifact(dir)) {
    m.quantized = QuantizedModel::load(dir);
    m.model = m.quantized->model_ptr();
  } else {
    m.model = load_model(dir);
  }
  return m;
}

}  // namespace qtx
