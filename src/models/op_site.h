// Named op sites. Every op a quantizer may wrap (each Linear, the patch projection, the Q·Kᵀ and
// A·V matmuls, softmax, each LayerNorm, the activations, residual adds, embeddings) is executed
// through `Ops` under a stable dotted name (transformers' module path where one exists, e.g.
// "vit.encoder.layer.3.attention.attention.query"). Later code attaches hooks to sites by name
// pattern to observe or transform the op's inputs, weight and output — no model code is edited.
#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "formats/site_pattern.h"

namespace qtx {

enum class SiteKind { Linear, MatMul, Softmax, LayerNorm, Activation, Add, Embedding };
const char* site_kind_name(SiteKind k);

struct OpSite {
  int id = -1;
  std::string name;
  SiteKind kind;
  int layer = -1;  // encoder layer index, -1 outside the encoder
  // A post-norm LayerNorm (BERT) whose output is the residual stream itself: its output slot is
  // quantized like a residual, so an integer runtime can carry the stream as codes.
  bool output_is_residual = false;
};

// Observes or transforms what flows through a site. Defaults pass everything through.
// For MatMul sites input slot 0 is the left operand, slot 1 the right one (K for Q·Kᵀ, V for A·V).
class SiteHook {
 public:
  virtual ~SiteHook() = default;
  virtual at::Tensor input(const OpSite&, int /*slot*/, const at::Tensor& x) { return x; }
  virtual at::Tensor weight(const OpSite&, const at::Tensor& w) { return w; }
  virtual at::Tensor output(const OpSite&, const at::Tensor& y) { return y; }
};

class SiteTable {
 public:
  int add(const std::string& name, SiteKind kind, int layer, bool output_is_residual = false);
  const std::vector<OpSite>& sites() const { return sites_; }
  const OpSite& site(int id) const { return sites_.at(static_cast<size_t>(id)); }
  int find(const std::string& name) const;  // -1 if absent
  std::vector<int> match(const std::string& pattern) const;

  // Hooks run in the order attached. attach() returns how many sites matched.
  int attach(const std::string& pattern, const std::shared_ptr<SiteHook>& hook);
  void attach(int id, const std::shared_ptr<SiteHook>& hook);
  void detach(const SiteHook* hook);
  void detach_all();
  const std::vector<std::shared_ptr<SiteHook>>& hooks(int id) const { return hooks_[static_cast<size_t>(id)]; }

 private:
  std::vector<OpSite> sites_;
  std::vector<std::vector<std::shared_ptr<SiteHook>>> hooks_;
};

enum class Activation { Gelu, GeluTanh, Relu, Tanh };
Activation activation_from_name(const std::string& hidden_act);  // config's hidden_act

// Executes ops through their sites: input hooks, weight hooks, the float op, output hooks.
class Ops {
 public:
  explicit Ops(SiteTable* table) : table_(table) {}
  at::Tensor linear(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
  // Non-overlapping patch projection (Conv2d with kernel = stride = patch).
  at::Tensor patch_conv(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t patch);
  // a · bᵀ · scale when transpose_b, else a · b · scale (batched over leading dims).
  at::Tensor matmul(int site, const at::Tensor& a, const at::Tensor& b, bool transpose_b, double scale);
  // Softmax over the last dim; `additive_mask` (may be undefined) is added after the input hooks,
  // so hooks see the unmasked scores.
  at::Tensor softmax(int site, const at::Tensor& scores, const at::Tensor& additive_mask);
  at::Tensor layer_norm(int site, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps);
  at::Tensor activation(int site, const at::Tensor& x, Activation act);
  at::Tensor add(int site, const at::Tensor& a, const at::Tensor& b);
  at::Tensor embedding(int site, const at::Tensor& ids, const at::Tensor& table);

 private:
  at::Tensor in(int site, int slot, const at::Tensor& x);
  at::Tensor wt(int site, const at::Tensor& w);
  at::Tensor out(int site, const at::Tensor& y);
  SiteTable* table_;
};

}  // namespace qtx
