// Quantization core: quantizer math against hand-computed values, PTF, i-exp / LIS against
// float references, LSQ gradients, recipes, determinism and the artifact round trip.
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "data/datasets.h"
#include "formats/safetensors.h"
#include "quant/observer.h"
#include "quant/packing.h"
#include "quant/quant_model.h"
#include "runtime/int_kernels.h"
#include "tasks/labeled_data.h"
#include "test_util.h"
#include "tiny_vit_fixture.h"

using namespace qtx;

namespace {

QuantSpec spec(int bits, bool symmetric, Scheme scheme = Scheme::Uniform) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = symmetric;
  s.scheme = scheme;
  return s;
}

std::vector<float> vec(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

TEST(Quantizer, SymmetricRoundsHalfAwayAndClamps) {
  Quantizer q(spec(4, true));
  q.set_range(at::tensor({-1.0f}), at::tensor({1.875f}));  // scale = 1.875 / 7.5 = 0.25
  EXPECT_FLOAT_EQ(q.scale.item<float>(), 0.25f);
  at::Tensor x = at::tensor({0.125f, -0.125f, 0.375f, 0.3125f, 3.0f, -3.0f});
  EXPECT_EQ(vec(q.quantize(x)), (std::vector<float>{1, -1, 2, 1, 7, -8}));
  EXPECT_EQ(vec(q.fake_quant(x)), (std::vector<float>{0.25f, -0.25f, 0.5f, 0.25f, 1.75f, -2.0f}));
}

TEST(Quantizer, AsymmetricZeroPoint) {
  Quantizer q(spec(2, false));
  q.set_range(at::tensor({-0.5f}), at::tensor({1.0f}));  // scale 0.5, zero point 1
  EXPECT_FLOAT_EQ(q.scale.item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(q.zero_point.item<float>(), 1.0f);
  at::Tensor x = at::tensor({-1.0f, -0.5f, 0.25f, 0.75f, 2.0f});
  EXPECT_EQ(vec(q.quantize(x)), (std::vector<float>{0, 0, 2, 3, 3}));
  EXPECT_EQ(vec(q.fake_quant(x)), (std::vector<float>{-0.5f, -0.5f, 0.5f, 1.0f, 1.0f}));
  // A range that excludes 0 is widened to include it (zero stays exactly representable).
  q.set_range(at::tensor({0.5f}), at::tensor({1.5f}));
  EXPECT_FLOAT_EQ(q.zero_point.item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(q.fake_quant(at::zeros({1})).item<float>(), 0.0f);
}

TEST(Quantizer, PerChannelAndPerGroupWeights) {
  QuantSpec s = spec(4, true);
  s.granularity = Granularity::Channel;
  s.axis = 0;
  at::Tensor w = at::tensor({1.875f, -0.5f, 0.25f, 0.9375f, 0.0f, -0.3125f}).view({2, 3});
  Quantizer q(s);
  auto obs = make_observer(s);
  obs->observe(w);
  obs->calibrate(q);
  EXPECT_EQ(vec(q.scale), (std::vector<float>{0.25f, 0.125f}));
  EXPECT_EQ(vec(q.quantize(w)), (std::vector<float>{7, -2, 1, 7, 0, -3}));  // -0.3125/0.125 = -2.5 -> -3
  s.granularity = Granularity::Group;
  s.groups = 2;
  at::Tensor w4 = at::tensor({1.5f, 0.1f, -0.75f, 0.2f, 0.3f, 0.375f, -0.1f, 0.0f}).view({4, 2});
  Quantizer g(s);
  auto og = make_observer(s);
  og->observe(w4);
  og->calibrate(g);
  EXPECT_EQ(vec(g.scale), (std::vector<float>{0.2f, 0.05f}));  // rows 0-1 share max 1.5, rows 2-3 share 0.375
  EXPECT_EQ(g.full_scale(w4).sizes(), (std::vector<int64_t>{4, 1}));
  EXPECT_FLOAT_EQ(g.full_scale(w4)[1][0].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(g.full_scale(w4)[2][0].item<float>(), 0.05f);
}

// Calibrates an 8-bit asymmetric per-tensor quantizer with `observer` over batches, and one
// with the range (lo, hi) set directly.
std::pair<Quantizer, Quantizer> observed_and_expected(QuantSpec s, const std::vector<at::Tensor>& batches, double lo, double hi) {
  Quantizer q(s), want(s);
  auto obs = make_observer(s);
  for (const auto& b : batches) obs->observe(b);
  obs->calibrate(q);
  want.set_range(at::tensor({static_cast<float>(lo)}), at::tensor({static_cast<float>(hi)}));
  return {std::move(q), std::move(want)};
}

TEST(Observer, FqVitEmaAveragesEachBatchsRange) {
  QuantSpec s = spec(8, false);
  s.observer = "ema";
  EXPECT_DOUBLE_EQ(s.ema_momentum, 0.99);  // FQ-ViT's σ = 0.01
  at::Tensor a = at::tensor({-1.f, 0.f, 1.f}), b = at::tensor({-2.f, 0.5f, 3.f}), c = at::tensor({-4.f, 5.f});
  auto [q, want] = observed_and_expected(s, {a, b, c}, 0.99 * (0.99 * -1 + 0.01 * -2) + 0.01 * -4,
                                         0.99 * (0.99 * 1 + 0.01 * 3) + 0.01 * 5);
  EXPECT_TRUE(at::allclose(q.scale, want.scale, 1e-6, 0)) << q.scale << want.scale;
  EXPECT_TRUE(at::equal(q.zero_point, want.zero_point));
}

TEST(Observer, FqVitPercentileIsEachBatchsQuantileAveraged) {
  QuantSpec s = spec(8, false);
  s.observer = "percentile-ema";
  s.percentile = 99.9;
  torch::manual_seed(3);
  at::Tensor a = at::randn({4, 1000}), b = at::randn({2, 3000}) * 3;
  // torch.quantile's linear interpolation, per batch, then EMA with momentum 0.99.
  auto qa = [&](const at::Tensor& t, double p) { return at::quantile(t.flatten().to(at::kDouble), p).item<double>(); };
  const double lo = 0.99 * qa(a, 0.001) + 0.01 * qa(b, 0.001), hi = 0.99 * qa(a, 0.999) + 0.01 * qa(b, 0.999);
  auto [q, want] = observed_and_expected(s, {a, b}, lo, hi);
  EXPECT_TRUE(at::allclose(q.scale, want.scale, 1e-6, 0)) << q.scale << want.scale;
  EXPECT_TRUE(at::equal(q.zero_point, want.zero_point));
  // Hand value: 0..100 000, 99.999th quantile at position 99 999.0 (interpolation at .0).
  s.percentile = 99.999;
  at::Tensor ramp = at::arange(0, 100001, at::kFloat);
  auto [r, rwant] = observed_and_expected(s, {ramp}, 1.0, 99999.0);
  EXPECT_TRUE(at::allclose(r.scale, rwant.scale, 1e-6, 0)) << r.scale << rwant.scale;
  // The recipe that names it: FQ-ViT's 99.999th percentile and σ = 0.01.
  Recipe pe = Recipe::load("percentile-ema-w8a8");
  QuantSpec in;
  ASSERT_TRUE(pe.spec_for(Role::LinearInput, "x", &in));
  EXPECT_EQ(in.observer, "percentile-ema");
  EXPECT_DOUBLE_EQ(in.percentile, 99.999);
  EXPECT_DOUBLE_EQ(in.ema_momentum, 0.99);
}

TEST(Packing, FourBitPairsLowNibbleFirst) {
  std::vector<int32_t> codes = {-8, 7, -1, 0, 3};
  std::vector<uint8_t> b = pack_codes(codes, 4);
  EXPECT_EQ(b, (std::vector<uint8_t>{0x78, 0x0F, 0x03}));
  EXPECT_EQ(unpack_codes(b.data(), 5, 4, true), codes);
  EXPECT_EQ(unpack_codes(pack_codes({0, 15, 9}, 4).data(), 3, 4, false), (std::vector<int32_t>{0, 15, 9}));
  EXPECT_EQ(unpack_codes(pack_codes({-128, 127, -5}, 8).data(), 3, 8, true), (std::vector<int32_t>{-128, 127, -5}));
}

TEST(Ptf, WideChannelGetsTheLargestFactor) {
  // Channels 0-2 in ±0.1, channel 3 in ±10: one layer-wise range, per-channel power-of-two factor.
  torch::manual_seed(0);
  at::Tensor x = at::rand({512, 4}) * 0.2 - 0.1;
  x.select(1, 3).mul_(100);
  QuantSpec s = spec(8, false, Scheme::Ptf);
  Quantizer q(s);
  auto obs = make_observer(s);
  obs->observe(x.view({2, 256, 4}));
  obs->calibrate(q);
  EXPECT_EQ(vec(q.alpha), (std::vector<float>{0, 0, 0, 3}));
  // Narrow channels are far better off than with the plain layer-wise 8-bit scale.
  Quantizer plain(spec(8, false));
  plain.set_range(x.min().view({1}), x.max().view({1}));
  auto err = [&](const Quantizer& qq) { return (qq.fake_quant(x) - x).select(1, 0).pow(2).mean().item<double>(); };
  EXPECT_LT(err(q) * 20, err(plain));
}

TEST(IntExp, WithinPolynomialErrorOfExp) {
  // I-BERT's second-order polynomial is within 0.002 of exp(p) (absolute) on its range
  // p ∈ [−ln2, 0] — that is ≤ 0.33 % relative at p ≈ −0.55. Octaves are exact shifts, so the
  // relative error stays that small over the whole clamp range.
  for (double s : {0.002, 0.01, 0.05}) {
    double out_scale = 0;
    at::Tensor poly = at::arange(-static_cast<int64_t>(std::log(2.0) / s), 1, at::kDouble);
    at::Tensor ep = int_exp(poly, s, &out_scale);
    EXPECT_LT((ep * out_scale - at::exp(poly * s)).abs().max().item<double>(), 0.002) << "s = " << s;
    at::Tensor q = at::arange(-static_cast<int64_t>(15.0 / s), 1, at::kDouble);  // x in [-15, 0]
    at::Tensor e = int_exp(q, s, &out_scale);
    at::Tensor ref = at::exp(q * s);
    EXPECT_LT(((e * out_scale - ref).abs() / ref).max().item<double>(), 0.0035) << "s = " << s;
  }
}

TEST(LogIntSoftmax, MatchesLog2OfFloatSoftmax) {
  torch::manual_seed(3);
  const double s = 0.02;
  at::Tensor q = at::round(at::randn({64, 50}, at::kDouble) * 100);  // integer scores, ±6 in real units
  at::Tensor valid = at::ones_like(q, at::kBool);
  valid.narrow(1, 45, 5).fill_(false);  // masked tail
  at::Tensor mx = std::get<0>(at::where(valid, q, at::full_like(q, -1e300)).max(-1, true));
  at::Tensor k = log_int_softmax_codes(int_exp(at::where(valid, q - mx, at::zeros_like(q)), s), valid, 4);
  at::Tensor p = at::softmax(at::where(valid, q * s, at::full_like(q, -1e300)), -1);
  // Reference: FQ-ViT's rounding of 1/p (round, then log2 rounded at 1.5·2^k), 4 bits.
  at::Tensor r = at::floor(1.0 / p + 0.5);
  at::Tensor kr = at::floor(at::log2(r));
  kr = at::where(r - at::pow(2.0, kr) >= at::pow(2.0, kr - 1), kr + 1, kr);
  kr = at::where(valid & (kr < 16), kr, at::full_like(kr, -1));
  EXPECT_TRUE((k.narrow(1, 45, 5) == -1).all().item<bool>());  // masked entries are exactly 0
  double agree = (k == kr).to(at::kDouble).mean().item<double>();
  EXPECT_GT(agree, 0.99);  // i-exp rarely moves a rounding boundary
  auto level = [](const at::Tensor& t) { return at::where(t < 0, at::full_like(t, 16), t); };  // dropped = level 16
  EXPECT_LE((level(k) - level(kr)).abs().max().item<double>(), 1.0);  // and then by one level
}

TEST(Lsq, GradientMatchesFiniteDifferencesOfTheSteSurrogate) {
  torch::manual_seed(5);
  at::Tensor x = at::randn({40}, at::kDouble) * 2, wgt = at::randn({40}, at::kDouble);
  QuantSpec sp = spec(4, true);
  Quantizer q(sp);
  q.set_range(at::tensor({-2.0}), at::tensor({2.0}));
  q.scale = q.scale.to(at::kDouble);
  q.zero_point = q.zero_point.to(at::kDouble);
  q.set_learnable(true);
  (q.fake_quant(x) * wgt).sum().backward();
  const double got = q.scale.grad().item<double>();
  // Surrogate: rounding residual frozen at s0 (what straight-through rounding differentiates).
  const double s0 = q.scale.item<double>(), g = 1.0 / std::sqrt(40.0 * 7);
  at::Tensor v0 = at::clamp(x / s0, -8, 7);
  at::Tensor resid = round_half_away(v0) - v0;
  auto f = [&](double s) { return ((at::clamp(x / s, -8, 7) + resid) * s * wgt).sum().item<double>(); };
  const double h = 1e-6, fd = (f(s0 + h) - f(s0 - h)) / (2 * h);
  EXPECT_NEAR(got, g * fd, 1e-6 * std::max(1.0, std::fabs(got)));
}

TEST(Recipe, BuiltinsRoundTripAndBadRecipesAreRejected) {
  for (const auto& [name, text] : builtin_recipes()) {
    Recipe r = Recipe::load(name);
    EXPECT_EQ(Recipe::from_json(r.to_json(), name).to_json(), r.to_json()) << name;
  }
  auto bad = [](const std::string& text, const std::string& needle) {
    EXPECT_QTX_ERROR(Recipe::from_json(nlohmann::json::parse(text), "r.json"), needle);
  };
  bad(R"({"roles":{"linear_wieght":{"bits":8}}})", "unknown role 'linear_wieght'");
  bad(R"({"roles":{"linear_weight":{"bits":0}}})", "bits 0 is out of range");
  bad(R"({"roles":{"linear_weight":{"bits":33}}})", "bits 33 is out of range");
  bad(R"({"roles":{"linear_weight":{"bitz":8}}})", "unknown field 'bitz'");
  bad(R"({"roles":{"linear_input":{"observer":"magic"}}})", "unknown observer 'magic'");
  bad(R"({"roles":{"softmax_output":{"scheme":"log2","symmetric":true}}})", "symmetric must be false");
  bad(R"({"roles":{}, "overrides":[{"pattern":"x","role":"nope"}]})", "unknown role 'nope'");
  bad(R"({"rolez":{}})", "unknown recipe field 'rolez'");
  EXPECT_QTX_ERROR(Recipe::load("no-such-recipe"), "neither a built-in recipe");
}


TEST(QuantizedModel, DeterministicScalesAndBitIdenticalReload) {
  qtx_test::TinyVitFixture fx("qm_reload");
  for (const char* recipe : {"fqvit-8-8-4", "w4a8", "percentile-w8a8", "omse-w8a8", "minmax-8-8-8"}) {
    SCOPED_TRACE(recipe);
    auto m1 = load_model(fx.dir), m2 = load_model(fx.dir);
    QuantizedModel a(m1, Recipe::load(recipe)), b(m2, Recipe::load(recipe));
    a.calibrate(fx.batches(16));
    b.calibrate(fx.batches(16));
    ASSERT_EQ(a.points().size(), b.points().size());
    for (size_t i = 0; i < a.points().size(); ++i) {
      EXPECT_TRUE(at::equal(a.points()[i].quantizer->scale, b.points()[i].quantizer->scale)) << a.points()[i].key();
      EXPECT_TRUE(at::equal(a.points()[i].quantizer->zero_point, b.points()[i].quantizer->zero_point));
    }
    torch::NoGradGuard ng;
    ModelInput in = fx.data->batch({0, 1, 2, 3, 4});
    at::Tensor y = a.model().logits(in);
    std::string qdir = fx.dir + "/../q-" + recipe;
    a.save(qdir, fx.dir);
    auto r = QuantizedModel::load(qdir);
    EXPECT_TRUE(at::equal(r->model().logits(in), y));
    // Quantization changed something, and float mode restores the FP model exactly.
    a.set_mode(QuantMode::Float);
    EXPECT_FALSE(at::equal(a.model().logits(in), y));
    EXPECT_TRUE(at::equal(a.model().logits(in), fx.model->logits(in)));
  }
  // 4-bit weights are stored packed: the artifact is smaller than an int8 one.
  EXPECT_LT(std::filesystem::file_size(fx.dir + "/../q-w4a8/model.safetensors"),
            std::filesystem::file_size(fx.dir + "/../q-minmax-8-8-8/model.safetensors"));
}

TEST(QuantizedModel, PatternsMustMatchAndBrokenArtifactsFailClearly) {
  qtx_test::TinyVitFixture fx("qm_bad");
  auto j = Recipe::load("minmax-w8a8").to_json();
  j["overrides"] = {{{"pattern", "encoder.layer.7.*"}, {"role", "linear_weight"}, {"bits", 4}}};
  EXPECT_QTX_ERROR(QuantizedModel(load_model(fx.dir), Recipe::from_json(j, "r")), "matches no op site");
  j["overrides"] = {{{"pattern", "encoder.layer.1.*"}, {"role", "linear_weight"}, {"bits", 4}}};
  QuantizedModel qm(load_model(fx.dir), Recipe::from_json(j, "r"));
  EXPECT_EQ(qm.find("vit.encoder.layer.1.output.dense", Slot::Weight)->quantizer->spec().bits, 4);
  EXPECT_EQ(qm.find("vit.encoder.layer.0.output.dense", Slot::Weight)->quantizer->spec().bits, 8);
  EXPECT_QTX_ERROR(qm.set_mode(QuantMode::FakeQuant), "before calibration");
  qm.calibrate(fx.batches(20));
  const std::string q = fx.dir + "/../q";
  qm.save(q, fx.dir);
  // Drop one quantizer parameter / damage a packed weight: clear errors, no crash.
  auto rewrite = [&](const std::function<bool(const TensorView&)>& keep, const std::string& out) {
    std::filesystem::create_directories(out);
    for (const char* f : {"config.json", "recipe.json", "preprocessor_config.json"})
      std::filesystem::copy_file(q + "/" + f, out + "/" + f, std::filesystem::copy_options::overwrite_existing);
    auto st = SafetensorsFile::open(q + "/model.safetensors");
    SafetensorsWriter w;
    for (const auto& [k, v] : st->metadata()) w.set_metadata(k, v);  // the format tag stays: only the tensor is missing
    for (const auto& t : st->tensors())
      if (keep(t)) w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
    w.write(out + "/model.safetensors");
  };
  rewrite([](const TensorView& t) { return t.name != "qtx.vit.encoder.layer.0.attention.attention.query.input0.scale"; },
          q + "-noscale");
  EXPECT_QTX_ERROR(QuantizedModel::load(q + "-noscale"), "missing quantizer parameter 'qtx.vit.encoder.layer.0.attention.attention.query.input0.scale'");
  rewrite([](const TensorView& t) { return t.name != "vit.encoder.layer.1.output.dense.weight.qweight"; }, q + "-noweight");
  EXPECT_QTX_ERROR(QuantizedModel::load(q + "-noweight"), "vit.encoder.layer.1.output.dense.weight.qweight");
}

// The integer runtime's kernels (plain C++ int64) and the fake-quant simulation (libtorch,
// double) must agree exactly, so runtime and simulation differ only where documented.
TEST(RuntimeParity, IntExpAndLogIntSoftmaxAreBitExact) {
  torch::manual_seed(11);
  for (double s : {0.004, 0.03, 0.11}) {
    at::Tensor q = at::arange(-3000, 1, at::kDouble);
    at::Tensor sim = int_exp(q, s);
    rt::IntExp ie = rt::IntExp::for_scale(s);
    for (int64_t i = 0; i < q.numel(); i += 7)
      ASSERT_EQ(static_cast<int64_t>(sim[i].item<double>()), ie(static_cast<int64_t>(q[i].item<double>()))) << s;
    at::Tensor scores = at::round(at::randn({32, 40}, at::kDouble) * (3.0 / s));
    at::Tensor valid = at::rand({32, 40}) > 0.1;
    valid.select(1, 0).fill_(true);
    at::Tensor mx = std::get<0>(at::where(valid, scores, at::full_like(scores, -1e300)).max(-1, true));
    at::Tensor codes = log_int_softmax_codes(int_exp(at::where(valid, scores - mx, at::zeros_like(scores)), s), valid, 4);
    for (int64_t r = 0; r < 32; ++r) {
      std::vector<int32_t> qi(40);
      std::vector<uint8_t> vi(40);
      std::vector<int8_t> out(40);
      for (int64_t c = 0; c < 40; ++c) {
        qi[static_cast<size_t>(c)] = static_cast<int32_t>(scores[r][c].item<double>());
        vi[static_cast<size_t>(c)] = valid[r][c].item<bool>();
      }
      rt::log_int_softmax_row(qi.data(), vi.data(), 40, ie, 4, out.data());
      for (int64_t c = 0; c < 40; ++c) ASSERT_EQ(out[static_cast<size_t>(c)], static_cast<int>(codes[r][c].item<double>())) << r << "," << c;
    }
  }
}

TEST(FakeQuant, FusedCpuPassMatchesTensorOpsBitForBit) {
  // Every layout the fused pass handles: per tensor, channels along a leading axis (weights),
  // channels last (activations), row groups, PTF; signed and unsigned; values on exact rounding
  // halves, beyond the clamp range, zeros, and a NaN (propagated by both forms).
  torch::manual_seed(21);
  auto check = [](const Quantizer& q, const at::Tensor& x, const char* what) {
    ASSERT_TRUE(q.fused_applies(x)) << what;
    at::Tensor f = q.fake_quant_fused(x), t = q.fake_quant_tensor_ops(x);
    ASSERT_EQ(f.sizes(), t.sizes()) << what;
    EXPECT_TRUE(at::equal(at::nan_to_num(f, 12345.0), at::nan_to_num(t, 12345.0))) << what;
    EXPECT_EQ(at::isnan(f).sum().item<int64_t>(), at::isnan(t).sum().item<int64_t>()) << what;
  };
  auto with_edges = [](at::Tensor x, const at::Tensor& scale) {
    x = x.clone();
    // Exact halves of the scale, zeros, huge values and a NaN at fixed places.
    x.view(-1).narrow(0, 0, 8).copy_(at::tensor({0.5f, -0.5f, 1.5f, -2.5f, 0.0f, -0.0f, 1e30f, -1e30f}) *
                                      scale.view(-1)[0].item<float>());
    x.view(-1)[9] = std::nanf("");
    return x;
  };
  for (bool symmetric : {true, false})
    for (int bits : {2, 4, 8}) {
      QuantSpec s = spec(bits, symmetric);
      Quantizer pt(s);
      pt.set_range(at::tensor({-1.3f}), at::tensor({0.9f}));
      check(pt, with_edges(at::randn({5, 7, 33}), pt.scale), "per tensor");
      s.granularity = Granularity::Channel;
      s.axis = 0;
      Quantizer pc(s);
      pc.set_range(-at::rand({6}) - 0.1, at::rand({6}) + 0.1);
      check(pc, with_edges(at::randn({6, 37}), pc.scale), "channels on axis 0");
      s.axis = 1;
      Quantizer mid(s);
      mid.set_range(-at::rand({6}) - 0.1, at::rand({6}) + 0.1);
      check(mid, with_edges(at::randn({3, 6, 11}), mid.scale), "channels on a middle axis");
      s.axis = -1;
      Quantizer last(s);
      last.set_range(-at::rand({40}) - 0.1, at::rand({40}) + 0.1);
      check(last, with_edges(at::randn({2, 9, 40}), last.scale), "channels last");
      s.granularity = Granularity::Group;
      s.axis = 0;
      s.groups = 4;
      Quantizer g(s);
      g.set_range(-at::rand({4}) - 0.1, at::rand({4}) + 0.1);
      check(g, with_edges(at::randn({12, 5}), g.scale), "row groups");
    }
  QuantSpec ps = spec(8, false, Scheme::Ptf);
  Quantizer ptf(ps);
  at::Tensor rows = at::randn({256, 24}) * at::linspace(0.1, 8.0, 24);
  ptf.set_ptf(std::get<0>(rows.min(0)), std::get<0>(rows.max(0)), rows);
  ASSERT_GT(ptf.alpha.max().item<float>(), 0.0f);
  check(ptf, with_edges(at::randn({4, 10, 24}) * at::linspace(0.1, 8.0, 24), ptf.scale), "PTF");
  // Gradients and learnable scales keep the tensor form.
  EXPECT_FALSE(ptf.fused_applies(torch::randn({3}, torch::requires_grad())));
  ptf.set_learnable(true);
  EXPECT_FALSE(ptf.fused_applies(at::randn({3})));
}

TEST(LogIntSoftmax, FusedCpuPassMatchesTensorOpsBitForBit) {
  // Scores on the Q·Kᵀ output grid (integers × s), random masks, a fully masked row, rows of one.
  torch::manual_seed(22);
  for (double s : {0.004, 0.03, 0.11})
    for (int bits : {4, 8})
      for (int64_t L : {1, 17, 128}) {
        at::Tensor scores = (at::round(at::randn({3, 5, L}, at::kDouble) * (3.0 / s)) * s).to(at::kFloat);
        at::Tensor valid = at::rand({3, 5, L}) > 0.2;
        valid[1][2].fill_(false);
        at::Tensor f = log_int_softmax_probs(scores, valid, s, bits);
        at::Tensor r = log_int_softmax_probs_reference(scores, valid, s, bits);
        ASSERT_TRUE(at::equal(f, r)) << "s " << s << " bits " << bits << " L " << L;
        EXPECT_EQ(f[1][2].abs().sum().item<float>(), 0.0f);
      }
}
