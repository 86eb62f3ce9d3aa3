// `qtx predict`: top-k labels with probabilities for single images or texts, through the
// integer runtime (quantized folders it can execute) or libtorch (float or fake-quant).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qtx {

struct PredictOptions {
  std::string model;
  std::vector<std::string> images, texts;
  int top_k = 3;
  std::string engine = "auto";  // auto | int | torch
  int threads = 0;
};

struct Prediction {
  std::string input;                                 // file name or text
  std::vector<std::pair<std::string, double>> top;  // label, probability (softmax of the logits)
};

struct PredictResult {
  std::string engine;  // what actually ran: "int" or "torch (float)" / "torch (fake-quant …)"
  std::vector<Prediction> predictions;
};

PredictResult predict(const PredictOptions& o);

}  // namespace qtx
