// Storage of integer weight codes in an artifact (docs/FORMAT.md): one byte per code for 5-8
// bits; two codes per byte for <= 4 bits, element i in byte i/2, low nibble first, signed codes
// in 4-bit two's complement. No libtorch: the integer runtime reads the same bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qtx {

std::vector<uint8_t> pack_codes(const std::vector<int32_t>& codes, int bits);
std::vector<int32_t> unpack_codes(const uint8_t* bytes, int64_t n, int bits, bool is_signed);
inline int64_t packed_bytes(int64_t n, int bits) { return bits <= 4 ? (n + 1) / 2 : n; }

}  // namespace qtx
