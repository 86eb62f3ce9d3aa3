// Artifacts whose recipe keeps LayerNorm, Softmax and the residual stream in float (minmax-w8a8,
// percentile-w8a8, omse-w8a8, w6a6, w4a8, sym-*): every linear layer is an int8 GEMM on its
// quantized input (oneDNN, int32 accumulation), Q·Kᵀ is an integer dot product of the two
// quantized operands, and what the recipe leaves in float (LayerNorm, softmax, GELU, residual
// adds, A·V's probabilities) runs in float32 exactly where the fake-quant model runs it in
// float. A quantizer the recipe does put on such a site (e.g. the probabilities in sym-*) is
// applied there as quantize-dequantize. Fully quantized recipes (FQ-ViT) go to int_vit/int_bert.
#include <algorithm>
#include <cmath>

#include "formats/error.h"
#include "runtime/int_blocks.h"
#include "runtime/int_model.h"
#include "runtime/parallel.h"
#include "runtime/profile.h"

namespace qtx::rt {
namespace {

// A per-tensor activation quantizer, signed or unsigned, with codes stored as bytes
// (stored = code + offset, offset 128 for signed codes): (stored − zero_stored) = (code − zero).
struct ActQuant {
  float scale = 1, zero = 0;
  int32_t qmin = 0, qmax = 255, offset = 0;
  int32_t zero_stored() const { return static_cast<int32_t>(zero) + offset; }
  static ActQuant from(const StoredQuant& q, const std::string& what) {
    if (q.scale.size() != 1) fail(what, "needs a per-tensor activation quantizer");
    if (q.spec.scheme != Scheme::Uniform) fail(what, "needs a uniform activation quantizer here");
    if (q.spec.bits > 8) fail(what, std::to_string(q.spec.bits) + "-bit activations: the runtime runs 2–8 bits");
    ActQuant a;
    a.scale = q.scale[0];
    a.zero = q.zero[0];
    a.qmin = q.spec.qmin();
    a.qmax = q.spec.qmax();
    a.offset = a.qmin < 0 ? 128 : 0;
    return a;
  }
  // The fake-quant model's rounding: clamp(round_half_away(x / s) + z) in float32.
  float code(float x) const {
    const float v = x / scale;
    const float r = std::copysign(std::floor(std::fabs(v) + 0.5f), v) + zero;
    return std::min(static_cast<float>(qmax), std::max(static_cast<float>(qmin), r));
  }
  // parallel_range, not an OpenMP pragma: these also run inside the attention's parallel region
  // (the probabilities, one row at a time), where parallel_range stays in the calling thread
  // rather than opening a nested region per row. By value into the loops, then restrict
  // pointers: an 8-bit store may alias anything reached through a reference, which keeps the
  // loop scalar (see requant_to_codes).
  void codes(const float* x, size_t n, uint8_t* out) const {
    parallel_range(n, [x, out, q = *this](size_t begin, size_t end) {
      const float* __restrict src = x;
      uint8_t* __restrict dst = out;
      const ActQuant qq = q;
      for (size_t i = begin; i < end; ++i) dst[i] = static_cast<uint8_t>(static_cast<int32_t>(qq.code(src[i])) + qq.offset);
    });
  }
  void fake_quant(float* x, size_t n) const {
    parallel_range(n, [x, q = *this](size_t begin, size_t end) {
      float* __restrict v = x;
      const ActQuant qq = q;
      for (size_t i = begin; i < end; ++i) v[i] = (qq.code(v[i]) - qq.zero) * qq.scale;
    });
  }
};

// An optional quantizer on a site the recipe may leave in float.
struct MaybeQuant {
  bool on = false;
  ActQuant q;
  static MaybeQuant load(const Artifact& a, const std::string& site, const char* slot, Role role) {
    MaybeQuant m;
    StoredQuant s;
    if (a.quant(site, slot, role, &s)) {
      m.on = true;
      m.q = ActQuant::from(s, site + " " + slot);
    }
    return m;
  }
  void apply(float* x, size_t n) const {
    if (on) q.fake_quant(x, n);
  }
};

// A linear layer: float input → codes of its input quantizer → int8 GEMM → float (+ bias).
struct QLinear {
  std::unique_ptr<Int8Gemm> gemm;
  ActQuant in;
  std::vector<float> acc_scale, bias;
  std::vector<int32_t> acc_offset;  // −z_in · Σ_k W[c,k]: the input zero point's term, added while dequantizing
  int N = 0, K = 0;
  static QLinear load(const Artifact& a, const std::string& site, int N, int K, bool has_bias, Kernels kernels) {
    QLinear l;
    l.N = N;
    l.K = K;
    l.in = ActQuant::from(a.need_quant(site, "input0", Role::LinearInput), site + " input");
    StoredWeight w = a.need_weight(site, N, K);
    l.gemm = std::make_unique<Int8Gemm>(w.codes.data(), N, K, kernels);
    for (int c = 0; c < N; ++c) l.acc_scale.push_back(l.in.scale * w.scale[static_cast<size_t>(c)]);
    l.bias = has_bias ? a.param(site + ".bias", N) : std::vector<float>(static_cast<size_t>(N), 0.0f);
    for (int32_t sum : l.gemm->weight_sums()) l.acc_offset.push_back(-l.in.zero_stored() * sum);
    return l;
  }
  void run(const float* x, int M, float* y, std::vector<uint8_t>& codes, std::vector<int32_t>& acc) const {
    const size_t MK = static_cast<size_t>(M) * K, MN = static_cast<size_t>(M) * N;
    grow(codes, MK);
    grow(acc, MN);
    timed(OpClass::Requant, [&] { in.codes(x, MK, codes.data()); });
    gemm->run(codes.data(), M, 0, acc.data());  // the zero point's term is added below, in the same pass
    OpTimer timer(OpClass::Requant);  // the accumulators back to float
    const float* __restrict s = acc_scale.data();
    const float* __restrict b = bias.data();
    const int32_t* __restrict off = acc_offset.data();
    const int32_t* __restrict A = acc.data();
    const int n = N;
    parallel_for(M, static_cast<size_t>(M) * n, [&](int m) {
      for (int c = 0; c < n; ++c) {
        const size_t i = static_cast<size_t>(m) * n + c;
        y[i] = static_cast<float>(A[i] + off[c]) * s[c] + b[c];
      }
    });
  }
};

struct FloatLayerNorm {
  std::vector<float> gamma, beta;
  float eps = 1e-12f;
  static FloatLayerNorm load(const Artifact& a, const std::string& prefix, int C, double eps) {
    return {a.param(prefix + ".weight", C), a.param(prefix + ".bias", C), static_cast<float>(eps)};
  }
  void rows(const float* x, int M, float* y) const {
    OpTimer timer(OpClass::LayerNorm);
    const int C = static_cast<int>(gamma.size());
    const float* __restrict g = gamma.data();
    const float* __restrict bt = beta.data();
    const float e = eps;
    parallel_for(M, static_cast<size_t>(M) * C, [&](int m) {
      const float* __restrict r = x + static_cast<size_t>(m) * C;
      // Mean and variance in double over eight interleaved partial sums: one serial chain of C
      // double adds per row was most of this kernel's time (the order is not the simulation's
      // either way; parity is measured, and the fast and reference paths share this code).
      constexpr int kLanes = 8;
      double part[kLanes] = {};
      int c = 0;
      for (; c + kLanes <= C; c += kLanes)
        for (int l = 0; l < kLanes; ++l) part[l] += r[c + l];
      double mean = 0;
      for (int l = 0; l < kLanes; ++l) mean += part[l];
      for (; c < C; ++c) mean += r[c];
      mean /= C;
      for (auto& p : part) p = 0;
      c = 0;
      for (; c + kLanes <= C; c += kLanes)
        for (int l = 0; l < kLanes; ++l) part[l] += (r[c + l] - mean) * (r[c + l] - mean);
      double var = 0;
      for (int l = 0; l < kLanes; ++l) var += part[l];
      for (; c < C; ++c) var += (r[c] - mean) * (r[c] - mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(var / C + e));
      float* __restrict o = y + static_cast<size_t>(m) * C;
      for (c = 0; c < C; ++c) o[c] = static_cast<float>(r[c] - mean) * inv * g[c] + bt[c];
    });
  }
};

struct Scratch {
  std::vector<uint8_t> codes, qc, kc, vc;
  std::vector<int32_t> acc;
  std::vector<float> q, k, v, ctx, x, y, f, cls;
};

// One query's context Σ_j p_j · vf[j] · scale (vf: a head's V as floats v − z, [T, dh]), the row
// in a local accumulator (registers, with DH a constant: as av_log2_rows); keys with p = 0 skipped.
template <int DH>
void av_f32_row(const float* p, const float* vf, int T, int dh_rt, float scale, float* out) {
  const int dh = DH > 0 ? DH : dh_rt;
  float acc[DH > 0 ? DH : 1024] = {};
  for (int j = 0; j < T; ++j) {
    const float pj = p[j];
    if (pj == 0.0f) continue;
    const float* __restrict vr = vf + static_cast<size_t>(j) * dh;
    for (int d = 0; d < dh; ++d) acc[d] += pj * vr[d];
  }
  for (int d = 0; d < dh; ++d) out[d] = acc[d] * scale;
}

// Self-attention with integer Q·Kᵀ and float softmax and A·V (the probabilities stay float
// unless the recipe quantizes them; V is quantized and used as (v − z)·s).
struct HybridAttention {
  QLinear q, k, v, o;
  ActQuant qk0, qk1, av1;
  MaybeQuant probs;
  int heads = 1, dh = 0;
  static HybridAttention load(const Artifact& a, const std::string& prefix, const std::string& o_site, int D, int heads,
                              bool qkv_bias, Kernels kernels) {
    HybridAttention h;
    h.q = QLinear::load(a, prefix + "query", D, D, qkv_bias, kernels);
    h.k = QLinear::load(a, prefix + "key", D, D, qkv_bias, kernels);
    h.v = QLinear::load(a, prefix + "value", D, D, qkv_bias, kernels);
    h.o = QLinear::load(a, o_site, D, D, true, kernels);
    h.qk0 = ActQuant::from(a.need_quant(prefix + "matmul_qk", "input0", Role::QkInput), prefix + "matmul_qk input0");
    h.qk1 = ActQuant::from(a.need_quant(prefix + "matmul_qk", "input1", Role::QkInput), prefix + "matmul_qk input1");
    h.av1 = ActQuant::from(a.need_quant(prefix + "matmul_av", "input1", Role::AvInput), prefix + "matmul_av input1");
    StoredQuant sm;
    if (a.quant(prefix + "softmax", "output", Role::SoftmaxOutput, &sm) && sm.spec.scheme == Scheme::Log2)
      fail(prefix + "softmax", "Log-Int-Softmax probabilities with LayerNorm in float: the runtime runs Log-Int-Softmax "
                               "only in fully quantized recipes (LayerNorm input quantized too)");
    h.probs = MaybeQuant::load(a, prefix + "softmax", "output", Role::SoftmaxOutput);
    h.heads = heads;
    h.dh = D / heads;
    if (h.dh > 1024) fail(prefix + "query", "attention head size " + std::to_string(h.dh) + " above 1024, the runtime's limit");
    return h;
  }
  // x [B·T, D] float; valid [B, T] or nullptr; out [B·T, D] = the output projection (bias added).
  // cls_only: each sequence's first row alone is queried and out is [B, D] (IntSelfAttention::run).
  void run(const float* x, const int32_t* valid, int B, int T, Scratch& s, float* out, bool cls_only = false) const {
    const int D = heads * dh, M = B * T, Tq = cls_only ? 1 : T, Mq = B * Tq;
    const size_t MD = static_cast<size_t>(M) * D, MqD = static_cast<size_t>(Mq) * D;
    for (auto* f : {&s.q, &s.k, &s.v, &s.ctx}) grow(*f, MD);
    for (auto* c : {&s.qc, &s.kc, &s.vc}) grow(*c, MD);
    if (cls_only) {
      s.cls = first_rows(x, B, T, D);
      q.run(s.cls.data(), B, s.q.data(), s.codes, s.acc);
    } else {
      q.run(x, M, s.q.data(), s.codes, s.acc);
    }
    k.run(x, M, s.k.data(), s.codes, s.acc);
    v.run(x, M, s.v.data(), s.codes, s.acc);
    timed(OpClass::Requant, [&] {
      qk0.codes(s.q.data(), MqD, s.qc.data());
      qk1.codes(s.k.data(), MD, s.kc.data());
      av1.codes(s.v.data(), MD, s.vc.data());
    });
    const float score_scale = qk0.scale * qk1.scale / std::sqrt(static_cast<float>(dh));
    const int32_t zv = av1.zero_stored();
    FusedOpRegion region;  // ends with the parallel block below: before o.run, which times itself
#pragma omp parallel
    {
      std::vector<int32_t> S(static_cast<size_t>(Tq) * T);
      std::vector<float> P(static_cast<size_t>(T)), vf(static_cast<size_t>(T) * dh);
#pragma omp for schedule(static) collapse(2)
      for (int b = 0; b < B; ++b)
        for (int h = 0; h < heads; ++h) {
          const size_t base = static_cast<size_t>(b) * T * D + static_cast<size_t>(h) * dh;
          const size_t q_base = static_cast<size_t>(b) * Tq * D + static_cast<size_t>(h) * dh;
          FusedOpRegion::Laps laps(region);
          qk_scores(s.qc.data() + q_base, qk0.zero_stored(), s.kc.data() + base, qk1.zero_stored(), Tq, T, dh, D, S.data());
          for (int j = 0; j < T; ++j) {  // this head's V as floats v − z, once for all its queries
            const uint8_t* vr = s.vc.data() + base + static_cast<size_t>(j) * D;
            for (int d = 0; d < dh; ++d) vf[static_cast<size_t>(j) * dh + d] = static_cast<float>(vr[d] - zv);
          }
          laps.lap(OpClass::AttentionMatmul);
          for (int t = 0; t < Tq; ++t) {
            const int32_t* row = S.data() + static_cast<size_t>(t) * T;
            const int32_t* ok = valid ? valid + static_cast<size_t>(b) * T : nullptr;
            float mx = -INFINITY;
            for (int j = 0; j < T; ++j)
              if (!ok || ok[j]) mx = std::max(mx, row[j] * score_scale);
            float* __restrict p = P.data();
            for (int j = 0; j < T; ++j) p[j] = row[j] * score_scale - mx;
            exp_f32(p, static_cast<size_t>(T));
            float sum = 0;
            for (int j = 0; j < T; ++j) {
              if (ok && !ok[j]) p[j] = 0.0f;
              sum += p[j];
            }
            for (int j = 0; j < T; ++j) p[j] /= sum;
            probs.apply(P.data(), P.size());
            laps.lap(OpClass::Softmax);
            float* c = s.ctx.data() + q_base + static_cast<size_t>(t) * D;
            switch (dh) {
              case 32: av_f32_row<32>(P.data(), vf.data(), T, dh, av1.scale, c); break;
              case 64: av_f32_row<64>(P.data(), vf.data(), T, dh, av1.scale, c); break;
              default: av_f32_row<0>(P.data(), vf.data(), T, dh, av1.scale, c); break;
            }
            laps.lap(OpClass::AttentionMatmul);
          }
        }
    }
    region.end();
    o.run(s.ctx.data(), Mq, out, s.codes, s.acc);
  }
};

// fc1 → activation (float, optionally quantized at its output) → fc2, into out.
struct HybridMlp {
  QLinear fc1, fc2;
  MaybeQuant act_out;
  std::function<double(double)> act;
  bool fast_gelu = false;  // the erf GELU vectorised in float (gelu_erf_f32); else `act` per value in double
  static HybridMlp load(const Artifact& a, const std::string& p, int D, int F, const std::string& hidden_act, Kernels kernels) {
    HybridMlp m;
    m.fast_gelu = kernels == Kernels::Fast && hidden_act == "gelu";
    m.fc1 = QLinear::load(a, p + "intermediate.dense", F, D, true, kernels);
    m.fc2 = QLinear::load(a, p + "output.dense", D, F, true, kernels);
    m.act_out = MaybeQuant::load(a, p + "intermediate.intermediate_act_fn", "output", Role::ActOutput);
    m.act = activation_fn(hidden_act);
    return m;
  }
  // A block of rows at a time, so that fc1's output stays in cache until the activation and fc2
  // read it (as IntMlp::run). The block (rows_in_cache of fc1's width) holds that float output
  // and the GEMM's int32 accumulators, 512 KB each; blocks of half as many rows measured the same.
  int row_block() const { return rows_in_cache(fc1.N); }
  void run(const float* x, int M, int rows, Scratch& s, float* out) const {
    const int F = fc1.N;
    rows = std::max(1, std::min(rows, M));
    grow(s.f, static_cast<size_t>(rows) * F);
    float* f = s.f.data();
    for (int r0 = 0; r0 < M; r0 += rows) {
      const int n = std::min(rows, M - r0);
      const size_t nF = static_cast<size_t>(n) * F;
      fc1.run(x + static_cast<size_t>(r0) * fc1.K, n, f, s.codes, s.acc);
      timed(OpClass::Activation, [&] {
        if (fast_gelu)
          parallel_range(nF, [&](size_t begin, size_t end) { gelu_erf_f32(f + begin, end - begin); });
        else
          parallel_range(nF, [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) f[i] = static_cast<float>(act(f[i]));
          });
        act_out.apply(f, nF);
      });
      fc2.run(f, n, out + static_cast<size_t>(r0) * fc2.N, s.codes, s.acc);
    }
  }
};

// h += y, then the add's output quantizer (if any).
void residual_add(float* h, const float* y, size_t n, const MaybeQuant& out) {
  OpTimer timer(OpClass::Requant);
  parallel_range(n, [&](size_t begin, size_t end) {
    float* __restrict a = h;
    const float* __restrict b = y;
    for (size_t i = begin; i < end; ++i) a[i] += b[i];
  });
  out.apply(h, n);
}

// A fully quantized recipe quantizes LayerNorm inputs; those artifacts run integer-only.
void require_float_layernorm(const Artifact& a, const std::string& ln_site) {
  StoredQuant s;
  if (a.quant(ln_site, "input0", Role::LayerNormInput, &s))
    fail(ln_site, "internal: a fully quantized artifact reached the float-LayerNorm runtime");
}

class HybridVit : public IntModel {
 public:
  HybridVit(const Artifact& a, Kernels kernels) : cfg_(a.config()) {
    const ModelConfig& c = cfg_;
    D_ = c.hidden_size;
    P_ = c.patch_size;
    Ci_ = c.num_channels;
    G_ = c.image_size / P_;
    T_ = G_ * G_ + 1;
    L_ = c.num_labels();
    const std::string emb = "vit.embeddings.";
    proj_ = QLinear::load(a, emb + "patch_embeddings.projection", D_, Ci_ * P_ * P_, true, kernels);
    pos_ = a.param(emb + "position_embeddings", static_cast<int64_t>(T_) * D_);
    cls_ = a.param(emb + "cls_token", D_);
    pos_add_ = MaybeQuant::load(a, emb + "position_add", "output", Role::Residual);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "vit.encoder.layer." + std::to_string(i) + ".";
      require_float_layernorm(a, p + "layernorm_before");
      Block b;
      b.ln1 = FloatLayerNorm::load(a, p + "layernorm_before", D_, c.layer_norm_eps);
      b.ln2 = FloatLayerNorm::load(a, p + "layernorm_after", D_, c.layer_norm_eps);
      b.attn = HybridAttention::load(a, p + "attention.attention.", p + "attention.output.dense", D_, c.num_attention_heads,
                                     c.qkv_bias, kernels);
      b.mlp = HybridMlp::load(a, p, D_, c.intermediate_size, c.hidden_act, kernels);
      b.res1 = MaybeQuant::load(a, p + "residual_attention", "output", Role::Residual);
      b.res2 = MaybeQuant::load(a, p + "residual_mlp", "output", Role::Residual);
      blocks_.push_back(std::move(b));
    }
    lnf_ = FloatLayerNorm::load(a, "vit.layernorm", D_, c.layer_norm_eps);
    head_ = QLinear::load(a, "classifier", L_, D_, true, kernels);
  }
  const ModelConfig& config() const override { return cfg_; }

  std::vector<float> classify_images(const float* px, int B) override {
    const int NP = G_ * G_, KP = Ci_ * P_ * P_, M = B * T_, S = G_ * P_;
    const size_t MD = static_cast<size_t>(M) * D_;
    OpTimer patch_timer(OpClass::Embedding);
    grow(s_.x, static_cast<size_t>(B) * NP * KP);
    for (int b = 0; b < B; ++b)  // patch rows [B·NP, Ci·P·P] in the projection weight's order
      for (int gy = 0; gy < G_; ++gy)
        for (int gx = 0; gx < G_; ++gx)
          for (int ch = 0; ch < Ci_; ++ch)
            for (int y = 0; y < P_; ++y)
              for (int x = 0; x < P_; ++x)
                s_.x[(static_cast<size_t>(b) * NP + gy * G_ + gx) * KP + (ch * P_ + y) * P_ + x] =
                    px[((static_cast<size_t>(b) * Ci_ + ch) * S + gy * P_ + y) * S + gx * P_ + x];
    patch_timer.stop();
    grow(s_.y, static_cast<size_t>(B) * NP * D_);
    proj_.run(s_.x.data(), B * NP, s_.y.data(), s_.codes, s_.acc);
    grow(h_, MD);
    grow(t_, MD);
    grow(u_, MD);
    OpTimer embedding_timer(OpClass::Embedding);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T_; ++t)
        for (int d = 0; d < D_; ++d) {
          const float e = t == 0 ? cls_[static_cast<size_t>(d)] : s_.y[(static_cast<size_t>(b) * NP + t - 1) * D_ + d];
          h_[(static_cast<size_t>(b) * T_ + t) * D_ + d] = e + pos_[static_cast<size_t>(t) * D_ + d];
        }
    pos_add_.apply(h_.data(), MD);
    embedding_timer.stop();
    bool cls_in_front = false;  // the last layer ran its CLS rows alone and moved them to the front
    for (size_t li = 0; li < blocks_.size(); ++li) {
      const Block& blk = blocks_[li];
      // The last layer's CLS rows alone past its keys and values (as the integer-only ViT).
      const bool cls_only = cls_only_layer(li, blocks_.size());
      const int Mr = cls_only ? B : M;
      const size_t MrD = static_cast<size_t>(Mr) * D_;
      blk.ln1.rows(h_.data(), M, t_.data());
      blk.attn.run(t_.data(), nullptr, B, T_, s_, u_.data(), cls_only);
      keep_cls_rows(cls_only, &h_, B, T_, D_, &cls_in_front);
      residual_add(h_.data(), u_.data(), MrD, blk.res1);
      blk.ln2.rows(h_.data(), Mr, t_.data());
      blk.mlp.run(t_.data(), Mr, mlp_rows(blk.mlp, Mr), s_, u_.data());
      residual_add(h_.data(), u_.data(), MrD, blk.res2);
    }
    std::vector<float> cls = cls_rows(h_, B, T_, D_, cls_in_front);
    std::vector<float> ln(cls.size()), logits(static_cast<size_t>(B) * L_);
    lnf_.rows(cls.data(), B, ln.data());
    head_.run(ln.data(), B, logits.data(), s_.codes, s_.acc);
    return logits;
  }

 private:
  struct Block {
    FloatLayerNorm ln1, ln2;
    HybridAttention attn;
    HybridMlp mlp;
    MaybeQuant res1, res2;
  };
  ModelConfig cfg_;
  int D_, P_, Ci_, G_, T_, L_;
  QLinear proj_, head_;
  std::vector<float> pos_, cls_;
  MaybeQuant pos_add_;
  std::vector<Block> blocks_;
  FloatLayerNorm lnf_;
  std::vector<float> h_, t_, u_;
  Scratch s_;
};

// An embedding table in float: the stored float table, or int8 rows × per-row scales where the
// recipe quantizes embeddings.
std::vector<float> embedding_table(const Artifact& a, const std::string& site, int rows, int cols) {
  StoredQuant q;
  if (!a.quant(site, "weight", Role::Embedding, &q)) return a.param(site + ".weight", static_cast<int64_t>(rows) * cols);
  StoredWeight w = a.need_weight(site, rows, cols, Role::Embedding);
  std::vector<float> t(static_cast<size_t>(rows) * cols);
  for (size_t i = 0; i < t.size(); ++i) t[i] = w.codes[i] * w.scale[i / static_cast<size_t>(cols)];
  return t;
}

class HybridBert : public IntModel {
 public:
  HybridBert(const Artifact& a, Kernels kernels) : cfg_(a.config()) {
    const ModelConfig& c = cfg_;
    D_ = c.hidden_size;
    L_ = c.num_labels();
    V_ = c.vocab_size;
    if (L_ < 1 || !a.has_tensor("classifier.weight.qweight"))
      fail(a.dir(), "the runtime runs BERT classifiers (pooler + classifier); this artifact has no classifier");
    const std::string e = "bert.embeddings.";
    word_ = embedding_table(a, e + "word_embeddings", V_, D_);
    type_ = embedding_table(a, e + "token_type_embeddings", c.type_vocab_size, D_);
    pos_ = embedding_table(a, e + "position_embeddings", c.max_position_embeddings, D_);
    add_type_ = MaybeQuant::load(a, e + "add_token_type", "output", Role::Residual);
    add_pos_ = MaybeQuant::load(a, e + "add_position", "output", Role::Residual);
    require_float_layernorm(a, e + "LayerNorm");
    eln_ = FloatLayerNorm::load(a, e + "LayerNorm", D_, c.layer_norm_eps);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
      Block b;
      b.attn = HybridAttention::load(a, p + "attention.self.", p + "attention.output.dense", D_, c.num_attention_heads, true, kernels);
      b.mlp = HybridMlp::load(a, p, D_, c.intermediate_size, c.hidden_act, kernels);
      b.res1 = MaybeQuant::load(a, p + "attention.output.residual", "output", Role::Residual);
      b.res2 = MaybeQuant::load(a, p + "output.residual", "output", Role::Residual);
      b.ln1 = FloatLayerNorm::load(a, p + "attention.output.LayerNorm", D_, c.layer_norm_eps);
      b.ln2 = FloatLayerNorm::load(a, p + "output.LayerNorm", D_, c.layer_norm_eps);
      blocks_.push_back(std::move(b));
    }
    pool_ = QLinear::load(a, "bert.pooler.dense", D_, D_, true, kernels);
    tanh_out_ = MaybeQuant::load(a, "bert.pooler.activation", "output", Role::ActOutput);
    head_ = QLinear::load(a, "classifier", L_, D_, true, kernels);
  }
  const ModelConfig& config() const override { return cfg_; }

  std::vector<float> classify_tokens(const int32_t* ids, const int32_t* mask, int B, int T) override {
    check_tokens(cfg_, ids, B, T);
    const int M = B * T;
    const size_t MD = static_cast<size_t>(M) * D_;
    for (auto* v : {&h_, &t_, &u_}) grow(*v, MD);
    // Embeddings (token type 0 throughout), each add quantized where the recipe says so.
    OpTimer embedding_timer(OpClass::Embedding);
    for (int i = 0; i < M; ++i)
      for (int d = 0; d < D_; ++d)
        t_[static_cast<size_t>(i) * D_ + d] = word_[static_cast<size_t>(ids[i]) * D_ + d] + type_[static_cast<size_t>(d)];
    add_type_.apply(t_.data(), MD);
    for (int i = 0; i < M; ++i)
      for (int d = 0; d < D_; ++d) t_[static_cast<size_t>(i) * D_ + d] += pos_[static_cast<size_t>(i % T) * D_ + d];
    add_pos_.apply(t_.data(), MD);
    embedding_timer.stop();
    eln_.rows(t_.data(), M, h_.data());
    bool cls_in_front = false;  // the last layer ran its CLS rows alone and moved them to the front
    for (size_t li = 0; li < blocks_.size(); ++li) {  // post-norm: h = LN(h + f(h))
      const Block& blk = blocks_[li];
      // The last layer's CLS rows alone past its keys and values (as the integer-only BERT).
      const bool cls_only = cls_only_layer(li, blocks_.size());
      const int Mr = cls_only ? B : M;
      const size_t MrD = static_cast<size_t>(Mr) * D_;
      blk.attn.run(h_.data(), mask, B, T, s_, u_.data(), cls_only);
      keep_cls_rows(cls_only, &h_, B, T, D_, &cls_in_front);
      residual_add(u_.data(), h_.data(), MrD, blk.res1);
      blk.ln1.rows(u_.data(), Mr, h_.data());
      blk.mlp.run(h_.data(), Mr, mlp_rows(blk.mlp, Mr), s_, u_.data());
      residual_add(u_.data(), h_.data(), MrD, blk.res2);
      blk.ln2.rows(u_.data(), Mr, h_.data());
    }
    std::vector<float> cls = cls_rows(h_, B, T, D_, cls_in_front);
    std::vector<float> pooled(cls.size()), logits(static_cast<size_t>(B) * L_);
    pool_.run(cls.data(), B, pooled.data(), s_.codes, s_.acc);
    for (float& x : pooled) x = std::tanh(x);
    tanh_out_.apply(pooled.data(), pooled.size());
    head_.run(pooled.data(), B, logits.data(), s_.codes, s_.acc);
    return logits;
  }

 private:
  struct Block {
    HybridAttention attn;
    HybridMlp mlp;
    MaybeQuant res1, res2;
    FloatLayerNorm ln1, ln2;
  };
  ModelConfig cfg_;
  int D_, L_, V_;
  std::vector<float> word_, type_, pos_;
  MaybeQuant add_type_, add_pos_, tanh_out_;
  FloatLayerNorm eln_;
  std::vector<Block> blocks_;
  QLinear pool_, head_;
  std::vector<float> h_, t_, u_;
  Scratch s_;
};

}  // namespace

std::unique_ptr<IntModel> make_hybrid_vit(const Artifact& a, Kernels kernels) { return std::make_unique<HybridVit>(a, kernels); }
std::unique_ptr<IntModel> make_hybrid_bert(const Artifact& a, Kernels kernels) { return std::make_unique<HybridBert>(a, kernels); }

}  // namespace qtx::rt
