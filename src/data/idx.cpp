#include "data/idx.h"

#include <zlib.h>

#include "formats/error.h"

namespace qtx {

IdxArray read_idx(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files transparently too
  if (!f) fail(path, "cannot open (is dataset-fashion-mnist installed? run scripts/setup.sh)");
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  std::string err = (n < 0 || errnum < 0) ? std::string(msg ? msg : "read error") : "";
  gzclose(f);
  if (!err.empty()) fail(path, "corrupt gzip stream: " + err);
  return parse_idx(bytes, path);
}

IdxArray parse_idx(const std::vector<uint8_t>& bytes, const std::string& path) {
  if (bytes.size() < 4) fail(path, "truncated IDX header");
  if (bytes[0] != 0 || bytes[1] != 0) fail(path, "bad IDX magic number");
  if (bytes[2] != 0x08) fail(path, "IDX element type is not unsigned byte (0x08)");
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > 4) fail(path, "IDX has " + std::to_string(ndim) + " dimensions (expected 1..4)");
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndim)) fail(path, "truncated IDX header");
  IdxArray a;
  size_t total = 1;
  for (int i = 0; i < ndim; ++i) {
    const uint8_t* p = &bytes[4 + 4 * static_cast<size_t>(i)];
    uint32_t d = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
    if (d == 0 || d > (1u << 26)) fail(path, "IDX dimension " + std::to_string(i) + " is " + std::to_string(d));
    a.dims.push_back(static_cast<int>(d));
    total *= d;
    if (total > (size_t(1) << 34)) fail(path, "IDX payload is absurdly large");
  }
  const size_t off = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() - off != total)
    fail(path, "IDX payload has " + std::to_string(bytes.size() - off) + " bytes, header says " +
                   std::to_string(total) + (bytes.size() - off < total ? " (truncated)" : " (trailing bytes)"));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(off), bytes.end());
  return a;
}

}  // namespace qtx
