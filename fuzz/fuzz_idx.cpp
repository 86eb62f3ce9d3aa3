// The IDX reader (MNIST container) on arbitrary decompressed bytes.
#include <cstdint>
#include <vector>

#include "data/idx.h"
#include "formats/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    qtx::IdxArray a = qtx::parse_idx(std::vector<uint8_t>(data, data + size), "fuzz.idx");
    size_t total = 1;
    for (int d : a.dims) total *= static_cast<size_t>(d);
    if (total != a.data.size()) __builtin_trap();
  } catch (const qtx::Error&) {
  }
  return 0;
}
