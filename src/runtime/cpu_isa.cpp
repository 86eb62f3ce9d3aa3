#include "runtime/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace qtx::rt {
namespace {

Isa detect() {
  __builtin_cpu_init();
  // __builtin_cpu_supports reads cpuid and, for AVX and AVX-512, whether the OS saves their state.
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))) return Isa::Scalar;
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd")))
    return Isa::Avx2;
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi")) return Isa::Avx512Vnni;
  return Isa::Avx512;
}

Isa env_cap(Isa cpu) {
  const char* v = std::getenv("QTX_MAX_ISA");
  if (!v || !*v) return cpu;
  const auto isa = parse_isa(v);
  if (!isa)
    throw std::invalid_argument(std::string("QTX_MAX_ISA='") + v + "' is not one of scalar, avx2, avx512, avx512_vnni");
  return *isa < cpu ? *isa : cpu;
}

struct State {
  Isa cpu = detect();
  Isa env = env_cap(cpu);
  std::atomic<int> active{static_cast<int>(env)};
};

State& state() {
  static State s;
  return s;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512_vnni";
  }
  return "?";
}

std::optional<Isa> parse_isa(const std::string& name) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (name == isa_name(i)) return i;
  return std::nullopt;
}

Isa cpu_isa() { return state().cpu; }

Isa max_isa_from_env() { return state().env; }

Isa active_isa() { return static_cast<Isa>(state().active.load(std::memory_order_relaxed)); }

void set_max_isa(Isa isa) {
  State& s = state();
  s.active.store(static_cast<int>(isa < s.env ? isa : s.env), std::memory_order_relaxed);
}

std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(cpu_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

}  // namespace qtx::rt
