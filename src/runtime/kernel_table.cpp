#include "runtime/kernel_table.h"

#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>

namespace qtx::rt {

const KernelTable& kernels_for(Isa isa) {
  static const KernelTable scalar;  // every entry null: the plain loops
  switch (isa) {
    case Isa::Scalar: return scalar;
    case Isa::Avx2: return kernel_table_avx2();
    case Isa::Avx512: return kernel_table_avx512();
    case Isa::Avx512Vnni: return kernel_table_avx512_vnni();
  }
  return scalar;
}

const KernelTable& active_kernels() { return kernels_for(active_isa()); }

void* thread_scratch(int slot, size_t bytes) {
  struct Buffer {
    void* p = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buffers[8];
  if (slot < 0 || slot >= 8) throw std::logic_error("thread_scratch: slot out of range");
  Buffer& b = buffers[slot];
  if (b.size < bytes) {
    std::free(b.p);
    b.size = (bytes + 63) / 64 * 64 * 2;  // room to grow without a reallocation per call
    b.p = std::aligned_alloc(64, b.size);
    if (!b.p) {
      b.size = 0;
      throw std::bad_alloc();
    }
  }
  return b.p;
}

}  // namespace qtx::rt
