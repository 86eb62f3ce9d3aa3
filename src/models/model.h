// The model layer: transformers-compatible ViT and BERT in libtorch. Parameters carry exactly
// transformers' names; every quantizable op runs through a named site (op_site.h).
#pragma once
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/op_site.h"

namespace qtx {

struct ModelInput {
  at::Tensor pixel_values;    // ViT: [B, C, H, W] float, pre-processed
  at::Tensor input_ids;       // BERT: [B, T] int64
  at::Tensor attention_mask;  // BERT: [B, T] (1 = token, 0 = padding); may be undefined
  at::Tensor token_type_ids;  // BERT: [B, T]; may be undefined (all zeros)
  int64_t batch_size() const { return pixel_values.defined() ? pixel_values.size(0) : input_ids.size(0); }
  ModelInput to(const at::Device& d) const;
};

class TransformerModel : public torch::nn::Module {
 public:
  explicit TransformerModel(ModelConfig cfg) : cfg_(std::move(cfg)), ops_(&sites_) {}
  const ModelConfig& config() const { return cfg_; }
  SiteTable& sites() { return sites_; }
  const SiteTable& sites() const { return sites_; }

  virtual at::Tensor logits(const ModelInput& in) = 0;  // [B, num_labels]
  virtual bool has_classifier() const { return true; }
  virtual bool has_mlm_head() const { return false; }
  // [B, T, vocab]; with `rows` (int64 indices into the flattened B*T positions) only those
  // rows, [rows, vocab] — training and MLM evaluation need the masked positions alone.
  virtual at::Tensor mlm_logits(const ModelInput& in, const at::Tensor& rows = {});
  // transformers' initialisation (truncated/plain normal, std initializer_range), seeded.
  virtual void init_weights(uint64_t seed) = 0;
  // Checkpoint tensors this model accepts but does not need (tied copies, old buffers).
  virtual bool ignorable_tensor(const std::string& name) const;

  // Parameters by transformers name, in creation order.
  const std::vector<std::pair<std::string, at::Tensor>>& hf_parameters() const { return params_; }
  at::Tensor param(const std::string& name) const;
  int64_t parameter_count() const;

 protected:
  at::Tensor add_param(const std::string& dotted_name, const std::vector<int64_t>& shape);
  int add_site(const std::string& name, SiteKind kind, int layer = -1, bool output_is_residual = false) {
    return sites_.add(name, kind, layer, output_is_residual);
  }
  ModelConfig cfg_;
  SiteTable sites_;
  Ops ops_;

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
};

// Which heads a model is built with; derived from config.architectures and the checkpoint.
struct ModelHeads {
  bool classifier = true;
  bool mlm = false;
};

// One row per architecture: model_type -> factory.
using ModelFactory = std::function<std::shared_ptr<TransformerModel>(const ModelConfig&, const ModelHeads&)>;
const std::map<std::string, ModelFactory>& model_registry();
std::shared_ptr<TransformerModel> create_model(const ModelConfig& cfg, const ModelHeads& heads);

std::shared_ptr<TransformerModel> make_vit(const ModelConfig& cfg, const ModelHeads& heads);
std::shared_ptr<TransformerModel> make_bert(const ModelConfig& cfg, const ModelHeads& heads);

// Loads config.json + model.safetensors from a folder (F32/F16/BF16 weights), checking every
// tensor's presence and shape; throws qtx::Error naming the file and tensor. Eval mode.
// `resolve` (optional) may supply a parameter from other tensors (a quantized artifact's integer
// weights): it returns true after filling `values` and naming the tensors it consumed. Tensors
// named "qtx.*" (quantizer parameters) are left to the caller.
using TensorResolver = std::function<bool(const SafetensorsFile& file, const std::string& name,
                                          const std::vector<int64_t>& shape, std::vector<float>* values,
                                          std::vector<std::string>* consumed)>;
std::shared_ptr<TransformerModel> load_model(const std::string& dir, const TensorResolver& resolve = {});
// Writes config.json + model.safetensors (F32) into dir (created if needed).
void save_model(TransformerModel& model, const std::string& dir,
                const std::map<std::string, std::string>& metadata = {});
void make_dirs(const std::string& dir);

}  // namespace qtx
