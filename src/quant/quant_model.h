// A model with quantizers attached at its op sites by a recipe — no model code is touched.
// The mode (float / observe / fake-quant) is set on the whole model at once.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "quant/observer.h"
#include "quant/quantizer.h"
#include "quant/recipe.h"

namespace qtx {

enum class QuantMode { Float, Observe, FakeQuant };

// Which tensor of a site a quantizer acts on.
enum class Slot { Input0, Input1, Weight, Output };
const char* slot_name(Slot s);

// One quantized tensor at one site.
struct QuantPoint {
  int site = -1;
  std::string site_name;
  Role role;
  Slot slot;
  std::unique_ptr<Quantizer> quantizer;
  std::unique_ptr<Observer> observer;
  // A disabled point passes its tensor through in every mode: sequential calibration methods
  // (Liu's interval search) switch points on one layer at a time.
  bool enabled = true;
  std::string key() const { return site_name + "." + slot_name(slot); }
};

// The (slot, role) pairs a site of this kind and name carries.
std::vector<std::pair<Slot, Role>> site_roles(const OpSite& site);

class QuantizedModel {
 public:
  // Attaches a hook to every site the recipe quantizes. Throws if an override or exclude
  // pattern matches no site (a typo would silently quantize nothing).
  QuantizedModel(std::shared_ptr<TransformerModel> model, Recipe recipe);
  ~QuantizedModel();
  QuantizedModel(const QuantizedModel&) = delete;
  QuantizedModel& operator=(const QuantizedModel&) = delete;

  TransformerModel& model() { return *model_; }
  std::shared_ptr<TransformerModel> model_ptr() { return model_; }
  const Recipe& recipe() const { return recipe_; }
  std::vector<QuantPoint>& points() { return points_; }
  QuantPoint* find(const std::string& site_name, Slot slot);

  void set_mode(QuantMode m);
  QuantMode mode() const;

  // Observe mode over the calibration batches (FP activations), then every quantizer is set from
  // its observer and the model switches to fake-quant.
  void calibrate(const std::vector<ModelInput>& batches);

  // The artifact (docs/FORMAT.md): source files of `source_dir` + recipe.json + model.safetensors.
  void save(const std::string& dir, const std::string& source_dir) const;
  static std::unique_ptr<QuantizedModel> load(const std::string& dir);
  static bool is_artifact(const std::string& dir);

  struct State;  // the mode, shared with the hooks

 private:
  void build();  // points and hooks from recipe_ (replacing any attached before)
  void begin_observe();
  void finish_observe();  // unreached sites excluded, quantizers set, fake-quant mode
  std::shared_ptr<TransformerModel> model_;
  Recipe recipe_;
  std::vector<QuantPoint> points_;
  std::shared_ptr<State> state_;
};

// Loads a float model folder or a quantized artifact (fake-quant mode) behind one interface.
struct LoadedModel {
  std::shared_ptr<TransformerModel> model;
  std::unique_ptr<QuantizedModel> quantized;  // null for a float model
};
LoadedModel load_any_model(const std::string& dir);

}  // namespace qtx
