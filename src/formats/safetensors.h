// Reader and writer for the safetensors format: an 8-byte little-endian header length N,
// N bytes of JSON header, then the raw tensor bytes. The reader memory-maps the file and
// validates every header field before any tensor is touched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qtx {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType t);        // "F32", ...
size_t dtype_size(DType t);             // bytes per element
bool dtype_from_name(const std::string& s, DType* out);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // not necessarily aligned: copy with memcpy
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Opens and validates; throws qtx::Error naming the file and the problem.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // The same checks on bytes already in memory (kept by the object); `name` stands for the path.
  static std::shared_ptr<SafetensorsFile> from_bytes(std::vector<uint8_t> bytes, const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // sorted by name
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies a tensor's elements converted to float (F32/F16/BF16/F64/integers).
  std::vector<float> to_float(const TensorView& t) const;

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* base, uint64_t size);  // header and tensor table of the whole file
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<uint8_t> owned_;  // from_bytes: the file's bytes
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes them in one go (header, then data in insertion order).
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes to path via a temporary file + rename, so a failed write never leaves half a file.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// IEEE half / bfloat16 conversions (round-to-nearest-even on the way down).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

}  // namespace qtx
