#include "quant/packing.h"

namespace qtx {

std::vector<uint8_t> pack_codes(const std::vector<int32_t>& codes, int bits) {
  const size_t n = codes.size();
  if (bits > 4) {
    std::vector<uint8_t> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(codes[i] & 0xFF);
    return out;
  }
  std::vector<uint8_t> out((n + 1) / 2, 0);
  for (size_t i = 0; i < n; ++i) out[i / 2] |= static_cast<uint8_t>((codes[i] & 0xF) << (4 * (i % 2)));
  return out;
}

std::vector<int32_t> unpack_codes(const uint8_t* bytes, int64_t n, int bits, bool is_signed) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  const int width = bits > 4 ? 8 : 4;
  for (int64_t i = 0; i < n; ++i) {
    int32_t v = bits > 4 ? bytes[i] : (bytes[i / 2] >> (4 * (i % 2))) & 0xF;
    if (is_signed && v >= (1 << (width - 1))) v -= 1 << width;
    out[static_cast<size_t>(i)] = v;
  }
  return out;
}

}  // namespace qtx
