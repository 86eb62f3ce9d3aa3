// Training-time image augmentation for vit-fmnist (kept apart from train.h, which stays free of
// torch headers).
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <random>

namespace qtx {

// Per sample of x [B, C, H, W]: a random translation by up to ±P px (the vacated border filled
// with `background`) and, with `flip`, a horizontal flip with probability 1/2. The flip is drawn
// either way, so the same rng gives the same shifts with and without flips.
at::Tensor augment_images(const at::Tensor& x, std::mt19937_64& rng, float background, int64_t P, bool flip);

}  // namespace qtx
