#include "calib/similarity.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <random>
#include <vector>

namespace qtx {

namespace {

// Per (candidate, sample) moments of a masked pair (reference r, candidate c) over K entries.
struct PairMoments {
  double n = 0, sr = 0, sc = 0, srr = 0, scc = 0, src = 0;
};

// Plain loops over contiguous float data: the candidate tensors are large ([C, B, K]) and one
// pass that accumulates in double is several times faster than a chain of tensor ops.
template <typename Score>
at::Tensor per_sample(const at::Tensor& ref_in, const at::Tensor& cand_in, const at::Tensor& mask_in, Score score) {
  const int64_t B = ref_in.size(0), K = ref_in.numel() / std::max<int64_t>(1, B), C = cand_in.size(0);
  at::Tensor ref = ref_in.to(at::kFloat).contiguous(), cand = cand_in.to(at::kFloat).contiguous();
  at::Tensor mask = mask_in.defined() ? mask_in.to(at::kFloat).expand_as(ref_in).contiguous() : at::Tensor();
  at::Tensor out = at::empty({C, B}, at::kDouble);
  const float* r = ref.data_ptr<float>();
  const float* c = cand.data_ptr<float>();
  const float* m = mask.defined() ? mask.data_ptr<float>() : nullptr;
  double* o = out.data_ptr<double>();
  at::parallel_for(0, C * B, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t cb = lo; cb < hi; ++cb) {
      const int64_t b = cb % B;
      const float* rb = r + b * K;
      const float* cc = c + cb * K;
      const float* mb = m ? m + b * K : nullptr;
      PairMoments p;
      for (int64_t k = 0; k < K; ++k) {
        if (mb && mb[k] == 0) continue;
        const double x = rb[k], y = cc[k];
        p.n += 1;
        p.sr += x;
        p.sc += y;
        p.srr += x * x;
        p.scc += y * y;
        p.src += x * y;
      }
      o[cb] = score(p);
    }
  });
  return out;
}

}  // namespace

at::Tensor pearson_per_sample(const at::Tensor& ref, const at::Tensor& cand, const at::Tensor& mask) {
  return per_sample(ref, cand, mask, [](const PairMoments& p) {
    const double n = std::max(1.0, p.n);
    const double vr = std::max(0.0, p.srr - p.sr * p.sr / n), vc = std::max(0.0, p.scc - p.sc * p.sc / n);
    // Variances below the rounding of the sums count as constant.
    const bool cr = vr <= 1e-12 * std::max(p.srr, 1e-300), cc = vc <= 1e-12 * std::max(p.scc, 1e-300);
    if (cr || cc) return cr && cc ? 1.0 : 0.0;
    return (p.src - p.sr * p.sc / n) / std::sqrt(vr * vc);
  });
}

at::Tensor cosine_per_sample(const at::Tensor& ref, const at::Tensor& cand, const at::Tensor& mask) {
  return per_sample(ref, cand, mask, [](const PairMoments& p) {
    if (p.srr <= 0 || p.scc <= 0) return p.srr <= 0 && p.scc <= 0 ? 1.0 : 0.0;
    return p.src / std::sqrt(p.srr * p.scc);
  });
}

std::pair<at::Tensor, double> ranking_hinge(const at::Tensor& ref_in, const at::Tensor& cand_in, const at::Tensor& pairs_in,
                                            const at::Tensor& valid_in, double theta) {
  const int64_t B = ref_in.size(0), K = ref_in.size(-1), T = ref_in.size(-2);
  const int64_t rows = ref_in.numel() / K, per_b = rows / std::max<int64_t>(1, B), C = cand_in.size(0);
  at::Tensor ref = ref_in.to(at::kFloat).contiguous(), cand = cand_in.to(at::kFloat).contiguous();
  at::Tensor pairs = pairs_in.to(at::kInt).contiguous();
  const bool per_row = pairs.dim() == 3;
  TORCH_CHECK(pairs.size(-1) == 2 && (!per_row || pairs.size(0) == rows), "ranking_hinge: pairs must be [P, 2] or [rows, P, 2]");
  at::Tensor valid = valid_in.defined() ? valid_in.to(at::kFloat).contiguous() : at::Tensor();
  const int64_t P = pairs.size(-2);
  const int32_t* pairs_of_all = pairs.data_ptr<int32_t>();
  const float* r = ref.data_ptr<float>();
  const float* c = cand.data_ptr<float>();
  const float* v = valid.defined() ? valid.data_ptr<float>() : nullptr;
  auto pairs_of = [&](int64_t row) { return per_row ? pairs_of_all + row * P * 2 : pairs_of_all; };
  // Pair count and signs do not depend on the candidate.
  double count = 0;
  std::vector<int8_t> sgn(static_cast<size_t>(rows * P));
  std::vector<uint8_t> use(static_cast<size_t>(rows * P));
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t b = row / per_b, t = row % T;
    const bool qv = !v || v[b * K + t] != 0;
    const int32_t* pp = pairs_of(row);
    for (int64_t q = 0; q < P; ++q) {
      const int64_t i = pp[2 * q], j = pp[2 * q + 1];
      const bool ok = qv && (!v || (v[b * K + i] != 0 && v[b * K + j] != 0));
      const float a = r[row * K + i] - r[row * K + j];
      sgn[static_cast<size_t>(row * P + q)] = static_cast<int8_t>((a > 0) - (a < 0));
      use[static_cast<size_t>(row * P + q)] = ok;
      count += ok;
    }
  }
  at::Tensor out = at::zeros({C}, at::kDouble);
  double* o = out.data_ptr<double>();
  at::parallel_for(0, C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      double sum = 0;
      const float* ck = c + k * rows * K;
      for (int64_t row = 0; row < rows; ++row) {
        const int32_t* pp = pairs_of(row);
        for (int64_t q = 0; q < P; ++q) {
          const size_t at = static_cast<size_t>(row * P + q);
          if (!use[at]) continue;
          const double d = static_cast<double>(ck[row * K + pp[2 * q]]) - ck[row * K + pp[2 * q + 1]];
          sum += std::max(0.0, theta - d * sgn[at]);
        }
      }
      o[k] = sum;
    }
  });
  return {out, count};
}

at::Tensor key_pairs(int64_t rows, int64_t K, int64_t max_pairs, uint64_t seed) {
  // Every pair i < j in order; pair n of a row is all_pairs[2n], all_pairs[2n + 1].
  std::vector<int32_t> all_pairs;
  for (int32_t a = 0; a < K; ++a)
    for (int32_t b = a + 1; b < K; ++b) all_pairs.insert(all_pairs.end(), {a, b});
  const int64_t all = K * (K - 1) / 2;
  if (all <= max_pairs) return at::tensor(all_pairs, at::kInt).view({-1, 2});
  // max_pairs distinct pairs per row by Floyd's sampling; `drawn_in` marks the pairs drawn for
  // the current row (row + 1), so nothing is cleared between rows.
  at::Tensor out = at::empty({rows, max_pairs, 2}, at::kInt);
  int32_t* o = out.data_ptr<int32_t>();
  std::vector<int64_t> drawn_in(static_cast<size_t>(all), 0);
  std::mt19937_64 rng(seed);
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t top = all - max_pairs; top < all; ++top) {
      int64_t n = std::uniform_int_distribution<int64_t>(0, top)(rng);
      if (drawn_in[static_cast<size_t>(n)] == row + 1) n = top;
      drawn_in[static_cast<size_t>(n)] = row + 1;
      *o++ = all_pairs[static_cast<size_t>(2 * n)];
      *o++ = all_pairs[static_cast<size_t>(2 * n + 1)];
    }
  }
  return out;
}

}  // namespace qtx
