// config.json and preprocessor_config.json parsing on arbitrary text (each input is tried as both).
#include <cstdint>
#include <string>

#include "formats/error.h"
#include "formats/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    qtx::ModelConfig c = qtx::ModelConfig::parse(text, "config.json");
    (void)c.head_dim();  // validate() promises a positive head count
    (void)c.label_index("x");
  } catch (const qtx::Error&) {
  }
  try {
    (void)qtx::ImagePreprocess::parse(text, "preprocessor_config.json");
  } catch (const qtx::Error&) {
  }
  return 0;
}
