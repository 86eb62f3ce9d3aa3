// What PTF and LIS are fighting: per-channel ranges of every LayerNorm input and the
// distribution of attention probabilities, collected on calibration data.
#pragma once
#include <string>
#include <vector>

namespace qtx {

class LabeledData;
class TransformerModel;

struct LayerNormRanges {
  std::string site;
  std::vector<float> lo, hi;  // per channel
  double spread() const;      // widest channel range / median channel range
};

struct ActivationStats {
  std::vector<LayerNormRanges> layernorm_inputs;
  // Attention probabilities in log2 bins: bin k counts p ∈ (2^-(k+1), 2^-k], k = 0..kBins-2;
  // the last bin counts p ≤ 2^-(kBins-1) (including exact zeros from padding masks).
  static constexpr int kBins = 20;
  std::vector<double> attn_log2_bins = std::vector<double>(kBins, 0.0);
  double attn_total = 0;
};

ActivationStats collect_activation_stats(TransformerModel& model, const LabeledData& data, const std::vector<int>& indices,
                                         int batch_size);

// Writes ln_input_ranges.svg (the most spread LayerNorm input), attention_log2_hist.svg and
// activation_stats.md (a table per LayerNorm site) into dir.
void write_activation_report(const ActivationStats& s, const std::string& model_name, const std::string& dir);

}  // namespace qtx
