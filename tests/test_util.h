// Helpers shared by the test files: temporary folders and raw file writing.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/hf_config.h"

namespace qtx_test {

// A fresh, empty folder in this process's own temporary folder (removed when the process exits).
std::string temp_dir(const std::string& name);
void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);
// A 2-layer ViT for 8x8 grayscale images, 3 labels (hidden 32, 2 heads, MLP 64, patch 4).
qtx::ModelConfig tiny_vit_config();
qtx::ModelConfig tiny_bert_config();  // 2 layers, 32 hidden, vocabulary of 50, labels x and y

}  // namespace qtx_test

// Asserts that `stmt` throws qtx::Error whose message contains `needle`.
#define EXPECT_QTX_ERROR(stmt, needle)                                                  \
  do {                                                                                  \
    try {                                                                               \
      stmt;                                                                             \
      ADD_FAILURE() << "expected qtx::Error containing '" << (needle) << "'";           \
    } catch (const qtx::Error& e) {                                                     \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();     \
    }                                                                                   \
  } while (0)
