// Replays every file of fuzz/corpus/<target>/ (seeds and the reproducers of past findings)
// through the fuzz targets' own entry points, compiled into this suite under other names: each
// input must load or fail with qtx::Error, and the sanitizer build checks each for memory errors
// and undefined behaviour without clang or libFuzzer.
#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" int qtx_fuzz_safetensors(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_hf_config(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_tokenizer(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_image(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_idx(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_artifact(const uint8_t* data, size_t size);
extern "C" int qtx_fuzz_artifact_init(int* argc, char*** argv);

namespace {

void replay(const std::string& target, int (*one_input)(const uint8_t*, size_t)) {
  const std::string dir = std::string(QTX_SOURCE_DIR) + "/fuzz/corpus/" + target;
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') files.push_back(e->d_name);
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << "no seeds in " << dir;
  for (const auto& f : files) {
    SCOPED_TRACE(dir + "/" + f);
    const std::string bytes = qtx_test::read_bytes(dir + "/" + f);
    EXPECT_NO_THROW(one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
}

}  // namespace

TEST(FuzzCorpus, Safetensors) { replay("fuzz_safetensors", qtx_fuzz_safetensors); }
TEST(FuzzCorpus, HfConfig) { replay("fuzz_hf_config", qtx_fuzz_hf_config); }
TEST(FuzzCorpus, Tokenizer) { replay("fuzz_tokenizer", qtx_fuzz_tokenizer); }
TEST(FuzzCorpus, Image) { replay("fuzz_image", qtx_fuzz_image); }
TEST(FuzzCorpus, Idx) { replay("fuzz_idx", qtx_fuzz_idx); }
TEST(FuzzCorpus, Artifact) {
  qtx_fuzz_artifact_init(nullptr, nullptr);
  replay("fuzz_artifact", qtx_fuzz_artifact);
}
