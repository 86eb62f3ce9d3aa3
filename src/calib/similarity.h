// Similarity objectives of the interval searches (Liu et al. 2021, EasyQuant), evaluated for
// many candidate quantizations at once: candidate outputs carry a leading candidate dimension.
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace qtx {

// Per-sample Pearson correlation Γ(O_n, Ô_cn) over all entries of sample n.
// ref: [B, ...]; cand: [C, B, ...] (same trailing shape); mask: undefined (all valid) or
// broadcastable to ref with 1 = valid entry. Returns [C, B] (double). A sample whose reference
// and candidate are both constant scores 1 (nothing to correlate, nothing lost); one constant
// and the other not scores 0.
at::Tensor pearson_per_sample(const at::Tensor& ref, const at::Tensor& cand, const at::Tensor& mask);
// Per-sample cosine similarity (EasyQuant's objective), same shapes; 0-norm pairs score 1 if
// both are zero, else 0.
at::Tensor cosine_per_sample(const at::Tensor& ref, const at::Tensor& cand, const at::Tensor& mask);

// Pairwise ranking hinge of Liu et al. over attention rows: for each row of ref [B, H, T, K]
// (scores of one query over K keys) and each of its key pairs (i, j),
// Φ((Â_i − Â_j) · sign(A_i − A_j)) with Φ(p) = max(θ − p, 0). pairs: [P, 2] shared by every
// row, or [rows, P, 2] with rows = ref.numel() / K, each row its own (integer tensors, as
// key_pairs makes them). Ties in A (sign 0) cost max(θ, 0). valid_keys: undefined or [B, K]
// (1 = real token); pairs touching a padded key and rows of padded queries are skipped. Returns
// the per-candidate sum [C] (double) and the number of pairs it covers (the same for every
// candidate).
std::pair<at::Tensor, double> ranking_hinge(const at::Tensor& ref, const at::Tensor& cand, const at::Tensor& pairs,
                                            const at::Tensor& valid_keys, double theta);

// Key pairs i < j of the ranking hinge for `rows` attention rows of K keys: all pairs ([P, 2],
// shared by every row) when there are at most max_pairs of them; else max_pairs distinct pairs
// drawn for each row with `seed` ([rows, max_pairs, 2]; the same seed gives the same pairs).
// int32.
at::Tensor key_pairs(int64_t rows, int64_t K, int64_t max_pairs, uint64_t seed);

}  // namespace qtx
