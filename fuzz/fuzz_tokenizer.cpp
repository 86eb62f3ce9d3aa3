// The BERT vocab loader and tokenizer: input = vocab.txt, separator, tokenizer_config.json
// (empty: absent), separator, text to encode.
#include <cstdint>
#include <optional>
#include <string>

#include "formats/bert_tokenizer.h"
#include "formats/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = qtx_fuzz::split_files(data, size, 3);
  std::optional<std::string> config;
  if (!parts[1].empty()) config = parts[1];
  try {
    auto tok = qtx::BertTokenizer::parse(parts[0], config, "vocab.txt", "tokenizer_config.json");
    for (int id : tok.encode(parts[2], 32))
      if (id < 0 || id >= tok.size()) __builtin_trap();
  } catch (const qtx::Error&) {
  }
  return 0;
}
