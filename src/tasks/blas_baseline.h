// The FP32 baseline's BLAS: which OpenBLAS kernels libtorch's GEMMs run on this CPU, and whether
// they leave AVX-512 unused. OpenBLAS picks its kernels when it is loaded, from the CPU or from
// OPENBLAS_CORETYPE; an environment that pins an AVX2 set (this project's machines set
// OPENBLAS_CORETYPE=Haswell) leaves an AVX-512 CPU's FP32 GEMMs at about 60 % of the speed of
// the SkylakeX/Cooperlake kernels OpenBLAS itself would choose on AMD Zen 5 (docs/BENCHMARKS.md).
#pragma once
#include <string>

namespace qtx {

struct BlasBaseline {
  std::string core;    // OpenBLAS's kernel set ("Haswell", "SkylakeX", …); empty if libtorch's BLAS is not OpenBLAS
  std::string config;  // openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH … Haswell"
  bool cpu_avx512 = false;   // the CPU has AVX-512 F, CD, BW, DQ and VL (what OpenBLAS's SkylakeX kernels use)
  bool core_avx512 = false;  // the kernel set in use is one of OpenBLAS's AVX-512 ones
  // OpenBLAS runs kernels without AVX-512 on a CPU that has it.
  bool avx512_left_unused() const;
};

BlasBaseline blas_baseline();

// One line for logs: "OpenBLAS 0.3.21 …, kernels SkylakeX (OPENBLAS_CORETYPE=SkylakeX)".
std::string describe(const BlasBaseline& b);

}  // namespace qtx
