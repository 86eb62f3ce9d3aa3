// transformers' BERT: post-norm blocks, word + position + token-type embeddings, additive
// attention mask, tanh pooler + classifier (BertForSequenceClassification) and/or the MLM head
// (BertForMaskedLM, decoder tied to the word embeddings).
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "formats/error.h"
#include "models/model.h"

namespace qtx {
namespace {

struct BertLayer {
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln1_w, ln1_b, fc1_w, fc1_b, fc2_w, fc2_b, ln2_w, ln2_b;
  int q, k, v, qk, softmax, av, o, res1, ln1, fc1, act, fc2, res2, ln2;
};

class Bert : public TransformerModel {
 public:
  Bert(const ModelConfig& c, const ModelHeads& heads) : TransformerModel(c), heads_(heads) {
    if (!heads.classifier && !heads.mlm) fail("config.json", "BERT needs a classifier or an MLM head");
    if (heads.classifier && c.num_labels() < 1)
      fail("config.json", "id2label is missing: a classifier needs at least one label");
    const int64_t D = c.hidden_size, F = c.intermediate_size;
    act_ = activation_from_name(c.hidden_act);
    word_ = add_param("bert.embeddings.word_embeddings.weight", {c.vocab_size, D});
    pos_ = add_param("bert.embeddings.position_embeddings.weight", {c.max_position_embeddings, D});
    type_ = add_param("bert.embeddings.token_type_embeddings.weight", {c.type_vocab_size, D});
    eln_w_ = add_param("bert.embeddings.LayerNorm.weight", {D});
    eln_b_ = add_param("bert.embeddings.LayerNorm.bias", {D});
    s_word_ = add_site("bert.embeddings.word_embeddings", SiteKind::Embedding);
    s_type_ = add_site("bert.embeddings.token_type_embeddings", SiteKind::Embedding);
    s_pos_ = add_site("bert.embeddings.position_embeddings", SiteKind::Embedding);
    s_add_type_ = add_site("bert.embeddings.add_token_type", SiteKind::Add);
    s_add_pos_ = add_site("bert.embeddings.add_position", SiteKind::Add);
    s_eln_ = add_site("bert.embeddings.LayerNorm", SiteKind::LayerNorm, -1, /*output_is_residual=*/true);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
      BertLayer L;
      L.q_w = add_param(p + "attention.self.query.weight", {D, D});
      L.q_b = add_param(p + "attention.self.query.bias", {D});
      L.k_w = add_param(p + "attention.self.key.weight", {D, D});
      L.k_b = add_param(p + "attention.self.key.bias", {D});
      L.v_w = add_param(p + "attention.self.value.weight", {D, D});
      L.v_b = add_param(p + "attention.self.value.bias", {D});
      L.o_w = add_param(p + "attention.output.dense.weight", {D, D});
      L.o_b = add_param(p + "attention.output.dense.bias", {D});
      L.ln1_w = add_param(p + "attention.output.LayerNorm.weight", {D});
      L.ln1_b = add_param(p + "attention.output.LayerNorm.bias", {D});
      L.fc1_w = add_param(p + "intermediate.dense.weight", {F, D});
      L.fc1_b = add_param(p + "intermediate.dense.bias", {F});
      L.fc2_w = add_param(p + "output.dense.weight", {D, F});
      L.fc2_b = add_param(p + "output.dense.bias", {D});
      L.ln2_w = add_param(p + "output.LayerNorm.weight", {D});
      L.ln2_b = add_param(p + "output.LayerNorm.bias", {D});
      L.q = add_site(p + "attention.self.query", SiteKind::Linear, i);
      L.k = add_site(p + "attention.self.key", SiteKind::Linear, i);
      L.v = add_site(p + "attention.self.value", SiteKind::Linear, i);
      L.qk = add_site(p + "attention.self.matmul_qk", SiteKind::MatMul, i);
      L.softmax = add_site(p + "attention.self.softmax", SiteKind::Softmax, i);
      L.av = add_site(p + "attention.self.matmul_av", SiteKind::MatMul, i);
      L.o = add_site(p + "attention.output.dense", SiteKind::Linear, i);
      L.res1 = add_site(p + "attention.output.residual", SiteKind::Add, i);
      L.ln1 = add_site(p + "attention.output.LayerNorm", SiteKind::LayerNorm, i, /*output_is_residual=*/true);
      L.fc1 = add_site(p + "intermediate.dense", SiteKind::Linear, i);
      L.act = add_site(p + "intermediate.intermediate_act_fn", SiteKind::Activation, i);
      L.fc2 = add_site(p + "output.dense", SiteKind::Linear, i);
      L.res2 = add_site(p + "output.residual", SiteKind::Add, i);
      L.ln2 = add_site(p + "output.LayerNorm", SiteKind::LayerNorm, i, /*output_is_residual=*/true);
      layers_.push_back(L);
    }
    if (heads.classifier) {
      pool_w_ = add_param("bert.pooler.dense.weight", {D, D});
      pool_b_ = add_param("bert.pooler.dense.bias", {D});
      cls_w_ = add_param("classifier.weight", {c.num_labels(), D});
      cls_b_ = add_param("classifier.bias", {c.num_labels()});
      s_pool_ = add_site("bert.pooler.dense", SiteKind::Linear);
      s_pool_act_ = add_site("bert.pooler.activation", SiteKind::Activation);
      s_cls_ = add_site("classifier", SiteKind::Linear);
    }
    if (heads.mlm) {
      mlm_bias_ = add_param("cls.predictions.bias", {c.vocab_size});
      mt_w_ = add_param("cls.predictions.transform.dense.weight", {D, D});
      mt_b_ = add_param("cls.predictions.transform.dense.bias", {D});
      mln_w_ = add_param("cls.predictions.transform.LayerNorm.weight", {D});
      mln_b_ = add_param("cls.predictions.transform.LayerNorm.bias", {D});
      s_mt_ = add_site("cls.predictions.transform.dense", SiteKind::Linear);
      s_mact_ = add_site("cls.predictions.transform.transform_act_fn", SiteKind::Activation);
      s_mln_ = add_site("cls.predictions.transform.LayerNorm", SiteKind::LayerNorm);
      s_dec_ = add_site("cls.predictions.decoder", SiteKind::Linear);
    }
  }

  bool has_classifier() const override { return heads_.classifier; }
  bool has_mlm_head() const override { return heads_.mlm; }

  bool ignorable_tensor(const std::string& n) const override {
    // Tied copies and buffers that some transformers versions write, and heads we don't build.
    return n == "bert.embeddings.position_ids" || n == "cls.predictions.decoder.weight" ||
           n == "cls.predictions.decoder.bias" || n.rfind("cls.seq_relationship.", 0) == 0 ||
           (!heads_.classifier && n.rfind("bert.pooler.", 0) == 0);
  }

  at::Tensor encode(const ModelInput& in) {
    const ModelConfig& c = cfg_;
    const at::Tensor& ids = in.input_ids;
    if (!ids.defined() || ids.dim() != 2) fail("bert", "input_ids must be [B, T]");
    const int64_t B = ids.size(0), T = ids.size(1), D = c.hidden_size, H = c.num_attention_heads, dh = D / H;
    if (T > c.max_position_embeddings)
      fail("bert", "sequence of " + std::to_string(T) + " tokens exceeds max_position_embeddings " +
                       std::to_string(c.max_position_embeddings));
    if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size))
      fail("bert", "token id outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
    const bool train = is_training();
    at::Tensor types = in.token_type_ids.defined() ? in.token_type_ids : at::zeros_like(ids);
    at::Tensor positions = at::arange(T, ids.options()).unsqueeze(0).expand({B, T});
    at::Tensor h = ops_.add(s_add_type_, ops_.embedding(s_word_, ids, word_), ops_.embedding(s_type_, types, type_));
    h = ops_.add(s_add_pos_, h, ops_.embedding(s_pos_, positions, pos_));
    h = at::dropout(ops_.layer_norm(s_eln_, h, eln_w_, eln_b_, c.layer_norm_eps), c.hidden_dropout_prob, train);
    at::Tensor mask;
    if (in.attention_mask.defined()) {
      mask = (1.0 - in.attention_mask.to(at::kFloat).view({B, 1, 1, T})) * std::numeric_limits<float>::lowest();
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    auto heads = [&](const at::Tensor& t) { return t.view({B, T, H, dh}).permute({0, 2, 1, 3}); };
    for (const BertLayer& L : layers_) {
      at::Tensor q = heads(ops_.linear(L.q, h, L.q_w, L.q_b));
      at::Tensor k = heads(ops_.linear(L.k, h, L.k_w, L.k_b));
      at::Tensor v = heads(ops_.linear(L.v, h, L.v_w, L.v_b));
      at::Tensor probs = ops_.softmax(L.softmax, ops_.matmul(L.qk, q, k, true, scale), mask);
      probs = at::dropout(probs, c.attention_probs_dropout_prob, train);
      at::Tensor ctx = ops_.matmul(L.av, probs, v, false, 1.0).permute({0, 2, 1, 3}).reshape({B, T, D});
      at::Tensor o = at::dropout(ops_.linear(L.o, ctx, L.o_w, L.o_b), c.hidden_dropout_prob, train);
      h = ops_.layer_norm(L.ln1, ops_.add(L.res1, o, h), L.ln1_w, L.ln1_b, c.layer_norm_eps);
      at::Tensor m = ops_.activation(L.act, ops_.linear(L.fc1, h, L.fc1_w, L.fc1_b), act_);
      m = at::dropout(ops_.linear(L.fc2, m, L.fc2_w, L.fc2_b), c.hidden_dropout_prob, train);
      h = ops_.layer_norm(L.ln2, ops_.add(L.res2, m, h), L.ln2_w, L.ln2_b, c.layer_norm_eps);
    }
    return h;
  }

  at::Tensor logits(const ModelInput& in) override {
    if (!heads_.classifier) fail("bert", "this checkpoint (BertForMaskedLM) has no classifier");
    at::Tensor h = encode(in);
    at::Tensor pooled = ops_.activation(s_pool_act_, ops_.linear(s_pool_, h.select(1, 0), pool_w_, pool_b_), Activation::Tanh);
    pooled = at::dropout(pooled, cfg_.hidden_dropout_prob, is_training());
    return ops_.linear(s_cls_, pooled, cls_w_, cls_b_);
  }

  at::Tensor mlm_logits(const ModelInput& in, const at::Tensor& rows) override {
    if (!heads_.mlm) return TransformerModel::mlm_logits(in, rows);
    at::Tensor h = encode(in);
    if (rows.defined()) h = h.reshape({-1, h.size(-1)}).index_select(0, rows.to(h.device()));
    h = ops_.activation(s_mact_, ops_.linear(s_mt_, h, mt_w_, mt_b_), act_);
    h = ops_.layer_norm(s_mln_, h, mln_w_, mln_b_, cfg_.layer_norm_eps);
    return ops_.linear(s_dec_, h, word_, mlm_bias_);
  }

  void init_weights(uint64_t seed) override {
    torch::NoGradGuard ng;
    torch::manual_seed(seed);
    const double std = cfg_.initializer_range;
    for (auto& [name, p] : hf_parameters()) {
      if (name.find("LayerNorm") != std::string::npos) {
        p.fill_(name_ends_with(name, ".weight") ? 1.0 : 0.0);
      } else if (name_ends_with(name, ".bias")) {
        p.zero_();
      } else {
        p.normal_(0, std);
      }
    }
    if (cfg_.pad_token_id >= 0 && cfg_.pad_token_id < cfg_.vocab_size) word_[cfg_.pad_token_id].zero_();
  }

 private:
  ModelHeads heads_;
  Activation act_;
  at::Tensor word_, pos_, type_, eln_w_, eln_b_, pool_w_, pool_b_, cls_w_, cls_b_;
  at::Tensor mlm_bias_, mt_w_, mt_b_, mln_w_, mln_b_;
  int s_word_, s_type_, s_pos_, s_add_type_, s_add_pos_, s_eln_;
  int s_pool_ = -1, s_pool_act_ = -1, s_cls_ = -1, s_mt_ = -1, s_mact_ = -1, s_mln_ = -1, s_dec_ = -1;
  std::vector<BertLayer> layers_;
};

}  // namespace

std::shared_ptr<TransformerModel> make_bert(const ModelConfig& cfg, const ModelHeads& heads) {
  return std::make_shared<Bert>(cfg, heads);
}

}  // namespace qtx
