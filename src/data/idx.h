// IDX files (the MNIST / Fashion-MNIST container), optionally gzip-compressed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qtx {

struct IdxArray {
  std::vector<int> dims;      // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;  // unsigned-byte payload, row-major
};

// Reads an unsigned-byte IDX file (.gz or plain). Throws qtx::Error naming the file on a bad
// magic number, a truncated payload or trailing bytes.
IdxArray read_idx(const std::string& path);
// The same checks on the (decompressed) bytes of one; `where` names it in messages.
IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& where);

}  // namespace qtx
