// Captures what flows into (or out of) chosen op sites over a set of batches, stopping each
// forward pass as soon as the last wanted tensor has been seen — sequential calibration
// methods capture one layer at a time and must not pay for the rest of the network.
#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

#include "models/model.h"

namespace qtx {

// What to capture at one site: its input slots [0, inputs) and/or its output.
struct CaptureRequest {
  int site = -1;
  int inputs = 0;    // 1: slot 0 (Linear, LayerNorm …); 2: both matmul operands
  bool output = false;
};

// captured[r][b] holds request r's tensors for batch b: slot 0, slot 1, output (undefined when
// not requested). Tensors are cloned, so later in-place ops cannot change them.
struct Captured {
  at::Tensor in0, in1, out;
};

// Runs model.logits on each batch with capture hooks attached after the sites' existing hooks
// (so a quantizer attached to the site acts first). Throws qtx::Error if a forward pass ends
// before every request was seen (a site the task does not reach).
std::vector<std::vector<Captured>> capture_sites(TransformerModel& model, const std::vector<ModelInput>& batches,
                                                 const std::vector<CaptureRequest>& requests);

}  // namespace qtx
