// Calibration methods: Liu et al.'s objectives against hand-computed values, the interval
// search on constructed layers with a known optimum, bias correction, the knapsack against
// brute force, the nuclear norm against an SVD, and determinism of the whole method.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "calib/interval_search.h"
#include "calib/knapsack.h"
#include "calib/method.h"
#include "calib/mixed_precision.h"
#include "calib/similarity.h"
#include "formats/site_pattern.h"
#include "quant/quant_model.h"
#include "test_util.h"
#include "tiny_vit_fixture.h"

using namespace qtx;

namespace {

at::Tensor row(std::vector<float> v) { return at::tensor(v, at::kFloat).unsqueeze(0); }

QuantPoint sym_point(int bits, const at::Tensor& x) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = true;
  QuantPoint p;
  p.quantizer = std::make_unique<Quantizer>(s);
  p.quantizer->set_range(x.min().reshape({1}), x.max().reshape({1}));
  return p;
}

// Signed symmetric fake quantization at step s (the search's reference arithmetic).
at::Tensor fq_sym(const at::Tensor& t, double s, int bits) {
  const double hi = std::pow(2.0, bits - 1) - 1, lo = -std::pow(2.0, bits - 1);
  return at::clamp(round_half_away(t / s), lo, hi) * s;
}

// Mean over samples of the Pearson correlation of ref[n] and y[n], each flattened.
double mean_pearson(const at::Tensor& ref, const at::Tensor& y) {
  double sum = 0;
  for (int64_t n = 0; n < y.size(0); ++n) {
    at::Tensor a = ref[n].flatten().to(at::kDouble), c = y[n].flatten().to(at::kDouble);
    a = a - a.mean();
    c = c - c.mean();
    sum += ((a * c).sum() / (a.norm() * c.norm())).item<double>();
  }
  return sum / static_cast<double>(y.size(0));
}

// A random linear layer (inputs exp(N(0,1)) when skewed, as after GELU) with its target output
// and MinMax-calibrated quantizers: weights at 3 bits, inputs at xbits.
struct RandomLayer {
  at::Tensor w, x, b, ref;
  QuantPoint wq, xq;
  double w0 = 0, x0 = 0;  // Δ_init of each side
};
RandomLayer random_layer(uint64_t seed, bool skewed, int xbits) {
  torch::manual_seed(seed);
  RandomLayer l;
  l.w = at::randn({12, 20});
  l.x = skewed ? at::randn({8, 3, 20}).exp() : at::randn({8, 3, 20});
  l.b = at::randn({12});
  l.ref = at::matmul(l.x, l.w.t()) + l.b;
  l.wq = sym_point(3, l.w);
  l.xq = sym_point(xbits, l.x);
  l.w0 = l.wq.quantizer->scale.item<double>();
  l.x0 = l.xq.quantizer->scale.item<double>();
  return l;
}

// Candidate k of the search's grid [α, β]·d0, as the search rounds it (float).
double candidate(const IntervalSearchOptions& o, double d0, int k) {
  return static_cast<float>(o.alpha * d0 + k * (o.beta - o.alpha) * d0 / (o.candidates - 1));
}

IntervalSearchOptions quiet_grid(int candidates) {
  IntervalSearchOptions o;
  o.candidates = candidates;
  o.verbose = false;
  return o;
}

// The best score(s) over the grid and its ratio s / d0 (first of equal maxima, as the search).
template <typename Score>
std::pair<double, double> best_candidate(const IntervalSearchOptions& o, double d0, Score score) {
  double best = -2, ratio = 0;
  for (int k = 0; k < o.candidates; ++k) {
    const double s = candidate(o, d0, k), g = score(s);
    if (g > best + 1e-12) {
      best = g;
      ratio = s / d0;
    }
  }
  return {best, ratio};
}

}  // namespace

TEST(Similarity, PearsonAndCosineHandValues) {
  at::Tensor ref = row({1, 2, 3, 4});
  at::Tensor cand = at::stack({row({2, 4, 6, 8}), row({4, 3, 2, 1}), row({1, 3, 2, 4})});  // [3, 1, 4]
  at::Tensor g = pearson_per_sample(ref, cand, {});
  EXPECT_NEAR(g[0][0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(g[1][0].item<double>(), -1.0, 1e-12);
  EXPECT_NEAR(g[2][0].item<double>(), 0.8, 1e-12);  // cov 4 / var 5
  // Cosine of (1,2,3,4) and (4,3,2,1): 20 / 30.
  EXPECT_NEAR(cosine_per_sample(ref, cand, {})[1][0].item<double>(), 20.0 / 30.0, 1e-12);
  // Masked entries do not count: the outlier at position 3 is padding.
  at::Tensor m = row({1, 1, 1, 0});
  EXPECT_NEAR(pearson_per_sample(row({1, 2, 3, 100}), row({1, 2, 3, -5}).unsqueeze(0), m)[0][0].item<double>(), 1.0, 1e-12);
  // All-equal rows: both constant -> 1, one constant -> 0.
  EXPECT_EQ(pearson_per_sample(row({2, 2, 2}), row({5, 5, 5}).unsqueeze(0), {})[0][0].item<double>(), 1.0);
  EXPECT_EQ(pearson_per_sample(row({2, 2, 2}), row({1, 2, 3}).unsqueeze(0), {})[0][0].item<double>(), 0.0);
  EXPECT_EQ(cosine_per_sample(row({0, 0}), row({0, 0}).unsqueeze(0), {})[0][0].item<double>(), 1.0);
}

TEST(Similarity, RankingHingeHandValues) {
  // One row of scores A = (3, 1, 2); candidate Â = (1, 2, 3). Pairs (0,1): A says 0 > 1, Â has
  // them 1 apart the wrong way -> 1; (0,2): wrong by 2 -> 2; (1,2): right way -> 0.
  at::Tensor ref = at::tensor({3.f, 1.f, 2.f}).view({1, 1, 1, 3});
  at::Tensor cand = at::tensor({1.f, 2.f, 3.f}).view({1, 1, 1, 1, 3});
  at::Tensor pairs = key_pairs(1, 3, 100, 0);
  ASSERT_EQ(pairs.size(0), 3);
  auto [sum, n] = ranking_hinge(ref, cand, pairs, {}, 0.0);
  EXPECT_DOUBLE_EQ(sum[0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(n, 3.0);
  // Margin θ = 0.5: the right-way pair (1,2) has p = 1 ≥ θ -> 0; the others get +0.5 each.
  EXPECT_DOUBLE_EQ(ranking_hinge(ref, cand, pairs, {}, 0.5).first[0].item<double>(), 4.0);
  // Ties in A (sign 0) cost max(θ, 0): with A = (1, 1, 1) and θ = 0.25 every pair costs 0.25.
  at::Tensor flat = at::ones({1, 1, 1, 3});
  EXPECT_DOUBLE_EQ(ranking_hinge(flat, cand, pairs, {}, 0.25).first[0].item<double>(), 0.75);
  EXPECT_DOUBLE_EQ(ranking_hinge(flat, cand, pairs, {}, 0.0).first[0].item<double>(), 0.0);
  // A padded key drops its pairs; a padded query drops its row.
  at::Tensor ref2 = at::tensor({3.f, 1.f, 2.f, 3.f, 1.f, 2.f, 0.f, 0.f, 0.f}).view({1, 1, 3, 3});
  at::Tensor cand2 = at::tensor({1.f, 2.f, 3.f, 1.f, 2.f, 3.f, 9.f, 9.f, 9.f}).view({1, 1, 1, 3, 3});
  auto [s2, n2] = ranking_hinge(ref2, cand2, pairs, at::tensor({1.f, 1.f, 0.f}).view({1, 3}), 0.0);
  EXPECT_DOUBLE_EQ(s2[0].item<double>(), 2.0);  // rows 0 and 1, pair (0,1) only: 1 each
  EXPECT_DOUBLE_EQ(n2, 2.0);
}

TEST(Similarity, RankingHingeWithPairsOfEachRow) {
  // Two rows of A = (3, 1, 2), Â = (1, 2, 3): row 0 scores pair (0,2) (wrong by 2), row 1 pair
  // (1,2) (right way, 0). Shared pairs (0,2) would give 4.
  at::Tensor ref = at::tensor({3.f, 1.f, 2.f, 3.f, 1.f, 2.f}).view({1, 1, 2, 3});
  at::Tensor cand = at::tensor({1.f, 2.f, 3.f, 1.f, 2.f, 3.f}).view({1, 1, 1, 2, 3});
  at::Tensor per_row = at::tensor({0, 2, 1, 2}, at::kInt).view({2, 1, 2});
  auto [sum, n] = ranking_hinge(ref, cand, per_row, {}, 0.0);
  EXPECT_DOUBLE_EQ(sum[0].item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(n, 2.0);
  EXPECT_DOUBLE_EQ(ranking_hinge(ref, cand, at::tensor({0, 2}, at::kInt).view({1, 2}), {}, 0.0).first[0].item<double>(), 4.0);
}

TEST(Similarity, KeyPairsAllOrSampledPerRowDeterministically) {
  at::Tensor all = key_pairs(5, 17, 256, 0);  // 136 pairs: all of them, shared by every row
  ASSERT_EQ(all.dim(), 2);
  EXPECT_EQ(all.size(0), 136);
  at::Tensor a = key_pairs(40, 128, 256, 7), b = key_pairs(40, 128, 256, 7);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{40, 256, 2}));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, key_pairs(40, 128, 256, 8)));
  EXPECT_TRUE((a.select(2, 0) < a.select(2, 1)).all().item<bool>());
  EXPECT_TRUE((a.select(2, 0) >= 0).all().item<bool>());
  EXPECT_TRUE((a.select(2, 1) < 128).all().item<bool>());
  std::set<std::vector<int32_t>> rows_seen;
  for (int64_t row = 0; row < 40; ++row) {
    std::set<std::pair<int32_t, int32_t>> distinct;
    std::vector<int32_t> flat;
    for (int64_t q = 0; q < 256; ++q) {
      const int32_t i = a[row][q][0].item<int32_t>(), j = a[row][q][1].item<int32_t>();
      distinct.insert({i, j});
      flat.insert(flat.end(), {i, j});
    }
    EXPECT_EQ(distinct.size(), 256u) << "row " << row << " draws a pair twice";
    std::sort(flat.begin(), flat.end());
    rows_seen.insert(flat);
  }
  EXPECT_EQ(rows_seen.size(), 40u) << "rows share their pairs";
  // Every pair is drawn about equally often: 2000 rows × 256 of 8128 pairs ≈ 63 per pair.
  at::Tensor many = key_pairs(2000, 128, 256, 1);
  at::Tensor idx = (many.select(2, 0).to(at::kLong) * 128 + many.select(2, 1)).flatten();
  at::Tensor hist = at::bincount(idx, {}, 128 * 128).to(at::kDouble);
  at::Tensor upper = hist.view({128, 128}).triu(1);
  EXPECT_EQ((upper > 0).sum().item<int64_t>(), 8128);
  EXPECT_NEAR(upper.sum().item<double>() / 8128, 2000.0 * 256 / 8128, 1e-9);
  EXPECT_LT(upper.max().item<double>(), 2 * 2000.0 * 256 / 8128);
}

TEST(IntervalSearch, FindsTheKnownOptimumOfAConstructedLayer) {
  // Weights on a grid of step d and inputs on a grid of step e, both spanning the 4-bit range:
  // quantizing with exactly Δ_W = d and Δ_X = e is lossless, every other candidate is not.
  torch::manual_seed(0);
  const double d = 0.05, e = 0.2;
  at::Tensor w = (at::randint(-8, 8, {16, 24}) * d).to(at::kFloat);
  at::Tensor x = (at::randint(-8, 8, {6, 5, 24}) * e).to(at::kFloat);
  at::Tensor ref = at::matmul(x, w.t());
  QuantPoint wq = sym_point(4, w), xq = sym_point(4, x);
  // Δ_init = d and e exactly, so the grid [0.5, 1.5]·Δ_init in steps of 0.1 contains the optimum.
  wq.quantizer->scale = at::full({1}, d, at::kFloat);
  xq.quantizer->scale = at::full({1}, e, at::kFloat);
  IntervalSearchOptions o;
  o.alpha = 0.5;
  o.beta = 1.5;
  o.candidates = 11;
  o.bias_correction = false;
  o.verbose = false;
  // From a perturbed input interval: ratio 1 is on both grids, so the search never ends worse
  // than where it started.
  xq.quantizer->scale = at::full({1}, e * 1.3, at::kFloat);
  SearchedLayer r = search_linear(x, ref, w, {}, &wq, &xq, o);
  EXPECT_GE(r.objective_best, r.objective_init - 1e-12);
  EXPECT_LT(r.objective_init, 1.0 - 1e-6);
  // Second pass from the exact intervals: both sides must pick ratio 1 and reach Γ = 1.
  wq.quantizer->scale = at::full({1}, d, at::kFloat);
  xq.quantizer->scale = at::full({1}, e, at::kFloat);
  r = search_linear(x, ref, w, {}, &wq, &xq, o);
  EXPECT_NEAR(r.w_ratio, 1.0, 1e-6);
  EXPECT_NEAR(r.x_ratio, 1.0, 1e-6);
  EXPECT_NEAR(r.objective_best, 1.0, 1e-9);
  EXPECT_NEAR(wq.quantizer->scale.item<double>(), d, 1e-7);
  EXPECT_NEAR(xq.quantizer->scale.item<double>(), e, 1e-7);
}

TEST(IntervalSearch, PicksTheBestCandidateAsAnExhaustiveLoopDoes) {
  RandomLayer l = random_layer(1, false, 4);
  IntervalSearchOptions o = quiet_grid(15);
  o.bias_correction = false;
  SearchedLayer r = search_linear(l.x, l.ref, l.w, l.b, &l.wq, &l.xq, o);
  // Exhaustive over the weight grid with the input at Δ_init, one forward per candidate.
  auto [best, best_ratio] = best_candidate(o, l.w0, [&](double s) {
    return mean_pearson(l.ref, at::matmul(fq_sym(l.x, l.x0, 4), fq_sym(l.w, s, 3).t()) + l.b);
  });
  EXPECT_NEAR(r.w_ratio, best_ratio, 1e-5);
}

TEST(IntervalSearch, CorrectedScoringMatchesAnExhaustiveLoopWithPerCandidateCorrection) {
  // Skewed inputs (as after GELU) give every candidate its own per-channel mean error; with
  // correct_in_search each candidate is scored after subtracting its own error.
  RandomLayer l = random_layer(3, true, 3);
  IntervalSearchOptions o = quiet_grid(15);
  o.correct_in_search = true;
  at::Tensor bias = l.b.clone();
  SearchedLayer r = search_linear(l.x, l.ref, l.w, bias, &l.wq, &l.xq, o);
  // The layer's output with the mean error per output channel (against the float layer) removed.
  auto corrected = [&](const at::Tensor& y) { return y - (y - l.ref).reshape({-1, 12}).mean(0); };
  // Weight side, the input at Δ_init: one forward and one correction per candidate.
  auto weight_out = [&](double s) { return at::matmul(fq_sym(l.x, l.x0, 3), fq_sym(l.w, s, 3).t()) + l.b; };
  auto [best, best_ratio] = best_candidate(o, l.w0, [&](double s) { return mean_pearson(l.ref, corrected(weight_out(s))); });
  const double best_plain = best_candidate(o, l.w0, [&](double s) { return mean_pearson(l.ref, weight_out(s)); }).first;
  EXPECT_NEAR(r.w_ratio, best_ratio, 1e-5);
  // Then the input side with the chosen weight interval; the search's final objective is the
  // corrected score of the chosen pair.
  const double ws = l.wq.quantizer->scale.item<double>();
  const double best_x = best_candidate(o, l.x0, [&](double s) {
    return mean_pearson(l.ref, corrected(at::matmul(fq_sym(l.x, s, 3), fq_sym(l.w, ws, 3).t()) + l.b));
  }).first;
  EXPECT_NEAR(r.objective_best, best_x, 1e-6);
  // The correction changes the scores here (else this test could not tell the two apart).
  EXPECT_GT(best - best_plain, 1e-4);
  EXPECT_TRUE(r.bias_corrected);
}

TEST(IntervalSearch, CorrectedScoringLeavesPaddingOut) {
  // Padding tokens (mask 0) carry large garbage inputs and targets; with correct_in_search they
  // must count neither in the scores nor in each candidate's error, so the padded layer chooses
  // as the same layer without them and ends with the same bias. The padded run also scores its
  // candidates in chunks of one or two, which must not change anything either.
  RandomLayer plain = random_layer(3, true, 3), padded = random_layer(3, true, 3);
  const int64_t B = plain.x.size(0), T = plain.x.size(1);
  torch::manual_seed(9);
  at::Tensor x = at::cat({plain.x, 40 * at::randn({B, 2, 20}).abs()}, 1);
  at::Tensor ref = at::cat({plain.ref, 40 * at::randn({B, 2, 12})}, 1);
  at::Tensor mask = at::cat({at::ones({B, T, 1}), at::zeros({B, 2, 1})}, 1);
  IntervalSearchOptions o = quiet_grid(15);
  o.correct_in_search = true;
  at::Tensor b_plain = plain.b.clone(), b_padded = padded.b.clone();
  SearchedLayer r0 = search_linear(plain.x, plain.ref, plain.w, b_plain, &plain.wq, &plain.xq, o);
  o.chunk_elements = 500;  // the weight has 240 entries, a candidate output 480
  SearchedLayer r1 = search_linear(x, ref, padded.w, b_padded, &padded.wq, &padded.xq, o, mask);
  EXPECT_NEAR(r1.w_ratio, r0.w_ratio, 1e-6);
  EXPECT_NEAR(r1.x_ratio, r0.x_ratio, 1e-6);
  EXPECT_NEAR(r1.objective_best, r0.objective_best, 1e-6);
  EXPECT_TRUE(at::allclose(b_padded, b_plain, 1e-5, 1e-5)) << b_padded - b_plain;
}

TEST(IntervalSearch, LaterRoundsScoreWithTheEarlierRoundsCorrection) {
  // The paper corrects the bias after each search iteration: with 2 rounds, round 2 scores its
  // candidates with round 1's correction in the bias, and the final bias is the original one
  // minus the error at the final intervals (the corrections do not pile up).
  RandomLayer l = random_layer(3, true, 3);
  IntervalSearchOptions o = quiet_grid(15);
  o.rounds = 2;
  at::Tensor bias = l.b.clone();
  SearchedLayer r = search_linear(l.x, l.ref, l.w, bias, &l.wq, &l.xq, o);
  auto out = [&](double ws, double xs, const at::Tensor& b) { return at::matmul(fq_sym(l.x, xs, 3), fq_sym(l.w, ws, 3).t()) + b; };
  auto error = [&](double ws, double xs) { return (out(ws, xs, l.b) - l.ref).reshape({-1, 12}).mean(0); };
  // The grid's best scale (first of equal maxima) for one side.
  auto best_scale = [&](double d0, auto score) {
    double best = -2, scale = 0;
    for (int k = 0; k < o.candidates; ++k) {
      const double s = candidate(o, d0, k), g = score(s);
      if (g > best + 1e-12) best = g, scale = s;
    }
    return std::make_pair(best, scale);
  };
  // Round 1 with the original bias, then the correction, then round 2 with the corrected bias.
  const double w1 = best_scale(l.w0, [&](double s) { return mean_pearson(l.ref, out(s, l.x0, l.b)); }).second;
  const double x1 = best_scale(l.x0, [&](double s) { return mean_pearson(l.ref, out(w1, s, l.b)); }).second;
  const at::Tensor b1 = l.b - error(w1, x1);
  const double w2 = best_scale(l.w0, [&](double s) { return mean_pearson(l.ref, out(s, x1, b1)); }).second;
  auto [best2, x2] = best_scale(l.x0, [&](double s) { return mean_pearson(l.ref, out(w2, s, b1)); });
  EXPECT_NEAR(r.w_ratio, w2 / l.w0, 1e-6);
  EXPECT_NEAR(r.x_ratio, x2 / l.x0, 1e-6);
  EXPECT_NEAR(r.objective_best, best2, 1e-6);
  EXPECT_TRUE(at::allclose(bias, l.b - error(w2, x2), 1e-5, 1e-5)) << bias - (l.b - error(w2, x2));
  // Round 2 without the correction would score differently (else this test could not tell).
  const double plain2 = best_scale(l.x0, [&](double s) { return mean_pearson(l.ref, out(w2, s, l.b)); }).first;
  EXPECT_GT(std::fabs(best2 - plain2), 1e-5);
}

TEST(IntervalSearch, BiasCorrectionRemovesAPlantedConstantError) {
  // Inputs all 0.3 with Δ_X = 1 round to 0: the quantized layer loses 0.3·Σ_k W[o,k] on every
  // output channel, the same on every sample. Correction must put exactly that into the bias.
  torch::manual_seed(2);
  at::Tensor w = (at::randint(-7, 8, {6, 10}) * 0.125).to(at::kFloat);
  at::Tensor x = at::full({4, 5, 10}, 0.3f);
  at::Tensor bias = at::randn({6});
  const at::Tensor bias0 = bias.clone();
  at::Tensor ref = at::matmul(x, w.t()) + bias;
  QuantPoint wq = sym_point(8, w), xq = sym_point(8, x);
  wq.quantizer->scale = at::full({1}, 0.125, at::kFloat);  // weights exact
  xq.quantizer->scale = at::full({1}, 1.0, at::kFloat);
  IntervalSearchOptions o;
  o.alpha = o.beta = 1.0;
  o.candidates = 1;
  o.verbose = false;
  SearchedLayer r = search_linear(x, ref, w, bias, &wq, &xq, o);
  EXPECT_TRUE(r.bias_corrected);
  EXPECT_TRUE(at::allclose(bias - bias0, 0.3 * w.sum(1), 1e-5, 1e-5)) << bias - bias0;
  at::Tensor yq = at::matmul(xq.quantizer->fake_quant(x), wq.quantizer->fake_quant(w).t()) + bias;
  EXPECT_LT((yq - ref).abs().max().item<double>(), 1e-5);
}

TEST(IntervalSearch, ScoresEveryLayerAgainstTheFpNetwork) {
  // Bias correction overwrites each searched layer's bias in place; the layers after it must
  // still be scored against the FP network's outputs, so their references may not depend on
  // whether earlier layers were corrected.
  qtx_test::TinyVitFixture fx("liu_fp_target");
  std::vector<ModelInput> batches = {fx.data->batch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})};
  auto references = [&](bool bias_correction, std::vector<at::Tensor>* biases) {
    std::map<std::string, std::vector<at::Tensor>> refs;
    CalibrationOptions co;
    co.search.candidates = 10;
    co.search.verbose = false;
    co.search.bias_correction = bias_correction;
    co.search.on_references = [&](const std::string& site, const std::vector<at::Tensor>& r) { refs[site] = r; };
    auto m = load_model(fx.dir);
    calibration_method("liu").run(m, Recipe::load("sym-w3a4"), batches, co);
    for (const auto& [name, t] : m->hf_parameters())
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) biases->push_back(t.clone());
    return refs;
  };
  std::vector<at::Tensor> corrected_biases, fp_biases;
  auto corrected = references(true, &corrected_biases), plain = references(false, &fp_biases);
  // The corrections are real (else this test could not fail) ...
  double moved = 0;
  for (size_t i = 0; i < fp_biases.size(); ++i) moved = std::max(moved, (corrected_biases[i] - fp_biases[i]).abs().max().item<double>());
  EXPECT_GT(moved, 1e-3);
  // ... and every layer's target is the same FP output either way.
  ASSERT_EQ(corrected.size(), plain.size());
  ASSERT_GT(plain.size(), 10u);
  for (const auto& [site, refs] : plain) {
    ASSERT_EQ(corrected.count(site), 1u) << site;
    ASSERT_EQ(corrected[site].size(), refs.size()) << site;
    for (size_t b = 0; b < refs.size(); ++b)
      EXPECT_TRUE(at::equal(corrected[site][b], refs[b])) << site << " is scored against a bias-corrected network";
  }
}

TEST(Knapsack, MatchesBruteForceOnRandomInstances) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int items = 1 + static_cast<int>(rng() % 5), options = 1 + static_cast<int>(rng() % 4);
    std::vector<std::vector<int64_t>> cost(items);
    std::vector<std::vector<double>> value(items);
    for (int i = 0; i < items; ++i)
      for (int k = 0; k < options; ++k) {
        cost[i].push_back(3 * static_cast<int64_t>(rng() % 10));
        value[i].push_back(static_cast<double>(rng() % 1000) / 7.0);
      }
    const int64_t budget = static_cast<int64_t>(rng() % 100);
    double best = INFINITY;
    std::vector<int> pick(items, 0);
    int64_t combos = 1;
    for (int i = 0; i < items; ++i) combos *= options;
    for (int64_t c = 0; c < combos; ++c) {
      int64_t rest = c, total = 0;
      double v = 0;
      for (int i = 0; i < items; ++i) {
        pick[i] = static_cast<int>(rest % options);
        rest /= options;
        total += cost[i][pick[i]];
        v += value[i][pick[i]];
      }
      if (total <= budget) best = std::min(best, v);
    }
    KnapsackSolution s = solve_knapsack(cost, value, budget);
    ASSERT_EQ(s.feasible, std::isfinite(best)) << "trial " << trial;
    if (!s.feasible) continue;
    EXPECT_NEAR(s.value, best, 1e-9) << "trial " << trial;
    int64_t total = 0;
    double v = 0;
    for (int i = 0; i < items; ++i) {
      total += cost[i][s.option[i]];
      v += value[i][s.option[i]];
    }
    EXPECT_LE(total, budget);
    EXPECT_EQ(total, s.cost);
    EXPECT_NEAR(v, s.value, 1e-9);
    // The frontier's value at the largest cost within the budget is the same optimum.
    double f = INFINITY;
    for (auto [c, val] : knapsack_frontier(cost, value))
      if (c <= budget) f = val;
    EXPECT_NEAR(f, best, 1e-9);
  }
  EXPECT_QTX_ERROR(solve_knapsack({{1}}, {{1.0, 2.0}}, 5), "mismatched");
}

TEST(MixedPrecision, NuclearNormAgainstSvdAndHandValues) {
  at::Tensor d = at::tensor({3.0, 0.0, 0.0, -4.0}).view({2, 2});
  EXPECT_NEAR(nuclear_norms(d).item<double>(), 7.0, 1e-12);
  at::Tensor u = at::tensor({1.0, 2.0, 2.0}), v = at::tensor({3.0, 4.0});
  EXPECT_NEAR(nuclear_norms(at::outer(u, v)).item<double>(), 3.0 * 5.0, 1e-9);  // rank 1: ‖u‖·‖v‖
  torch::manual_seed(4);
  at::Tensor m = at::randn({5, 7, 4}, at::kDouble);
  at::Tensor ref = std::get<1>(at::linalg_svd(m, false)).sum(-1);
  EXPECT_TRUE(at::allclose(nuclear_norms(m), ref, 1e-10, 1e-10));
}

TEST(LiuMethod, DeterministicAndReloadsWithMixedPrecision) {
  qtx_test::TinyVitFixture fx("liu_det");
  std::vector<ModelInput> batches = {fx.data->batch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}),
                                     fx.data->batch({16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27})};
  CalibrationOptions co;
  co.search.candidates = 20;
  co.search.verbose = false;
  co.mixed = true;
  co.mp.bits = {3, 4, 8};
  co.mp.avg_bits = 5;
  co.mp_samples = 16;
  co.report_dir = qtx_test::temp_dir("liu_det_report");
  auto m1 = load_model(fx.dir), m2 = load_model(fx.dir);
  auto a = calibration_method("liu").run(m1, Recipe::load("sym-w4a4"), batches, co);
  auto b = calibration_method("liu").run(m2, Recipe::load("sym-w4a4"), batches, co);
  ASSERT_EQ(a->points().size(), b->points().size());
  for (size_t i = 0; i < a->points().size(); ++i) {
    EXPECT_TRUE(a->points()[i].enabled);
    EXPECT_TRUE(at::equal(a->points()[i].quantizer->scale, b->points()[i].quantizer->scale)) << a->points()[i].key();
  }
  for (size_t i = 0; i < m1->hf_parameters().size(); ++i)
    EXPECT_TRUE(at::equal(m1->hf_parameters()[i].second, m2->hf_parameters()[i].second)) << m1->hf_parameters()[i].first;
  // The mixed recipe stays within the budget and reloads bit-identically.
  auto plan = nlohmann::json::parse(qtx_test::read_bytes(co.report_dir + "/mixed_precision.json"));
  EXPECT_LE(plan["chosen_bytes"].get<int64_t>(), plan["budget_bytes"].get<int64_t>());
  EXPECT_EQ(plan["modules"].size(), 4u);  // 2 layers × (MSA, MLP)
  const std::string out = qtx_test::temp_dir("liu_det_q");
  a->save(out, fx.dir);
  auto re = QuantizedModel::load(out);
  ModelInput in = fx.data->batch({30, 31, 32});
  torch::NoGradGuard ng;
  EXPECT_TRUE(at::equal(a->model().logits(in), re->model().logits(in)));
  // Ω must be exhaustively optimal for these 4 modules.
  std::vector<std::vector<int64_t>> cost;
  std::vector<std::vector<double>> omega;
  for (const auto& m : plan["modules"]) {
    std::vector<int64_t> c;
    for (int bb : co.mp.bits) c.push_back(m["weight_params"].get<int64_t>() * bb);
    cost.push_back(c);
    omega.push_back(m["omega"].get<std::vector<double>>());
  }
  double best = INFINITY;
  const int64_t budget = (plan["budget_bytes"].get<int64_t>() - plan["fixed_bytes"].get<int64_t>()) * 8;
  for (int c = 0; c < 81; ++c) {
    int r = c;
    int64_t t = 0;
    double v = 0;
    for (int i = 0; i < 4; ++i, r /= 3) {
      t += cost[i][r % 3];
      v += omega[i][r % 3];
    }
    if (t <= budget) best = std::min(best, v);
  }
  EXPECT_NEAR(plan["chosen_omega"].get<double>(), best, 1e-9 * std::max(1.0, best));
  // A larger bit-width never raises a module's sensitivity much (8 bits vs 3 bits).
  for (const auto& o : omega) EXPECT_LT(o[2], o[0]);
}

TEST(MixedPrecision, ModulesAndTheirSensitivitySites) {
  qtx_test::TinyVitFixture fx("mp_modules");
  for (SensitivityOn on : {SensitivityOn::Paper, SensitivityOn::ModuleOutput, SensitivityOn::ModelOutput}) {
    auto mods = precision_modules(*fx.model, on);
    ASSERT_EQ(mods.size(), 4u);
    for (const auto& m : mods) {
      const std::string y = fx.model->sites().site(m.y_site).name;
      if (on == SensitivityOn::ModelOutput) EXPECT_EQ(y, "classifier");
      else if (!m.attention) EXPECT_TRUE(name_ends_with(y, "output.dense") && y.find(".attention.") == std::string::npos) << y;
      else if (on == SensitivityOn::ModuleOutput) EXPECT_TRUE(name_ends_with(y, "attention.output.dense")) << y;
      else EXPECT_TRUE(name_ends_with(y, "softmax")) << y;
      EXPECT_EQ(m.y_attention_map, m.attention && on == SensitivityOn::Paper);
      // 32 hidden, 64 MLP: MSA holds 4·32·32 weights, MLP 2·32·64.
      EXPECT_EQ(m.weight_params, m.attention ? 4 * 32 * 32 : 2 * 32 * 64);
    }
  }
}

// Ω on the model's output, recomputed by hand: module i alone quantized at b bits (MinMax), the
// logits y and ŷ per sample, Ω = Σ_n ‖y_n‖₂ · ‖ŷ_n − y_n‖² (a 1×C matrix's nuclear norm is its norm).
TEST(MixedPrecision, ModelOutputSensitivityMatchesLogitsByHand) {
  qtx_test::TinyVitFixture fx("mp_logits");
  std::vector<ModelInput> batches = {fx.data->batch({0, 1, 2, 3, 4, 5, 6, 7}), fx.data->batch({8, 9, 10, 11, 12})};
  MixedPrecisionOptions o;
  o.bits = {3, 5};
  o.avg_bits = 4;
  o.sensitivity_on = SensitivityOn::ModelOutput;
  const Recipe base = Recipe::load("sym-w4a4");
  MixedPrecisionPlan p = plan_mixed_precision(fx.model, base, batches, o);
  ASSERT_EQ(p.modules.size(), 4u);
  torch::NoGradGuard ng;
  for (size_t k = 0; k < o.bits.size(); ++k) {
    QuantizedModel qm(fx.model, recipe_with_module_bits(base, *fx.model, p.modules,
                                                        std::vector<int>(p.modules.size(), o.bits[k]), false));
    qm.calibrate(batches);
    for (size_t i = 0; i < p.modules.size(); ++i) {
      const std::set<int> mine(p.modules[i].sites.begin(), p.modules[i].sites.end());
      double omega = 0;
      for (const auto& in : batches) {
        qm.set_mode(QuantMode::Float);
        at::Tensor y = qm.model().logits(in).to(at::kDouble);
        qm.set_mode(QuantMode::FakeQuant);
        for (auto& pt : qm.points()) pt.enabled = mine.count(pt.site) > 0;
        at::Tensor yq = qm.model().logits(in).to(at::kDouble);
        for (auto& pt : qm.points()) pt.enabled = true;
        omega += (y.norm(2, {1}) * (yq - y).pow(2).sum(1)).sum().item<double>();
      }
      EXPECT_GT(omega, 0) << p.modules[i].name;
      EXPECT_NEAR(p.omega[i][k], omega, 1e-9 * omega) << p.modules[i].name << " at " << o.bits[k] << " bits";
    }
  }
  EXPECT_EQ(plan_json(p)["sensitivity_on"], "model-output");
}

// BERT checkpoints may carry an MLM head next to the classifier: the model's output is the
// classifier's, which is what the classification forward pass reaches.
TEST(MixedPrecision, ModelOutputIsTheClassifierEvenWithAnMlmHead) {
  auto both = create_model(qtx_test::tiny_bert_config(), ModelHeads{true, true});
  auto mods = precision_modules(*both, SensitivityOn::ModelOutput);
  ASSERT_EQ(mods.size(), 4u);
  for (const auto& m : mods) EXPECT_EQ(both->sites().site(m.y_site).name, "classifier");
  auto mlm = create_model(qtx_test::tiny_bert_config(), ModelHeads{false, true});
  EXPECT_QTX_ERROR(precision_modules(*mlm, SensitivityOn::ModelOutput), "needs a classification head");
}

TEST(LiuMethod, UnknownMethodAndMisuse) {
  EXPECT_QTX_ERROR(calibration_method("nope"), "known: easyquant, liu, observer");
  qtx_test::TinyVitFixture fx("liu_misuse");
  CalibrationOptions co;
  co.mixed = true;
  co.mp.avg_bits = 4;
  EXPECT_QTX_ERROR(calibration_method("observer").run(fx.model, Recipe::load("sym-w4a4"), {fx.data->batch({0, 1})}, co),
                   "needs --method liu");
}
