#include "models/op_site.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "formats/error.h"
#include "formats/site_pattern.h"

namespace qtx {

const char* site_kind_name(SiteKind k) {
  switch (k) {
    case SiteKind::Linear: return "linear";
    case SiteKind::MatMul: return "matmul";
    case SiteKind::Softmax: return "softmax";
    case SiteKind::LayerNorm: return "layernorm";
    case SiteKind::Activation: return "activation";
    case SiteKind::Add: return "add";
    case SiteKind::Embedding: return "embedding";
  }
  return "?";
}

int SiteTable::add(const std::string& name, SiteKind kind, int layer, bool output_is_residual) {
  if (find(name) >= 0) fail("site table", "duplicate site name '" + name + "'");
  OpSite s;
  s.id = static_cast<int>(sites_.size());
  s.name = name;
  s.kind = kind;
  s.layer = layer;
  s.output_is_residual = output_is_residual;
  sites_.push_back(s);
  hooks_.emplace_back();
  return s.id;
}

int SiteTable::find(const std::string& name) const {
  for (const auto& s : sites_)
    if (s.name == name) return s.id;
  return -1;
}

std::vector<int> SiteTable::match(const std::string& pattern) const {
  std::vector<int> ids;
  for (const auto& s : sites_)
    if (site_pattern_matches(pattern, s.name)) ids.push_back(s.id);
  return ids;
}

int SiteTable::attach(const std::string& pattern, const std::shared_ptr<SiteHook>& hook) {
  auto ids = match(pattern);
  for (int id : ids) attach(id, hook);
  return static_cast<int>(ids.size());
}

void SiteTable::attach(int id, const std::shared_ptr<SiteHook>& hook) {
  hooks_.at(static_cast<size_t>(id)).push_back(hook);
}

void SiteTable::detach(const SiteHook* hook) {
  for (auto& v : hooks_)
    v.erase(std::remove_if(v.begin(), v.end(), [&](const auto& h) { return h.get() == hook; }), v.end());
}

void SiteTable::detach_all() {
  for (auto& v : hooks_) v.clear();
}

Activation activation_from_name(const std::string& a) {
  if (a == "gelu") return Activation::Gelu;
  if (a == "gelu_new" || a == "gelu_pytorch_tanh") return Activation::GeluTanh;
  if (a == "relu") return Activation::Relu;
  if (a == "tanh") return Activation::Tanh;
  fail("config.json", "unknown hidden_act '" + a + "'");
}

at::Tensor Ops::in(int site, int slot, const at::Tensor& x) {
  const auto& hs = table_->hooks(site);
  if (hs.empty()) return x;
  at::Tensor t = x;
  for (const auto& h : hs) t = h->input(table_->site(site), slot, t);
  return t;
}
at::Tensor Ops::wt(int site, const at::Tensor& w) {
  const auto& hs = table_->hooks(site);
  if (hs.empty()) return w;
  at::Tensor t = w;
  for (const auto& h : hs) t = h->weight(table_->site(site), t);
  return t;
}
at::Tensor Ops::out(int site, const at::Tensor& y) {
  const auto& hs = table_->hooks(site);
  if (hs.empty()) return y;
  at::Tensor t = y;
  for (const auto& h : hs) t = h->output(table_->site(site), t);
  return t;
}

at::Tensor Ops::linear(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return out(site, at::linear(in(site, 0, x), wt(site, w), b));
}

at::Tensor Ops::patch_conv(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t patch) {
  return out(site, at::conv2d(in(site, 0, x), wt(site, w), b, {patch, patch}));
}

at::Tensor Ops::matmul(int site, const at::Tensor& a, const at::Tensor& b, bool transpose_b, double scale) {
  at::Tensor bb = in(site, 1, b);
  at::Tensor y = at::matmul(in(site, 0, a), transpose_b ? bb.transpose(-1, -2) : bb);
  if (scale != 1.0) y = y * scale;
  return out(site, y);
}

at::Tensor Ops::softmax(int site, const at::Tensor& scores, const at::Tensor& additive_mask) {
  at::Tensor s = in(site, 0, scores);
  if (additive_mask.defined()) s = s + additive_mask;
  return out(site, at::softmax(s, -1));
}

at::Tensor Ops::layer_norm(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  return out(site, at::layer_norm(in(site, 0, x), {x.size(-1)}, w, b, eps));
}

at::Tensor Ops::activation(int site, const at::Tensor& x, Activation act) {
  at::Tensor t = in(site, 0, x), y;
  switch (act) {
    case Activation::Gelu: y = at::gelu(t); break;
    case Activation::GeluTanh: y = at::gelu(t, "tanh"); break;
    case Activation::Relu: y = at::relu(t); break;
    case Activation::Tanh: y = at::tanh(t); break;
  }
  return out(site, y);
}

at::Tensor Ops::add(int site, const at::Tensor& a, const at::Tensor& b) {
  return out(site, in(site, 0, a) + in(site, 1, b));
}

at::Tensor Ops::embedding(int site, const at::Tensor& ids, const at::Tensor& table) {
  return out(site, at::embedding(wt(site, table), ids));
}

}  // namespace qtx
