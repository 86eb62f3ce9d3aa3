// transformers' ViT (pre-norm) on integers. Per layer: LayerNorm on PTF codes → q/k/v int8 GEMMs
// → Log-Int-Softmax attention → output GEMM + residual requant → LayerNorm → fc1 GEMM → GELU by
// table → fc2 GEMM + residual requant. Float only at the two ends: quantizing the input pixels
// and dequantizing the logits.
#include <cmath>

#include "runtime/int_blocks.h"
#include "runtime/int_model.h"
#include "runtime/parallel.h"
#include "runtime/profile.h"

namespace qtx::rt {
namespace {

struct VitBlock {
  IntLayerNormSite ln1, ln2;
  IntSelfAttention attn;  // reads ln1's codes, which are on q's input grid
  IntMlp mlp;
  ResidualRequant res1, res2;
};

class IntVit : public IntModel {
 public:
  IntVit(const Artifact& a, Kernels kernels) : cfg_(a.config()) {
    const ModelConfig& c = cfg_;
    D_ = c.hidden_size;
    F_ = c.intermediate_size;
    P_ = c.patch_size;
    Ci_ = c.num_channels;
    G_ = c.image_size / P_;
    T_ = G_ * G_ + 1;
    H_ = c.num_attention_heads;
    L_ = c.num_labels();
    const std::string emb = "vit.embeddings.";
    proj_ = IntLinear::load(a, emb + "patch_embeddings.projection", D_, Ci_ * P_ * P_, true, kernels);
    residual0_ = per_tensor(a.need_quant(emb + "position_add", "output", Role::Residual), emb + "position_add");
    // Patch rows: bias + position embedding folded into the accumulator offset per (token, channel).
    std::vector<float> pos = a.param(emb + "position_embeddings", static_cast<int64_t>(T_) * D_);
    std::vector<float> cls = a.param(emb + "cls_token", D_);
    std::vector<double> off(static_cast<size_t>(T_ - 1) * D_);
    for (int t = 1; t < T_; ++t)
      for (int d = 0; d < D_; ++d) off[static_cast<size_t>(t - 1) * D_ + d] = proj_.bias[static_cast<size_t>(d)] + pos[static_cast<size_t>(t) * D_ + d];
    embed_ = ChannelRequant::make(proj_.acc_scale, off, T_ - 1, residual0_.scale, residual0_.zero, residual0_.qmin, residual0_.qmax,
                                  proj_.acc_offset, proj_.acc_bound());
    for (int d = 0; d < D_; ++d)  // CLS row: a constant, quantized once
      cls_codes_.push_back(code_of(cls[static_cast<size_t>(d)] + pos[static_cast<size_t>(d)], residual0_));
    QParams h = residual0_;
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "vit.encoder.layer." + std::to_string(i) + ".", at = p + "attention.attention.";
      VitBlock b;
      const QParams q_in = per_tensor(a.need_quant(at + "query", "input0", Role::LinearInput), at + "query input");
      b.attn = IntSelfAttention::load(a, at, p + "attention.output.dense", D_, H_, c.qkv_bias, q_in, kernels);
      b.mlp = IntMlp::load(a, p, D_, F_, c.hidden_act, kernels);
      b.ln1 = IntLayerNormSite::load(a, p + "layernorm_before", p + "layernorm_before", D_, h, q_in);
      QParams r1 = per_tensor(a.need_quant(p + "residual_attention", "output", Role::Residual), p + "residual_attention");
      b.res1 = ResidualRequant::make(b.attn.o.acc_scale, b.attn.o.bias, h, r1, b.attn.o.acc_offset, b.attn.o.acc_bound());
      b.ln2 = IntLayerNormSite::load(a, p + "layernorm_after", p + "layernorm_after", D_, r1, b.mlp.fc1.in);
      QParams r2 = per_tensor(a.need_quant(p + "residual_mlp", "output", Role::Residual), p + "residual_mlp");
      b.res2 = ResidualRequant::make(b.mlp.fc2.acc_scale, b.mlp.fc2.bias, r1, r2, b.mlp.fc2.acc_offset, b.mlp.fc2.acc_bound());
      h = r2;
      blocks_.push_back(std::move(b));
    }
    head_ = IntLinear::load(a, "classifier", L_, D_, true, kernels);
    lnf_ = IntLayerNormSite::load(a, "vit.layernorm", "vit.layernorm", D_, h, head_.in);
  }

  const ModelConfig& config() const override { return cfg_; }

  std::vector<float> classify_images(const float* px, int B) override {
    const int NP = G_ * G_, KP = Ci_ * P_ * P_, M = B * T_;
    // Quantize the pixels (float → codes: the input boundary) straight into patch rows.
    patches_.resize(static_cast<size_t>(B) * NP * KP);
    const QParams& qi = proj_.in;
    const int S = cfg_.image_size;
    // Two passes: every pixel of an image in one flat loop (which vectorises; inside the patch
    // loops the rows are P_ values long and it did not), then runs of P_ codes into patch rows.
    pixel_codes_.resize(static_cast<size_t>(B) * Ci_ * S * S);
    timed(OpClass::Embedding, [&] { parallel_for(B, patches_.size(), [&](int b) {
      const size_t n = static_cast<size_t>(Ci_) * S * S;
      const float* __restrict in = px + static_cast<size_t>(b) * n;
      uint8_t* __restrict codes = pixel_codes_.data() + static_cast<size_t>(b) * n;
      const double scale = qi.scale, zero = qi.zero, lo = qi.qmin, hi = qi.qmax;
      for (size_t i = 0; i < n; ++i) {
        const double v = in[i] / scale;
        const double r = (v >= 0 ? std::floor(v + 0.5) : -std::floor(-v + 0.5)) + zero;
        codes[i] = static_cast<uint8_t>(std::min(hi, std::max(lo, r)));
      }
      for (int gy = 0; gy < G_; ++gy)
        for (int gx = 0; gx < G_; ++gx) {
          uint8_t* row = patches_.data() + (static_cast<size_t>(b) * NP + gy * G_ + gx) * KP;
          for (int ch = 0; ch < Ci_; ++ch)
            for (int y = 0; y < P_; ++y)
              std::copy_n(codes + (static_cast<size_t>(ch) * S + gy * P_ + y) * S + gx * P_, P_, row + (ch * P_ + y) * P_);
        }
    }); });
    acc_.resize(static_cast<size_t>(M) * D_);  // [M, D] results; the MLP's fc1 has its own block buffer
    h_.resize(static_cast<size_t>(M) * D_);
    proj_.run(patches_.data(), B * NP, acc_.data());
    codes_.resize(static_cast<size_t>(B) * NP * D_);
    timed(OpClass::Embedding, [&] {
      embed_.rows(acc_.data(), B * NP, codes_.data());
      for (int b = 0; b < B; ++b) {
        std::copy(cls_codes_.begin(), cls_codes_.end(), h_.begin() + static_cast<size_t>(b) * T_ * D_);
        std::copy(codes_.begin() + static_cast<size_t>(b) * NP * D_, codes_.begin() + static_cast<size_t>(b + 1) * NP * D_,
                  h_.begin() + (static_cast<size_t>(b) * T_ + 1) * D_);
      }
    });
    tap("vit.embeddings.position_add.output", h_.data(), h_.size());
    x_.resize(static_cast<size_t>(M) * D_);  // LayerNorm outputs
    y_.resize(static_cast<size_t>(M) * F_);  // the MLP's activation codes
    h2_.resize(h_.size());
    const IntSelfAttention::TapFn tap_fn = [this](const std::string& k, const uint8_t* c, size_t n) { tap(k, c, n); };
    bool cls_in_front = false;  // the last layer ran its CLS rows alone and moved them to the front
    for (size_t li = 0; li < blocks_.size(); ++li) {
      const VitBlock& blk = blocks_[li];
      const std::string p = "vit.encoder.layer." + std::to_string(li) + ".";
      const size_t MD = static_cast<size_t>(M) * D_;
      // The last layer's CLS rows alone past its keys and values: all the classifier reads.
      const bool cls_only = cls_only_layer(li, blocks_.size());
      const int Mr = cls_only ? B : M;  // rows past the attention
      const size_t MrD = static_cast<size_t>(Mr) * D_;
      blk.ln1.rows(h_.data(), M, x_.data());
      tap(p + "attention.attention.query.input0", x_.data(), MD);
      blk.attn.run(x_.data(), nullptr, B, T_, attn_scratch_, acc_.data(), tap_fn, cls_only);
      keep_cls_rows(cls_only, &h_, B, T_, D_, &cls_in_front);
      timed(OpClass::Requant, [&] { blk.res1.rows(acc_.data(), h_.data(), Mr, h2_.data()); });
      tap(p + "residual_attention.output", h2_.data(), MrD);
      blk.ln2.rows(h2_.data(), Mr, x_.data());
      blk.mlp.run(x_.data(), Mr, mlp_rows(blk.mlp, Mr), mlp_acc_, y_.data(), acc_.data(), tap_act(p));
      timed(OpClass::Requant, [&] { blk.res2.rows(acc_.data(), h2_.data(), Mr, h_.data()); });
      tap(p + "residual_mlp.output", h_.data(), MrD);
    }
    // Final LayerNorm and classifier on the CLS rows only; logits dequantized (the output boundary).
    std::vector<uint8_t> cls = cls_rows(h_, B, T_, D_, cls_in_front);
    std::vector<uint8_t> ln(cls.size());
    lnf_.rows(cls.data(), B, ln.data());
    std::vector<int32_t> acc(static_cast<size_t>(B) * L_);
    head_.run(ln.data(), B, acc.data());
    std::vector<float> logits = dequantize_logits(head_, acc.data(), B);
    return logits;
  }

 private:
  ModelConfig cfg_;
  int D_, F_, P_, Ci_, G_, T_, H_, L_;
  IntLinear proj_, head_;
  QParams residual0_;
  ChannelRequant embed_;
  std::vector<uint8_t> cls_codes_;
  std::vector<VitBlock> blocks_;
  IntLayerNormSite lnf_;
  // Scratch reused across calls (one forward at a time per model).
  std::vector<uint8_t> pixel_codes_, patches_, codes_, h_, h2_, x_, y_;
  std::vector<int32_t> acc_, mlp_acc_;
  IntSelfAttention::Scratch attn_scratch_;
};

}  // namespace

std::unique_ptr<IntModel> make_int_vit(const Artifact& a, Kernels kernels) { return std::make_unique<IntVit>(a, kernels); }

}  // namespace qtx::rt
