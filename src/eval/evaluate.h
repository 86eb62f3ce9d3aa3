// Accuracy, throughput and memory of a model on labelled data; MLM accuracy on held-out text.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/bert_tokenizer.h"
#include "models/model.h"
#include "tasks/labeled_data.h"

namespace qtx {

struct EvalResult {
  int samples = 0;
  int correct = 0;
  double accuracy() const { return samples ? 100.0 * correct / samples : 0.0; }
  double seconds = 0;
  double samples_per_second() const { return seconds > 0 ? samples / seconds : 0.0; }
  std::vector<int> predictions;
};

using ProgressFn = std::function<void(int done, int total)>;

EvalResult evaluate(TransformerModel& model, const LabeledData& data, int batch_size,
                    const ProgressFn& progress = {});

struct MlmResult {
  int64_t masked = 0, correct = 0;
  double accuracy() const { return masked ? 100.0 * correct / masked : 0.0; }
};

// Masks 15% of each passage's word pieces (never [CLS]/[SEP]; at least one) with [MASK],
// deterministically for `seed`, and counts how often the model's top-1 restores the token.
MlmResult mlm_accuracy(TransformerModel& model, const BertTokenizer& tok, const std::vector<std::string>& texts,
                       int max_len, uint64_t seed, int batch_size);

// Peak resident set size of this process so far, in MiB.
double peak_rss_mib();

}  // namespace qtx
