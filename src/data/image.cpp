#include "data/image.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "formats/error.h"

namespace qtx {

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

Image read_png(const std::string& path) {
  std::vector<uint8_t> bytes = read_bytes(path);
  return decode_png(bytes.data(), bytes.size(), path);
}

Image decode_png(const uint8_t* data, size_t size, const std::string& path) {
  png_image im;
  std::memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&im, data, size))
    fail(path, std::string("not a readable PNG: ") + im.message);
  const bool color = (im.format & PNG_FORMAT_FLAG_COLOR) != 0;
  im.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;  // alpha composited on black by libpng
  Image out;
  out.height = static_cast<int>(im.height);
  out.width = static_cast<int>(im.width);
  out.channels = color ? 3 : 1;
  if (im.height == 0 || im.width == 0 || im.height > 16384 || im.width > 16384) {
    png_image_free(&im);
    fail(path, "PNG size " + std::to_string(im.width) + "x" + std::to_string(im.height) + " is not supported");
  }
  out.pixels.resize(PNG_IMAGE_SIZE(im));
  if (!png_image_finish_read(&im, nullptr, out.pixels.data(), 0, nullptr))
    fail(path, std::string("corrupt PNG: ") + im.message);
  return out;
}

Image read_pgm(const std::string& path) {
  std::vector<uint8_t> bytes = read_bytes(path);
  return decode_pgm(bytes.data(), bytes.size(), path);
}

Image decode_pgm(const uint8_t* data, size_t size, const std::string& path) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::string magic;
  in >> magic;
  if (magic != "P5") fail(path, "not a binary PGM (P5) file");
  auto next_int = [&]() {
    int v = -1;
    while (in >> std::ws && in.peek() == '#') {
      std::string line;
      std::getline(in, line);
    }
    if (!(in >> v)) fail(path, "malformed PGM header");
    return v;
  };
  Image img;
  img.width = next_int();
  img.height = next_int();
  int maxval = next_int();
  in.get();
  if (img.width <= 0 || img.height <= 0 || img.width > 16384 || img.height > 16384)
    fail(path, "PGM size is not supported");
  if (maxval <= 0 || maxval > 255) fail(path, "PGM maxval " + std::to_string(maxval) + " is not supported (need <= 255)");
  img.channels = 1;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height);
  in.read(reinterpret_cast<char*>(img.pixels.data()), static_cast<std::streamsize>(img.pixels.size()));
  if (in.gcount() != static_cast<std::streamsize>(img.pixels.size())) fail(path, "truncated PGM data");
  if (maxval != 255)
    for (auto& p : img.pixels) p = static_cast<uint8_t>(std::lround(p * 255.0 / maxval));
  return img;
}

Image read_image(const std::string& path) {
  auto ends = [&](const char* ext) {
    std::string e(ext), p = path;
    std::transform(p.begin(), p.end(), p.begin(), ::tolower);
    return p.size() >= e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".png")) return read_png(path);
  if (ends(".pgm")) return read_pgm(path);
  fail(path, "unsupported image format (use .png or .pgm)");
}

void write_png(const std::string& path, const Image& img) {
  png_image im;
  std::memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = static_cast<png_uint_32>(img.width);
  im.height = static_cast<png_uint_32>(img.height);
  im.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&im, path.c_str(), 0, img.pixels.data(), 0, nullptr))
    fail(path, std::string("cannot write PNG: ") + im.message);
}

std::vector<float> preprocess_image(const Image& img, const ImagePreprocess& pp, int channels,
                                    const std::string& where) {
  if (channels != 1 && channels != 3) fail(where, "model wants " + std::to_string(channels) + " channels");
  const int H = pp.height, W = pp.width;
  if (H <= 0 || W <= 0) fail(where, "preprocessor_config.json gives no size.height/size.width");
  if (pp.do_normalize && ((pp.image_mean.size() != 1 && pp.image_mean.size() != static_cast<size_t>(channels)) ||
                          (pp.image_std.size() != 1 && pp.image_std.size() != static_cast<size_t>(channels))))
    fail(where, "image_mean/image_std need 1 or " + std::to_string(channels) + " entries");
  if (!pp.do_resize && (img.height != H || img.width != W))
    fail(where, "image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                    " but the model takes " + std::to_string(W) + "x" + std::to_string(H) +
                    " and its preprocessor_config.json has do_resize false");
  // Channel conversion first (gray -> RGB replicates; RGB -> gray by ITU-R 601 luma).
  auto pixel = [&](int y, int x, int c) -> float {
    const uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * img.channels];
    if (img.channels == channels) return p[c];
    if (img.channels == 1) return p[0];
    return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
  };
  std::vector<float> out(static_cast<size_t>(channels) * H * W);
  const float sy = static_cast<float>(img.height) / H, sx = static_cast<float>(img.width) / W;
  for (int c = 0; c < channels; ++c) {
    const float mean = pp.do_normalize ? pp.image_mean[pp.image_mean.size() == 1 ? 0 : c] : 0.f;
    const float stdv = pp.do_normalize ? pp.image_std[pp.image_std.size() == 1 ? 0 : c] : 1.f;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        float v;
        if (img.height == H && img.width == W) {
          v = pixel(y, x, c);
        } else {  // bilinear, half-pixel centres (PIL's convention)
          float fy = std::clamp((y + 0.5f) * sy - 0.5f, 0.f, img.height - 1.f);
          float fx = std::clamp((x + 0.5f) * sx - 0.5f, 0.f, img.width - 1.f);
          int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
          int y1 = std::min(y0 + 1, img.height - 1), x1 = std::min(x0 + 1, img.width - 1);
          float dy = fy - y0, dx = fx - x0;
          v = (1 - dy) * ((1 - dx) * pixel(y0, x0, c) + dx * pixel(y0, x1, c)) +
              dy * ((1 - dx) * pixel(y1, x0, c) + dx * pixel(y1, x1, c));
        }
        if (pp.do_rescale) v *= static_cast<float>(pp.rescale_factor);
        out[(static_cast<size_t>(c) * H + y) * W + x] = (v - mean) / stdv;
      }
  }
  return out;
}

}  // namespace qtx
