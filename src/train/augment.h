// Training-time image augmentation for vit-fmnist (kept apart from train.h, which stays free of
// torch headers).
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <random>

namespace qtx {

// What augment_images does to each training image (vit-fmnist).
struct ImageAugment {
  int64_t shift = 0;        // a random translation by up to ±shift px
  bool flip = false;        // a horizontal flip with probability 1/2
  double erase = 0;         // random erasing (Zhong et al. 2020) with this probability
  float background = 0;     // the value of a black pixel: what a shift moves in
  float white = 1;          // the value of a white pixel: erased pixels are uniform in [background, white]
};

// Per sample of x [B, C, H, W], in this order: the shift, the flip, the erasing of one rectangle
// of 2–40 % of the image with aspect ratio 0.3–3.3 (up to ten draws until one fits). The flip
// is drawn either way, so the same rng gives the same shifts with and without flips; with
// erase = 0 nothing more is drawn, so the same rng gives the same images as before erasing existed.
at::Tensor augment_images(const at::Tensor& x, std::mt19937_64& rng, const ImageAugment& a);

}  // namespace qtx
