// Liu et al. 2021's similarity- and ranking-aware interval search (methods.md §1), and the
// EasyQuant-style cosine search as the same loop with another objective. Layer by layer in
// network order, each layer's symmetric per-tensor intervals Δ_W (weight side) and Δ_X (input
// side) are chosen from C candidates in [α, β]·Δ_init by alternating search; the layer sees the
// inputs produced by the already quantized layers before it, and is scored against the output
// of the FP network. Candidates are evaluated in batches (one batched GEMM for many of them).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"

namespace qtx {

class QuantizedModel;

enum class SearchObjective { Pearson, Cosine };

struct IntervalSearchOptions {
  SearchObjective objective = SearchObjective::Pearson;
  bool ranking = true;           // Q·Kᵀ: objective − γ · L_rank (Liu); off for EasyQuant
  double gamma = 0.1;            // weight of the ranking loss (normalised by its pair count)
  double theta = 0.0;            // hinge margin of the ranking loss
  int64_t rank_pairs = 256;      // key pairs per attention row (all when T(T−1)/2 is smaller)
  bool bias_correction = true;   // subtract E[Ô − O] per output channel from Linear biases
  // Score every candidate interval of a Linear layer with its own bias correction applied (the
  // paper corrects the bias as part of the search), not only the chosen one afterwards.
  bool correct_in_search = false;
  double alpha = 0.5, beta = 1.2;
  int candidates = 100;
  int rounds = 1;                // alternating W-then-X rounds
  // Candidates are scored on the first whole calibration batches that hold at least this many
  // tokens (0 = all batches); Δ_init and bias correction always use the whole calibration set.
  // Scoring costs C GEMMs per layer and side over these tokens: 4096 keeps vit-fmnist (300
  // images) and bert-austen (one batch of passages) to minutes on 2 cores.
  int64_t search_tokens = 4096;
  uint64_t seed = 0;             // ranking-pair sampling
  int64_t chunk_elements = int64_t(1) << 24;  // bound on one batch of candidate outputs (floats)
  bool verbose = true;           // one progress line per layer on stderr
  // Called with each searched layer's FP references (one per scored batch) before its search:
  // lets tests check that the target is the FP network's output.
  std::function<void(const std::string& site, const std::vector<at::Tensor>& refs)> on_references;
};

// One searched layer (a Linear site, or one of the two attention matmuls).
struct SearchedLayer {
  std::string site;
  double w_ratio = 1, x_ratio = 1;   // chosen Δ / Δ_init (1 where that side is not searched)
  double objective_init = 0, objective_best = 0;
  bool bias_corrected = false;
  double seconds = 0;
};

struct IntervalSearchReport {
  std::vector<SearchedLayer> layers;
  double seconds = 0;
};

// `qm` must be calibrated (its observers give Δ_init) and its recipe's searched points must be
// uniform, symmetric and per-tensor (others keep their observer calibration and are applied as
// they are). Leaves qm in fake-quant mode with every point enabled. Bias correction edits the
// model's bias parameters in place (they are saved with the artifact).
IntervalSearchReport interval_search(QuantizedModel& qm, const std::vector<ModelInput>& batches,
                                     const IntervalSearchOptions& o);

struct QuantPoint;
// The same search (and bias correction) for one linear layer on its own, for tests and tools:
// x [B, T, in] the layer's inputs, ref [B, T, out] the target output, weight [out, in], bias
// [out] (may be undefined; corrected in place). wq / xq: calibrated quantizers of the weight and
// the input (either may be null = float). mask: undefined, or [B, T, 1] with 0 for padding tokens
// (left out of the scores and of the bias correction, as BERT's padding is).
SearchedLayer search_linear(const at::Tensor& x, const at::Tensor& ref, const at::Tensor& weight, const at::Tensor& bias,
                            QuantPoint* wq, QuantPoint* xq, const IntervalSearchOptions& o,
                            const at::Tensor& mask = at::Tensor());

}  // namespace qtx
