#!/bin/sh
# Fails if an object compiled with AVX-512 flags (src/runtime/arch/x86/) defines a weak symbol —
# an inline function or template instance — outside its own namespace (qtx::rt::<level>):
# the linker keeps one copy of each weak symbol for the whole program, and if it kept this one,
# generic code would run AVX-512 instructions and die on AVX2-only CPUs.
# Usage: check-arch-symbols.sh OBJECT...
status=0
for obj in "$@"; do
  level=$(basename "$obj" | sed 's/^kernels_avx512\.cpp\.o$//')
  ns=$(echo "$obj" | sed -n 's#.*qtx_kernels_\([a-z0-9_]*\)\.dir.*#\1#p')
  # DW.ref.__gxx_personality_v0: a pointer to the C++ exception personality routine, the same
  # data in every object that can unwind; no code.
  bad=$(nm -C --defined-only "$obj" | awk '$2 ~ /^[WVuw]$/' | grep -v "qtx::rt::$ns::" | grep -v "qtx::rt::simd::$ns::" |
        grep -v " DW.ref.__gxx_personality_v0$" || true)
  if [ -n "$bad" ]; then
    echo "check-arch-symbols: $obj defines weak symbols outside qtx::rt::$ns (see the script's comment):" >&2
    echo "$bad" >&2
    status=1
  fi
done
exit $status
