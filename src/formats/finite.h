// A model's outputs are scored only when they are numbers: NaN logits would otherwise pick an
// arbitrary label (std::max_element, argmax) and print as an accuracy or as "-nan%".
#pragma once
#include <cmath>
#include <cstddef>
#include <string>

#include "formats/error.h"

namespace qtx {

// Throws naming the first sample (row of `per_row` logits, numbered from `first_sample`) that
// holds a NaN or an infinity.
inline void check_finite_logits(const float* logits, size_t n, int per_row, int first_sample, const std::string& where) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(logits[i]))
      fail(where, "the model produced a " + std::string(std::isnan(logits[i]) ? "NaN" : "infinite") + " logit for sample " +
                      std::to_string(first_sample + static_cast<int>(i / static_cast<size_t>(per_row > 0 ? per_row : 1))) +
                      " (overflowing weights or activations?); nothing is scored");
}

}  // namespace qtx
