// Element-wise ops of the decode step (ops.h): the dispatch to each instruction set's silu_mul.

#include "ops.h"

#include "arch/kernels.h"
#include "cpu_features.h"

namespace autan {

SiluMul silu_mul_kernel() {
  switch (kernel_isa()) {
    case Isa::avx512_vnni:  // the 256-bit code: no wider one yet
    case Isa::avx512:
    case Isa::avx_vnni:
    case Isa::avx2:
      return silu_mul_avx2;
    case Isa::scalar:
      break;
  }
  return silu_mul_scalar;
}

}  // namespace autan
