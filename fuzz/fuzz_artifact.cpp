// The integer runtime's artifact loader and what it feeds: input = config.json, separator,
// recipe.json, separator, model.safetensors, written as a folder and loaded as `qtx_run` does;
// a model that loads then classifies one input of the size its config states.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "formats/error.h"
#include "fuzz_util.h"
#include "runtime/int_model.h"

namespace {

std::string g_dir;

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!g_dir.empty()) return 0;
  setenv("OMP_NUM_THREADS", "1", 1);  // one fuzzing process per core
  // scripts/fuzz.sh sets TMPDIR inside its run folder: libFuzzer ends with _Exit, so atexit does
  // not always run.
  const char* base = getenv("TMPDIR") ? getenv("TMPDIR") : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  std::string templ = std::string(base) + "/qtx-fuzz-artifact-XXXXXX";
  if (!mkdtemp(templ.data())) __builtin_trap();
  g_dir = templ;
  std::atexit([] {
    for (const char* f : {"/config.json", "/recipe.json", "/model.safetensors"}) std::remove((g_dir + f).c_str());
    rmdir(g_dir.c_str());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = qtx_fuzz::split_files(data, size, 3);
  write_file(g_dir + "/config.json", parts[0]);
  write_file(g_dir + "/recipe.json", parts[1]);
  write_file(g_dir + "/model.safetensors", parts[2]);
  try {
    auto model = qtx::rt::load_int_model(g_dir, qtx::rt::Kernels::Reference);
    const qtx::ModelConfig& c = model->config();
    std::vector<float> logits;
    if (c.model_type == "vit") {
      const size_t n = static_cast<size_t>(c.num_channels) * c.image_size * c.image_size;
      if (n > (1u << 16)) return 0;
      std::vector<float> pixels(n);
      for (size_t i = 0; i < n; ++i) pixels[i] = static_cast<float>(i % 7) / 3.f - 1.f;
      logits = model->classify_images(pixels.data(), 1);
    } else {
      const int T = std::min(c.max_position_embeddings, 8);
      std::vector<int32_t> ids(static_cast<size_t>(T)), mask(static_cast<size_t>(T), 1);
      for (int t = 0; t < T; ++t) ids[static_cast<size_t>(t)] = t % c.vocab_size;
      if (T > 1) mask.back() = 0;
      logits = model->classify_tokens(ids.data(), mask.data(), 1, T);
    }
    if (logits.size() != static_cast<size_t>(c.num_labels())) __builtin_trap();
  } catch (const qtx::Error&) {
  }
  return 0;
}
