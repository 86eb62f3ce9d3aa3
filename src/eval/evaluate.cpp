#include "eval/evaluate.h"

#include <ATen/ATen.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <numeric>
#include <random>

#include "formats/finite.h"

#include "formats/error.h"

namespace qtx {

EvalResult evaluate(TransformerModel& model, const LabeledData& data, int batch_size, const ProgressFn& progress) {
  torch::NoGradGuard ng;
  model.eval();
  EvalResult r;
  const int n = data.size();
  const auto t0 = std::chrono::steady_clock::now();
  for (int start = 0; start < n; start += batch_size) {
    std::vector<int> idx(static_cast<size_t>(std::min(batch_size, n - start)));
    std::iota(idx.begin(), idx.end(), start);
    at::Tensor logits = model.logits(data.batch(idx)).to(at::kCPU, at::kFloat).contiguous();
    check_finite_logits(logits.data_ptr<float>(), static_cast<size_t>(logits.numel()), static_cast<int>(logits.size(-1)), start,
                        data.describe());
    at::Tensor pred = logits.argmax(-1).to(at::kCPU);
    for (size_t i = 0; i < idx.size(); ++i) {
      int p = static_cast<int>(pred[static_cast<int64_t>(i)].item<int64_t>());
      r.predictions.push_back(p);
      r.correct += p == data.label(idx[i]);
    }
    r.samples += static_cast<int>(idx.size());
    if (progress) progress(r.samples, n);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

MlmResult mlm_accuracy(TransformerModel& model, const BertTokenizer& tok, const std::vector<std::string>& texts,
                       int max_len, uint64_t seed, int batch_size) {
  if (!model.has_mlm_head()) fail("mlm", "the model has no MLM head (cls.predictions.*)");
  if (tok.mask_id() < 0) fail("mlm", "the vocabulary has no [MASK] token");
  torch::NoGradGuard ng;
  model.eval();
  std::mt19937_64 rng(seed);
  MlmResult r;
  for (size_t start = 0; start < texts.size(); start += static_cast<size_t>(batch_size)) {
    std::vector<std::vector<int>> seqs, targets;
    for (size_t i = start; i < std::min(texts.size(), start + static_cast<size_t>(batch_size)); ++i) {
      std::vector<int> ids = tok.encode(texts[i], max_len);
      std::vector<int> tgt(ids.size(), -1);
      const int inner = static_cast<int>(ids.size()) - 2;
      if (inner <= 0) continue;
      int k = std::max(1, static_cast<int>(inner * 0.15 + 0.5));
      std::vector<int> pos(static_cast<size_t>(inner));
      std::iota(pos.begin(), pos.end(), 1);
      for (int j = 0; j < k; ++j) {  // partial Fisher-Yates: k distinct positions
        int s = j + static_cast<int>(rng() % static_cast<uint64_t>(inner - j));
        std::swap(pos[static_cast<size_t>(j)], pos[static_cast<size_t>(s)]);
        int p = pos[static_cast<size_t>(j)];
        tgt[static_cast<size_t>(p)] = ids[static_cast<size_t>(p)];
        ids[static_cast<size_t>(p)] = tok.mask_id();
      }
      seqs.push_back(std::move(ids));
      targets.push_back(std::move(tgt));
    }
    if (seqs.empty()) continue;
    ModelInput in = pad_token_batch(seqs, tok.pad_id());
    const int64_t T = in.input_ids.size(1);
    std::vector<int64_t> rows, want;
    for (size_t b = 0; b < seqs.size(); ++b)
      for (size_t t = 0; t < targets[b].size(); ++t)
        if (targets[b][t] >= 0) {
          rows.push_back(static_cast<int64_t>(b) * T + static_cast<int64_t>(t));
          want.push_back(targets[b][t]);
        }
    at::Tensor pred = model.mlm_logits(in, at::tensor(rows)).argmax(-1).to(at::kCPU);
    auto acc = pred.accessor<int64_t, 1>();
    for (size_t i = 0; i < want.size(); ++i) r.correct += acc[static_cast<int64_t>(i)] == want[i];
    r.masked += static_cast<int>(want.size());
  }
  return r;
}

double peak_rss_mib() {
  rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

}  // namespace qtx
