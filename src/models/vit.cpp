// transformers' ViTForImageClassification: pre-norm blocks, CLS token, learned position
// embeddings, final LayerNorm, classifier on the CLS token.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>

#include "formats/error.h"
#include "models/model.h"

namespace qtx {
namespace {

struct VitLayer {
  at::Tensor ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  int ln1, q, k, v, qk, softmax, av, o, res1, ln2, fc1, act, fc2, res2;
};

class Vit : public TransformerModel {
 public:
  Vit(const ModelConfig& c, const ModelHeads& heads) : TransformerModel(c) {
    if (!heads.classifier) fail("config.json", "ViT needs the image-classification head");
    if (c.num_labels() < 1) fail("config.json", "id2label is missing: a classifier needs at least one label");
    const int64_t D = c.hidden_size, F = c.intermediate_size, P = c.patch_size;
    const int64_t n = (c.image_size / P) * (c.image_size / P);
    act_ = activation_from_name(c.hidden_act);
    cls_ = add_param("vit.embeddings.cls_token", {1, 1, D});
    pos_ = add_param("vit.embeddings.position_embeddings", {1, n + 1, D});
    proj_w_ = add_param("vit.embeddings.patch_embeddings.projection.weight", {D, c.num_channels, P, P});
    proj_b_ = add_param("vit.embeddings.patch_embeddings.projection.bias", {D});
    proj_ = add_site("vit.embeddings.patch_embeddings.projection", SiteKind::Linear);
    pos_add_ = add_site("vit.embeddings.position_add", SiteKind::Add);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "vit.encoder.layer." + std::to_string(i) + ".";
      VitLayer L;
      L.ln1_w = add_param(p + "layernorm_before.weight", {D});
      L.ln1_b = add_param(p + "layernorm_before.bias", {D});
      L.q_w = add_param(p + "attention.attention.query.weight", {D, D});
      if (c.qkv_bias) L.q_b = add_param(p + "attention.attention.query.bias", {D});
      L.k_w = add_param(p + "attention.attention.key.weight", {D, D});
      if (c.qkv_bias) L.k_b = add_param(p + "attention.attention.key.bias", {D});
      L.v_w = add_param(p + "attention.attention.value.weight", {D, D});
      if (c.qkv_bias) L.v_b = add_param(p + "attention.attention.value.bias", {D});
      L.o_w = add_param(p + "attention.output.dense.weight", {D, D});
      L.o_b = add_param(p + "attention.output.dense.bias", {D});
      L.fc1_w = add_param(p + "intermediate.dense.weight", {F, D});
      L.fc1_b = add_param(p + "intermediate.dense.bias", {F});
      L.fc2_w = add_param(p + "output.dense.weight", {D, F});
      L.fc2_b = add_param(p + "output.dense.bias", {D});
      L.ln2_w = add_param(p + "layernorm_after.weight", {D});
      L.ln2_b = add_param(p + "layernorm_after.bias", {D});
      L.ln1 = add_site(p + "layernorm_before", SiteKind::LayerNorm, i);
      L.q = add_site(p + "attention.attention.query", SiteKind::Linear, i);
      L.k = add_site(p + "attention.attention.key", SiteKind::Linear, i);
      L.v = add_site(p + "attention.attention.value", SiteKind::Linear, i);
      L.qk = add_site(p + "attention.attention.matmul_qk", SiteKind::MatMul, i);
      L.softmax = add_site(p + "attention.attention.softmax", SiteKind::Softmax, i);
      L.av = add_site(p + "attention.attention.matmul_av", SiteKind::MatMul, i);
      L.o = add_site(p + "attention.output.dense", SiteKind::Linear, i);
      L.res1 = add_site(p + "residual_attention", SiteKind::Add, i);
      L.ln2 = add_site(p + "layernorm_after", SiteKind::LayerNorm, i);
      L.fc1 = add_site(p + "intermediate.dense", SiteKind::Linear, i);
      L.act = add_site(p + "intermediate.intermediate_act_fn", SiteKind::Activation, i);
      L.fc2 = add_site(p + "output.dense", SiteKind::Linear, i);
      L.res2 = add_site(p + "residual_mlp", SiteKind::Add, i);
      layers_.push_back(L);
    }
    lnf_w_ = add_param("vit.layernorm.weight", {D});
    lnf_b_ = add_param("vit.layernorm.bias", {D});
    lnf_ = add_site("vit.layernorm", SiteKind::LayerNorm);
    cls_w_ = add_param("classifier.weight", {c.num_labels(), D});
    cls_b_ = add_param("classifier.bias", {c.num_labels()});
    classifier_ = add_site("classifier", SiteKind::Linear);
  }

  at::Tensor logits(const ModelInput& in) override {
    const ModelConfig& c = cfg_;
    const at::Tensor& x = in.pixel_values;
    if (!x.defined() || x.dim() != 4 || x.size(1) != c.num_channels || x.size(2) != c.image_size ||
        x.size(3) != c.image_size)
      fail("vit", "pixel_values must be [B, " + std::to_string(c.num_channels) + ", " +
                      std::to_string(c.image_size) + ", " + std::to_string(c.image_size) + "]");
    const int64_t B = x.size(0), D = c.hidden_size, H = c.num_attention_heads, dh = D / H;
    const bool train = is_training();
    at::Tensor h = ops_.patch_conv(proj_, x, proj_w_, proj_b_, c.patch_size).flatten(2).transpose(1, 2);
    h = at::cat({cls_.expand({B, 1, D}), h}, 1);
    h = ops_.add(pos_add_, h, pos_);
    h = at::dropout(h, c.hidden_dropout_prob, train);
    const int64_t T = h.size(1);
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    auto heads = [&](const at::Tensor& t) { return t.view({B, T, H, dh}).permute({0, 2, 1, 3}); };
    for (const VitLayer& L : layers_) {
      at::Tensor a = ops_.layer_norm(L.ln1, h, L.ln1_w, L.ln1_b, c.layer_norm_eps);
      at::Tensor q = heads(ops_.linear(L.q, a, L.q_w, L.q_b));
      at::Tensor k = heads(ops_.linear(L.k, a, L.k_w, L.k_b));
      at::Tensor v = heads(ops_.linear(L.v, a, L.v_w, L.v_b));
      at::Tensor probs = ops_.softmax(L.softmax, ops_.matmul(L.qk, q, k, true, scale), {});
      probs = at::dropout(probs, c.attention_probs_dropout_prob, train);
      at::Tensor ctx = ops_.matmul(L.av, probs, v, false, 1.0).permute({0, 2, 1, 3}).reshape({B, T, D});
      at::Tensor o = at::dropout(ops_.linear(L.o, ctx, L.o_w, L.o_b), c.hidden_dropout_prob, train);
      h = ops_.add(L.res1, o, h);
      at::Tensor m = ops_.layer_norm(L.ln2, h, L.ln2_w, L.ln2_b, c.layer_norm_eps);
      m = ops_.activation(L.act, ops_.linear(L.fc1, m, L.fc1_w, L.fc1_b), act_);
      m = at::dropout(ops_.linear(L.fc2, m, L.fc2_w, L.fc2_b), c.hidden_dropout_prob, train);
      h = ops_.add(L.res2, m, h);
    }
    h = ops_.layer_norm(lnf_, h, lnf_w_, lnf_b_, c.layer_norm_eps);
    return ops_.linear(classifier_, h.select(1, 0), cls_w_, cls_b_);
  }

  void init_weights(uint64_t seed) override {
    torch::NoGradGuard ng;
    torch::manual_seed(seed);
    const double std = cfg_.initializer_range;
    auto trunc = [&](at::Tensor t) {  // trunc_normal_(std) on [-2, 2] as transformers does
      t.normal_(0, std).clamp_(-2.0, 2.0);
    };
    for (auto& [name, p] : hf_parameters()) {
      if (name.find("layernorm") != std::string::npos) {
        p.fill_(name_ends_with(name, ".weight") ? 1.0 : 0.0);
      } else if (name_ends_with(name, ".bias")) {
        p.zero_();
      } else {
        trunc(p);
      }
    }
  }

 private:
  Activation act_;
  at::Tensor cls_, pos_, proj_w_, proj_b_, lnf_w_, lnf_b_, cls_w_, cls_b_;
  int proj_, pos_add_, lnf_, classifier_;
  std::vector<VitLayer> layers_;
};

}  // namespace

std::shared_ptr<TransformerModel> make_vit(const ModelConfig& cfg, const ModelHeads& heads) {
  return std::make_shared<Vit>(cfg, heads);
}

}  // namespace qtx
