// The safetensors reader on arbitrary bytes: open, then read every tensor as floats (what the
// loaders do with each).
#include <cstdint>
#include <vector>

#include "formats/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = qtx::SafetensorsFile::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
    for (const auto& t : f->tensors()) {
      std::vector<float> v = f->to_float(t);
      if (v.size() != static_cast<size_t>(t.numel())) __builtin_trap();
      if (f->find(t.name) != &t) __builtin_trap();
    }
  } catch (const qtx::Error&) {
  }
  return 0;
}
