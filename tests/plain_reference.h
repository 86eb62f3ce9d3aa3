// The runtime's member functions dispatch to the active instruction set's kernels — on an
// AVX2-only CPU, the very AVX2 functions a test checks. Tests that call an arch/x86 function
// directly compute their references with the kernels capped at scalar (the plain loops) for the
// test's lifetime: `const PlainReference plain;` at the top of the test.
#pragma once
#include "runtime/cpu_isa.h"

struct PlainReference {
  PlainReference() { qtx::rt::set_max_isa(qtx::rt::Isa::Scalar); }
  ~PlainReference() { qtx::rt::set_max_isa(qtx::rt::Isa::Avx512Vnni); }  // back to the CPU's (and QTX_MAX_ISA's) level
  PlainReference(const PlainReference&) = delete;
  PlainReference& operator=(const PlainReference&) = delete;
};
