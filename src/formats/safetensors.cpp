#include "formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "formats/error.h"

namespace qtx {
namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

// The format caps the header at 100 MB; anything larger is corrupt or hostile.
constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;

}  // namespace

const char* dtype_name(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}
size_t dtype_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}
bool dtype_from_name(const std::string& s, DType* out) {
  for (const auto& d : kDTypes)
    if (s == d.name) {
      *out = d.type;
      return true;
    }
  return false;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // may carry into exponent: correct
  return static_cast<uint16_t>(half);
}

float bf16_to_float(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // NaN
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, "truncated safetensors file (" + std::to_string(size) + " bytes, need at least 8)");
  }
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, "mmap failed");
  f->map_ = m;
  f->map_size_ = size;
  f->parse(static_cast<const uint8_t*>(m), size);
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, const std::string& name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->owned_ = std::move(bytes);
  if (f->owned_.size() < 8)
    fail(name, "truncated safetensors file (" + std::to_string(f->owned_.size()) + " bytes, need at least 8)");
  f->parse(f->owned_.data(), f->owned_.size());
  return f;
}

void SafetensorsFile::parse(const uint8_t* base, uint64_t size) {
  const std::string& path = path_;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  if (n == 0 || n > kMaxHeader)
    fail(path, "safetensors header length " + std::to_string(n) + " is absurd (limit 100 MB)");
  if (n > size - 8)
    fail(path, "safetensors header length " + std::to_string(n) + " exceeds the file (" +
                   std::to_string(size) + " bytes): file truncated?");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n);
  } catch (const std::exception& e) {
    fail(path, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "safetensors header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  const uint8_t* data = base + 8 + n;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object");
      for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
        if (!m2.value().is_string()) fail(path, "__metadata__." + m2.key() + " is not a string");
        metadata_[m2.key()] = m2.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(where, "entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = name;
    if (!v["dtype"].is_string() || !dtype_from_name(v["dtype"].get<std::string>(), &t.dtype))
      fail(where, "unknown dtype " + v["dtype"].dump());
    if (!v["shape"].is_array()) fail(where, "shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) fail(where, "shape has a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      // Checked alone too: after a zero dimension the product below no longer bounds the others.
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(where, "shape dimension " + std::to_string(dim) + " does not fit in 64-bit signed sizes");
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim)
        fail(where, "shape overflows");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(where, "data_offsets must be two non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) fail(where, "data_offsets begin > end");
    if (e > data_size)
      fail(where, "data range [" + std::to_string(b) + ", " + std::to_string(e) +
                      ") lies outside the data section (" + std::to_string(data_size) +
                      " bytes): file truncated?");
    const uint64_t want = numel * dtype_size(t.dtype);
    if (e - b != want)
      fail(where, "shape x dtype size = " + std::to_string(want) + " bytes but data_offsets span " +
                      std::to_string(e - b));
    t.data = data + b;
    t.nbytes = static_cast<size_t>(e - b);
    ranges.emplace_back(b, e);
    tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      fail(path, "tensor data ranges overlap at byte " + std::to_string(ranges[i].first));
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorView& a, const TensorView& b) { return a.name < b.name; });
}


SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorView& t, const std::string& n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(path_, "missing tensor '" + name + "'");
  return *t;
}

std::vector<float> SafetensorsFile::to_float(const TensorView& t) const {
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  auto load = [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, t.data + i * sizeof(T), sizeof(T));
      out[i] = static_cast<float>(v);
    }
  };
  switch (t.dtype) {
    case DType::F32:
      if (n > 0) std::memcpy(out.data(), t.data, n * 4);  // an empty vector's data() may be null
      break;
    case DType::F64: load(double{}); break;
    case DType::I64: load(int64_t{}); break;
    case DType::I32: load(int32_t{}); break;
    case DType::I16: load(int16_t{}); break;
    case DType::I8: load(int8_t{}); break;
    case DType::U8: load(uint8_t{}); break;
    case DType::BOOL: load(uint8_t{}); break;
    case DType::F16:
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      break;
  }
  return out;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  if (name.empty() || name == "__metadata__") fail("safetensors writer", "bad tensor name '" + name + "'");
  for (const auto& e : entries_)
    if (e.name == name) fail("safetensors writer", "duplicate tensor '" + name + "'");
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("safetensors writer", "negative dimension in '" + name + "'");
    numel *= d;
  }
  if (static_cast<size_t>(numel) * dtype_size(dtype) != nbytes)
    fail("safetensors writer", "tensor '" + name + "': shape does not match byte count");
  Entry e{name, dtype, std::move(shape), {}};
  e.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata_) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (const auto& e : entries_) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h.push_back(' ');  // pad so the data section starts 8-aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp, "cannot open for writing");
    uint64_t n = h.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& e : entries_)
      out.write(reinterpret_cast<const char*>(e.bytes.data()), static_cast<std::streamsize>(e.bytes.size()));
    if (!out) fail(tmp, "write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "cannot rename temporary file into place");
}

}  // namespace qtx
