// 8-bit images, PNG/PGM decoding and the ViTImageProcessor pre-processing (resize, rescale,
// normalise) driven by preprocessor_config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/hf_config.h"

namespace qtx {

struct Image {
  int height = 0, width = 0, channels = 0;  // channels 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;               // HWC
};

Image read_png(const std::string& path);  // gray, gray+alpha, RGB, RGBA, palette -> 1 or 3 channels
Image read_pgm(const std::string& path);  // binary P5, maxval <= 255
Image read_image(const std::string& path);  // by extension (.png, .pgm)
// The same decoders on bytes in memory; `where` names them in messages.
Image decode_png(const uint8_t* data, size_t size, const std::string& where);
Image decode_pgm(const uint8_t* data, size_t size, const std::string& where);
void write_png(const std::string& path, const Image& img);

// Converts to the model's channel count (gray <-> RGB), resizes bilinearly to the
// preprocessor's height x width when do_resize (else requires the exact size), then rescales
// and normalises. Returns CHW floats. Throws qtx::Error (naming `where`) on a size mismatch.
std::vector<float> preprocess_image(const Image& img, const ImagePreprocess& pp, int channels,
                                    const std::string& where);

}  // namespace qtx
