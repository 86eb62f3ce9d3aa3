// Helpers shared by the fuzz targets: splitting one input into the several files a parser reads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qtx_fuzz {

// Inputs that stand for several files hold them one after another, separated by this line
// (unlikely in real files, and easy for libFuzzer to keep intact while it mutates the parts).
inline const std::string kFileSeparator = "\n--qtx-fuzz-next-file--\n";

// The parts of data between separators: always `count` of them (missing ones empty, extra
// separators kept inside the last part).
inline std::vector<std::string> split_files(const uint8_t* data, size_t size, size_t count) {
  std::string all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t pos = 0;
  while (parts.size() + 1 < count) {
    size_t next = all.find(kFileSeparator, pos);
    if (next == std::string::npos) break;
    parts.push_back(all.substr(pos, next - pos));
    pos = next + kFileSeparator.size();
  }
  parts.push_back(pos <= all.size() ? all.substr(pos) : std::string());
  parts.resize(count);
  return parts;
}

}  // namespace qtx_fuzz
