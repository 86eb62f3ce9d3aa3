// The integer-only runtime's models: a quantized artifact executed with integer arithmetic end
// to end (docs/RUNTIME.md lists every op, its integer form and the two places float appears).
// No libtorch. One registry row per architecture (model_type).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "runtime/gemm.h"

namespace qtx::rt {

class IntModel {
 public:
  virtual ~IntModel() = default;
  virtual const ModelConfig& config() const = 0;
  // Images preprocessed as the preprocessor_config says, [B, C, H, W] floats → logits [B, L].
  virtual std::vector<float> classify_images(const float* pixels, int B);
  // Token ids and attention mask, [B, T] each → logits [B, L].
  virtual std::vector<float> classify_tokens(const int32_t* ids, const int32_t* mask, int B, int T);

  // Debugging and parity tests: called with the 8-bit codes the runtime produced at a site
  // (key "<site>.<slot>", as in the artifact) during the next forward passes.
  // Taps see every row of every site: the last layer is then run on all rows.
  using Tap = std::function<void(const std::string& key, const uint8_t* codes, size_t n)>;
  void set_tap(Tap tap) { tap_ = std::move(tap); }

  // The classifiers read the CLS row of the last layer alone, and every op after its keys and
  // values is per row, so by default that layer runs its queries, attention output, LayerNorms
  // and MLP on the CLS rows only — the logits are the same bits either way (a test checks).
  // false runs every row, as libtorch and transformers do (the benchmark reports both).
  void set_cls_only_last_layer(bool on) { cls_only_ = on; }

  // The MLPs run a block of rows at a time, so that fc1's outputs stay in cache until the
  // activation reads them; rows > 0 sets the block (default 0: 512 KB of them per thread). The
  // logits do not depend on it (every op in the MLP is per row; a test checks).
  void set_mlp_row_block(int rows) { mlp_rows_ = rows; }

 protected:
  bool cls_only_last_layer() const { return cls_only_ && !tap_; }
  // Whether layer `layer` of `layers` runs its CLS rows alone past its keys and values.
  bool cls_only_layer(size_t layer, size_t layers) const { return layer + 1 == layers && cls_only_last_layer(); }
  void tap(const std::string& key, const uint8_t* codes, size_t n) const {
    if (tap_) tap_(key, codes, n);
  }
  // The rows per block of an MLP over M rows: all at once when tapped (taps see whole sites).
  template <typename Mlp>
  int mlp_rows(const Mlp& mlp, int M) const {
    if (tap_) return M;
    return mlp_rows_ > 0 ? mlp_rows_ : mlp.row_block();
  }
  // The tap of the activation output of the MLP whose sites start with `prefix` (empty: no tap).
  std::function<void(const uint8_t*, size_t)> tap_act(const std::string& prefix) const {
    if (!tap_) return {};
    return [this, key = prefix + "intermediate.intermediate_act_fn.output"](const uint8_t* c, size_t n) { tap_(key, c, n); };
  }
  Tap tap_;
  bool cls_only_ = true;
  int mlp_rows_ = 0;
};

// Loads a folder written by `qtx quantize`; throws qtx::Error naming the file and what is wrong
// or unsupported. Kernels::Reference runs the plain C++ GEMM instead of oneDNN.
std::unique_ptr<IntModel> load_int_model(const std::string& dir, Kernels kernels = Kernels::Fast);

}  // namespace qtx::rt
