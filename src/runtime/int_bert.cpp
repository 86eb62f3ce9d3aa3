// transformers' BERT (post-norm, BertForSequenceClassification) on integers. Embeddings: int8
// rows of the word / token-type / position tables summed with per-row multipliers into the
// two embedding-add quantizers, then LayerNorm on PTF codes. Per layer: q/k/v int8 GEMMs from
// the stream codes → Log-Int-Softmax attention (padding masked) → output GEMM + residual requant
// → LayerNorm → fc1 GEMM → GELU by table → fc2 GEMM + residual requant → LayerNorm. The stream
// between blocks is the LayerNorm output's codes (role `residual` on post-norm LayerNorms).
// Pooler: GEMM on the CLS row → tanh by table → classifier. Float only in the logits.
#include <algorithm>
#include <cmath>

#include "formats/error.h"
#include "runtime/int_blocks.h"
#include "runtime/int_model.h"
#include "runtime/parallel.h"
#include "runtime/profile.h"

namespace qtx::rt {
namespace {

struct BertBlock {
  IntSelfAttention attn;  // reads the stream codes
  IntMlp mlp;
  ResidualRequant res1, res2;
  IntLayerNormSite ln1, ln2;
  std::vector<uint8_t> fc1_in;            // ln1 output codes → fc1's input grid
};

// An int8 embedding table with its per-row scales.
struct IntEmbedding {
  StoredWeight table;
  static IntEmbedding load(const Artifact& a, const std::string& site, int rows, int cols) {
    return {a.need_weight(site, rows, cols, Role::Embedding)};
  }
};

// One token: word + type codes → add_type codes (s), then + position → add_position codes (o).
void embed_row(const int8_t* __restrict w, const int8_t* __restrict ty, const int8_t* __restrict pr, int64_t mw, int64_t mt,
               int64_t mp, int64_t ms, int64_t half1, int64_t half2, int sh1, int sh2, int64_t za, int64_t zp, int64_t lo1,
               int64_t hi1, int64_t lo2, int64_t hi2, int D, uint8_t* __restrict s, uint8_t* __restrict o) {
  for (int d = 0; d < D; ++d) {
    const int64_t a = std::clamp<int64_t>(((w[d] * mw + ty[d] * mt + half1) >> sh1) + za, lo1, hi1);
    s[d] = static_cast<uint8_t>(a);
    o[d] = static_cast<uint8_t>(std::clamp<int64_t>((((a - za) * ms + pr[d] * mp + half2) >> sh2) + zp, lo2, hi2));
  }
}

class IntBert : public IntModel {
 public:
  IntBert(const Artifact& a, Kernels kernels) : cfg_(a.config()) {
    const ModelConfig& c = cfg_;
    D_ = c.hidden_size;
    F_ = c.intermediate_size;
    H_ = c.num_attention_heads;
    L_ = c.num_labels();
    V_ = c.vocab_size;
    if (L_ < 1 || !a.has_tensor("classifier.weight.qweight"))
      fail(a.dir(), "the integer runtime runs BERT classifiers (pooler + classifier); this artifact has no classifier");
    const std::string e = "bert.embeddings.";
    word_ = IntEmbedding::load(a, e + "word_embeddings", V_, D_);
    type_ = IntEmbedding::load(a, e + "token_type_embeddings", c.type_vocab_size, D_);
    pos_ = IntEmbedding::load(a, e + "position_embeddings", c.max_position_embeddings, D_);
    add_type_ = per_tensor(a.need_quant(e + "add_token_type", "output", Role::Residual), e + "add_token_type");
    add_pos_ = per_tensor(a.need_quant(e + "add_position", "output", Role::Residual), e + "add_position");
    // word·s_w[id] + type·s_t[ty] → add_type codes; (a − z)·s_a + pos·s_p[t] → add_pos codes.
    {
      double mx = 0;
      for (float s : word_.table.scale) mx = std::max(mx, s / add_type_.scale);
      for (float s : type_.table.scale) mx = std::max(mx, s / add_type_.scale);
      shift1_ = common_shift(mx);
      for (float s : word_.table.scale) m_word_.push_back(std::llround(s / add_type_.scale * std::ldexp(1.0, shift1_)));
      for (float s : type_.table.scale) m_type_.push_back(std::llround(s / add_type_.scale * std::ldexp(1.0, shift1_)));
      mx = add_type_.scale / add_pos_.scale;
      for (float s : pos_.table.scale) mx = std::max(mx, s / add_pos_.scale);
      shift2_ = common_shift(mx);
      m_sum_ = std::llround(add_type_.scale / add_pos_.scale * std::ldexp(1.0, shift2_));
      for (float s : pos_.table.scale) m_pos_.push_back(std::llround(s / add_pos_.scale * std::ldexp(1.0, shift2_)));
    }
    QParams h = stream(a, e + "LayerNorm");
    eln_ = IntLayerNormSite::load(a, e + "LayerNorm", e + "LayerNorm", D_, add_pos_, h);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "bert.encoder.layer." + std::to_string(i) + ".", at = p + "attention.self.";
      BertBlock b;
      b.attn = IntSelfAttention::load(a, at, p + "attention.output.dense", D_, H_, true, h, kernels);
      b.mlp = IntMlp::load(a, p, D_, F_, c.hidden_act, kernels);
      QParams r1 = per_tensor(a.need_quant(p + "attention.output.residual", "output", Role::Residual), p + "attention.output.residual");
      b.res1 = ResidualRequant::make(b.attn.o.acc_scale, b.attn.o.bias, h, r1, b.attn.o.acc_offset, b.attn.o.acc_bound());
      QParams h1 = stream(a, p + "attention.output.LayerNorm");
      b.ln1 = IntLayerNormSite::load(a, p + "attention.output.LayerNorm", p + "attention.output.LayerNorm", D_, r1, h1);
      b.fc1_in = table_between(h1, b.mlp.fc1.in);
      QParams r2 = per_tensor(a.need_quant(p + "output.residual", "output", Role::Residual), p + "output.residual");
      b.res2 = ResidualRequant::make(b.mlp.fc2.acc_scale, b.mlp.fc2.bias, h1, r2, b.mlp.fc2.acc_offset, b.mlp.fc2.acc_bound());
      h = stream(a, p + "output.LayerNorm");
      b.ln2 = IntLayerNormSite::load(a, p + "output.LayerNorm", p + "output.LayerNorm", D_, r2, h);
      blocks_.push_back(std::move(b));
    }
    pool_ = IntLinear::load(a, "bert.pooler.dense", D_, D_, true, kernels);
    pool_in_ = table_between(h, pool_.in);
    QParams to = per_tensor(a.need_quant("bert.pooler.activation", "output", Role::ActOutput), "bert.pooler.activation");
    // tanh is within 2^-28 of ±1 beyond |x| = 10: the table's input range.
    tanh_ = IntElementwise::make(pool_, activation_fn("tanh"), to, -10.0, 10.0);
    head_ = IntLinear::load(a, "classifier", L_, D_, true, kernels);
    tanh_to_head_ = table_between(to, head_.in);
  }

  const ModelConfig& config() const override { return cfg_; }

  std::vector<float> classify_tokens(const int32_t* ids, const int32_t* mask, int B, int T) override {
    check_tokens(cfg_, ids, B, T);
    const int M = B * T;
    const size_t MD = static_cast<size_t>(M) * D_, MF = static_cast<size_t>(M) * F_;
    for (auto* v : {&h_, &h2_}) grow(*v, MD);
    grow(x_, MD);                 // the embedding sum, fc1's input grid
    grow(y_, std::max(MD, MF));  // the first embedding add, the MLP's activation codes
    grow(acc_, MD);  // [M, D] results; the MLP's fc1 has its own block buffer
    embed(ids, B, T);
    const IntSelfAttention::TapFn tap_fn = [this](const std::string& k, const uint8_t* c, size_t n) { tap(k, c, n); };
    bool cls_in_front = false;  // the last layer ran its CLS rows alone and moved them to the front
    for (size_t li = 0; li < blocks_.size(); ++li) {
      const BertBlock& blk = blocks_[li];
      const std::string p = "bert.encoder.layer." + std::to_string(li) + ".";
      // The last layer's CLS rows alone past its keys and values: all the pooler reads.
      const bool cls_only = cls_only_layer(li, blocks_.size());
      const int Mr = cls_only ? B : M;  // rows past the attention
      const size_t MrD = static_cast<size_t>(Mr) * D_;
      blk.attn.run(h_.data(), mask, B, T, attn_scratch_, acc_.data(), tap_fn, cls_only);
      keep_cls_rows(cls_only, &h_, B, T, D_, &cls_in_front);
      timed(OpClass::Requant, [&] { blk.res1.rows(acc_.data(), h_.data(), Mr, h2_.data()); });
      tap(p + "attention.output.residual.output", h2_.data(), MrD);
      blk.ln1.rows(h2_.data(), Mr, h_.data());
      tap(p + "attention.output.LayerNorm.output", h_.data(), MrD);
      const uint8_t* fc1_x = h_.data();  // the stream's codes, unless fc1 reads another grid
      if (!blk.fc1_in.empty()) {
        apply_table(blk.fc1_in, h_.data(), MrD, x_.data());
        fc1_x = x_.data();
      }
      blk.mlp.run(fc1_x, Mr, mlp_rows(blk.mlp, Mr), mlp_acc_, y_.data(), acc_.data(), tap_act(p));
      timed(OpClass::Requant, [&] { blk.res2.rows(acc_.data(), h_.data(), Mr, h2_.data()); });
      tap(p + "output.residual.output", h2_.data(), MrD);
      blk.ln2.rows(h2_.data(), Mr, h_.data());
      tap(p + "output.LayerNorm.output", h_.data(), MrD);
    }
    // Pooler and classifier on the CLS rows; logits dequantized (the output boundary).
    std::vector<uint8_t> cls = cls_rows(h_, B, T, D_, cls_in_front);
    std::vector<uint8_t> pooled(cls.size());
    apply_table(pool_in_, cls.data(), cls.size(), cls.data());
    std::vector<int32_t> acc(static_cast<size_t>(B) * std::max(D_, L_));
    pool_.run(cls.data(), B, acc.data());
    tanh_.rows(acc.data(), B, pooled.data());
    tap("bert.pooler.activation.output", pooled.data(), pooled.size());
    apply_table(tanh_to_head_, pooled.data(), pooled.size(), pooled.data());
    head_.run(pooled.data(), B, acc.data());
    std::vector<float> logits = dequantize_logits(head_, acc.data(), B);
    return logits;
  }

 private:
  // The quantizer of a post-norm LayerNorm's output: the residual stream's codes.
  static QParams stream(const Artifact& a, const std::string& site) {
    return per_tensor(a.need_quant(site, "output", Role::Residual), site + " output");
  }

  // Token ids → embedding-sum codes → LayerNorm → stream codes in h_ (token type 0 throughout).
  void embed(const int32_t* ids, int B, int T) {
    const int M = B * T, D = D_;
    const int64_t half1 = int64_t{1} << (shift1_ - 1), half2 = int64_t{1} << (shift2_ - 1);
    const int8_t* type_row = type_.table.codes.data();  // token type 0
    const int64_t mt = m_type_[0], ms = m_sum_, za = add_type_.zero, zp = add_pos_.zero;
    const int64_t lo1 = add_type_.qmin, hi1 = add_type_.qmax, lo2 = add_pos_.qmin, hi2 = add_pos_.qmax;
    const int sh1 = shift1_, sh2 = shift2_;
    const int8_t *words = word_.table.codes.data(), *positions = pos_.table.codes.data();
    const int64_t *m_word = m_word_.data(), *m_pos = m_pos_.data();
    uint8_t *sum_out = y_.data(), *pos_out = x_.data();
    timed(OpClass::Embedding, [&] {
      parallel_for(M, static_cast<size_t>(M) * D, [&](int i) {
        const int t = i % T, id = ids[i];
        // A function of its own: the loop's 8-bit stores could alias anything reached through the
        // closure, so its constants must be parameters (locals) for it to vectorise.
        embed_row(words + static_cast<size_t>(id) * D, type_row, positions + static_cast<size_t>(t) * D, m_word[static_cast<size_t>(id)], mt,
                  m_pos[static_cast<size_t>(t)], ms, half1, half2, sh1, sh2, za, zp, lo1, hi1, lo2, hi2, D,
                  sum_out + static_cast<size_t>(i) * D, pos_out + static_cast<size_t>(i) * D);
      });
    });
    tap("bert.embeddings.add_token_type.output", y_.data(), static_cast<size_t>(M) * D);
    tap("bert.embeddings.add_position.output", x_.data(), static_cast<size_t>(M) * D);
    eln_.rows(x_.data(), M, h_.data());
    tap("bert.embeddings.LayerNorm.output", h_.data(), static_cast<size_t>(M) * D);
  }

  ModelConfig cfg_;
  int D_, F_, H_, L_, V_;
  IntEmbedding word_, type_, pos_;
  QParams add_type_, add_pos_;
  int shift1_ = 1, shift2_ = 1;
  std::vector<int64_t> m_word_, m_type_, m_pos_;
  int64_t m_sum_ = 0;
  IntLayerNormSite eln_;
  std::vector<BertBlock> blocks_;
  IntLinear pool_, head_;
  std::vector<uint8_t> pool_in_, tanh_to_head_;
  IntElementwise tanh_;
  // Scratch reused across calls (one forward at a time per model).
  std::vector<uint8_t> h_, h2_, x_, y_;
  std::vector<int32_t> acc_, mlp_acc_;
  IntSelfAttention::Scratch attn_scratch_;
};

}  // namespace

std::unique_ptr<IntModel> make_int_bert(const Artifact& a, Kernels kernels) { return std::make_unique<IntBert>(a, kernels); }

}  // namespace qtx::rt
