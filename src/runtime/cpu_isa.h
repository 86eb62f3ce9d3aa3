// The instruction sets the runtime's kernels are written for, which of them this CPU has, and
// the cap on them (QTX_MAX_ISA): kernels are chosen at run time, so one build runs on any
// x86-64-v3 CPU and uses AVX-512 and VNNI where they exist (as CTranslate2's CPU_ISA_DISPATCH and
// oneDNN's ONEDNN_MAX_CPU_ISA do). Every level computes the same integers (tests compare them).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace qtx::rt {

// Ordered: each level includes the ones below it.
// - scalar: the plain C++ loops of every kernel, the int8 GEMM included (the reference path);
// - avx2: x86-64-v3 (AVX2, FMA, BMI2), the build's baseline;
// - avx512: x86-64-v4 (AVX-512 F, CD, BW, DQ, VL);
// - avx512_vnni: avx512 + VNNI + VBMI (Ice Lake and later, AMD Zen 4 and later).
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3 };

const char* isa_name(Isa isa);
std::optional<Isa> parse_isa(const std::string& name);  // the names isa_name gives
// The highest level this CPU supports (cpuid, and the OS saving the AVX-512 state).
Isa cpu_isa();
// The level the kernels use: the CPU's, capped by QTX_MAX_ISA (read once; an unknown name is an
// error that names the accepted ones) and by set_max_isa().
Isa active_isa();
// The CPU's level capped by QTX_MAX_ISA alone (what oneDNN is capped at).
Isa max_isa_from_env();
// Caps the kernels of this process at `isa` (never above the CPU's; tests and benchmarks run one
// model at several levels). oneDNN's own cap is fixed at its first use (QTX_MAX_ISA only).
void set_max_isa(Isa isa);
// Every level this CPU can run, lowest first.
std::vector<Isa> runnable_isas();
// One line for logs: the active level, the CPU's, and oneDNN's ISA for the int8 GEMMs.
std::string isa_summary();

}  // namespace qtx::rt
