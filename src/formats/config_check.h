// config.json against the weight file it describes, before any model is built: every size the
// config gives (layers, hidden and intermediate width, image and patch size, vocabulary and
// positions, labels) must be the one the stored tensors have, so a config saying 100000 layers
// or a hidden size of 2^30 fails at once instead of allocating gigabytes.
#pragma once
#include "formats/hf_config.h"
#include "formats/safetensors.h"

namespace qtx {

// Throws qtx::Error naming the weight file, the config field and both values.
void check_config_against_weights(const ModelConfig& cfg, const SafetensorsFile& file);

}  // namespace qtx
