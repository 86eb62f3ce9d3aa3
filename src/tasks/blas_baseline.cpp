#include "tasks/blas_baseline.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace qtx {

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// OpenBLAS exports these from libopenblas.so (libtorch's libblas.so.3 on Debian, by the
// alternatives system); looked up at run time so another BLAS simply reports nothing.
std::string call_string_fn(const char* name) {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
  const char* s = fn ? fn() : nullptr;
  return s ? std::string(s) : std::string();
}
}  // namespace

bool BlasBaseline::avx512_left_unused() const {
  return !core.empty() && cpu_avx512 && !core_avx512;
}

BlasBaseline blas_baseline() {
  BlasBaseline b;
  b.core = call_string_fn("openblas_get_corename");
  b.config = call_string_fn("openblas_get_config");
  __builtin_cpu_init();
  b.cpu_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const std::string c = lower(b.core);
  b.core_avx512 = c == "skylakex" || c == "cooperlake" || c == "sapphirerapids";
  return b;
}

std::string describe(const BlasBaseline& b) {
  if (b.core.empty()) return "not OpenBLAS (no openblas_get_corename in the process)";
  std::string s = (b.config.empty() ? std::string("OpenBLAS") : b.config) + ", kernels " + b.core;
  if (const char* env = std::getenv("OPENBLAS_CORETYPE")) s += std::string(" (OPENBLAS_CORETYPE=") + env + ")";
  return s;
}

}  // namespace qtx
