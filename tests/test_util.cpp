#include "test_util.h"

#include <unistd.h>

#include <filesystem>
#include <sstream>

namespace qtx_test {

namespace {
// This process's folder of temporary folders, removed at exit: ctest runs the suite's binaries
// in parallel (each test alone and the capped whole-suite runs), and two processes rewriting one
// file that the other has memory-mapped end in SIGBUS.
struct ProcessTempRoot {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("qtx_test_" + std::to_string(::getpid()));
  ~ProcessTempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
}  // namespace

std::string temp_dir(const std::string& name) {
  static ProcessTempRoot root;
  auto p = root.path / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

qtx::ModelConfig tiny_vit_config() {
  qtx::ModelConfig c;
  c.model_type = "vit";
  c.architecture = "ViTForImageClassification";
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.image_size = 8;
  c.patch_size = 4;
  c.num_channels = 1;
  c.layer_norm_eps = 1e-12;
  c.id2label = {"a", "b", "c"};
  return c;
}

qtx::ModelConfig tiny_bert_config() {
  qtx::ModelConfig c;
  c.model_type = "bert";
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 48;
  c.vocab_size = 50;
  c.max_position_embeddings = 16;
  c.type_vocab_size = 2;
  c.id2label = {"x", "y"};
  return c;
}

}  // namespace qtx_test
