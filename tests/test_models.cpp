// Models: forward shapes, an independent reference forward (transformers' formulas written out
// with plain libtorch ops on the named parameters), op-site naming and hooks, save/load.
#include <torch/torch.h>

#include "formats/safetensors.h"
#include "models/model.h"
#include "tasks/labeled_data.h"
#include "train/augment.h"
#include "train/distill.h"
#include "test_util.h"

using namespace qtx;
namespace F = torch::nn::functional;

namespace {

// Random (not transformers-initialised) weights so LayerNorm/bias paths all matter.
std::shared_ptr<TransformerModel> random_model(const ModelConfig& c, ModelHeads heads = {}) {
  auto m = create_model(c, heads);
  torch::NoGradGuard ng;
  torch::manual_seed(7);
  for (auto& [name, p] : m->hf_parameters()) p.normal_(0, name.find("LayerNorm") != std::string::npos || name.find("layernorm") != std::string::npos ? 1.0 : 0.2);
  m->eval();
  return m;
}

at::Tensor P(TransformerModel& m, const std::string& n) { return m.param(n); }

at::Tensor ref_attention(TransformerModel& m, const std::string& q, const std::string& k, const std::string& v,
                         const at::Tensor& x, int heads, const at::Tensor& add_mask) {
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / heads;
  auto split = [&](const at::Tensor& t) { return t.view({B, T, heads, hd}).permute({0, 2, 1, 3}); };
  at::Tensor Q = split(at::linear(x, P(m, q + ".weight"), P(m, q + ".bias")));
  at::Tensor K = split(at::linear(x, P(m, k + ".weight"), P(m, k + ".bias")));
  at::Tensor V = split(at::linear(x, P(m, v + ".weight"), P(m, v + ".bias")));
  at::Tensor s = at::matmul(Q, K.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd));
  if (add_mask.defined()) s = s + add_mask;
  return at::matmul(at::softmax(s, -1), V).permute({0, 2, 1, 3}).reshape({B, T, D});
}

at::Tensor ln(TransformerModel& m, const std::string& n, const at::Tensor& x, double eps) {
  return at::layer_norm(x, {x.size(-1)}, P(m, n + ".weight"), P(m, n + ".bias"), eps);
}

at::Tensor lin(TransformerModel& m, const std::string& n, const at::Tensor& x) {
  return at::linear(x, P(m, n + ".weight"), P(m, n + ".bias"));
}

// transformers' ViTForImageClassification forward, eval mode.
at::Tensor reference_vit(TransformerModel& m, const at::Tensor& px) {
  const auto& c = m.config();
  at::Tensor x = at::conv2d(px, P(m, "vit.embeddings.patch_embeddings.projection.weight"),
                            P(m, "vit.embeddings.patch_embeddings.projection.bias"), c.patch_size);
  x = x.flatten(2).transpose(1, 2);
  x = at::cat({P(m, "vit.embeddings.cls_token").expand({x.size(0), 1, x.size(2)}), x}, 1);
  x = x + P(m, "vit.embeddings.position_embeddings");
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "vit.encoder.layer." + std::to_string(i) + ".";
    at::Tensor a = ref_attention(m, p + "attention.attention.query", p + "attention.attention.key",
                                 p + "attention.attention.value", ln(m, p + "layernorm_before", x, c.layer_norm_eps),
                                 c.num_attention_heads, {});
    x = x + lin(m, p + "attention.output.dense", a);
    at::Tensor h = at::gelu(lin(m, p + "intermediate.dense", ln(m, p + "layernorm_after", x, c.layer_norm_eps)));
    x = x + lin(m, p + "output.dense", h);
  }
  x = ln(m, "vit.layernorm", x, c.layer_norm_eps);
  return lin(m, "classifier", x.select(1, 0));
}

// transformers' BERT encoder (post-norm) with the extended additive attention mask.
at::Tensor reference_bert_encoder(TransformerModel& m, const at::Tensor& ids, const at::Tensor& mask) {
  const auto& c = m.config();
  const int64_t T = ids.size(1);
  at::Tensor pos = at::arange(T, at::kLong).unsqueeze(0);
  at::Tensor x = at::embedding(P(m, "bert.embeddings.word_embeddings.weight"), ids) +
                 at::embedding(P(m, "bert.embeddings.token_type_embeddings.weight"), at::zeros_like(ids)) +
                 at::embedding(P(m, "bert.embeddings.position_embeddings.weight"), pos);
  x = ln(m, "bert.embeddings.LayerNorm", x, c.layer_norm_eps);
  at::Tensor add_mask = (1.0 - mask.to(at::kFloat)).view({mask.size(0), 1, 1, T}) * std::numeric_limits<float>::lowest();
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    at::Tensor a = ref_attention(m, p + "attention.self.query", p + "attention.self.key", p + "attention.self.value", x,
                                 c.num_attention_heads, add_mask);
    x = ln(m, p + "attention.output.LayerNorm", lin(m, p + "attention.output.dense", a) + x, c.layer_norm_eps);
    at::Tensor h = at::gelu(lin(m, p + "intermediate.dense", x));
    x = ln(m, p + "output.LayerNorm", lin(m, p + "output.dense", h) + x, c.layer_norm_eps);
  }
  return x;
}

ModelInput bert_batch() {
  // Two sequences; the second is padded with id 0 after 5 tokens.
  ModelInput in;
  in.input_ids = at::tensor(std::vector<int64_t>{2, 7, 9, 11, 13, 15, 17, 3, 2, 8, 10, 12, 3, 0, 0, 0}, at::kLong).view({2, 8});
  in.attention_mask = at::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, at::kLong).view({2, 8});
  return in;
}

}  // namespace

TEST(Vit, ForwardMatchesTransformersFormulas) {
  auto m = random_model(qtx_test::tiny_vit_config());
  torch::NoGradGuard ng;
  torch::manual_seed(1);
  ModelInput in;
  in.pixel_values = torch::randn({3, 1, 8, 8});
  at::Tensor y = m->logits(in);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_TRUE(at::allclose(y, reference_vit(*m, in.pixel_values), 1e-5, 1e-5)) << y << reference_vit(*m, in.pixel_values);
}

TEST(Vit, WrongImageShapeIsAClearError) {
  auto m = random_model(qtx_test::tiny_vit_config());
  ModelInput in;
  in.pixel_values = torch::randn({1, 3, 8, 8});
  EXPECT_QTX_ERROR(m->logits(in), "pixel_values must be [B, 1, 8, 8]");
  in.pixel_values = torch::randn({1, 1, 12, 12});
  EXPECT_QTX_ERROR(m->logits(in), "pixel_values must be [B, 1, 8, 8]");
}

TEST(Bert, ClassifierAndMlmMatchTransformersFormulas) {
  auto m = random_model(qtx_test::tiny_bert_config(), ModelHeads{true, true});
  torch::NoGradGuard ng;
  ModelInput in = bert_batch();
  at::Tensor h = reference_bert_encoder(*m, in.input_ids, in.attention_mask);
  at::Tensor pooled = at::tanh(lin(*m, "bert.pooler.dense", h.select(1, 0)));
  at::Tensor want = lin(*m, "classifier", pooled);
  at::Tensor y = m->logits(in);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(at::allclose(y, want, 1e-5, 1e-5)) << y << want;

  at::Tensor t = at::gelu(lin(*m, "cls.predictions.transform.dense", h));
  t = ln(*m, "cls.predictions.transform.LayerNorm", t, m->config().layer_norm_eps);
  at::Tensor mlm_want = at::linear(t, P(*m, "bert.embeddings.word_embeddings.weight"), P(*m, "cls.predictions.bias"));
  at::Tensor mlm = m->mlm_logits(in);
  ASSERT_EQ(mlm.sizes(), (std::vector<int64_t>{2, 8, 50}));
  EXPECT_TRUE(at::allclose(mlm, mlm_want, 1e-4, 1e-4));
  // Selected rows equal the same rows of the full output.
  at::Tensor rows = at::tensor(std::vector<int64_t>{1, 9, 12}, at::kLong);
  EXPECT_TRUE(at::allclose(m->mlm_logits(in, rows), mlm.view({16, 50}).index_select(0, rows), 1e-5, 1e-5));
}

TEST(Bert, PaddingDoesNotChangeLogits) {
  auto m = random_model(qtx_test::tiny_bert_config());
  torch::NoGradGuard ng;
  ModelInput batch = bert_batch();
  ModelInput alone = pad_token_batch({{2, 8, 10, 12, 3}}, 0);
  at::Tensor a = m->logits(batch).select(0, 1), b = m->logits(alone).select(0, 0);
  EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-5)) << a << b;
}

TEST(Bert, TooLongOrOutOfVocabInputIsAClearError) {
  auto m = random_model(qtx_test::tiny_bert_config());
  ModelInput in;
  in.input_ids = at::full({1, 20}, 5, at::kLong);
  EXPECT_QTX_ERROR(m->logits(in), "max_position_embeddings");
  in.input_ids = at::full({1, 4}, 99, at::kLong);
  EXPECT_QTX_ERROR(m->logits(in), "vocab");
}

TEST(Sites, NamesFollowTransformersModulePaths) {
  auto vit = random_model(qtx_test::tiny_vit_config());
  const SiteTable& s = vit->sites();
  EXPECT_EQ(s.sites().size(), 2u + 14u * 2u + 2u);
  for (const char* n : {"vit.embeddings.patch_embeddings.projection", "vit.encoder.layer.1.layernorm_before",
                        "vit.encoder.layer.0.attention.attention.query", "vit.encoder.layer.0.attention.attention.matmul_qk",
                        "vit.encoder.layer.0.attention.attention.softmax", "vit.encoder.layer.1.attention.attention.matmul_av",
                        "vit.encoder.layer.1.intermediate.intermediate_act_fn", "vit.encoder.layer.1.residual_mlp",
                        "vit.layernorm", "classifier"})
    EXPECT_GE(s.find(n), 0) << n;
  EXPECT_EQ(s.match("encoder.layer.*.layernorm_before").size(), 2u);
  EXPECT_EQ(s.match("*.softmax").size(), 2u);
  EXPECT_EQ(s.match("vit.encoder.layer.0.*").size(), 14u);
  EXPECT_EQ(s.match("layer.0.*").size(), 14u);  // a dot-aligned suffix matches
  EXPECT_EQ(s.match("ayer.0.*").size(), 0u);    // a suffix inside a component does not
  EXPECT_EQ(s.match("nothing.here").size(), 0u);
  EXPECT_EQ(s.site(s.find("vit.encoder.layer.1.layernorm_before")).layer, 1);
  EXPECT_EQ(s.site(s.find("vit.encoder.layer.1.layernorm_before")).kind, SiteKind::LayerNorm);

  auto bert = random_model(qtx_test::tiny_bert_config(), ModelHeads{true, true});
  for (const char* n : {"bert.embeddings.word_embeddings", "bert.embeddings.LayerNorm",
                        "bert.encoder.layer.1.attention.self.key", "bert.encoder.layer.1.attention.output.LayerNorm",
                        "bert.encoder.layer.0.output.residual", "bert.pooler.dense", "classifier",
                        "cls.predictions.decoder"})
    EXPECT_GE(bert->sites().find(n), 0) << n;
}

namespace {
// Records what reaches a site and can zero an input.
struct Probe : SiteHook {
  std::vector<at::Tensor> outputs;
  bool zero_input = false;
  at::Tensor input(const OpSite&, int, const at::Tensor& x) override { return zero_input ? at::zeros_like(x) : x; }
  at::Tensor output(const OpSite&, const at::Tensor& y) override {
    outputs.push_back(y.detach().clone());
    return y;
  }
};
}  // namespace

TEST(Sites, HooksSeeAndTransformWithoutModelEdits) {
  auto m = random_model(qtx_test::tiny_vit_config());
  torch::NoGradGuard ng;
  ModelInput in;
  in.pixel_values = torch::randn({2, 1, 8, 8});
  at::Tensor base = m->logits(in);
  auto probe = std::make_shared<Probe>();
  EXPECT_EQ(m->sites().attach("*.softmax", probe), 2);
  m->logits(in);
  ASSERT_EQ(probe->outputs.size(), 2u);
  EXPECT_EQ(probe->outputs[0].sizes(), (std::vector<int64_t>{2, 2, 5, 5}));
  EXPECT_TRUE(at::allclose(probe->outputs[0].sum(-1), at::ones({2, 2, 5})));
  auto zero = std::make_shared<Probe>();
  zero->zero_input = true;
  m->sites().attach("encoder.layer.1.layernorm_before", zero);
  EXPECT_FALSE(at::allclose(m->logits(in), base));
  m->sites().detach_all();
  EXPECT_TRUE(at::equal(m->logits(in), base));
}

TEST(Checkpoint, SaveLoadRoundTripAndMismatches) {
  std::string d = qtx_test::temp_dir("ckpt");
  auto m = random_model(qtx_test::tiny_bert_config(), ModelHeads{true, true});
  save_model(*m, d + "/ok");
  auto r = load_model(d + "/ok");
  ModelInput in = bert_batch();
  torch::NoGradGuard ng;
  EXPECT_TRUE(at::equal(m->logits(in), r->logits(in)));
  EXPECT_TRUE(r->has_mlm_head());

  // Rewrite the checkpoint with one tensor dropped / reshaped / added / poisoned.
  auto rewrite = [&](const std::string& name, const std::function<void(SafetensorsWriter&, const std::string&, at::Tensor)>& edit) {
    std::string out = d + "/" + name;
    save_model(*m, out);
    SafetensorsWriter w;
    for (const auto& [n, p] : m->hf_parameters()) edit(w, n, p.contiguous());
    w.write(out + "/model.safetensors");
    return out;
  };
  auto put = [](SafetensorsWriter& w, const std::string& n, const at::Tensor& t) {
    w.add(n, DType::F32, t.sizes().vec(), t.data_ptr<float>(), static_cast<size_t>(t.numel()) * 4);
  };
  std::string missing = rewrite("missing", [&](SafetensorsWriter& w, const std::string& n, at::Tensor p) {
    if (n != "bert.encoder.layer.1.attention.self.key.bias") put(w, n, p);
  });
  EXPECT_QTX_ERROR(load_model(missing), "missing tensor 'bert.encoder.layer.1.attention.self.key.bias'");
  std::string shape = rewrite("shape", [&](SafetensorsWriter& w, const std::string& n, at::Tensor p) {
    put(w, n, n == "classifier.weight" ? at::zeros({3, 32}) : p);
  });
  EXPECT_QTX_ERROR(load_model(shape), "'classifier.weight' has shape [3, 32]");
  std::string extra = rewrite("extra", [&](SafetensorsWriter& w, const std::string& n, at::Tensor p) {
    put(w, n, p);
    if (n == "classifier.bias") put(w, "bert.encoder.layer.9.output.dense.bias", p);
  });
  EXPECT_QTX_ERROR(load_model(extra), "num_hidden_layers is 2 but the file stores 3 encoder layer(s) numbered 0..9");
  std::string nan = rewrite("nan", [&](SafetensorsWriter& w, const std::string& n, at::Tensor p) {
    put(w, n, n == "bert.pooler.dense.bias" ? p.clone().fill_(NAN) : p);
  });
  EXPECT_QTX_ERROR(load_model(nan), "NaN");
  EXPECT_QTX_ERROR(load_model(d + "/absent"), "does not exist");
}

namespace {
ImageAugment shifts_only(int64_t shift) {
  ImageAugment a;
  a.shift = shift;
  a.background = -1.f;
  return a;
}
ImageAugment with_flips(int64_t shift) {
  ImageAugment a = shifts_only(shift);
  a.flip = true;
  return a;
}
}  // namespace

TEST(Training, AugmentShiftsAndFlipsOnlyWhenAsked) {
  // Distinct pixel values, so any shift or flip shows.
  const at::Tensor x = torch::arange(2 * 1 * 6 * 6, torch::kFloat).reshape({2, 1, 6, 6}) + 1;
  std::mt19937_64 r0(3);
  EXPECT_TRUE(augment_images(x, r0, shifts_only(0)).equal(x)) << "no shift, no flip: unchanged";
  // The same draws with and without flips: each sample is the shift-only one or its mirror image.
  std::mt19937_64 r1(7), r2(7);
  const at::Tensor shifted = augment_images(x, r1, shifts_only(2));
  const at::Tensor mirrored = augment_images(x, r2, with_flips(2));
  for (int b = 0; b < 2; ++b)
    EXPECT_TRUE(mirrored[b].equal(shifted[b]) || mirrored[b].equal(shifted[b].flip({2}))) << "sample " << b;
  // Over many samples flips do happen when asked and never when not.
  std::mt19937_64 r3(11), r4(11);
  const at::Tensor many = x[0].unsqueeze(0).expand({64, 1, 6, 6}).contiguous();
  EXPECT_TRUE(augment_images(many, r3, shifts_only(0)).equal(many));
  const at::Tensor flipped = augment_images(many, r4, with_flips(0));
  int n = 0;
  for (int b = 0; b < 64; ++b) n += flipped[b].equal(many[b].flip({2}));
  EXPECT_GT(n, 10);
  EXPECT_LT(n, 54);
}

TEST(Training, RandomErasingFillsOneRectangleWithNoiseInRange) {
  // Pixels of 100 stand out from the noise range [-1, 2].
  const at::Tensor many = torch::full({64, 1, 12, 12}, 100.f);
  ImageAugment a = shifts_only(0);
  a.white = 2.f;
  std::mt19937_64 r0(5), r1(5);
  EXPECT_TRUE(augment_images(many, r0, a).equal(many)) << "erase = 0: unchanged";
  a.erase = 1.0;
  const at::Tensor erased = augment_images(many, r1, a);
  int n_erased = 0;
  for (int b = 0; b < 64; ++b) {
    const at::Tensor changed = erased[b][0].ne(100.f);
    const int64_t n = changed.sum().item<int64_t>();
    if (n == 0) continue;  // ten draws that did not fit: rare
    ++n_erased;
    // The changed pixels form one axis-aligned rectangle (rows × columns that changed).
    const int64_t rows = changed.any(1).sum().item<int64_t>(), cols = changed.any(0).sum().item<int64_t>();
    EXPECT_EQ(n, rows * cols) << "sample " << b;
    EXPECT_GE(n, 2);                      // ≥ 2 % of 144 pixels, rounded
    EXPECT_LE(n, 0.4 * 144 * 1.3);        // ≤ 40 %, with room for rounding h and w up
    const at::Tensor v = erased[b][0].masked_select(changed);
    EXPECT_GE(v.min().item<float>(), -1.f);
    EXPECT_LE(v.max().item<float>(), 2.f);
  }
  EXPECT_GT(n_erased, 56);
  // Deterministic: the same seed erases the same rectangles with the same noise.
  std::mt19937_64 r2(5);
  EXPECT_TRUE(augment_images(many, r2, a).equal(erased));
}

TEST(Training, DistillationLossMatchesHandValuesAndGradient) {
  // Student uniform over two classes, teacher (at T) at 3:1: KL = 0.75 ln 1.5 + 0.25 ln 0.5.
  const double kl = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);
  at::Tensor student = torch::zeros({1, 2}, torch::requires_grad());
  const at::Tensor hard = torch::full({}, 2.0);
  const at::Tensor teacher1 = torch::tensor({{std::log(3.0), 0.0}}).to(torch::kFloat);
  EXPECT_NEAR(distillation_loss(student, teacher1, hard, 0.5, 1.0).item<double>(), 0.5 * 2 + 0.5 * kl, 1e-6);
  // At T = 2 the same softened distributions, and the soft term scaled by T² = 4.
  const at::Tensor teacher2 = teacher1 * 2;
  at::Tensor loss = distillation_loss(student, teacher2, hard, 0.25, 2.0);
  EXPECT_NEAR(loss.item<double>(), 0.75 * 2 + 0.25 * 4 * kl, 1e-6);
  // d/ds = w · T · (p_student − p_teacher) = 0.25 · 2 · ([0.5, 0.5] − [0.75, 0.25]).
  loss.backward();
  EXPECT_NEAR(student.grad()[0][0].item<double>(), -0.125, 1e-6);
  EXPECT_NEAR(student.grad()[0][1].item<double>(), 0.125, 1e-6);
  // A student that already matches its teacher pays only the label loss.
  EXPECT_NEAR(distillation_loss(teacher2, teacher2, hard, 0.25, 2.0).item<double>(), 1.5, 1e-6);
}

TEST(Training, CnnTeacherMapsImagesToClassLogits) {
  torch::manual_seed(0);
  CnnTeacher t(1, 28, 10);
  t->eval();
  torch::NoGradGuard ng;
  EXPECT_EQ(t->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
}
