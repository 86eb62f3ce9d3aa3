// The image decoders (PNG, or PGM when the input starts "P5") and the resize/normalise step that
// follows them in every loader, to a fixed 28x28 gray model input.
#include <cstdint>
#include <cstring>

#include "data/image.h"
#include "formats/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const bool pgm = size >= 2 && std::memcmp(data, "P5", 2) == 0;
    qtx::Image img = pgm ? qtx::decode_pgm(data, size, "fuzz.pgm") : qtx::decode_png(data, size, "fuzz.png");
    if (img.pixels.size() != static_cast<size_t>(img.height) * img.width * img.channels) __builtin_trap();
    qtx::ImagePreprocess pp;
    pp.height = pp.width = 28;
    pp.image_mean = {0.5f};
    pp.image_std = {0.5f};
    if (img.pixels.size() <= (1u << 20)) (void)qtx::preprocess_image(img, pp, 3, "fuzz");
  } catch (const qtx::Error&) {
  }
  return 0;
}
